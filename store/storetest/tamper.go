package storetest

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/checkpoint"
)

// Columns outside the hash that decide what a query or export returns are
// recomputed by VerifyRecord from what the hash covers (issue 16): each
// edit below, made with enforcement bypassed, must be named at the right
// link.

func testTamperBatchSummary(t *testing.T, h *Harness) {
	ref := charting.SampleRef("hlm", 2)
	edits := []struct {
		name, sql string
	}{
		// Moved an hour later: a raw query or export of the real window no
		// longer selects the batch, so its samples vanish from it.
		{"times moved", `UPDATE sample_batches SET min_time_ms = min_time_ms + 3600000, max_time_ms = max_time_ms + 3600000 WHERE case_id = $1 AND source_id = 'hlm' AND seq = 2`},
		{"end shortened", `UPDATE sample_batches SET max_time_ms = min_time_ms WHERE case_id = $1 AND source_id = 'hlm' AND seq = 2`},
		{"count edited", `UPDATE sample_batches SET sample_count = 1 WHERE case_id = $1 AND source_id = 'hlm' AND seq = 2`},
		{"recorded_at edited", `UPDATE sample_batches SET recorded_at = (SELECT scheduled_start FROM cases WHERE case_id = $1) WHERE case_id = $1 AND source_id = 'hlm' AND seq = 2`},
		{"actor edited", `UPDATE sample_batches SET actor = 'intruder' WHERE case_id = $1 AND source_id = 'hlm' AND seq = 2`},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			s, b, _ := newStore(t, h)
			cc := chartCase(t, s, true)
			verifyOK(t, s, cc.c.ID)
			h.Tamper(t, b, e.sql, cc.c.ID.String())
			bad := verifyBad(t, s, cc.c.ID)
			wantBad(t, bad, linkOf(t, s, cc.c.ID, charting.LinkSamples, ref), charting.LinkSamples, ref, charting.ProblemContentAltered)
		})
	}
}

func testTamperCaseState(t *testing.T, h *Harness) {
	t.Run("started_at cleared", func(t *testing.T) {
		s, b, _ := newStore(t, h)
		cc := chartCase(t, s, true)
		h.Tamper(t, b, `UPDATE cases SET started_at = NULL WHERE case_id = $1`, cc.c.ID.String())
		bad := verifyBad(t, s, cc.c.ID)
		ref := charting.SampleRef("hlm", 1) // the first charted datum
		wantBad(t, bad, linkOf(t, s, cc.c.ID, charting.LinkSamples, ref), charting.LinkSamples, ref, charting.ProblemHeadMismatch)
	})
	t.Run("details version set back", func(t *testing.T) {
		s, b, _ := newStore(t, h)
		cc := chartCase(t, s, true)
		// GetCase would show the details as first entered, not as corrected.
		h.Tamper(t, b, `UPDATE cases SET details_version = 1 WHERE case_id = $1`, cc.c.ID.String())
		bad := verifyBad(t, s, cc.c.ID)
		wantBad(t, bad, linkOf(t, s, cc.c.ID, charting.LinkDetails, "2"), charting.LinkDetails, "2", charting.ProblemHeadMismatch)
	})
	t.Run("watermark raised", func(t *testing.T) {
		s, b, _ := newStore(t, h)
		cc := chartCase(t, s, true)
		// A gateway resuming after it would drop batches 4..9 from its spool.
		h.Tamper(t, b, `UPDATE sample_sources SET watermark = 9 WHERE case_id = $1 AND source_id = 'hlm'`, cc.c.ID.String())
		bad := verifyBad(t, s, cc.c.ID)
		if bad.Kind != charting.LinkSamples || bad.Ref != charting.SampleRef("hlm", 9) || bad.Problem != charting.ProblemContentAltered {
			t.Fatalf("raised watermark reported as %+v", *bad)
		}
	})
}

// testCaseStateForward: the database itself refuses a plain UPDATE that
// moves a case's state backwards, on every backend.
func testCaseStateForward(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	cc := chartCase(t, s, true)
	id := cc.c.ID.String()
	refused := []string{
		`UPDATE cases SET status = 'in_progress' WHERE case_id = $1`,
		`UPDATE cases SET status = 'closed' WHERE case_id = $1`,
		`UPDATE cases SET head_seq = head_seq - 2 WHERE case_id = $1`,
		`UPDATE cases SET details_version = 1 WHERE case_id = $1`,
	}
	for _, q := range refused {
		if err := h.Exec(t, b, q, id); err == nil {
			t.Errorf("the database accepted %q", q)
		}
	}
	verifyOK(t, s, cc.c.ID)
}

// testTamperTailTruncated: deleting the signature and the last links and
// setting the head back leaves a chain that verifies on its own, as an
// unsigned, closed case. The checkpoint log, outside the database, still
// holds the signed heads: verification against it names the first one the
// chain lost.
func testTamperTailTruncated(t *testing.T, h *Harness) {
	b := h.Open(t)
	ctx := context.Background()
	dir := t.TempDir()
	key, err := checkpoint.LoadOrCreateKey(filepath.Join(dir, "checkpoint.key"))
	if err != nil {
		t.Fatal(err)
	}
	log := checkpoint.NewLog(filepath.Join(dir, "checkpoints.log"), checkpoint.NewSigner(key))
	s := store.New(b, store.Config{Anchor: log})
	cc := chartCase(t, s, true)
	id := cc.c.ID.String()
	closed := linkOf(t, s, cc.c.ID, charting.LinkCaseClosed, "")
	signed := linkOf(t, s, cc.c.ID, charting.LinkSignature, strconv.FormatInt(closed+1, 10))
	if v, err := s.VerifyRecord(ctx, cc.c.ID, store.AgainstCheckpoints()); err != nil || !v.OK() || v.CheckpointsVerified != 3 {
		t.Fatalf("intact record against its checkpoints: %+v, %v", v, err)
	}

	h.Tamper(t, b, `DELETE FROM entries WHERE case_id = $1 AND kind = 'addendum'`, id)
	h.Tamper(t, b, `DELETE FROM signatures WHERE case_id = $1`, id)
	h.Tamper(t, b, `DELETE FROM ledger WHERE case_id = $1 AND seq > $2`, id, closed)
	h.Tamper(t, b, `UPDATE cases SET status = 'closed', head_seq = $2, head_hash = (SELECT hash FROM ledger WHERE case_id = $1 AND seq = $2) WHERE case_id = $1`, id, closed)

	// On its own the cut chain is a consistent, unsigned record.
	v := verifyOK(t, s, cc.c.ID)
	if v.LinksVerified != closed {
		t.Fatalf("cut chain verified %d links, want %d", v.LinksVerified, closed)
	}
	v, err = s.VerifyRecord(ctx, cc.c.ID, store.AgainstCheckpoints())
	if err != nil {
		t.Fatal(err)
	}
	if v.OK() {
		t.Fatal("a truncated tail verified against the checkpoint log")
	}
	if v.Bad.Seq != signed || v.Bad.Problem != checkpoint.ProblemAnchorMismatch || !strings.Contains(v.Bad.Detail, "truncated") {
		t.Fatalf("truncated tail reported as %+v; want link %d, %s", *v.Bad, signed, checkpoint.ProblemAnchorMismatch)
	}

	// A store without a checkpoint log cannot be asked to verify against one.
	if _, err := store.New(b, store.Config{}).VerifyRecord(ctx, cc.c.ID, store.AgainstCheckpoints()); err == nil {
		t.Fatal("verification against checkpoints without a log succeeded")
	}
}
