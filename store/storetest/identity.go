package storetest

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

// signedCaseWithoutMRN charts, closes and signs a case whose details carry
// no MRN and no assigning authority: its deliveries cannot be rendered.
func signedCaseWithoutMRN(t *testing.T, s *store.Store, clk *clock) (*charting.Case, *charting.Signature) {
	t.Helper()
	ctx := context.Background()
	d := sampleDetails()
	d.Patient.MRN, d.Patient.MRNAssigningAuthority = "", ""
	c, err := s.CreateCase(ctx, actor, store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: "OR-7",
		ScheduledStart: time.Now().UTC().Truncate(time.Minute).Add(-time.Minute), Details: d})
	if err != nil {
		t.Fatalf("create case: %v", err)
	}
	record(t, s, eventEntry(c.ID, clk.now().Add(-time.Hour), charting.EventBypassOn))
	if _, err := s.CloseCase(ctx, actor, c.ID); err != nil {
		t.Fatalf("close: %v", err)
	}
	c, sig, _, err := s.SignCase(ctx, actor, c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "P One"})
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return c, sig
}

// testIdentityReconciliation: a signed case without an MRN, its deliveries
// held by the worker, gets its identity by a reconciliation appended to the
// ledger; the held deliveries are pending again, due now, in the same
// write; nothing new is queued and the details are untouched; the record
// verifies with the reconciliation covered.
func testIdentityReconciliation(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, o, clk := newOutboxStore(t, h)
	c, sig := signedCaseWithoutMRN(t, s, clk)

	// The worker found the identity incomplete: both deliveries held.
	claimed, err := o.ClaimDeliveries(ctx, "", clk.now(), time.Minute, 10)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %d, %v", len(claimed), err)
	}
	for _, d := range claimed {
		d.State, d.LastError, d.UpdatedAt = store.DeliveryHeld, "identity incomplete", clk.now()
		if ok, err := o.FinishDelivery(ctx, &d, d.Attempts); err != nil || !ok {
			t.Fatalf("hold: %v %v", ok, err)
		}
	}
	clk.advance(time.Hour)
	if again, err := o.ClaimDeliveries(ctx, "", clk.now(), time.Minute, 10); err != nil || len(again) != 0 {
		t.Fatalf("a held delivery was claimed: %d, %v", len(again), err)
	}

	before := head(t, s, c.ID)
	clk.advance(time.Minute)
	rec, err := s.ReconcileIdentity(ctx, reviewer, c.ID, store.IdentityUpdate{MRN: "MRN-REC-1", AssigningAuthority: "HOSP", Reason: "registered after the emergency"})
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if rec.Seq != before.Seq+1 || rec.Actor != reviewer || !rec.RecordedAt.Equal(clk.now()) {
		t.Fatalf("reconciliation %+v after head %d", rec, before.Seq)
	}
	got, err := s.GetCase(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != charting.StatusSigned || got.DetailsVersion != c.DetailsVersion || got.Details.Patient.MRN != "" || got.Head.Seq != rec.Seq {
		t.Fatalf("after reconciliation: status %s, details v%d (was %d), head %d", got.Status, got.DetailsVersion, c.DetailsVersion, got.Head.Seq)
	}
	ds := caseDeliveries(t, s, c.ID)
	if len(ds) != 2 {
		t.Fatalf("a reconciliation queued deliveries: %d, want 2", len(ds))
	}
	for k, d := range ds {
		if d.State != store.DeliveryPending || !d.NextAttemptAt.Equal(clk.now()) || d.Version != sig.Number {
			t.Fatalf("%s after reconciliation: %s due %v, want pending due now", k, d.State, d.NextAttemptAt)
		}
	}
	ids, err := s.IdentityReconciliations(ctx, c.ID)
	if err != nil || len(ids) != 1 || ids[0] != *rec {
		t.Fatalf("stored reconciliations %+v, %v; want %+v", ids, err, rec)
	}
	links, err := s.AuditTrail(ctx, c.ID, before.Seq, 0)
	if err != nil || len(links) != 1 || links[0].Kind != charting.LinkIdentity || links[0].Ref != strconv.FormatInt(rec.Seq, 10) || links[0].Reason != rec.Reason {
		t.Fatalf("audit trail after reconciliation: %+v, %v", links, err)
	}
	claimed, err = o.ClaimDeliveries(ctx, "", clk.now(), time.Minute, 10)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim after reconciliation: %d, %v", len(claimed), err)
	}
	for _, d := range claimed {
		d.State, d.UpdatedAt, d.DeliveredAt = store.DeliveryDelivered, clk.now(), clk.now()
		if ok, err := o.FinishDelivery(ctx, &d, d.Attempts); err != nil || !ok {
			t.Fatalf("deliver: %v %v", ok, err)
		}
	}
	verifyOK(t, s, c.ID)

	// A later signature covers the reconciliation.
	if _, _, _, err := s.SignCase(ctx, "reviewer-2", c.ID, store.SignRequest{Meaning: charting.MeaningReviewed, DisplayName: "R Two"}); err != nil {
		t.Fatalf("sign after reconciliation: %v", err)
	}
	verifyOK(t, s, c.ID)
}

// testIdentityReconciliationTamper: the database refuses to change a
// reconciliation; one edited behind its back is named at its link.
func testIdentityReconciliationTamper(t *testing.T, h *Harness) {
	s, b, clk := newStore(t, h)
	c, _ := signedCaseWithoutMRN(t, s, clk)
	rec, err := s.ReconcileIdentity(context.Background(), actor, c.ID, store.IdentityUpdate{MRN: "MRN-REC-2", AssigningAuthority: "HOSP", Reason: "merge"})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE identity_reconciliations SET mrn = 'x' WHERE case_id = $1`,
		`DELETE FROM identity_reconciliations WHERE case_id = $1`,
	} {
		if err := h.Exec(t, b, q, c.ID.String()); err == nil {
			t.Errorf("the database accepted %q", q)
		}
	}
	verifyOK(t, s, c.ID)
	h.Tamper(t, b, `UPDATE identity_reconciliations SET mrn = 'MRN-OTHER' WHERE case_id = $1`, c.ID.String())
	ref := strconv.FormatInt(rec.Seq, 10)
	wantBad(t, verifyBad(t, s, c.ID), rec.Seq, charting.LinkIdentity, ref, charting.ProblemContentAltered)
}

// testIdentityReconciliationBadInput: bad input is refused with the field
// named, an unknown case is not found, and nothing is stored either way.
func testIdentityReconciliationBadInput(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, _, clk := newOutboxStore(t, h)
	c, _ := signedCaseWithoutMRN(t, s, clk)
	before := head(t, s, c.ID)
	ok := store.IdentityUpdate{MRN: "MRN-3", AssigningAuthority: "HOSP", Reason: "registered"}
	for _, tc := range []struct {
		field string
		edit  func(u *store.IdentityUpdate)
	}{
		{"reason", func(u *store.IdentityUpdate) { u.Reason = "" }},
		{"mrn", func(u *store.IdentityUpdate) { u.MRN = "" }},
		{"assigning_authority", func(u *store.IdentityUpdate) { u.AssigningAuthority = "" }},
		{"mrn", func(u *store.IdentityUpdate) { u.MRN = "MRN\x00" }},
		{"reason", func(u *store.IdentityUpdate) { u.Reason = "why\x00" }},
		{"birth_date", func(u *store.IdentityUpdate) { u.BirthDate = "02/04/1961" }},
	} {
		u := ok
		tc.edit(&u)
		_, err := s.ReconcileIdentity(ctx, actor, c.ID, u)
		wantInvalid(t, tc.field, err, tc.field)
	}
	if _, err := s.ReconcileIdentity(ctx, actor, uuid.New(), ok); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("unknown case: %v, want not found", err)
	}
	if h := head(t, s, c.ID); h != before {
		t.Fatalf("refused reconciliations moved the head from %d to %d", before.Seq, h.Seq)
	}
	if ids, err := s.IdentityReconciliations(ctx, c.ID); err != nil || len(ids) != 0 {
		t.Fatalf("refused reconciliations stored %d, %v", len(ids), err)
	}
}
