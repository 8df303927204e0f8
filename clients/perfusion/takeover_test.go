package perfusion

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestLiveSecondWriterStops: while a gateway streams, a second one opens
// the same case and source. The server hands the source to the newer
// stream and tells the older one why; the older streamer stops with
// ErrSourceTakenOver instead of reconnecting into a tug of war, keeping
// what it has not sent in its spool, and the newer one goes on.
func TestLiveSecondWriterStops(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.addr)
	caseID := newCase(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := newGen()
	opts := StreamerOptions{MaxBatchSamples: 30}
	a, err := OpenSampleStreamer(ctx, c, caseID, "hlm-1", t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	if err := a.Send(ctx, g.next(10)...); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	b, err := OpenSampleStreamer(ctx, c, caseID, "hlm-1", t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Send(ctx, g.next(10)...); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatalf("the newer writer could not stream: %v", err)
	}
	select {
	case <-a.Done():
	case <-ctx.Done():
		t.Fatal("the older streamer did not stop")
	}
	if !errors.Is(a.Err(), ErrSourceTakenOver) {
		t.Fatalf("older streamer's Err = %v, want ErrSourceTakenOver", a.Err())
	}
	if err := a.Send(ctx, g.next(10)...); !errors.Is(err, ErrSourceTakenOver) {
		t.Fatalf("Send after the takeover = %v, want ErrSourceTakenOver", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if refs := sampleRefs(t, c, caseID); len(refs) != 2 || refs[0] != "hlm-1/1" || refs[1] != "hlm-1/2" {
		t.Fatalf("batches on the ledger: %v, want hlm-1/1 and hlm-1/2", refs)
	}
}
