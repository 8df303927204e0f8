package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/ingest"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite/sqlitetest"
)

// counting wraps a backend to count transactions and, when gate is set,
// hold each one until the test lets it through: a database that is slow.
type counting struct {
	store.Backend
	commits atomic.Int64
	gate    chan struct{}
}

func (c *counting) ReadWrite(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.commits.Add(1)
	return c.Backend.ReadWrite(ctx, fn)
}

func forEachBackend(t *testing.T, fn func(t *testing.T, b store.Backend)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, sqlitetest.Open(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, pgtest.Open(t)) })
}

func newCases(t testing.TB, s *store.Store, n int) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, n)
	for i := range ids {
		c, err := s.CreateCase(context.Background(), "test", store.NewCase{Kind: charting.KindECMO, Site: "MAIN", Room: fmt.Sprintf("ICU-%d", i), ScheduledStart: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = c.ID
	}
	return ids
}

// flow is one batch of n 1-Hz pump flow readings.
func flow(id uuid.UUID, src, actor string, seq int64, startMs int64, n int) *charting.SampleBatch {
	s := charting.Series{Channel: "pump_flow"}
	for i := 0; i < n; i++ {
		s.TimesMs = append(s.TimesMs, startMs+(seq-1)*int64(n)*1000+int64(i)*1000)
		s.Values = append(s.Values, float64(300+(int(seq)+i)%200)/100)
	}
	return &charting.SampleBatch{CaseID: id, SourceID: src, Seq: seq, Actor: actor, Series: []charting.Series{s}}
}

// TestStreamsShareCommits: many streams submitting at once, each with
// several batches in flight, get every batch acknowledged in its own order
// with the right watermark, in far fewer transactions than batches; every
// sample is stored exactly once (+missing/-extra) and every case verifies.
func TestStreamsShareCommits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		cb := &counting{Backend: b}
		s := store.New(cb, store.Config{})
		const streams, perStream, window, n = 40, 25, 4, 5
		ids := newCases(t, s, streams)
		before := cb.commits.Load()
		c := ingest.New(s, ingest.Config{MaxDelay: 5 * time.Millisecond})
		start := time.Now().Add(-time.Hour).UnixMilli()
		var wg sync.WaitGroup
		errs := make(chan error, streams)
		for i, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				inflight := make(chan *ingest.Ticket, window)
				go func() {
					defer close(inflight)
					for seq := int64(1); seq <= perStream; seq++ {
						tk, err := c.Submit(context.Background(), flow(id, "hlm", fmt.Sprintf("gw-%d", i), seq, start, n))
						if err != nil {
							errs <- err
							return
						}
						inflight <- tk
					}
				}()
				var want int64
				for tk := range inflight {
					want++
					r, err := tk.Wait(context.Background())
					if err == nil {
						err = r.Err
					}
					if err != nil || r.Duplicate || r.Watermark < want {
						errs <- fmt.Errorf("stream %d batch %d: %+v %v", i, want, r, err)
						return
					}
				}
				if want != perStream {
					errs <- fmt.Errorf("stream %d: %d acknowledgements, want %d", i, want, perStream)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if err := c.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		commits := cb.commits.Load() - before
		t.Logf("%d batches in %d commits", streams*perStream, commits)
		if commits >= streams*perStream/2 {
			t.Errorf("%d batches took %d commits: batches are not sharing commits", streams*perStream, commits)
		}
		for i, id := range ids {
			got := map[int64]int{}
			err := b.ScanSampleBatches(context.Background(), id, store.SampleFilter{}, func(r *store.SampleBatchRow) error {
				if r.Actor != fmt.Sprintf("gw-%d", i) {
					return fmt.Errorf("batch recorded under %q", r.Actor)
				}
				got[r.Seq]++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for seq := int64(1); seq <= perStream; seq++ {
				if got[seq] != 1 {
					t.Fatalf("case %d batch %d stored %d times", i, seq, got[seq])
				}
			}
			if len(got) != perStream {
				t.Fatalf("case %d holds %d batches, want %d", i, len(got), perStream)
			}
			v, err := s.VerifyRecord(context.Background(), id)
			if err != nil || !v.OK() || v.SamplesVerified != perStream*n {
				t.Fatalf("verify case %d: %+v, %v", i, v, err)
			}
		}
	})
}

// TestBackpressure: with the database stalled, Submit blocks once the
// queue bound is reached (nothing is dropped, memory does not grow), and
// everything queued commits once the database moves again.
func TestBackpressure(t *testing.T) {
	cb := &counting{Backend: sqlitetest.Open(t)}
	s := store.New(cb, store.Config{})
	ids := newCases(t, s, 1)
	gate := make(chan struct{})
	cb.gate = gate
	// Room for 50 samples: 10 batches of 5; one commit at a time.
	c := ingest.New(s, ingest.Config{QueueSamples: 50, Commits: 1, MaxBatches: 4})
	start := time.Now().Add(-time.Hour).UnixMilli()
	var tickets []*ingest.Ticket
	for seq := int64(1); seq <= 10; seq++ {
		tk, err := c.Submit(context.Background(), flow(ids[0], "hlm", "gw", seq, start, 5))
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := c.Submit(ctx, flow(ids[0], "hlm", "gw", 11, start, 5))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("submit beyond the bound: %v, want it to block until its context ends", err)
	}
	// The stalled submitter got nothing queued; once the database moves
	// it submits again and every batch commits, in order per source.
	close(gate)
	tk, err := c.Submit(context.Background(), flow(ids[0], "hlm", "gw", 11, start, 5))
	if err != nil {
		t.Fatal(err)
	}
	tickets = append(tickets, tk)
	for i, tk := range tickets {
		r, err := tk.Wait(context.Background())
		if err != nil || r.Err != nil || r.Watermark != int64(i+1) {
			t.Fatalf("batch %d: %+v, %v", i+1, r, err)
		}
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestCloseDrains: Close commits what was queued before it, refuses what
// comes after, and an impatient Close fails the commits it cuts short
// rather than leaving their submitters waiting.
func TestCloseDrains(t *testing.T) {
	s := store.New(sqlitetest.Open(t), store.Config{})
	ids := newCases(t, s, 1)
	c := ingest.New(s, ingest.Config{MaxDelay: 50 * time.Millisecond})
	start := time.Now().Add(-time.Hour).UnixMilli()
	tk, err := c.Submit(context.Background(), flow(ids[0], "hlm", "gw", 1, start, 5))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r, err := tk.Wait(context.Background()); err != nil || r.Err != nil {
		t.Fatalf("batch queued before Close: %+v, %v", r, err)
	}
	if _, err := c.Submit(context.Background(), flow(ids[0], "hlm", "gw", 2, start, 5)); !errors.Is(err, ingest.ErrClosed) {
		t.Fatalf("submit after Close: %v, want ErrClosed", err)
	}

	cb := &counting{Backend: sqlitetest.Open(t)}
	s = store.New(cb, store.Config{})
	ids = newCases(t, s, 1)
	cb.gate = make(chan struct{}) // never opens
	c = ingest.New(s, ingest.Config{})
	tk, err = c.Submit(context.Background(), flow(ids[0], "hlm", "gw", 1, start, 5))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close past its deadline: %v", err)
	}
	if r, err := tk.Wait(context.Background()); err != nil || r.Err == nil {
		t.Fatalf("a commit cut short by Close: %+v, %v; want a failed result", r, err)
	}
}

// TestMaxDelay: a lone batch is committed after about MaxDelay, not held
// for company that never comes.
func TestMaxDelay(t *testing.T) {
	s := store.New(sqlitetest.Open(t), store.Config{})
	ids := newCases(t, s, 1)
	c := ingest.New(s, ingest.Config{MaxDelay: 20 * time.Millisecond, MaxBatches: 1000})
	defer c.Close(context.Background())
	start := time.Now()
	tk, err := c.Submit(context.Background(), flow(ids[0], "hlm", "gw", 1, start.Add(-time.Hour).UnixMilli(), 5))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := tk.Wait(context.Background()); err != nil || r.Err != nil {
		t.Fatalf("%+v, %v", r, err)
	}
	if d := time.Since(start); d < 20*time.Millisecond || d > 2*time.Second {
		t.Fatalf("a lone batch took %v to commit, want about MaxDelay (20ms)", d)
	}
}
