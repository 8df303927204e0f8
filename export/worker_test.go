package export_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/export"
	"perfusion/hl7/fhir"
	"perfusion/hl7/mllp"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
	"perfusion/store/postgres"
	"perfusion/store/postgres/pgtest"
)

// clock is the worker's settable clock: back-offs pass by advancing it, so
// the tests never sleep through them. Network timeouts stay real.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func hl7Config() export.HL7Config {
	return export.HL7Config{SendingApplication: v2.HD{NamespaceID: "PERFUSION"}, SendingFacility: v2.HD{NamespaceID: "MAIN"},
		ReceivingApplication: v2.HD{NamespaceID: "EHR"}, PointOfCare: "CARDIAC OR"}
}

func fhirOptions() fhir.Options {
	return fhir.Options{MRNSystems: map[string]string{"HOSP": "http://hosp.example.org/fhir/sid/mrn"},
		EncounterSystem: "http://hosp.example.org/fhir/sid/visit", StaffSystem: "http://hosp.example.org/fhir/sid/staff"}
}

func newStore(b store.Backend, clk *clock, dests ...store.Destination) *store.Store {
	return store.New(b, store.Config{Now: clk.now, Outbox: &store.OutboxConfig{Destinations: dests, MessageID: export.MessageID}})
}

// signedCase charts a small CPB case with labs, drugs, fluids, blood and
// a note, closes and signs it, and returns its id and the signature's
// version.
func signedCase(t testing.TB, s *store.Store, clk *clock) (uuid.UUID, int64) {
	t.Helper()
	return signedCaseWith(t, s, clk, func(*charting.Patient) {})
}

// signedCaseWith is signedCase with the patient edited first.
func signedCaseWith(t testing.TB, s *store.Store, clk *clock, edit func(*charting.Patient)) (uuid.UUID, int64) {
	t.Helper()
	ctx := context.Background()
	start := clk.now().Add(-3 * time.Hour)
	patient := charting.Patient{MRN: "MRN-0042", MRNAssigningAuthority: "HOSP", FamilyName: "Tester", GivenName: "Sam",
		BirthDate: "1958-06-01", Sex: "male", HeightCm: 178, WeightKg: 82}
	edit(&patient)
	c, err := s.CreateCase(ctx, "perf.one", store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: "OR-2", ScheduledStart: start,
		Details: charting.Details{
			Patient:   patient,
			Team:      charting.Team{Perfusionists: []charting.StaffMember{{StaffID: "perf.one", DisplayName: "P One"}}},
			Procedure: charting.Procedure{Description: "CABG", EncounterID: "V-77"},
			Circuit:   charting.Circuit{Oxygenator: charting.Component{Model: "OXY", Lot: "L1"}},
			Prime:     charting.Prime{Components: []charting.PrimeComponent{{Name: "Plasma-Lyte A", VolumeML: 1200}}},
		}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	at := func(m int) time.Time { return start.Add(time.Duration(m) * time.Minute) }
	entries := []charting.EntryDetail{
		{Event: &charting.Event{Type: "bypass_on"}},
		{Event: &charting.Event{Type: "cross_clamp_on"}},
		{LabResult: &charting.LabResult{Analyte: "hct", Value: 25, Unit: "%"}},
		{Drug: &charting.DrugDose{Drug: "Heparin sodium", Dose: 30000, Unit: "[iU]", Route: "intravenous"}},
		{Fluid: &charting.Fluid{Kind: "crystalloid", Name: "Plasma-Lyte A", VolumeML: 500}},
		{BloodProduct: &charting.BloodProduct{Type: "prbc", Units: 1, VolumeML: 280, Route: "circuit"}},
		{Note: &charting.Note{Text: "Uneventful | run ^ with & delimiters"}},
		{Event: &charting.Event{Type: "cross_clamp_off"}},
		{Event: &charting.Event{Type: "bypass_off"}},
	}
	for i, d := range entries {
		if _, _, err := s.RecordEntry(ctx, "perf.one", charting.Entry{ID: uuid.New(), CaseID: c.ID, OccurredAt: at(10 + 10*i), Detail: d}); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	// Nasopharyngeal temperature once a minute on bypass: 36 falling to a
	// nadir of 32.0 at minute 40, then back.
	temp := charting.Series{Channel: "temp_nasopharyngeal"}
	for m := 10; m <= 90; m++ {
		temp.TimesMs = append(temp.TimesMs, at(m).UnixMilli())
		temp.Values = append(temp.Values, 32+float64(max(40-m, m-40))/10)
	}
	// Arterial pump flow from the heart-lung machine every 30 s on bypass,
	// alternating 4.40 and 4.60 (a minute's mean is 4.5), with one reading
	// the device flagged invalid at minute 20.
	flow := charting.Series{Channel: "pump_flow", Invalid: []bool{}}
	for half := 20; half < 180; half++ {
		flow.TimesMs = append(flow.TimesMs, start.Add(time.Duration(half)*30*time.Second).UnixMilli())
		flow.Values = append(flow.Values, 4.4+0.2*float64(half%2))
		flow.Invalid = append(flow.Invalid, half == 40)
	}
	flow.Values[20] = 0
	for i, r := range s.AppendSamples(ctx, "gateway-1", []*charting.SampleBatch{
		{CaseID: c.ID, SourceID: "monitor-1", Seq: 1, Series: []charting.Series{temp}},
		{CaseID: c.ID, SourceID: "hlm-1", Seq: 1, Series: []charting.Series{flow}},
	}) {
		if r.Err != nil {
			t.Fatalf("samples %d: %v", i, r.Err)
		}
	}
	if _, err := s.CloseCase(ctx, "perf.one", c.ID); err != nil {
		t.Fatalf("close: %v", err)
	}
	_, sig, _, err := s.SignCase(ctx, "perf.one", c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "P One"})
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return c.ID, sig.Number
}

// receiver is an MLLP listener that answers each arrival as its script
// says (then AA for everything after the script), and keeps what it
// accepted deduplicated by MSH-10, as an interface engine does.
type receiver struct {
	t   *testing.T
	srv *mllp.Server

	mu       sync.Mutex
	script   []string // "AA", "AE", "AR", "drop", "stall"
	arrivals []string // MSH-10 of every arrival
	stored   map[string][]byte
	dups     int
	arrived  chan string
}

func newReceiver(t *testing.T, script ...string) *receiver {
	r := &receiver{t: t, script: script, stored: map[string][]byte{}, arrived: make(chan string, 100)}
	srv, err := mllp.Start("127.0.0.1:0", r.handle)
	if err != nil {
		t.Fatal(err)
	}
	r.srv = srv
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

func (r *receiver) handle(ctx context.Context, msg []byte) ([]byte, error) {
	m, err := v2.Parse(msg)
	if err != nil {
		return nil, err
	}
	id := m.ControlID()
	r.mu.Lock()
	r.arrivals = append(r.arrivals, id)
	action := "AA"
	if len(r.script) > 0 {
		action, r.script = r.script[0], r.script[1:]
	}
	// A receiver that accepts (or got the message and then died or
	// stalled) files it once per MSH-10.
	if action == "AA" || action == "drop" || action == "stall" {
		if _, ok := r.stored[id]; ok {
			r.dups++
		} else {
			r.stored[id] = msg
		}
	}
	r.mu.Unlock()
	r.arrived <- id
	var code v2.AckCode
	var ae *v2.AckError
	switch action {
	case "drop":
		return nil, errors.New("receiver crashed")
	case "stall":
		<-ctx.Done() // never answers; the sender times out
		return nil, ctx.Err()
	case "AE":
		code, ae = v2.AckCode("AE"), &v2.AckError{Code: "207", Text: "unknown patient"}
	case "AR":
		code, ae = v2.AckCode("AR"), &v2.AckError{Code: "207", Text: "engine busy"}
	default:
		code = v2.AckCode("AA")
	}
	h := v2.Header{SendingApplication: v2.HD{NamespaceID: "EHR"}, ControlID: "ACK" + strconv.Itoa(len(r.arrivals)), Time: time.Now()}
	ack, err := v2.BuildAck(h, m, code, ae)
	if err != nil {
		return nil, err
	}
	return ack.Encode()
}

func (r *receiver) counts() (arrivals, stored, dups int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.arrivals), len(r.stored), r.dups
}

// fhirServer answers POSTs with the scripted statuses, then 200, and keeps
// accepted bundles deduplicated by Bundle.identifier.
type fhirServer struct {
	srv *httptest.Server

	mu       sync.Mutex
	script   []int
	arrivals int
	order    []string // Bundle.identifier of every arrival
	stored   map[string][]byte
	auth     []string // Authorization of every arrival
}

func newFHIRServer(t *testing.T, script ...int) *fhirServer {
	f := &fhirServer{script: script, stored: map[string][]byte{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.handle))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fhirServer) handle(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Identifier   struct {
			Value string `json:"value"`
		} `json:"identifier"`
	}
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/fhir+json" ||
		json.Unmarshal(body, &b) != nil || b.ResourceType != "Bundle" || b.Type != "transaction" || b.Identifier.Value == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.arrivals++
	f.order = append(f.order, b.Identifier.Value)
	f.auth = append(f.auth, req.Header.Get("Authorization"))
	status := http.StatusOK
	if len(f.script) > 0 {
		status, f.script = f.script[0], f.script[1:]
	}
	if status == http.StatusOK {
		if _, ok := f.stored[b.Identifier.Value]; !ok {
			f.stored[b.Identifier.Value] = body
		}
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	if status == http.StatusOK {
		_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201 Created","location":"Procedure/1/_history/1"}}]}`)
	}
}

func (f *fhirServer) counts() (arrivals, stored int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.arrivals, len(f.stored)
}

type env struct {
	b   *postgres.Backend
	s   *store.Store
	o   store.OutboxBackend
	clk *clock
	r   *export.Renderer
}

func newEnv(t testing.TB, b *postgres.Backend, clk *clock, dests ...store.Destination) *env {
	o, err := store.OutboxOf(b)
	if err != nil {
		t.Fatal(err)
	}
	return &env{b: b, s: newStore(b, clk, dests...), o: o, clk: clk, r: export.NewRenderer(b, hl7Config(), fhirOptions(), nil)}
}

func (e *env) worker(t *testing.T, transports map[store.Destination]export.Transport) *export.Worker {
	w, err := export.NewWorker(export.WorkerConfig{Outbox: e.o, Renderer: e.r, Transports: transports, Lease: time.Minute,
		InitialBackoff: time.Second, MaxBackoff: 8 * time.Second, Now: e.clk.now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mllpTransport(t *testing.T, r *receiver) *export.MLLPTransport {
	tr, err := export.NewMLLPTransport(mllp.SenderConfig{Addr: r.srv.Addr().String(), AckTimeout: 300 * time.Millisecond,
		DialTimeout: time.Second, WriteTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// drain runs the worker, advancing the clock past every back-off, until
// nothing is due for rounds in a row or max attempts were made.
func drain(t *testing.T, e *env, w *export.Worker, max int) int {
	t.Helper()
	total, idle := 0, 0
	for total < max && idle < 2 {
		n, err := w.RunOnce(context.Background())
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		total += n
		if n == 0 {
			idle++
			e.clk.advance(10 * time.Second) // past the longest back-off
		} else {
			idle = 0
		}
	}
	return total
}

func delivery(t *testing.T, e *env, caseID uuid.UUID, version int64, dest store.Destination) *store.Delivery {
	t.Helper()
	d, err := e.s.GetDelivery(context.Background(), store.DeliveryID(caseID, version, dest))
	if err != nil {
		t.Fatalf("get delivery: %v", err)
	}
	return d
}

func startClock() *clock { return &clock{t: time.Now().UTC().Truncate(time.Second)} }

// TestMLLPRetriesUntilAccepted: AR, a dropped connection and a stalled
// receiver are each retried; the AA ends it; the receiver files the
// message once.
func TestMLLPRetriesUntilAccepted(t *testing.T) {
	e := newEnv(t, pgtest.Open(t), startClock(), store.DestinationMLLP)
	caseID, v := signedCase(t, e.s, e.clk)
	rcv := newReceiver(t, "AR", "drop", "stall", "AA")
	w := e.worker(t, map[store.Destination]export.Transport{store.DestinationMLLP: mllpTransport(t, rcv)})
	// Three attempts: the dropped connection had been kept from the AR
	// before, and mllp.Sender resends once at once on a kept connection
	// that fails (it may simply have gone stale), which here meets the
	// stall within the same attempt.
	if n := drain(t, e, w, 20); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
	d := delivery(t, e, caseID, v, store.DestinationMLLP)
	if d.State != store.DeliveryDelivered || d.Attempts != 3 || d.AckCode != "AA" || d.DeliveredAt.IsZero() {
		t.Fatalf("delivery %+v", d)
	}
	arrivals, stored, dups := rcv.counts()
	if arrivals != 4 || stored != 1 || dups != 2 {
		t.Fatalf("receiver: %d arrivals, %d stored, %d duplicates; want 4, 1, 2", arrivals, stored, dups)
	}
	if _, ok := rcv.stored[d.MessageID]; !ok {
		t.Fatalf("receiver filed other control ids than %s", d.MessageID)
	}
	// The sent bytes are exactly the preview.
	prev, err := e.r.Render(context.Background(), store.DestinationMLLP, caseID, v)
	if err != nil || string(prev.Payload) != string(rcv.stored[d.MessageID]) {
		t.Fatalf("preview differs from what was sent (%v)", err)
	}
	validateHL7(t, rcv.stored[d.MessageID])
	// Metrics from entries and from samples: bypass from minute 10 to 90,
	// clamp from 20 to 80, the lab Hct, and the nadir temperature with its
	// site.
	m, _ := v2.Parse(rcv.stored[d.MessageID])
	want := map[string]string{"cpb_duration": "80", "cross_clamp_duration": "60", "lowest_temperature": "32", "lowest_hct": "25"}
	for _, obx := range m.All("OBX") {
		code := obx.Field(3).Component(1)
		if w, ok := want[code]; ok {
			if obx.Field(5).Value() != w {
				t.Errorf("%s = %s, want %s", code, obx.Field(5).Value(), w)
			}
			if code == "lowest_temperature" && obx.Field(20).Component(1) != "temp_nasopharyngeal" {
				t.Errorf("lowest_temperature OBX-20 = %q", obx.Field(20).Component(1))
			}
			delete(want, code)
		}
	}
	if len(want) > 0 {
		t.Errorf("metrics missing from the summary: %v", want)
	}
}

// TestMLLPContentErrorNotResent: AE fails the delivery for good; it is not
// sent again until a person retries it, and then it is delivered.
func TestMLLPContentErrorNotResent(t *testing.T) {
	e := newEnv(t, pgtest.Open(t), startClock(), store.DestinationMLLP)
	caseID, v := signedCase(t, e.s, e.clk)
	rcv := newReceiver(t, "AE")
	w := e.worker(t, map[store.Destination]export.Transport{store.DestinationMLLP: mllpTransport(t, rcv)})
	if n := drain(t, e, w, 10); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
	d := delivery(t, e, caseID, v, store.DestinationMLLP)
	if d.State != store.DeliveryFailed || d.AckCode != "AE" || d.AckText != "unknown patient" || d.LastError == "" {
		t.Fatalf("delivery %+v", d)
	}
	e.clk.advance(24 * time.Hour)
	if n := drain(t, e, w, 10); n != 0 {
		t.Fatalf("a failed delivery was resent %d times", n)
	}
	if _, err := e.s.RetryDelivery(context.Background(), d.ID); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if n := drain(t, e, w, 10); n != 1 {
		t.Fatalf("%d attempts after retry, want 1", n)
	}
	if d := delivery(t, e, caseID, v, store.DestinationMLLP); d.State != store.DeliveryDelivered || d.Attempts != 2 {
		t.Fatalf("after retry: %+v", d)
	}
	if arrivals, stored, _ := rcv.counts(); arrivals != 2 || stored != 1 {
		t.Fatalf("receiver: %d arrivals, %d stored", arrivals, stored)
	}
}

// TestMissingMRNHeldUntilReconciled: a case signed without an MRN is held,
// not failed, and not resent; an identity reconciliation releases it and
// the message goes with the reconciled MRN in PID-3.
func TestMissingMRNHeldUntilReconciled(t *testing.T) {
	e := newEnv(t, pgtest.Open(t), startClock(), store.DestinationMLLP)
	caseID, v := signedCaseWith(t, e.s, e.clk, func(p *charting.Patient) { p.MRN, p.MRNAssigningAuthority = "", "" })
	rcv := newReceiver(t)
	w := e.worker(t, map[store.Destination]export.Transport{store.DestinationMLLP: mllpTransport(t, rcv)})
	if n := drain(t, e, w, 10); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
	d := delivery(t, e, caseID, v, store.DestinationMLLP)
	if d.State != store.DeliveryHeld || !strings.Contains(d.LastError, "identity") || strings.Contains(d.LastError, "MRN-") {
		t.Fatalf("delivery %+v, want held naming the identity", d)
	}
	e.clk.advance(24 * time.Hour)
	if n := drain(t, e, w, 10); n != 0 {
		t.Fatalf("a held delivery was resent %d times", n)
	}
	if _, err := e.s.ReconcileIdentity(context.Background(), "perf.one", caseID,
		store.IdentityUpdate{MRN: "MRN-0777", AssigningAuthority: "HOSP", Reason: "registered after the emergency"}); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if n := drain(t, e, w, 10); n != 1 {
		t.Fatalf("%d attempts after reconciliation, want 1", n)
	}
	if d := delivery(t, e, caseID, v, store.DestinationMLLP); d.State != store.DeliveryDelivered {
		t.Fatalf("after reconciliation: %+v", d)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.stored) != 1 {
		t.Fatalf("receiver stored %d messages", len(rcv.stored))
	}
	for _, msg := range rcv.stored {
		if !strings.Contains(string(msg), "PID|||MRN-0777^^^HOSP^MR") {
			t.Fatalf("PID-3 is not the reconciled MRN:\n%s", msg)
		}
	}
}

// TestFHIRFailsThenRecovers: 503 twice, then accepted; a 400 is permanent.
func TestFHIRFailsThenRecovers(t *testing.T) {
	e := newEnv(t, pgtest.Open(t), startClock(), store.DestinationFHIR)
	caseID, v := signedCase(t, e.s, e.clk)
	srv := newFHIRServer(t, http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusServiceUnavailable)
	tr, err := export.NewFHIRTransport(srv.srv.URL, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := e.worker(t, map[store.Destination]export.Transport{store.DestinationFHIR: tr})
	if n := drain(t, e, w, 20); n != 4 {
		t.Fatalf("%d attempts, want 4", n)
	}
	d := delivery(t, e, caseID, v, store.DestinationFHIR)
	if d.State != store.DeliveryDelivered || d.Attempts != 4 || d.AckCode != "200" ||
		d.AckText != "Bundle: 201 Created Procedure/1/_history/1" {
		t.Fatalf("delivery %+v", d)
	}
	if arrivals, stored := srv.counts(); arrivals != 4 || stored != 1 {
		t.Fatalf("server: %d arrivals, %d stored", arrivals, stored)
	}
	if d.MessageID != fhir.TransactionIdentifier(caseID, v) || srv.stored[d.MessageID] == nil {
		t.Fatalf("bundle identifier %q not what the server filed", d.MessageID)
	}
	validateFHIR(t, srv.stored[d.MessageID])

	// A 400 (the server refuses the content) is permanent.
	c2, v2n := signedCase(t, e.s, e.clk)
	srv.mu.Lock()
	srv.script = []int{http.StatusBadRequest}
	srv.mu.Unlock()
	if n := drain(t, e, w, 10); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
	if d := delivery(t, e, c2, v2n, store.DestinationFHIR); d.State != store.DeliveryFailed || d.AckCode != "400" {
		t.Fatalf("after 400: %+v", d)
	}
}

// TestRestartLosesNothing: a server is shut down while a receiver stalls
// on a message, and another worker takes a delivery from a worker that
// crashed holding it; after the restart every message of every version
// reaches both receivers, once each after deduplication.
func TestRestartLosesNothing(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	open := func() *postgres.Backend {
		b, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		return b
	}
	clk := startClock()
	both := []store.Destination{store.DestinationMLLP, store.DestinationFHIR}
	b1 := open()
	e1 := newEnv(t, b1, clk, both...)
	c1, v1 := signedCase(t, e1.s, clk)
	c2, v2n := signedCase(t, e1.s, clk)
	add, _, err := e1.s.AddAddendum(ctx, "perf.one", c1, uuid.New(), "Addendum: ACT 480 s at 08:12", "late entry")
	if err != nil {
		t.Fatal(err)
	}
	_ = add
	want := map[string]bool{}
	ds, _, err := e1.s.ListDeliveries(ctx, store.DeliveryFilter{})
	if err != nil || len(ds) != 6 {
		t.Fatalf("queued %d deliveries (%v), want 6", len(ds), err)
	}
	for _, d := range ds {
		want[d.MessageID] = true
	}

	// Server 1: the MLLP receiver stalls on the first message; the server
	// shuts down while it waits.
	rcv := newReceiver(t, "stall")
	srv := newFHIRServer(t, http.StatusServiceUnavailable)
	ftr, err := export.NewFHIRTransport(srv.srv.URL, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	mtr, err := export.NewMLLPTransport(mllp.SenderConfig{Addr: rcv.srv.Addr().String(), AckTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	w1 := e1.worker(t, map[store.Destination]export.Transport{store.DestinationMLLP: mtr, store.DestinationFHIR: ftr})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w1.Run(runCtx) }()
	select {
	case <-rcv.arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("nothing reached the receiver")
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("worker: %v", err)
	}
	_ = mtr.Close()
	_ = b1.Close()

	// A worker of another server crashed holding a delivery: claimed, never
	// finished.
	b2 := open()
	t.Cleanup(func() { _ = b2.Close() })
	e2 := newEnv(t, b2, clk, both...)
	crashed, err := e2.o.ClaimDeliveries(ctx, "", clk.now(), time.Minute, 1)
	if err != nil || len(crashed) != 1 {
		t.Fatalf("crash claim: %v", err)
	}

	// Server 2 restarts with healthy receivers.
	w2 := e2.worker(t, map[store.Destination]export.Transport{store.DestinationMLLP: mllpTransport(t, rcv), store.DestinationFHIR: ftr})
	drain(t, e2, w2, 50)
	if d, _ := e2.s.GetDelivery(ctx, crashed[0].ID); d.State != store.DeliveryDelivering {
		t.Fatalf("the crashed claim was taken before its lease expired: %+v", d)
	}
	clk.advance(time.Minute)
	drain(t, e2, w2, 50)
	all, _, err := e2.s.ListDeliveries(ctx, store.DeliveryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range all {
		if d.State != store.DeliveryDelivered {
			t.Errorf("%s v%d %s: %s (%s)", d.CaseID, d.Version, d.Destination, d.State, d.LastError)
		}
	}
	got := map[string]bool{}
	rcv.mu.Lock()
	for id, msg := range rcv.stored {
		got[id] = true
		validateHL7(t, msg)
	}
	rcv.mu.Unlock()
	srv.mu.Lock()
	for id, b := range srv.stored {
		got[id] = true
		validateFHIR(t, b)
	}
	srv.mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("receivers filed %d distinct messages, want %d", len(got), len(want))
	}
	for id := range want {
		if !got[id] {
			t.Errorf("message %s never arrived", id)
		}
	}
	// The amendment went out as a corrected result (OBR-25 C).
	d := delivery(t, e2, c1, v1, store.DestinationMLLP)
	first, _ := v2.Parse(rcv.stored[d.MessageID])
	if first.Get("OBR-25") != "F" {
		t.Errorf("first version OBR-25 = %q, want F", first.Get("OBR-25"))
	}
	for _, d := range all {
		if d.CaseID == c1 && d.Version != v1 && d.Destination == store.DestinationMLLP {
			m, _ := v2.Parse(rcv.stored[d.MessageID])
			if m.Get("OBR-25") != "C" || len(m.All("NTE")) != 2 {
				t.Errorf("addendum version: OBR-25 %q, %d NTE; want C and the note plus the addendum", m.Get("OBR-25"), len(m.All("NTE")))
			}
		}
	}
	_ = c2
	_ = v2n
}

// validateHL7 runs a message through the independent HL7 v2 parser of
// hl7/v2/testdata/validator.
// Beyond parsing without error, its reading of MSH-10 must be ours.
func validateHL7(t *testing.T, msg []byte) {
	t.Helper()
	out := runValidator(t, filepath.Join("..", "hl7", "v2", "testdata", "validator"), "hl7parser", "message.hl7", msg)
	if out == nil {
		return
	}
	var theirs map[string][]struct {
		ID     string         `json:"id"`
		Fields [][][][]string `json:"fields"`
	}
	if err := json.Unmarshal(out, &theirs); err != nil {
		t.Fatalf("independent parser output: %v", err)
	}
	m, err := v2.Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	segs := theirs["message.hl7"]
	// Their MSH fields start at MSH-3.
	if len(segs) != len(m.Segments) || segs[0].ID != "MSH" || len(segs[0].Fields) < 8 || segs[0].Fields[7][0][0][0] != m.ControlID() {
		t.Fatalf("independent parser reads the message differently: %d segments (ours %d)", len(segs), len(m.Segments))
	}
}

// validateFHIR runs a bundle through the independent FHIR R4 validator of
// hl7/fhir/testdata/validator.
func validateFHIR(t *testing.T, bundle []byte) {
	t.Helper()
	runValidator(t, filepath.Join("..", "hl7", "fhir", "testdata", "validator"), filepath.Join("@medplum", "core"), "bundle.json", bundle)
}

func runValidator(t *testing.T, dir, pkg, name string, content []byte) []byte {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json"))
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("validator unavailable in CI (%v): run %s/setup.sh", err, dir)
		}
		t.Logf("validator unavailable (%v): run %s/setup.sh", err, dir)
		return nil
	}
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, content, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, filepath.Join(dir, "validate.js"), f).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("independent validator refused %s: %v\n%s%s", name, err, out, stderr)
	}
	return out
}

// TestFHIRBearerTokenFile: each attempt reads the token file again, so a
// renewed token is used without a restart; a missing file is retried, and
// the token never appears in the delivery's error.
func TestFHIRBearerTokenFile(t *testing.T) {
	e := newEnv(t, pgtest.Open(t), startClock(), store.DestinationFHIR)
	srv := newFHIRServer(t)
	tr, err := export.NewFHIRTransport(srv.srv.URL, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	tr.UseBearerTokenFile(tokenFile)
	w := e.worker(t, map[store.Destination]export.Transport{store.DestinationFHIR: tr})

	// No file yet: the attempt fails as retryable, nothing reaches the server.
	c1, v1 := signedCase(t, e.s, e.clk)
	if n := drain(t, e, w, 1); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
	if d := delivery(t, e, c1, v1, store.DestinationFHIR); d.State != store.DeliveryPending || !strings.Contains(d.LastError, "bearer token file") {
		t.Fatalf("without a token file: %+v", d)
	}
	if err := os.WriteFile(tokenFile, []byte("tok-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	drain(t, e, w, 5)
	if err := os.WriteFile(tokenFile, []byte("tok-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The server turns the old token away once (expired): retried, and the
	// retry carries the renewed one.
	srv.mu.Lock()
	srv.script = []int{http.StatusUnauthorized}
	srv.mu.Unlock()
	c2, v2n := signedCase(t, e.s, e.clk)
	drain(t, e, w, 5)
	for _, d := range []*store.Delivery{delivery(t, e, c1, v1, store.DestinationFHIR), delivery(t, e, c2, v2n, store.DestinationFHIR)} {
		if d.State != store.DeliveryDelivered || strings.Contains(d.LastError, "tok-") {
			t.Fatalf("delivery %+v", d)
		}
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if want := []string{"Bearer tok-1", "Bearer tok-2", "Bearer tok-2"}; !slices.Equal(srv.auth, want) {
		t.Fatalf("Authorization headers %q, want %q", srv.auth, want)
	}
}
