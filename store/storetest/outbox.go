package storetest

import (
	"context"
	"errors"
	"fmt"
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
	record(t, s, eventEntry(c.ID, clk.now().Add(-time.Hour), "bypass_on"))
	record(t, s, eventEntry(c.ID, clk.now().Add(-10*time.Minute), "bypass_off"))
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

	claimed, err := o.ClaimDeliveries(ctx, clk.now(), lease, 10)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %d, %v; want 2", len(claimed), err)
	}
	for _, d := range claimed {
		if d.State != store.DeliveryDelivering || d.Attempts != 1 || !d.LeaseUntil.Equal(clk.now().Add(lease)) || d.CaseID != c.ID || d.Version != sig.Number {
			t.Fatalf("claimed %+v", d)
		}
	}
	if again, err := o.ClaimDeliveries(ctx, clk.now().Add(lease-time.Second), lease, 10); err != nil || len(again) != 0 {
		t.Fatalf("claimed during a lease: %d, %v", len(again), err)
	}
	// The worker died: after the lease, another claims them (attempt 2).
	clk.advance(lease)
	// (A long lease now keeps the other delivery out of the way until the
	// day-later claim below.)
	re, err := o.ClaimDeliveries(ctx, clk.now(), time.Hour, 10)
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
	if early, _ := o.ClaimDeliveries(ctx, retryAt.Add(-time.Second), lease, 10); len(early) != 0 {
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
	cl, err := o.ClaimDeliveries(ctx, clk.now(), lease, 10)
	if err != nil || len(cl) != 1 || cl[0].ID != d.ID || cl[0].Attempts != 3 {
		t.Fatalf("claim after retry: %+v, %v", cl, err)
	}
	f := cl[0]
	f.State, f.LastError, f.AckCode, f.UpdatedAt = store.DeliveryFailed, "content error", "AE", clk.now()
	if ok, err := o.FinishDelivery(ctx, &f, 3); err != nil || !ok {
		t.Fatalf("finish failed: %v, %v", ok, err)
	}
	clk.advance(24 * time.Hour)
	if cl, _ := o.ClaimDeliveries(ctx, clk.now(), lease, 10); len(cl) != 1 || cl[0].ID == d.ID {
		t.Fatalf("a failed delivery was claimed (or the other one was not): %+v", cl)
	}
	if r, err := s.RetryDelivery(ctx, d.ID); err != nil || r.State != store.DeliveryPending || r.LastError != "content error" {
		t.Fatalf("retry failed: %+v, %v", r, err)
	}
	cl, err = o.ClaimDeliveries(ctx, clk.now(), lease, 10)
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

// testOutboxConcurrentClaims: workers claiming at once never get the same
// delivery while its lease runs, and together get every one.
func testOutboxConcurrentClaims(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, o, clk := newOutboxStore(t, h)
	c, _ := signedCase(t, s, clk)
	for i := range 9 {
		if _, _, err := s.AddAddendum(ctx, actor, c.ID, uuid.New(), fmt.Sprintf("note %d", i), "late"); err != nil {
			t.Fatalf("addendum: %v", err)
		}
	}
	const want = 20
	now := clk.now()
	var mu sync.Mutex
	seen := map[uuid.UUID]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				ds, err := o.ClaimDeliveries(ctx, now, time.Minute, 3)
				if err != nil {
					errs <- err
					return
				}
				if len(ds) == 0 {
					return
				}
				mu.Lock()
				for _, d := range ds {
					seen[d.ID]++
				}
				mu.Unlock()
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
}

// testOutboxList filters by case and state and pages newest first.
func testOutboxList(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, o, clk := newOutboxStore(t, h)
	a, _ := signedCase(t, s, clk)
	clk.advance(time.Second)
	b, _ := signedCase(t, s, clk)
	claimed, err := o.ClaimDeliveries(ctx, clk.now(), time.Minute, 1)
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
