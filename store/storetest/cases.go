package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

func testCreateAndGetCase(t *testing.T, h *Harness) {
	s, _, _ := newStore(t, h)
	c := createCase(t, s, "OR-1")
	got, err := s.GetCase(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != charting.StatusPlanned || got.DetailsVersion != 1 || got.Site != "MAIN" || got.Room != "OR-1" {
		t.Fatalf("case read back as %+v", got)
	}
	if got.Details.Patient.MRN != "MRN-TEST-0001" || got.Details.Prime.RAPVolumeML != 400 {
		t.Fatalf("details read back as %+v", got.Details)
	}
	// Mosteller: sqrt(170 × 70 / 3600) = 1.818…
	if got.Details.Patient.BSAM2 != 1.818 || got.Details.Patient.BSAFormula != charting.BSAMosteller {
		t.Fatalf("BSA = %v (%s), want 1.818 mosteller", got.Details.Patient.BSAM2, got.Details.Patient.BSAFormula)
	}
	if !got.ScheduledStart.Equal(c.ScheduledStart) || got.CreatedAt.Location() != time.UTC {
		t.Fatalf("times read back as %v / %v", got.ScheduledStart, got.CreatedAt)
	}
	if got.Head.Seq != 2 {
		t.Fatalf("head after create = %d links, want 2 (case, details)", got.Head.Seq)
	}
	if _, err := s.GetCase(context.Background(), uuid.New()); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("unknown case: got %v, want not found", err)
	}
	verifyOK(t, s, c.ID)
}

func testCreateCaseIdempotent(t *testing.T, h *Harness) {
	s, _, _ := newStore(t, h)
	ctx := context.Background()
	n := store.NewCase{ID: uuid.New(), Kind: charting.KindECMO, Site: "MAIN", Room: "ICU-4", ScheduledStart: time.Now().UTC().Truncate(time.Second), Details: sampleDetails()}
	first, err := s.CreateCase(ctx, actor, n)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.CreateCase(ctx, actor, n)
	if err != nil {
		t.Fatalf("identical resend: %v", err)
	}
	if again.ID != first.ID || again.Head != first.Head {
		t.Fatalf("resend created something new: head %v → %v", first.Head, again.Head)
	}
	n.Room = "ICU-5"
	if _, err := s.CreateCase(ctx, actor, n); !errors.Is(err, charting.ErrConflict) {
		t.Fatalf("same id, different content: got %v, want conflict", err)
	}
	_, err = s.CreateCase(ctx, actor, store.NewCase{Kind: "heart-transplant", Site: "", Room: "X"})
	wantInvalid(t, "bad create", err, "kind")
	wantInvalid(t, "bad create", err, "site")
	wantInvalid(t, "bad create", err, "scheduled_start")
}

func testListCases(t *testing.T, h *Harness) {
	s, _, _ := newStore(t, h)
	ctx := context.Background()
	base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	var ids []uuid.UUID
	for i := 0; i < 7; i++ {
		room := "OR-1"
		if i%2 == 1 {
			room = "OR-2"
		}
		c, err := s.CreateCase(ctx, actor, store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: room, ScheduledStart: base.Add(time.Duration(i) * 24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	if _, err := s.CloseCase(ctx, actor, ids[0]); err != nil {
		t.Fatal(err)
	}
	// Pages of 3, newest first, over all 7.
	var seen []uuid.UUID
	f := store.CaseFilter{Limit: 3}
	for page := 0; ; page++ {
		cs, next, err := s.ListCases(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			seen = append(seen, c.ID)
		}
		if next == nil {
			break
		}
		if page > 5 {
			t.Fatal("pagination does not end")
		}
		f.After = next
	}
	if len(seen) != 7 || seen[0] != ids[6] || seen[6] != ids[0] {
		t.Fatalf("paged listing = %v, want all 7 newest first", seen)
	}
	cs, _, err := s.ListCases(ctx, store.CaseFilter{Room: "OR-2"})
	if err != nil || len(cs) != 3 {
		t.Fatalf("room filter: %d cases, %v; want 3", len(cs), err)
	}
	cs, _, err = s.ListCases(ctx, store.CaseFilter{Status: charting.StatusClosed})
	if err != nil || len(cs) != 1 || cs[0].ID != ids[0] {
		t.Fatalf("status filter: %d cases, %v; want the closed one", len(cs), err)
	}
	cs, _, err = s.ListCases(ctx, store.CaseFilter{From: base.Add(48 * time.Hour), To: base.Add(96 * time.Hour)})
	if err != nil || len(cs) != 2 {
		t.Fatalf("date filter: %d cases, %v; want 2", len(cs), err)
	}
	cs, _, err = s.ListCases(ctx, store.CaseFilter{Site: "ELSEWHERE"})
	if err != nil || len(cs) != 0 {
		t.Fatalf("site filter: %d cases, %v; want 0", len(cs), err)
	}
}

func testDetailsVersioned(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	d := c.Details
	d.Patient.WeightKg = 72
	c2, err := s.UpdateCaseDetails(ctx, actor, c.ID, 1, d, "")
	if err != nil {
		t.Fatal(err)
	}
	if c2.DetailsVersion != 2 || c2.Details.Patient.WeightKg != 72 {
		t.Fatalf("after update: version %d weight %v", c2.DetailsVersion, c2.Details.Patient.WeightKg)
	}
	if _, err := s.UpdateCaseDetails(ctx, actor, c.ID, 1, d, ""); !errors.Is(err, charting.ErrStale) {
		t.Fatalf("stale version: got %v, want stale", err)
	}
	record(t, s, noteEntry(c.ID, time.Now(), "started"))
	_, err = s.UpdateCaseDetails(ctx, actor, c.ID, 2, d, "")
	wantInvalid(t, "update without reason after start", err, "reason")
	d.Patient.WeightKg = 71.5
	if _, err := s.UpdateCaseDetails(ctx, actor, c.ID, 2, d, "re-weighed"); err != nil {
		t.Fatal(err)
	}
	versions, err := b.DetailsVersions(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != 3 || versions[0].Details.Patient.WeightKg != 70 || versions[2].Reason != "re-weighed" {
		t.Fatalf("history: %d versions %+v", len(versions), versions)
	}
	d.Patient.HeightCm = -1
	_, err = s.UpdateCaseDetails(ctx, actor, c.ID, 3, d, "typo")
	wantInvalid(t, "negative height", err, "details.patient.height_cm")
	verifyOK(t, s, c.ID)
}

func testLifecycle(t *testing.T, h *Harness) {
	s, _, _ := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	now := time.Now()
	_, _, _, err := s.SignCase(ctx, actor, c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "P P"})
	wantPrecondition(t, "sign a planned case", err)
	_, _, err = s.AddAddendum(ctx, actor, c.ID, uuid.New(), "late note", "forgot")
	wantPrecondition(t, "addendum before signing", err)

	appendOne(t, s, batch(c.ID, "hlm", 1, now.Add(-time.Minute).UnixMilli(), 5))
	if got, _ := s.GetCase(ctx, c.ID); got.Status != charting.StatusInProgress || got.StartedAt.IsZero() {
		t.Fatalf("after first datum: status %s started %v", got.Status, got.StartedAt)
	}
	e := record(t, s, eventEntry(c.ID, now, charting.EventBypassOn))
	closed, err := s.CloseCase(ctx, actor, c.ID)
	if err != nil || closed.Status != charting.StatusClosed || closed.ClosedAt.IsZero() {
		t.Fatalf("close: %v, %+v", err, closed)
	}
	_, _, err = s.RecordEntry(ctx, actor, noteEntry(c.ID, now, "after close"))
	wantPrecondition(t, "entry on closed case", err)
	r := s.AppendSamples(ctx, "gw", []*charting.SampleBatch{batch(c.ID, "hlm", 2, now.UnixMilli(), 5)})[0]
	wantPrecondition(t, "samples on closed case", r.Err)
	_, err = s.CloseCase(ctx, actor, c.ID)
	wantPrecondition(t, "close twice", err)
	// Review before signing may still correct.
	fix := eventEntry(c.ID, now.Add(-time.Minute), charting.EventBypassOn)
	if _, _, err := s.CorrectEntry(ctx, actor, store.Correction{CaseID: c.ID, EntryID: uuid.New(), Supersedes: e.ID, Reason: "time charted late", Replacement: &fix}); err != nil {
		t.Fatalf("correction on closed case: %v", err)
	}
	stale := head(t, s, c.ID)
	stale.Seq--
	_, _, _, err = s.SignCase(ctx, actor, c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "P P", ExpectedHead: &stale})
	if !errors.Is(err, charting.ErrStale) {
		t.Fatalf("sign with stale head: %v, want stale", err)
	}
	h1 := head(t, s, c.ID)
	signed, sig, _, err := s.SignCase(ctx, actor, c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "P P", ExpectedHead: &h1})
	if err != nil || signed.Status != charting.StatusSigned || sig.CoversSeq != h1.Seq || sig.CoversHash != h1.Hash {
		t.Fatalf("sign: %v, status %s, covers %d", err, signed.Status, sig.CoversSeq)
	}
	_, _, err = s.RecordEntry(ctx, actor, noteEntry(c.ID, now, "after sign"))
	wantPrecondition(t, "entry on signed case", err)
	_, _, err = s.CorrectEntry(ctx, actor, store.Correction{CaseID: c.ID, EntryID: uuid.New(), Supersedes: e.ID, Reason: "x"})
	wantPrecondition(t, "correction on signed case", err)
	_, err = s.UpdateCaseDetails(ctx, actor, c.ID, signed.DetailsVersion, signed.Details, "late change")
	wantPrecondition(t, "details on signed case", err)
	add, dup, err := s.AddAddendum(ctx, actor, c.ID, uuid.New(), "Patient transferred to ICU on ECMO.", "hand-off information")
	if err != nil || dup || add.Kind != charting.EntryAddendum {
		t.Fatalf("addendum: %v dup=%v kind=%s", err, dup, add.Kind)
	}
	// The reviewer's token carried a staff id (--staff-id-claim): it is
	// stored with the signature and covered by its digest; the first
	// signature, made without one, verifies as before.
	if _, _, _, err := s.SignCase(ctx, reviewer, c.ID, store.SignRequest{Meaning: charting.MeaningReviewed, DisplayName: "R R", StaffID: "S-40127"}); err != nil {
		t.Fatalf("second signature: %v", err)
	}
	final, _ := s.GetCase(ctx, c.ID)
	if len(final.Signatures) != 2 || final.Signatures[1].Signer != reviewer || final.Signatures[1].StaffID != "S-40127" || final.Signatures[0].StaffID != "" {
		t.Fatalf("signatures: %+v", final.Signatures)
	}
	verifyOK(t, s, c.ID)
}

// testSignOnce: a retried sign-off (same signer, same meaning) returns the
// stored signature and adds nothing — no link, no second delivery; the
// author cannot also sign as reviewer, nor the reviewer as author; a second
// person can review, and approve.
func testSignOnce(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, _, clk := newOutboxStore(t, h)
	c, first := signedCase(t, s, clk)
	h0, deliveries := head(t, s, c.ID), len(caseDeliveries(t, s, c.ID))

	again, sig, dup, err := s.SignCase(ctx, actor, c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "P One (retry)"})
	if err != nil || !dup || *sig != *first || len(again.Signatures) != 1 {
		t.Fatalf("retried sign: err %v dup %v sig %+v (first %+v), %d signatures", err, dup, sig, first, len(again.Signatures))
	}
	if head(t, s, c.ID) != h0 || len(caseDeliveries(t, s, c.ID)) != deliveries {
		t.Fatalf("a retried sign-off changed the record or queued another delivery")
	}

	_, _, _, err = s.SignCase(ctx, actor, c.ID, store.SignRequest{Meaning: charting.MeaningReviewed, DisplayName: "P One"})
	wantPrecondition(t, "the author reviews their own record", err)
	if err == nil || !strings.Contains(err.Error(), "second person") {
		t.Fatalf("refusal does not say why: %v", err)
	}
	if _, _, dup, err := s.SignCase(ctx, reviewer, c.ID, store.SignRequest{Meaning: charting.MeaningReviewed, DisplayName: "R R"}); err != nil || dup {
		t.Fatalf("review by a second person: %v dup %v", err, dup)
	}
	_, _, _, err = s.SignCase(ctx, reviewer, c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "R R"})
	wantPrecondition(t, "the reviewer signs as author", err)
	if _, _, dup, err := s.SignCase(ctx, reviewer, c.ID, store.SignRequest{Meaning: charting.MeaningApproved, DisplayName: "R R"}); err != nil || dup {
		t.Fatalf("approval by the reviewer: %v dup %v", err, dup)
	}
	final, err := s.GetCase(ctx, c.ID)
	if err != nil || len(final.Signatures) != 3 {
		t.Fatalf("signatures after the rules: %v %+v", err, final.Signatures)
	}
	verifyOK(t, s, c.ID)
}
