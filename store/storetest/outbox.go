package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

// outboxConfig queues both destinations with a message id that shows its
// inputs, so the tests can check what was queued.
func outboxConfig() *store.OutboxConfig {
	return &store.OutboxConfig{
		Destinations: []store.Destination{store.DestinationMLLP, store.DestinationFHIR},
		MessageID: func(d store.Destination, caseID uuid.UUID, v int64) string {
			return fmt.Sprintf("%s/%s/%d", d, caseID, v)
		},
	}
}

func newOutboxStore(t *testing.T, h *Harness) (*store.Store, store.OutboxBackend, *clock) {
	t.Helper()
	b := h.Open(t)
	o, err := store.OutboxOf(b)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	return store.New(b, store.Config{Now: clk.now, Outbox: outboxConfig()}), o, clk
}

// signedCase charts a short case, closes and signs it, and returns it with
// its signature.
func signedCase(t *testing.T, s *store.Store, clk *clock) (*charting.Case, *charting.Signature) {
	t.Helper()
	ctx := context.Background()
	c := createCase(t, s, "OR-9")
	record(t, s, eventEntry(c.ID, clk.now().Add(-time.Hour), charting.EventBypassOn))
	record(t, s, eventEntry(c.ID, clk.now().Add(-10*time.Minute), charting.EventBypassOff))
	if _, err := s.CloseCase(ctx, actor, c.ID); err != nil {
		t.Fatalf("close: %v", err)
	}
	c, sig, _, err := s.SignCase(ctx, actor, c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "P One"})
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return c, sig
}

func caseDeliveries(t *testing.T, s *store.Store, caseID uuid.UUID) map[string]store.Delivery {
	t.Helper()
	ds, _, err := s.ListDeliveries(context.Background(), store.DeliveryFilter{CaseID: caseID, Limit: 500})
	if err != nil {
		t.Fatalf("list deliveries: %v", err)
	}
	out := map[string]store.Delivery{}
	for _, d := range ds {
		out[fmt.Sprintf("%d/%s", d.Version, d.Destination)] = d
	}
	return out
}

// testOutboxEnqueue: each signature and addendum queues one delivery per
// destination, keyed by its ledger sequence, in the same transaction; a
// refused signature queues nothing; without destinations nothing is queued.
func testOutboxEnqueue(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, _, clk := newOutboxStore(t, h)
	c, sig := signedCase(t, s, clk)
	got := caseDeliveries(t, s, c.ID)
	if len(got) != 2 {
		t.Fatalf("after signing: %d deliveries, want 2: %+v", len(got), got)
	}
	for _, dest := range []store.Destination{store.DestinationMLLP, store.DestinationFHIR} {
		d, ok := got[fmt.Sprintf("%d/%s", sig.Number, dest)]
		if !ok {
			t.Fatalf("no %s delivery for version %d", dest, sig.Number)
		}
		if d.State != store.DeliveryPending || d.Attempts != 0 || d.ID != store.DeliveryID(c.ID, sig.Number, dest) ||
			d.MessageID != fmt.Sprintf("%s/%s/%d", dest, c.ID, sig.Number) || !d.NextAttemptAt.Equal(clk.now()) || !d.CreatedAt.Equal(clk.now()) {
			t.Errorf("queued %s delivery %+v", dest, d)
		}
	}

	// A stale signature is refused and queues nothing.
	stale := charting.Head{Seq: 1}
	if _, _, _, err := s.SignCase(ctx, reviewer, c.ID, store.SignRequest{Meaning: charting.MeaningReviewed, DisplayName: "R", ExpectedHead: &stale}); err == nil {
		t.Fatal("stale signature accepted")
	}
	if n := len(caseDeliveries(t, s, c.ID)); n != 2 {
		t.Fatalf("a refused signature changed the outbox: %d deliveries", n)
	}

	clk.advance(time.Minute)
	add, _, err := s.AddAddendum(ctx, actor, c.ID, uuid.New(), "Late note", "forgot")
	if err != nil {
		t.Fatalf("addendum: %v", err)
	}
	// An identical resend of the addendum queues nothing more.
	if _, dup, err := s.AddAddendum(ctx, actor, c.ID, add.ID, "Late note", "forgot"); err != nil || !dup {
		t.Fatalf("addendum resend: dup %v, %v", dup, err)
	}
	cur := head(t, s, c.ID)
	_, sig2, _, err := s.SignCase(ctx, reviewer, c.ID, store.SignRequest{Meaning: charting.MeaningReviewed, DisplayName: "R"})
	if err != nil {
		t.Fatalf("second signature: %v", err)
	}
	got = caseDeliveries(t, s, c.ID)
	if len(got) != 6 {
		t.Fatalf("after an addendum and a second signature: %d deliveries, want 6", len(got))
	}
	for _, v := range []int64{sig.Number, cur.Seq, sig2.Number} {
		for _, dest := range []store.Destination{store.DestinationMLLP, store.DestinationFHIR} {
			if _, ok := got[fmt.Sprintf("%d/%s", v, dest)]; !ok {
				t.Errorf("no %s delivery for version %d (have %v)", dest, v, got)
			}
		}
	}

	// Without destinations, signing queues nothing.
	plain := store.New(s.Backend(), store.Config{Now: clk.now})
	c2, _ := signedCase(t, plain, clk)
	if n := len(caseDeliveries(t, s, c2.ID)); n != 0 {
		t.Fatalf("signing without destinations queued %d deliveries", n)
	}
}

// testOutboxClaimLifecycle walks a delivery through claim, lease expiry,
// a stale finish, retry, failure, requeue and delivery.
func testOutboxClaimLifecycle(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, o, clk := newOutboxStore(t, h)
	c, sig := signedCase(t, s, clk)
	lease := 30 * time.Second

	claimed, err := o.ClaimDeliveries(ctx, "", clk.now(), lease, 10)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %d, %v; want 2", len(claimed), err)
	}
	for _, d := range claimed {
		if d.State != store.DeliveryDelivering || d.Attempts != 1 || !d.LeaseUntil.Equal(clk.now().Add(lease)) || d.CaseID != c.ID || d.Version != sig.Number {
			t.Fatalf("claimed %+v", d)
		}
	}
	if again, err := o.ClaimDeliveries(ctx, "", clk.now().Add(lease-time.Second), lease, 10); err != nil || len(again) != 0 {
		t.Fatalf("claimed during a lease: %d, %v", len(again), err)
	}
	// The worker died: after the lease, another claims them (attempt 2).
	clk.advance(lease)
	// (A long lease now keeps the other delivery out of the way until the
	// day-later claim below.)
	re, err := o.ClaimDeliveries(ctx, "", clk.now(), time.Hour, 10)
	if err != nil || len(re) != 2 || re[0].Attempts != 2 {
		t.Fatalf("reclaim after the lease: %+v, %v", re, err)
	}
	d := re[0]
	// The dead worker's late outcome is ignored.
	late := d
	late.State, late.UpdatedAt, late.DeliveredAt = store.DeliveryDelivered, clk.now(), clk.now()
	if ok, err := o.FinishDelivery(ctx, &late, 1); err != nil || ok {
		t.Fatalf("stale finish: %v, %v; want ignored", ok, err)
	}
	// A transient failure: pending again at the back-off time.
	retryAt := clk.now().Add(time.Minute)
	d.State, d.NextAttemptAt, d.LastError, d.AckCode, d.AckText, d.UpdatedAt = store.DeliveryPending, retryAt, "receiver busy", "AR", "try later", clk.now()
	if ok, err := o.FinishDelivery(ctx, &d, 2); err != nil || !ok {
		t.Fatalf("finish retry: %v, %v", ok, err)
	}
	if early, _ := o.ClaimDeliveries(ctx, "", retryAt.Add(-time.Second), lease, 10); len(early) != 0 {
		t.Fatalf("claimed before its back-off ended: %+v", early)
	}
	got, err := o.GetDelivery(ctx, d.ID)
	if err != nil || got.State != store.DeliveryPending || got.LastError != "receiver busy" || got.AckCode != "AR" || got.AckText != "try later" ||
		!got.NextAttemptAt.Equal(retryAt) || !got.LeaseUntil.IsZero() || got.Attempts != 2 {
		t.Fatalf("after retry: %+v, %v", got, err)
	}
	// Retrying a pending one makes it due now.
	if r, err := s.RetryDelivery(ctx, d.ID); err != nil || r.State != store.DeliveryPending || !r.NextAttemptAt.Equal(clk.now()) {
		t.Fatalf("retry pending: %+v, %v", r, err)
	}
	// A content error: failed, never claimed again until a person retries.
	cl, err := o.ClaimDeliveries(ctx, "", clk.now(), lease, 10)
	if err != nil || len(cl) != 1 || cl[0].ID != d.ID || cl[0].Attempts != 3 {
		t.Fatalf("claim after retry: %+v, %v", cl, err)
	}
	f := cl[0]
	f.State, f.LastError, f.AckCode, f.UpdatedAt = store.DeliveryFailed, "content error", "AE", clk.now()
	if ok, err := o.FinishDelivery(ctx, &f, 3); err != nil || !ok {
		t.Fatalf("finish failed: %v, %v", ok, err)
	}
	clk.advance(24 * time.Hour)
	if cl, _ := o.ClaimDeliveries(ctx, "", clk.now(), lease, 10); len(cl) != 1 || cl[0].ID == d.ID {
		t.Fatalf("a failed delivery was claimed (or the other one was not): %+v", cl)
	}
	if r, err := s.RetryDelivery(ctx, d.ID); err != nil || r.State != store.DeliveryPending || r.LastError != "content error" {
		t.Fatalf("retry failed: %+v, %v", r, err)
	}
	cl, err = o.ClaimDeliveries(ctx, "", clk.now(), lease, 10)
	if err != nil || len(cl) != 1 || cl[0].ID != d.ID {
		t.Fatalf("claim after a retry: %+v, %v", cl, err)
	}
	// Being delivered: retry refused.
	_, err = s.RetryDelivery(ctx, d.ID)
	wantPrecondition(t, "retry while delivering", err)
	ok := cl[0]
	ok.State, ok.LastError, ok.AckCode, ok.UpdatedAt, ok.DeliveredAt = store.DeliveryDelivered, "", "AA", clk.now(), clk.now()
	if done, err := o.FinishDelivery(ctx, &ok, cl[0].Attempts); err != nil || !done {
		t.Fatalf("finish delivered: %v, %v", done, err)
	}
	got, err = o.GetDelivery(ctx, d.ID)
	if err != nil || got.State != store.DeliveryDelivered || !got.DeliveredAt.Equal(clk.now()) || got.AckCode != "AA" {
		t.Fatalf("delivered: %+v, %v", got, err)
	}
	_, err = s.RetryDelivery(ctx, d.ID)
	wantPrecondition(t, "retry delivered", err)
	if _, err := s.RetryDelivery(ctx, uuid.New()); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("retry unknown: %v, want not found", err)
	}
	if _, err := o.GetDelivery(ctx, uuid.New()); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("get unknown: %v, want not found", err)
	}
}

// testOutboxConcurrentClaims: workers claiming and finishing at once never
// get the same delivery while its lease runs, together get every one, and
// take the versions of one case to one destination strictly in order, one
// at a time.
func testOutboxConcurrentClaims(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, o, clk := newOutboxStore(t, h)
	var cases []uuid.UUID
	for range 2 {
		c, _ := signedCase(t, s, clk)
		cases = append(cases, c.ID)
		for i := range 4 {
			if _, _, err := s.AddAddendum(ctx, actor, c.ID, uuid.New(), fmt.Sprintf("note %d", i), "late"); err != nil {
				t.Fatalf("addendum: %v", err)
			}
		}
	}
	const want = 20 // 2 cases × 5 versions × 2 destinations
	now := clk.now()
	type stream struct {
		c    uuid.UUID
		dest store.Destination
	}
	var mu sync.Mutex
	seen := map[uuid.UUID]int{}
	order := map[stream][]int64{}
	inFlight := map[stream]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for idle := 0; idle < 50; {
				ds, err := o.ClaimDeliveries(ctx, "", now, time.Minute, 3)
				if err != nil {
					errs <- err
					return
				}
				if len(ds) == 0 {
					// Others may hold the earlier versions the rest wait for.
					idle++
					time.Sleep(5 * time.Millisecond)
					continue
				}
				idle = 0
				mu.Lock()
				for _, d := range ds {
					k := stream{d.CaseID, d.Destination}
					seen[d.ID]++
					if inFlight[k] {
						errs <- fmt.Errorf("version %d of %s claimed while an earlier one was in flight", d.Version, d.Destination)
					}
					inFlight[k] = true
					order[k] = append(order[k], d.Version)
				}
				mu.Unlock()
				for i := range ds {
					d := ds[i]
					mu.Lock()
					delete(inFlight, stream{d.CaseID, d.Destination})
					mu.Unlock()
					d.State, d.UpdatedAt, d.DeliveredAt = store.DeliveryDelivered, now, now
					if ok, err := o.FinishDelivery(ctx, &d, d.Attempts); err != nil || !ok {
						errs <- fmt.Errorf("finish: %v, %v", ok, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("claim: %v", err)
	}
	if len(seen) != want {
		t.Fatalf("claimed %d distinct deliveries, want %d", len(seen), want)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("delivery %s claimed %d times", id, n)
		}
	}
	for k, vs := range order {
		if len(vs) != 5 || !slices.IsSorted(vs) {
			t.Errorf("case %s to %s: versions claimed in the order %v, want 5 ascending", k.c, k.dest, vs)
		}
	}
	if len(order) != 2*len(cases) {
		t.Errorf("%d case/destination streams, want %d", len(order), 2*len(cases))
	}
}

// testOutboxOrder: a version waits until every earlier version of its case
// to its destination is delivered or superseded (through a content
// failure, an expired lease and a person's retry); destinations wait for
// nothing of each other; a claim for one destination takes nothing of
// another; SupersedeDelivery releases the later versions and is refused
// where it would lose the case's latest record or change a settled one.
func testOutboxOrder(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, o, clk := newOutboxStore(t, h)
	c, sig := signedCase(t, s, clk)
	v1 := sig.Number
	for i := range 2 {
		clk.advance(time.Second)
		if _, _, err := s.AddAddendum(ctx, actor, c.ID, uuid.New(), fmt.Sprintf("correction %d", i), "late"); err != nil {
			t.Fatalf("addendum: %v", err)
		}
	}
	var vs []int64
	for _, d := range caseDeliveries(t, s, c.ID) {
		if d.Destination == store.DestinationMLLP {
			vs = append(vs, d.Version)
		}
	}
	slices.Sort(vs)
	if len(vs) != 3 || vs[0] != v1 {
		t.Fatalf("versions %v, want 3 starting at %d", vs, v1)
	}
	v2, v3 := vs[1], vs[2]
	mllp, fhir := store.DestinationMLLP, store.DestinationFHIR
	lease := 30 * time.Second
	claim := func(dest store.Destination, wantVersions ...int64) []store.Delivery {
		t.Helper()
		ds, err := o.ClaimDeliveries(ctx, dest, clk.now(), lease, 10)
		if err != nil {
			t.Fatalf("claim %q: %v", dest, err)
		}
		var got []int64
		for _, d := range ds {
			if dest != "" && d.Destination != dest {
				t.Fatalf("a claim for %s took a delivery to %s", dest, d.Destination)
			}
			got = append(got, d.Version)
		}
		if !slices.Equal(got, wantVersions) {
			t.Fatalf("claim %q at %s: versions %v, want %v", dest, clk.now().Format(time.TimeOnly), got, wantVersions)
		}
		return ds
	}
	finish := func(d store.Delivery, st store.DeliveryState, ack string) {
		t.Helper()
		d.State, d.AckCode, d.UpdatedAt = st, ack, clk.now()
		if st == store.DeliveryDelivered {
			d.DeliveredAt = clk.now()
		}
		if st == store.DeliveryPending {
			d.NextAttemptAt = clk.now().Add(time.Second)
		}
		if ok, err := o.FinishDelivery(ctx, &d, d.Attempts); err != nil || !ok {
			t.Fatalf("finish v%d %s: %v, %v", d.Version, d.Destination, ok, err)
		}
	}

	// All three versions are due; each destination hands out only the first.
	m1 := claim(mllp, v1)[0]
	f1 := claim(fhir, v1)[0]
	claim("")
	// The HL7 receiver refuses the first version (AE): the corrections wait,
	// for a day as for a second.
	finish(m1, store.DeliveryFailed, "AE")
	clk.advance(24 * time.Hour)
	claim(mllp)
	// FHIR is not held back by HL7's failure.
	finish(f1, store.DeliveryDelivered, "200")
	f2 := claim(fhir, v2)[0]
	// A worker dies holding FHIR v2: after the lease v2 is taken again, and
	// v3 still waits for it.
	clk.advance(lease)
	f2 = claim(fhir, v2)[0]
	if f2.Attempts != 2 {
		t.Fatalf("reclaimed v2 at attempt %d, want 2", f2.Attempts)
	}
	// A transient failure sends it back to pending; v3 still waits.
	finish(f2, store.DeliveryPending, "AR")
	clk.advance(time.Second)
	f2 = claim(fhir, v2)[0]
	finish(f2, store.DeliveryDelivered, "200")
	claim(fhir, v3)

	// Superseding: a reason is required; the latest version cannot be
	// superseded (the receiver would never get the current record); nor a
	// delivered one or one in flight; an unknown one is not found.
	m3 := store.DeliveryID(c.ID, v3, mllp)
	var inv *charting.InvalidError
	if _, err := s.SupersedeDelivery(ctx, "ops.one", m1.ID, "  "); !errors.As(err, &inv) {
		t.Fatalf("supersede without a reason: %v, want invalid", err)
	}
	_, err := s.SupersedeDelivery(ctx, "ops.one", m3, "later")
	wantPrecondition(t, "supersede the latest version", err)
	_, err = s.SupersedeDelivery(ctx, "ops.one", f1.ID, "already there")
	wantPrecondition(t, "supersede a delivered one", err)
	_, err = s.SupersedeDelivery(ctx, "ops.one", store.DeliveryID(c.ID, v3, fhir), "in flight")
	wantPrecondition(t, "supersede one in flight", err)
	if _, err := s.SupersedeDelivery(ctx, "ops.one", uuid.New(), "why"); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("supersede unknown: %v, want not found", err)
	}
	if d, _ := o.GetDelivery(ctx, m3); d.State != store.DeliveryPending {
		t.Fatalf("a refused supersede changed v3: %+v", d)
	}

	// The operator supersedes the refused HL7 v1: v2 goes.
	clk.advance(time.Minute)
	sup, err := s.SupersedeDelivery(ctx, "ops.one", m1.ID, "v2 carries the whole record; the EHR rejected v1's unit")
	if err != nil || sup.State != store.DeliverySuperseded || sup.SupersededBy != "ops.one" ||
		sup.SupersedeReason != "v2 carries the whole record; the EHR rejected v1's unit" || !sup.UpdatedAt.Equal(clk.now()) || sup.AckCode != "AE" {
		t.Fatalf("supersede: %+v, %v", sup, err)
	}
	if again, err := s.SupersedeDelivery(ctx, "ops.two", m1.ID, "again"); err != nil || again.SupersededBy != "ops.one" {
		t.Fatalf("supersede again: %+v, %v; want the first, unchanged", again, err)
	}
	_, err = s.RetryDelivery(ctx, m1.ID)
	wantPrecondition(t, "retry a superseded delivery", err)
	m2 := claim(mllp, v2)[0]
	// v2 is refused too and a person retries it after a fix on the EHR side:
	// it goes again before v3.
	finish(m2, store.DeliveryFailed, "AE")
	claim(mllp)
	if _, err := s.RetryDelivery(ctx, m2.ID); err != nil {
		t.Fatalf("retry: %v", err)
	}
	m2 = claim(mllp, v2)[0]
	finish(m2, store.DeliveryDelivered, "AA")
	claim(mllp, v3)
	got, _, err := s.ListDeliveries(ctx, store.DeliveryFilter{CaseID: c.ID, State: store.DeliverySuperseded})
	if err != nil || len(got) != 1 || got[0].ID != m1.ID {
		t.Fatalf("listing superseded: %+v, %v", got, err)
	}
}

// testOutboxList filters by case and state and pages newest first.
func testOutboxList(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, o, clk := newOutboxStore(t, h)
	a, _ := signedCase(t, s, clk)
	clk.advance(time.Second)
	b, _ := signedCase(t, s, clk)
	claimed, err := o.ClaimDeliveries(ctx, "", clk.now(), time.Minute, 1)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v", err)
	}
	var all []store.Delivery
	var after *store.DeliveryCursor
	for {
		page, next, err := s.ListDeliveries(ctx, store.DeliveryFilter{Limit: 3, After: after})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		all = append(all, page...)
		if next == nil {
			break
		}
		after = next
	}
	if len(all) != 4 || all[0].CaseID != b.ID || all[3].CaseID != a.ID {
		t.Fatalf("paged listing: %d rows, want 4 newest first", len(all))
	}
	if ds, _, err := s.ListDeliveries(ctx, store.DeliveryFilter{Site: "MAIN"}); err != nil || len(ds) != 4 {
		t.Fatalf("by site: %d, %v; want 4", len(ds), err)
	}
	if ds, _, err := s.ListDeliveries(ctx, store.DeliveryFilter{Site: "ELSEWHERE"}); err != nil || len(ds) != 0 {
		t.Fatalf("by another site: %d, %v; want 0", len(ds), err)
	}
	ds, _, err := s.ListDeliveries(ctx, store.DeliveryFilter{State: store.DeliveryDelivering})
	if err != nil || len(ds) != 1 || ds[0].ID != claimed[0].ID {
		t.Fatalf("by state: %+v, %v", ds, err)
	}
	ds, _, err = s.ListDeliveries(ctx, store.DeliveryFilter{CaseID: b.ID, State: store.DeliveryPending})
	want := 2
	if claimed[0].CaseID == b.ID {
		want = 1
	}
	if err != nil || len(ds) != want {
		t.Fatalf("by case and state: %d, %v; want %d", len(ds), err, want)
	}
}

// testOutboxBacklog counts unsettled deliveries by destination and state,
// with the oldest one's queue time, and leaves out what is settled.
func testOutboxBacklog(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, o, clk := newOutboxStore(t, h)
	if rows, err := o.DeliveryBacklog(ctx); err != nil || len(rows) != 0 {
		t.Fatalf("backlog of an empty outbox: %+v, %v", rows, err)
	}
	first := clk.now()
	signedCase(t, s, clk)
	clk.advance(time.Minute)
	signedCase(t, s, clk)
	// One MLLP delivery is delivered: it leaves the backlog.
	claimed, err := o.ClaimDeliveries(ctx, store.DestinationMLLP, clk.now(), time.Minute, 1)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %+v, %v", claimed, err)
	}
	d := claimed[0]
	d.State, d.UpdatedAt, d.DeliveredAt = store.DeliveryDelivered, clk.now(), clk.now()
	if ok, err := o.FinishDelivery(ctx, &d, d.Attempts); err != nil || !ok {
		t.Fatalf("finish: %v, %v", ok, err)
	}
	rows, err := o.DeliveryBacklog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]store.BacklogRow{}
	for _, r := range rows {
		got[string(r.Destination)+"/"+string(r.State)] = r
	}
	fhir, mllp := got["fhir_rest/pending"], got["hl7v2_mllp/pending"]
	if len(got) != 2 || fhir.Count != 2 || mllp.Count != 1 || !fhir.Oldest.Equal(first) {
		t.Fatalf("backlog %+v; want FHIR 2 pending since %v, MLLP 1 pending", rows, first)
	}
}
