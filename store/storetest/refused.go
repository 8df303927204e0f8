package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/ingest"
)

// Tests of a group commit one of whose batches the database itself refuses
// (not validation: a trigger installed by Harness.Refuse raises an error
// for one source's rows, as a constraint or a value the database cannot
// store would). The other batches of the group must be committed and
// acknowledged, only the refused one fails, and errors about the database
// itself must not make the store try again in smaller groups.

// poisonSource is the source whose batches Harness.Refuse makes the
// database refuse; refuseMarker is in the refusing trigger's message, and
// must not reach a RefusedError's Reason (the part a client sees).
const (
	poisonSource = "poison"
	refuseMarker = "refused-by-test-trigger"
)

// countingBackend counts transactions, and fails each with failWith when
// set, before reaching the database (an error about the database: a
// connection lost).
type countingBackend struct {
	store.Backend
	txs      atomic.Int64
	failWith atomic.Pointer[error]
}

func (b *countingBackend) ReadWrite(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	b.txs.Add(1)
	if err := b.failWith.Load(); err != nil {
		return *err
	}
	return b.Backend.ReadWrite(ctx, fn)
}

// newRefusingStore opens a backend whose database refuses poisonSource's
// batches, behind a transaction counter.
func newRefusingStore(t *testing.T, h *Harness) (*store.Store, *countingBackend) {
	t.Helper()
	if h.Refuse == nil {
		t.Fatal("the harness has no Refuse: a backend must say how its database can be made to refuse a batch")
	}
	b := h.Open(t)
	h.Refuse(t, b, poisonSource, refuseMarker)
	cb := &countingBackend{Backend: b}
	return store.New(cb, store.Config{}), cb
}

// wantRefused fails unless r is the database's refusal, with a Reason free
// of the database's own message.
func wantRefused(t *testing.T, what string, r store.SampleResult) {
	t.Helper()
	var re *store.RefusedError
	if !errors.As(r.Err, &re) {
		t.Fatalf("%s: %+v, want the database's refusal (store.RefusedError)", what, r)
	}
	if re.Reason == "" || strings.Contains(re.Reason, refuseMarker) || strings.Contains(re.Reason, poisonSource) {
		t.Fatalf("%s: reason %q is empty or quotes the database's message or the data", what, re.Reason)
	}
}

// addSamples counts b's samples into want.
func addSamples(want map[sampleKey]int, b *charting.SampleBatch) {
	for _, s := range b.Series {
		for _, ts := range s.TimesMs {
			want[sampleKey{b.SourceID, s.Channel, ts}]++
		}
	}
}

// testGroupCommitRefusedBatch: one AppendSamples call of 20 cases' batches
// holding two batches the database refuses (in two cases, one of which also
// has good batches in the call) stores every other batch, with its link and
// watermark, fails only the two, and isolates them in a bounded number of
// transactions.
func testGroupCommitRefusedBatch(t *testing.T, h *Harness) {
	s, b := newRefusingStore(t, h)
	ctx := context.Background()
	const cases, perCase = 20, 3
	ids := make([]uuid.UUID, cases)
	for i := range ids {
		ids[i] = createCase(t, s, fmt.Sprintf("OR-%d", i)).ID
	}
	start := time.Now().Add(-time.Hour).UnixMilli()
	want := make(map[uuid.UUID]map[sampleKey]int)
	var group []*charting.SampleBatch
	for seq := int64(1); seq <= perCase; seq++ {
		for i, id := range ids {
			bt := batch(id, "hlm", seq, start+seq*10_000, 4)
			group = append(group, bt)
			if want[id] == nil {
				want[id] = make(map[sampleKey]int)
			}
			addSamples(want[id], bt)
			if seq == 2 && (i == 7 || i == 13) {
				group = append(group, batch(id, poisonSource, 1, start+seq*10_000, 4))
			}
		}
	}
	poisoned := map[int]bool{}
	for i, bt := range group {
		poisoned[i] = bt.SourceID == poisonSource
	}

	before := b.txs.Load()
	res := s.AppendSamples(ctx, "gw", group)
	for i, r := range res {
		bt := group[i]
		if poisoned[i] {
			wantRefused(t, fmt.Sprintf("poison batch %d", i), r)
			continue
		}
		if r.Err != nil || r.Duplicate || r.Watermark != bt.Seq {
			t.Fatalf("batch %d (%s) of a group with a refused batch: %+v, want stored with watermark %d", i, charting.SampleRef(bt.SourceID, bt.Seq), r, bt.Seq)
		}
	}
	// Bisection tries the whole group, then at each of ⌈log2 n⌉ levels at
	// most two halves per refused batch.
	const refused = 2
	if n, most := b.txs.Load()-before, 1+2*refused*int64(math.Ceil(math.Log2(float64(len(group))))); n > most {
		t.Errorf("%d transactions to isolate %d refused batches among %d, want at most %d", n, refused, len(group), most)
	}
	for i, id := range ids {
		if err := diffSamples(want[id], countSamples(t, b, id)); err != nil {
			t.Errorf("case %d: %v", i, err)
		}
		v := verifyOK(t, s, id)
		if v.SampleBatchesVerified != perCase {
			t.Errorf("case %d: %d batches verified, want %d", i, v.SampleBatchesVerified, perCase)
		}
		pos, err := s.SourcePositions(ctx, id, []string{"hlm", poisonSource})
		if err != nil || pos["hlm"] != perCase || pos[poisonSource] != 0 {
			t.Errorf("case %d: positions %v, %v; want hlm at %d and nothing of %s", i, pos, err, perCase, poisonSource)
		}
	}

	// Alone, the refused batch fails again, in one transaction.
	before = b.txs.Load()
	wantRefused(t, "poison batch resent alone", s.AppendSamples(ctx, "gw", []*charting.SampleBatch{batch(ids[7], poisonSource, 1, start+20_000, 4)})[0])
	if n := b.txs.Load() - before; n != 1 {
		t.Errorf("a lone refused batch took %d transactions, want 1", n)
	}
}

// testGroupCommitDatabaseFailure: when a group fails for a reason that is
// about the database (here a connection lost before the transaction ran),
// every batch fails with it, in one transaction: the store does not split
// the group and multiply the work on a database in trouble. Afterwards the
// same batches commit.
func testGroupCommitDatabaseFailure(t *testing.T, h *Harness) {
	s, b := newRefusingStore(t, h)
	ctx := context.Background()
	start := time.Now().Add(-time.Hour).UnixMilli()
	var group []*charting.SampleBatch
	for i := 0; i < 8; i++ {
		id := createCase(t, s, fmt.Sprintf("OR-%d", i)).ID
		group = append(group, batch(id, "hlm", 1, start, 3), batch(id, "hlm", 2, start+5000, 3))
	}
	lost := errors.New("connection reset by peer")
	b.failWith.Store(&lost)
	before := b.txs.Load()
	for i, r := range s.AppendSamples(ctx, "gw", group) {
		if !errors.Is(r.Err, lost) || store.IsRefused(r.Err) {
			t.Fatalf("batch %d when the database is lost: %+v, want the database's error", i, r)
		}
	}
	if n := b.txs.Load() - before; n != 1 {
		t.Fatalf("a group failing for the database took %d transactions, want 1", n)
	}
	b.failWith.Store(nil)
	for i, r := range s.AppendSamples(ctx, "gw", group) {
		if r.Err != nil || r.Duplicate {
			t.Fatalf("batch %d resent after the database came back: %+v", i, r)
		}
	}
}

// testCommitterRefusedBatch drives the server's group committer
// (store/ingest) as StreamSamples does: 20 streams, one case each, submit
// batches with several awaiting their commit, while a 21st gateway keeps
// sending a batch the database refuses (and resending it, as a gateway
// that was told to would not, but a buggy one might). Every other batch is
// committed and acknowledged, none of the 20 streams sees an error, every
// sample is read back once, every record verifies, and each poison batch
// alone gets the refusal.
func testCommitterRefusedBatch(t *testing.T, h *Harness) {
	s, b := newRefusingStore(t, h)
	ctx := context.Background()
	const streams, perStream, window, poisonSends = 20, 30, 4, 25
	ids := make([]uuid.UUID, streams+1)
	for i := range ids {
		ids[i] = createCase(t, s, fmt.Sprintf("OR-%d", i)).ID
	}
	poisonCase := ids[streams]
	start := time.Now().Add(-time.Hour).UnixMilli()
	at := func(seq int64) int64 { return start + seq*3000 }
	// A long gathering delay puts the poison in groups with other streams'
	// batches.
	c := ingest.New(s, ingest.Config{MaxDelay: 5 * time.Millisecond})
	submit := func(bt *charting.SampleBatch) (*ingest.Ticket, error) {
		bt.Actor = "gw"
		return c.Submit(ctx, bt)
	}
	var (
		wg       sync.WaitGroup
		errs     = make(chan error, streams+poisonSends)
		stop     = make(chan struct{})
		refusals atomic.Int64
	)
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tickets := make(chan *ingest.Ticket, window)
			go func() {
				defer close(tickets)
				for seq := int64(1); seq <= perStream; seq++ {
					t, err := submit(batch(ids[i], "hlm", seq, at(seq), 3))
					if err != nil {
						errs <- fmt.Errorf("stream %d submit %d: %w", i, seq, err)
						return
					}
					tickets <- t
				}
			}()
			seq := int64(0)
			for tk := range tickets {
				seq++
				r, err := tk.Wait(ctx)
				if err == nil {
					err = r.Err
				}
				if err != nil {
					errs <- fmt.Errorf("stream %d batch %d was cut: %w", i, seq, err)
					for range tickets { // let the submitter finish
					}
					return
				}
			}
		}()
	}
	var pw sync.WaitGroup
	pw.Add(1)
	go func() {
		defer pw.Done()
		for n := 1; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			// The gateway's good source and its poison, as one stream sends
			// them.
			good, err := submit(batch(poisonCase, "hlm", int64(n), at(int64(n)), 3))
			if err != nil {
				errs <- err
				return
			}
			bad, err := submit(batch(poisonCase, poisonSource, 1, at(1), 3))
			if err != nil {
				errs <- err
				return
			}
			if r, err := good.Wait(ctx); err != nil || r.Err != nil {
				errs <- fmt.Errorf("the poison gateway's good batch %d: %v, %+v", n, err, r)
				return
			}
			r, err := bad.Wait(ctx)
			var re *store.RefusedError
			if err != nil || !errors.As(r.Err, &re) {
				errs <- fmt.Errorf("poison batch, send %d: %v, %+v; want the database's refusal", n, err, r)
				return
			}
			refusals.Add(1)
		}
	}()
	wg.Wait()
	close(stop)
	pw.Wait()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if refusals.Load() == 0 {
		t.Fatal("the poison batch was never sent")
	}
	for i, id := range ids[:streams] {
		want := make(map[sampleKey]int)
		for seq := int64(1); seq <= perStream; seq++ {
			addSamples(want, batch(id, "hlm", seq, at(seq), 3))
		}
		if err := diffSamples(want, countSamples(t, b, id)); err != nil {
			t.Errorf("stream %d: %v", i, err)
		}
		if v := verifyOK(t, s, id); v.SampleBatchesVerified != perStream {
			t.Errorf("stream %d: %d batches verified, want %d", i, v.SampleBatchesVerified, perStream)
		}
	}
	for k, n := range countSamples(t, b, poisonCase) {
		if k.source != "hlm" || n != 1 {
			t.Errorf("poison case holds %s/%s@%d ×%d", k.source, k.channel, k.t, n)
		}
	}
	verifyOK(t, s, poisonCase)
}
