package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

// Tests of the group-commit write path: many batches, several cases and
// principals in one AppendSamples call must obey exactly the rules of one
// batch at a time.

// testGroupCommitWatermarks: each result carries the watermark just after
// its batch, and a late batch that closes a gap moves the watermark past
// every batch stored earlier out of order, however many (more than one
// page of the backend's lookup).
func testGroupCommitWatermarks(t *testing.T, h *Harness) {
	s, _, _ := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	start := time.Now().Add(-3 * time.Hour).UnixMilli()
	at := func(seq int64) int64 { return start + (seq-1)*2000 }

	// Backwards within one call: nothing is contiguous until 1 arrives.
	res := s.AppendSamples(ctx, "gw", []*charting.SampleBatch{
		batch(c.ID, "hlm", 3, at(3), 2), batch(c.ID, "hlm", 2, at(2), 2), batch(c.ID, "hlm", 1, at(1), 2),
	})
	for i, want := range []int64{0, 0, 3} {
		if res[i].Err != nil || res[i].Watermark != want {
			t.Fatalf("backwards batch %d: %+v, want watermark %d", i, res[i], want)
		}
	}

	// 700 batches after a gap at 4, in several commits.
	const last = 704
	var late []*charting.SampleBatch
	for seq := int64(5); seq <= last; seq++ {
		late = append(late, batch(c.ID, "hlm", seq, at(seq), 2))
	}
	for len(late) > 0 {
		n := min(len(late), 250)
		for _, r := range s.AppendSamples(ctx, "gw", late[:n]) {
			if r.Err != nil || r.Watermark != 3 {
				t.Fatalf("batch after the gap: %+v, want watermark 3", r)
			}
		}
		late = late[n:]
	}
	// The gap closes; a resend of an old batch in the same call reports
	// the watermark after it too.
	res = s.AppendSamples(ctx, "gw", []*charting.SampleBatch{batch(c.ID, "hlm", 4, at(4), 2), batch(c.ID, "hlm", 2, at(2), 2)})
	if res[0].Err != nil || res[0].Watermark != last || res[0].Duplicate {
		t.Fatalf("gap-closing batch: %+v, want watermark %d", res[0], last)
	}
	if res[1].Err != nil || !res[1].Duplicate || res[1].Watermark != last {
		t.Fatalf("resend after the gap closed: %+v", res[1])
	}
	pos, err := s.SourcePositions(ctx, c.ID, nil)
	if err != nil || pos["hlm"] != last {
		t.Fatalf("stored watermark %d, %v; want %d", pos["hlm"], err, last)
	}
	v := verifyOK(t, s, c.ID)
	if v.SampleBatchesVerified != last {
		t.Fatalf("verified %d batches, want %d", v.SampleBatchesVerified, last)
	}
}

// testGroupCommitRepeats: the same batch twice in one call is stored once
// and acknowledged as a duplicate the second time; different content under
// the same sequence in one call is a conflict and reaches neither the
// store nor the ledger.
func testGroupCommitRepeats(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	ms := time.Now().Add(-time.Hour).UnixMilli()
	before := head(t, s, c.ID)
	res := s.AppendSamples(ctx, "gw", []*charting.SampleBatch{
		batch(c.ID, "hlm", 1, ms, 3),
		batch(c.ID, "hlm", 1, ms, 3),
		batch(c.ID, "hlm", 1, ms+500, 3),
		batch(c.ID, "hlm", 2, ms+3000, 3),
	})
	switch {
	case res[0].Err != nil || res[0].Duplicate || res[0].Watermark != 1:
		t.Fatalf("first copy: %+v", res[0])
	case res[1].Err != nil || !res[1].Duplicate || res[1].Watermark != 1:
		t.Fatalf("second copy: %+v", res[1])
	case !errors.Is(res[2].Err, charting.ErrConflict):
		t.Fatalf("different content, same sequence: %+v", res[2])
	case res[3].Err != nil || res[3].Watermark != 2:
		t.Fatalf("next batch: %+v", res[3])
	}
	if after := head(t, s, c.ID); after.Seq != before.Seq+2 {
		t.Fatalf("ledger grew by %d links, want 2", after.Seq-before.Seq)
	}
	if n := len(countSamples(t, b, c.ID)); n != 12 {
		t.Fatalf("case holds %d samples, want 12", n)
	}
	verifyOK(t, s, c.ID)
}

// testGroupCommitActors: batches of different principals in one call are
// each recorded, in row and ledger, under their own principal; a batch
// without one is refused and nothing of it stored.
func testGroupCommitActors(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	ctx := context.Background()
	c1, c2 := createCase(t, s, "OR-1"), createCase(t, s, "OR-2")
	ms := time.Now().Add(-time.Hour).UnixMilli()
	in := []*charting.SampleBatch{batch(c1.ID, "hlm", 1, ms, 2), batch(c2.ID, "hlm", 1, ms, 2), batch(c1.ID, "monitor", 1, ms, 2), batch(c2.ID, "x", 1, ms, 2)}
	in[0].Actor, in[1].Actor, in[2].Actor = "gateway-a", "gateway-b", "gateway-c"
	res := s.AppendSampleBatches(ctx, in)
	for i, r := range res[:3] {
		if r.Err != nil {
			t.Fatalf("batch %d: %v", i, r.Err)
		}
	}
	if res[3].Err == nil {
		t.Fatal("a batch without an actor was stored")
	}
	want := map[string]string{c1.ID.String() + "/hlm": "gateway-a", c2.ID.String() + "/hlm": "gateway-b", c1.ID.String() + "/monitor": "gateway-c"}
	for _, id := range []uuid.UUID{c1.ID, c2.ID} {
		err := b.ScanSampleBatches(ctx, id, store.SampleFilter{}, func(r *store.SampleBatchRow) error {
			if got := want[id.String()+"/"+r.SourceID]; got != r.Actor {
				return fmt.Errorf("batch %s of a case stored under %q, want %q", r.SourceID, r.Actor, got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		links, err := s.AuditTrail(ctx, id, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if l.Kind == charting.LinkSamples && want[id.String()+"/"+l.Ref[:len(l.Ref)-2]] != l.Actor {
				t.Fatalf("link %s recorded by %q", l.Ref, l.Actor)
			}
		}
		verifyOK(t, s, id)
	}
	if n := len(countSamples(t, b, c2.ID)); n != 4 {
		t.Fatalf("second case holds %d samples, want 4 (the actorless batch must not be stored)", n)
	}
}

// testGroupCommitsConcurrent: writers commit overlapping sets of cases in
// shuffled order at the same time, as a server with several commits in
// flight does. Locks are taken in one order, so none deadlocks or fails,
// and every batch is stored once and chained.
func testGroupCommitsConcurrent(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	ctx := context.Background()
	const cases, writers, rounds = 8, 4, 12
	var ids []uuid.UUID
	for i := 0; i < cases; i++ {
		ids = append(ids, createCase(t, s, fmt.Sprintf("OR-%d", i)).ID)
	}
	start := time.Now().Add(-time.Hour).UnixMilli()
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds*cases)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			src := fmt.Sprintf("dev-%d", w)
			for r := 0; r < rounds; r++ {
				var group []*charting.SampleBatch
				for _, i := range rng.Perm(cases) {
					group = append(group, batch(ids[i], src, int64(r+1), start+int64(r)*3000, 3))
				}
				for _, res := range s.AppendSamples(ctx, "gw", group) {
					if res.Err != nil || res.Watermark != int64(r+1) {
						errs <- fmt.Errorf("writer %d round %d: %+v", w, r, res)
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, id := range ids {
		v := verifyOK(t, s, id)
		if v.SampleBatchesVerified != writers*rounds {
			t.Fatalf("case holds %d batches, want %d", v.SampleBatchesVerified, writers*rounds)
		}
		if n := len(countSamples(t, b, id)); n != writers*rounds*6 {
			t.Fatalf("case holds %d samples, want %d", n, writers*rounds*6)
		}
	}
}

// testBulkPrimitives checks the contracts of the bulk Tx methods directly,
// where AppendSamples' own checks would never let them be tested: a
// duplicate among many rows or links is ErrDuplicate, an unknown case is
// absent from LockCases and ErrNotFound to UpdateCaseStates, and the
// lookups return exactly what is stored.
func testBulkPrimitives(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	ms := time.Now().Add(-time.Hour).UnixMilli()
	for _, seq := range []int64{1, 2, 5, 6, 9} {
		appendOne(t, s, batch(c.ID, "hlm", seq, ms+seq*10_000, 2))
	}
	stored := head(t, s, c.ID)
	ghost := uuid.New()
	err := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		locked, err := tx.LockCases(ctx, []uuid.UUID{ghost, c.ID})
		if err != nil {
			return err
		}
		if len(locked) != 1 || locked[c.ID] == nil || locked[c.ID].Head != stored {
			return fmt.Errorf("LockCases returned %d cases", len(locked))
		}
		src := store.SourceKey{CaseID: c.ID, SourceID: "hlm"}
		other := store.SourceKey{CaseID: c.ID, SourceID: "none"}
		states, err := tx.SourceStates(ctx, []store.SourceKey{src, other})
		if err != nil {
			return err
		}
		if states[src] != (store.SourceState{Watermark: 2, NextStored: 5}) || states[other] != (store.SourceState{}) {
			return fmt.Errorf("SourceStates = %+v", states)
		}
		seqs, err := tx.StoredSeqs(ctx, src, 2, 2)
		if err != nil || len(seqs) != 2 || seqs[0] != 5 || seqs[1] != 6 {
			return fmt.Errorf("StoredSeqs = %v, %v", seqs, err)
		}
		blocks, err := tx.SampleBlocks(ctx, []store.SampleKey{{CaseID: c.ID, SourceID: "hlm", Seq: 2}, {CaseID: c.ID, SourceID: "hlm", Seq: 3}})
		if err != nil || len(blocks) != 1 || blocks[store.SampleKey{CaseID: c.ID, SourceID: "hlm", Seq: 2}] == nil {
			return fmt.Errorf("SampleBlocks returned %d blocks, %v", len(blocks), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	row := func(seq int64) *store.SampleBatchRow {
		return &store.SampleBatchRow{CaseID: c.ID, SourceID: "hlm", Seq: seq, RecordedAt: time.Now().UTC().Truncate(time.Microsecond),
			Actor: "gw", MinTimeMs: ms, MaxTimeMs: ms, SampleCount: 1, Block: []byte{1, 0}}
	}
	dup := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		return tx.InsertSampleBatches(ctx, []*store.SampleBatchRow{row(3), row(5), row(4)})
	})
	if !errors.Is(dup, store.ErrDuplicate) {
		t.Fatalf("InsertSampleBatches over a stored batch: %v, want ErrDuplicate", dup)
	}
	links, err := s.AuditTrail(ctx, c.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	dup = b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		return tx.AppendLinks(ctx, []charting.Link{links[len(links)-1]})
	})
	if !errors.Is(dup, store.ErrDuplicate) {
		t.Fatalf("AppendLinks over a stored link: %v, want ErrDuplicate", dup)
	}
	missing := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		return tx.UpdateCaseStates(ctx, []*charting.Case{{ID: ghost, Status: charting.StatusPlanned}})
	})
	if !errors.Is(missing, charting.ErrNotFound) {
		t.Fatalf("UpdateCaseStates of an unknown case: %v, want ErrNotFound", missing)
	}
	// Nothing of the failed transactions remains.
	if v := verifyOK(t, s, c.ID); v.SampleBatchesVerified != 5 {
		t.Fatalf("%d batches stored, want 5", v.SampleBatchesVerified)
	}
}
