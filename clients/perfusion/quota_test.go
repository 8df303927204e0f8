package perfusion

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func spoolBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), segPrefix) {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			n += fi.Size()
		}
	}
	return n
}

// TestSpoolQuota: offline, Send fills the spool up to MaxSpoolBytes and
// then fails with ErrSpoolFull, writing nothing; once the server is back
// every accepted sample arrives (none of the refused ones), the
// acknowledged segments are deleted, and Send works again.
func TestSpoolQuota(t *testing.T) {
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	c := dialTest(t, px.addr())
	caseID := newCase(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := OpenSampleStreamer(ctx, c, caseID, "hlm-1", t.TempDir(), StreamerOptions{SegmentBytes: 16 << 10, MaxSpoolBytes: 20 << 10}); err == nil {
		t.Fatal("a bound below twice the segment size was accepted")
	}

	px.refuse()
	dir := t.TempDir()
	const bound = 64 << 10
	s, err := OpenSampleStreamer(ctx, c, caseID, "hlm-1", dir, StreamerOptions{MaxBatchSamples: 300, SegmentBytes: 16 << 10, MaxSpoolBytes: bound})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	g := newGen()
	want := ledger{}
	refused := 0
	for i := 0; i < 400 && refused < 3; i++ {
		series := g.next(10)
		err := s.Send(ctx, series...)
		switch {
		case errors.Is(err, ErrSpoolFull):
			refused++
		case err != nil:
			t.Fatal(err)
		default:
			if refused > 0 {
				t.Fatal("a Send after a refusal was accepted while still offline")
			}
			want.add("hlm-1", series...)
		}
	}
	if refused == 0 {
		t.Fatalf("400 Sends fitted in %d bytes: the bound was never reached", bound)
	}
	if n := spoolBytes(t, dir); n > bound {
		t.Fatalf("spool holds %d bytes, bound %d", n, bound)
	}
	if st := s.Stats(); st.SpoolFull != int64(refused) {
		t.Fatalf("Stats.SpoolFull = %d, want %d", st.SpoolFull, refused)
	}

	px.restore()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := spoolBytes(t, dir); n > 16<<10+1024 {
		t.Fatalf("after every batch was acknowledged the spool still holds %d bytes", n)
	}
	series := g.next(10)
	if err := s.Send(ctx, series...); err != nil {
		t.Fatalf("Send after the server came back: %v", err)
	}
	want.add("hlm-1", series...)
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got := stored(t, c, caseID, testChannels)
	if missing, extra, changed, report := diffSamples(want, got); missing+extra+changed > 0 {
		t.Fatalf("%d missing, %d extra, %d altered:\n%s", missing, extra, changed, report)
	}
}
