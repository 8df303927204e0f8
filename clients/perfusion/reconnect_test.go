package perfusion

import (
	"context"
	"testing"
	"time"
)

// TestStreamResumesSoonAfterRestart: with the library's default back-off,
// a sample stream whose server was gone for a while (a restart: every
// connection cut, new ones refused) resumes within a few seconds of the
// server coming back, not after a back-off that grew during the outage.
// The gap is measured from the server being reachable again to the first
// batch of the outage being acknowledged.
func TestStreamResumesSoonAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("TestStreamResumesSoonAfterRestart: waits out a 12-s outage; skipped in -short")
	}
	const outage, bound = 12 * time.Second, 3500 * time.Millisecond
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	// The defaults a gateway runs with: no WithBackoff.
	c, err := Dial(context.Background(), px.addr(), WithPrincipal(testPrincipal), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	caseID := newCase(t, dialTest(t, srv.addr))
	s, err := OpenSampleStreamer(context.Background(), c, caseID, "hlm-1", t.TempDir(),
		StreamerOptions{FlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	g := newGen()
	acked := func(n int64) bool { return s.Stats().Acked >= n }
	waitFor := func(what string, d time.Duration, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > d {
				t.Fatalf("%s: not within %v (stats %+v)", what, d, s.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	if err := s.Send(context.Background(), g.next(10)...); err != nil {
		t.Fatal(err)
	}
	waitFor("first batch acknowledged", 10*time.Second, func() bool { return acked(1) })

	px.refuse() // the server goes down
	if err := s.Send(context.Background(), g.next(10)...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(outage)
	if acked(2) {
		t.Fatal("a batch was acknowledged while the server was down")
	}
	px.restore() // and is back
	lag := waitFor("batch of the outage acknowledged after the restart", 60*time.Second, func() bool { return acked(2) })
	t.Logf("resumed %v after the server came back (outage %v; stats %+v)", lag.Round(time.Millisecond), outage, s.Stats())
	if lag > bound {
		t.Fatalf("the stream resumed %v after the server came back, want within %v", lag.Round(time.Millisecond), bound)
	}
}
