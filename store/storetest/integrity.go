package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
	"perfusion/store"
)

// chartedCase builds a case with every kind of write on its ledger and
// returns it with the ids worth tampering with.
type chartedCase struct {
	c     *charting.Case
	entry *charting.Entry
	dose  *charting.Entry
}

func chartCase(t *testing.T, s *store.Store, sign bool) chartedCase {
	t.Helper()
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	now := time.Now()
	d := c.Details
	d.Patient.WeightKg = 71
	if _, err := s.UpdateCaseDetails(ctx, actor, c.ID, 1, d, ""); err != nil {
		t.Fatal(err)
	}
	ms := now.Add(-30 * time.Minute).UnixMilli()
	for seq := int64(1); seq <= 3; seq++ {
		appendOne(t, s, batch(c.ID, "hlm", seq, ms+(seq-1)*5000, 5))
	}
	on := record(t, s, eventEntry(c.ID, now.Add(-20*time.Minute), charting.EventBypassOn))
	dose := record(t, s, drugEntry(c.ID, now.Add(-19*time.Minute), "heparin", 30000, "[iU]"))
	fix := drugEntry(c.ID, now.Add(-19*time.Minute), "heparin", 25000, "[iU]")
	if _, _, err := s.CorrectEntry(ctx, actor, store.Correction{CaseID: c.ID, EntryID: fix.ID, Supersedes: dose.ID, Reason: "mis-keyed", Replacement: &fix}); err != nil {
		t.Fatal(err)
	}
	if sign {
		if _, err := s.CloseCase(ctx, actor, c.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := s.SignCase(ctx, actor, c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "P P"}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.AddAddendum(ctx, actor, c.ID, uuid.New(), "post-op note", "hand-off"); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetCase(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	return chartedCase{c: got, entry: on, dose: dose}
}

// linkOf finds the sequence of the link with kind and ref.
func linkOf(t *testing.T, s *store.Store, caseID uuid.UUID, kind charting.LinkKind, ref string) int64 {
	t.Helper()
	links, err := s.AuditTrail(context.Background(), caseID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Kind == kind && l.Ref == ref {
			return l.Seq
		}
	}
	t.Fatalf("no %s link for %s", kind, ref)
	return 0
}

func wantBad(t *testing.T, bad *charting.BadLink, seq int64, kind charting.LinkKind, ref string, p charting.Problem) {
	t.Helper()
	if bad.Seq != seq || bad.Kind != kind || bad.Ref != ref || bad.Problem != p {
		t.Fatalf("first bad link = %+v; want link %d (%s %s) with %s", *bad, seq, kind, ref, p)
	}
}

func testAuditTrail(t *testing.T, h *Harness) {
	s, _, _ := newStore(t, h)
	cc := chartCase(t, s, true)
	links, err := s.AuditTrail(context.Background(), cc.c.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []charting.LinkKind{charting.LinkCaseCreated, charting.LinkDetails, charting.LinkDetails,
		charting.LinkSamples, charting.LinkSamples, charting.LinkSamples, charting.LinkEntry, charting.LinkEntry,
		charting.LinkCorrection, charting.LinkCaseClosed, charting.LinkSignature, charting.LinkAddendum}
	if len(links) != len(want) {
		t.Fatalf("audit trail has %d links, want %d", len(links), len(want))
	}
	var prev charting.Hash
	for i, l := range links {
		if l.Seq != int64(i+1) || l.Kind != want[i] || l.PrevHash != prev || l.Actor == "" || l.RecordedAt.IsZero() {
			t.Fatalf("link %d = %+v, want kind %s chained to the previous", i+1, l, want[i])
		}
		prev = l.Hash
	}
	if links[8].Reason != "mis-keyed" || links[3].Actor != "gateway-1" || links[11].Reason != "hand-off" {
		t.Fatalf("correction reason %q, samples actor %q, addendum reason %q", links[8].Reason, links[3].Actor, links[11].Reason)
	}
	page, err := s.AuditTrail(context.Background(), cc.c.ID, 4, 3)
	if err != nil || len(page) != 3 || page[0].Seq != 5 {
		t.Fatalf("page after 4: %d links, %v", len(page), err)
	}
	if cc.c.Head.Seq != 12 || cc.c.Head.Hash != prev {
		t.Fatalf("case head %d does not match the chain", cc.c.Head.Seq)
	}
}

func testVerifyIntact(t *testing.T, h *Harness) {
	s, _, _ := newStore(t, h)
	cc := chartCase(t, s, true)
	v := verifyOK(t, s, cc.c.ID)
	if v.LinksVerified != 12 || v.EntriesVerified != 4 || v.SampleBatchesVerified != 3 || v.SamplesVerified != 30 || v.Head != cc.c.Head.Hash {
		t.Fatalf("verification counted %+v", v)
	}
}

func testTamperEntry(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	cc := chartCase(t, s, true)
	// The superseded heparin dose is edited from 30000 to 3000 IU.
	h.Tamper(t, b, `UPDATE entries SET detail = $1 WHERE case_id = $2 AND entry_id = $3`,
		`{"drug":{"drug":"heparin","dose":3000,"unit":"[iU]","route":"intravenous"}}`, cc.c.ID.String(), cc.dose.ID.String())
	ref := cc.dose.ID.String()
	wantBad(t, verifyBad(t, s, cc.c.ID), linkOf(t, s, cc.c.ID, charting.LinkEntry, ref), charting.LinkEntry, ref, charting.ProblemContentAltered)
}

func testTamperSamples(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	ctx := context.Background()
	cc := chartCase(t, s, true)
	var block []byte
	err := b.ScanSampleBatches(ctx, cc.c.ID, store.SampleFilter{}, func(r *store.SampleBatchRow) error {
		if r.Seq == 2 {
			block = r.Block
		}
		return nil
	})
	if err != nil || block == nil {
		t.Fatalf("read block: %v", err)
	}
	series, err := samplecodec.DecodeBlock(block)
	if err != nil {
		t.Fatal(err)
	}
	series[0].Values[3] += 0.5 // one flow reading, half a litre higher
	edited := samplecodec.EncodeBlock(series, s.Catalogue().Resolution)
	h.Tamper(t, b, `UPDATE sample_batches SET block = $1 WHERE case_id = $2 AND source_id = $3 AND seq = $4`, edited, cc.c.ID.String(), "hlm", int64(2))
	ref := charting.SampleRef("hlm", 2)
	wantBad(t, verifyBad(t, s, cc.c.ID), linkOf(t, s, cc.c.ID, charting.LinkSamples, ref), charting.LinkSamples, ref, charting.ProblemContentAltered)

	// Bytes that no longer decode are named too.
	h.Tamper(t, b, `UPDATE sample_batches SET block = $1 WHERE case_id = $2 AND source_id = $3 AND seq = $4`, []byte{0xff, 0x00}, cc.c.ID.String(), "hlm", int64(2))
	wantBad(t, verifyBad(t, s, cc.c.ID), linkOf(t, s, cc.c.ID, charting.LinkSamples, ref), charting.LinkSamples, ref, charting.ProblemContentUnreadable)
}

func testTamperCaseHeader(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	cc := chartCase(t, s, false)
	h.Tamper(t, b, `UPDATE cases SET room = $1 WHERE case_id = $2`, "OR-9", cc.c.ID.String())
	wantBad(t, verifyBad(t, s, cc.c.ID), 1, charting.LinkCaseCreated, "", charting.ProblemContentAltered)
}

func testTamperStatus(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	cc := chartCase(t, s, true)
	// Re-opening a signed case behind the service's back.
	h.Tamper(t, b, `UPDATE cases SET status = $1 WHERE case_id = $2`, string(charting.StatusInProgress), cc.c.ID.String())
	bad := verifyBad(t, s, cc.c.ID)
	if bad.Problem != charting.ProblemHeadMismatch {
		t.Fatalf("status tamper reported as %+v", *bad)
	}
}

func testUncoveredContent(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	cc := chartCase(t, s, false)
	// An entry written straight into storage, with no ledger link.
	e := noteEntry(cc.c.ID, time.Now(), "inserted behind the service's back")
	e.Kind, e.RecordedAt, e.Author = charting.EntryNote, time.Now().UTC().Truncate(time.Microsecond), "intruder"
	err := b.ReadWrite(context.Background(), func(ctx context.Context, tx store.Tx) error { return tx.InsertEntry(ctx, &e) })
	if err != nil {
		t.Fatal(err)
	}
	bad := verifyBad(t, s, cc.c.ID)
	if bad.Problem != charting.ProblemUncoveredContent || bad.Ref != e.ID.String() {
		t.Fatalf("uncovered entry reported as %+v", *bad)
	}
}

func testDeletedContent(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	cc := chartCase(t, s, true)
	h.Tamper(t, b, `DELETE FROM entries WHERE case_id = $1 AND entry_id = $2`, cc.c.ID.String(), cc.entry.ID.String())
	ref := cc.entry.ID.String()
	wantBad(t, verifyBad(t, s, cc.c.ID), linkOf(t, s, cc.c.ID, charting.LinkEntry, ref), charting.LinkEntry, ref, charting.ProblemContentMissing)
}

func testAppendOnly(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	cc := chartCase(t, s, true)
	id := cc.c.ID.String()
	refused := []string{
		`UPDATE entries SET reason = 'x' WHERE case_id = $1`,
		`DELETE FROM entries WHERE case_id = $1`,
		`UPDATE case_details SET reason = 'x' WHERE case_id = $1`,
		`DELETE FROM case_details WHERE case_id = $1`,
		`UPDATE sample_batches SET actor = 'x' WHERE case_id = $1`,
		`DELETE FROM sample_batches WHERE case_id = $1`,
		`UPDATE signatures SET display_name = 'x' WHERE case_id = $1`,
		`DELETE FROM signatures WHERE case_id = $1`,
		`UPDATE ledger SET actor = 'x' WHERE case_id = $1`,
		`DELETE FROM ledger WHERE case_id = $1`,
		`UPDATE cases SET room = 'x' WHERE case_id = $1`,
		`UPDATE cases SET site = 'x' WHERE case_id = $1`,
		`DELETE FROM cases WHERE case_id = $1`,
	}
	for _, q := range refused {
		if err := h.Exec(t, b, q, id); err == nil {
			t.Errorf("the database accepted %q", q)
		}
	}
	if err := h.Exec(t, b, `UPDATE cases SET status = status WHERE case_id = $1`, id); err != nil {
		t.Errorf("the case state row must stay updatable: %v", err)
	}
	v := verifyOK(t, s, cc.c.ID)
	if v.LinksVerified != 12 || v.EntriesVerified != 4 {
		t.Fatalf("after refused statements: %+v", v)
	}
}

func testConcurrentWriters(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	ctx := context.Background()
	const cases, writers, rounds = 3, 6, 10
	var ids []uuid.UUID
	for i := 0; i < cases; i++ {
		ids = append(ids, createCase(t, s, fmt.Sprintf("OR-%d", i)).ID)
	}
	start := time.Now().Add(-time.Hour).UnixMilli()
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds*2)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			id := ids[w%cases]
			src := fmt.Sprintf("dev-%d", w)
			for r := 0; r < rounds; r++ {
				if _, _, err := s.RecordEntry(ctx, actor, noteEntry(id, time.Now(), fmt.Sprintf("w%d r%d", w, r))); err != nil {
					errs <- err
				}
				if res := s.AppendSamples(ctx, "gw", []*charting.SampleBatch{batch(id, src, int64(r+1), start+int64(r)*5000, 5)})[0]; res.Err != nil {
					errs <- res.Err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent write: %v", err)
	}
	perCase := writers / cases
	for _, id := range ids {
		v := verifyOK(t, s, id)
		if v.EntriesVerified != int64(perCase*rounds) || v.SampleBatchesVerified != int64(perCase*rounds) {
			t.Fatalf("case holds %d entries, %d batches; want %d each", v.EntriesVerified, v.SampleBatchesVerified, perCase*rounds)
		}
		if n := len(countSamples(t, b, id)); n != perCase*rounds*10 {
			t.Fatalf("case holds %d samples, want %d", n, perCase*rounds*10)
		}
	}
}
