package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"perfusion/charting"
)

// testVerifyDuringWrites verifies a case over and over while another
// goroutine keeps charting on it. Every verification must read one
// consistent state: a link seen without its content, or content without
// its link, would be reported as tampering that never happened. And since
// the record only grows, no verification may see fewer links than an
// earlier one did.
func testVerifyDuringWrites(t *testing.T, h *Harness) {
	s, _, _ := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	const (
		writeFor = 2 * time.Second
		source   = "dev-1"
	)
	// Batches follow each other 5 s apart, starting far enough back that
	// a fast backend cannot write its way past the server clock.
	start := time.Now().Add(-7 * 24 * time.Hour).UnixMilli()

	stop := make(chan struct{})
	var (
		wg      sync.WaitGroup
		entries int64
		batches int64
		werr    error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadline := time.Now().Add(writeFor)
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			default:
			}
			e := noteEntry(c.ID, time.Now(), fmt.Sprintf("note %d", entries))
			if _, _, err := s.RecordEntry(ctx, actor, e); err != nil {
				werr = fmt.Errorf("record entry %d: %w", entries, err)
				return
			}
			entries++
			seq := batches + 1
			b := batch(c.ID, source, seq, start+seq*5000, 5)
			if r := s.AppendSamples(ctx, "gateway-1", []*charting.SampleBatch{b})[0]; r.Err != nil {
				werr = fmt.Errorf("append batch %d: %w", seq, r.Err)
				return
			}
			batches++
		}
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	// fail stops the writer before failing the test, so it does not write
	// to a backend the harness is closing.
	fail := func(format string, args ...any) {
		t.Helper()
		close(stop)
		<-done
		t.Fatalf(format, args...)
	}
	var (
		verifications int
		lastLinks     int64
	)
	for running := true; running; {
		select {
		case <-done:
			running = false // one more verification of the final state
		default:
		}
		v, err := s.VerifyRecord(ctx, c.ID)
		if err != nil {
			fail("verification %d during writes: %v", verifications+1, err)
		}
		if !v.OK() {
			fail("verification %d during writes (%d links): first bad link %+v", verifications+1, v.LinksVerified, *v.Bad)
		}
		if v.LinksVerified < lastLinks {
			fail("verification %d saw %d links after an earlier one saw %d", verifications+1, v.LinksVerified, lastLinks)
		}
		lastLinks = v.LinksVerified
		verifications++
	}
	if werr != nil {
		t.Fatalf("concurrent write: %v", werr)
	}
	if entries == 0 || verifications < 2 {
		t.Fatalf("only %d entries written and %d verifications made: nothing ran concurrently", entries, verifications)
	}
	v := verifyOK(t, s, c.ID)
	if v.EntriesVerified != entries || v.SampleBatchesVerified != batches {
		t.Fatalf("final verification saw %d entries and %d batches; %d and %d were written",
			v.EntriesVerified, v.SampleBatchesVerified, entries, batches)
	}
	t.Logf("%d verifications during %d entries and %d sample batches", verifications, entries, batches)
}
