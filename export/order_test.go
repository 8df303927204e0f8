package export_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/export"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
)

// caseVersions adds n addenda to a signed case and returns its versions in
// order, the signature's first.
func caseVersions(t *testing.T, e *env, caseID uuid.UUID, n int) []int64 {
	t.Helper()
	for i := range n {
		e.clk.advance(time.Second)
		if _, _, err := e.s.AddAddendum(context.Background(), "perf.one", caseID, uuid.New(), "Correction "+string(rune('A'+i)), "late entry"); err != nil {
			t.Fatalf("addendum: %v", err)
		}
	}
	ds, _, err := e.s.ListDeliveries(context.Background(), store.DeliveryFilter{CaseID: caseID, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	var vs []int64
	for _, d := range ds {
		if !slices.Contains(vs, d.Version) {
			vs = append(vs, d.Version)
		}
	}
	slices.Sort(vs)
	if len(vs) != n+1 {
		t.Fatalf("versions %v, want %d", vs, n+1)
	}
	return vs
}

// versionsOf maps message ids back to versions.
func versionsOf(t *testing.T, caseID uuid.UUID, vs []int64, dest store.Destination, ids []string) []int64 {
	t.Helper()
	out := make([]int64, 0, len(ids))
	for _, id := range ids {
		v := int64(-1)
		for _, cand := range vs {
			if export.MessageID(dest, caseID, cand) == id {
				v = cand
			}
		}
		if v < 0 {
			t.Fatalf("%s: message id %q is of no version of the case", dest, id)
		}
		out = append(out, v)
	}
	return out
}

// TestHangingReceiverDelaysNoOther: the FHIR server takes the first
// Bundle and never answers; meanwhile the HL7 receiver answers AR twice
// and then accepts. Each HL7 retry goes out on its back-off schedule
// (under half a second here), all three versions reach the HL7 receiver in
// order, and FHIR gets nothing more while its first version hangs. With
// one worker loop for both destinations the HL7 retries waited for the
// FHIR timeout.
func TestHangingReceiverDelaysNoOther(t *testing.T) {
	clk := startClock()
	both := []store.Destination{store.DestinationMLLP, store.DestinationFHIR}
	e := newEnv(t, pgtest.Open(t), clk, both...)
	caseID, _ := signedCase(t, e.s, clk)
	vs := caseVersions(t, e, caseID, 2)

	release := make(chan struct{})
	var fmu sync.Mutex
	fhirArrivals := 0
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		fmu.Lock()
		fhirArrivals++
		fmu.Unlock()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hanging.Close)
	t.Cleanup(func() { close(release) }) // runs first: lets the handler end
	ftr, err := export.NewFHIRTransport(hanging.URL, &http.Client{Timeout: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rcv := newReceiver(t, "AR", "AR")
	const initial, maxBackoff = 200 * time.Millisecond, 400 * time.Millisecond
	w, err := export.NewWorker(export.WorkerConfig{Outbox: e.o, Renderer: e.r, Lease: 2 * time.Minute, PollInterval: 20 * time.Millisecond,
		InitialBackoff: initial, MaxBackoff: maxBackoff, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Transports: map[store.Destination]export.Transport{store.DestinationMLLP: mllpTransport(t, rcv), store.DestinationFHIR: ftr}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	defer func() { stop(); <-done }()

	var times []time.Time
	var ids []string
	deadline := time.After(15 * time.Second)
	for len(ids) < 5 {
		select {
		case id := <-rcv.arrived:
			times, ids = append(times, time.Now()), append(ids, id)
		case <-deadline:
			t.Fatalf("the HL7 receiver got %d of 5 messages in 15 s while the FHIR server hung", len(ids))
		}
	}
	// A retry after AR is due after at most maxBackoff; allow for the
	// poll interval, rendering and a loaded machine.
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap > maxBackoff+time.Second {
			t.Errorf("HL7 message %d went %v after the one before, want within its back-off", i+1, gap.Round(time.Millisecond))
		}
	}
	if got, want := versionsOf(t, caseID, vs, store.DestinationMLLP, ids), []int64{vs[0], vs[0], vs[0], vs[1], vs[2]}; !slices.Equal(got, want) {
		t.Fatalf("HL7 versions in the order of arrival %v, want %v", got, want)
	}
	fmu.Lock()
	n := fhirArrivals
	fmu.Unlock()
	if n != 1 {
		t.Fatalf("the FHIR server got %d requests while the first hung, want 1 (later versions wait)", n)
	}
	d := delivery(t, e, caseID, vs[0], store.DestinationFHIR)
	if d.State != store.DeliveryDelivering {
		t.Fatalf("the hanging FHIR delivery is %s, want delivering", d.State)
	}
	// The last ACK is recorded a moment after the receiver sent it.
	for _, v := range vs {
		d := delivery(t, e, caseID, v, store.DestinationMLLP)
		for end := time.Now().Add(5 * time.Second); d.State != store.DeliveryDelivered && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
			d = delivery(t, e, caseID, v, store.DestinationMLLP)
		}
		if d.State != store.DeliveryDelivered {
			t.Errorf("HL7 v%d: %s", v, d.State)
		}
	}
}

// TestVersionsInOrderThroughFailuresAndRestart: a case's three versions go
// to an MLLP listener and a FHIR server. The first is refused by both (AE,
// 400); the corrections wait. A person retries the HL7 one, which then
// times out, meets AR and is accepted; superseding the FHIR one lets the
// next version go (503, then accepted). The worker is shut down while the
// HL7 receiver stalls on the second version, and a new one finishes. Each
// receiver sees the versions in order, every one exactly as listed.
func TestVersionsInOrderThroughFailuresAndRestart(t *testing.T) {
	ctx := context.Background()
	clk := startClock()
	both := []store.Destination{store.DestinationMLLP, store.DestinationFHIR}
	e := newEnv(t, pgtest.Open(t), clk, both...)
	caseID, _ := signedCase(t, e.s, clk)
	vs := caseVersions(t, e, caseID, 2)
	rcv := newReceiver(t, "AE", "stall", "AR", "AA", "stall")
	fsrv := newFHIRServer(t, http.StatusBadRequest, http.StatusServiceUnavailable)
	ftr, err := export.NewFHIRTransport(fsrv.srv.URL, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w1 := e.worker(t, map[store.Destination]export.Transport{store.DestinationMLLP: mllpTransport(t, rcv), store.DestinationFHIR: ftr})
	if n := drain(t, e, w1, 20); n != 2 {
		t.Fatalf("%d attempts, want 2 (the first version to each; the rest wait)", n)
	}
	for _, dest := range both {
		if d := delivery(t, e, caseID, vs[0], dest); d.State != store.DeliveryFailed {
			t.Fatalf("%s v%d: %s, want failed", dest, vs[0], d.State)
		}
		for _, v := range vs[1:] {
			if d := delivery(t, e, caseID, v, dest); d.State != store.DeliveryPending || d.Attempts != 0 {
				t.Fatalf("%s v%d: %s after %d attempts, want pending, never tried", dest, v, d.State, d.Attempts)
			}
		}
	}

	// A person retries HL7 and supersedes FHIR.
	if _, err := e.s.RetryDelivery(ctx, store.DeliveryID(caseID, vs[0], store.DestinationMLLP)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.SupersedeDelivery(ctx, "ops.one", store.DeliveryID(caseID, vs[0], store.DestinationFHIR), "the correction carries the whole record"); err != nil {
		t.Fatal(err)
	}
	// The worker runs on its own loops, the test clock moving a second
	// every 10 ms, until the HL7 receiver stalls on the second version;
	// then the server shuts down.
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = w1.Run(runCtx); close(done) }()
	tick := time.NewTicker(10 * time.Millisecond)
	stopTick := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		for {
			select {
			case <-tick.C:
				clk.advance(time.Second)
			case <-stopTick:
				return
			}
		}
	}()
	want2 := export.MessageID(store.DestinationMLLP, caseID, vs[1])
	deadline := time.After(30 * time.Second)
wait:
	for {
		select {
		case id := <-rcv.arrived:
			if id == want2 {
				break wait
			}
		case <-deadline:
			t.Fatal("the second version never reached the HL7 receiver")
		}
	}
	stop()
	<-done
	tick.Stop()
	close(stopTick)
	<-ticked
	if d := delivery(t, e, caseID, vs[1], store.DestinationMLLP); d.State != store.DeliveryPending {
		t.Fatalf("HL7 v%d after the shutdown: %s, want pending", vs[1], d.State)
	}

	// The restarted server finishes.
	w2 := e.worker(t, map[store.Destination]export.Transport{store.DestinationMLLP: mllpTransport(t, rcv), store.DestinationFHIR: ftr})
	drain(t, e, w2, 20)

	rcv.mu.Lock()
	mllpIDs := slices.Clone(rcv.arrivals)
	stored := len(rcv.stored)
	rcv.mu.Unlock()
	// v1: AE, (retry) timeout, AR, AA; v2: stalled at the shutdown, AA; v3: AA.
	if got, want := versionsOf(t, caseID, vs, store.DestinationMLLP, mllpIDs), []int64{vs[0], vs[0], vs[0], vs[0], vs[1], vs[1], vs[2]}; !slices.Equal(got, want) {
		t.Errorf("HL7 versions in the order of arrival %v, want %v", got, want)
	}
	if stored != 3 {
		t.Errorf("HL7 receiver filed %d messages, want 3", stored)
	}
	fsrv.mu.Lock()
	fhirIDs := slices.Clone(fsrv.order)
	fsrv.mu.Unlock()
	// v1: 400, superseded; v2: 503, 200; v3: 200.
	if got, want := versionsOf(t, caseID, vs, store.DestinationFHIR, fhirIDs), []int64{vs[0], vs[1], vs[1], vs[2]}; !slices.Equal(got, want) {
		t.Errorf("FHIR versions in the order of arrival %v, want %v", got, want)
	}
	for _, v := range vs {
		if d := delivery(t, e, caseID, v, store.DestinationMLLP); d.State != store.DeliveryDelivered {
			t.Errorf("HL7 v%d: %s", v, d.State)
		}
		want := store.DeliveryDelivered
		if v == vs[0] {
			want = store.DeliverySuperseded
		}
		if d := delivery(t, e, caseID, v, store.DestinationFHIR); d.State != want {
			t.Errorf("FHIR v%d: %s, want %s", v, d.State, want)
		}
	}
}
