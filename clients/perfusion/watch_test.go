package perfusion

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
)

// TestWatchResumesAcrossCuts watches a case through a proxy that cuts the
// connection while entries are written: Watch reconnects by itself, every
// entry reaches fn exactly once, positions only advance, and Watch returns
// nil once the case is signed.
func TestWatchResumesAcrossCuts(t *testing.T) {
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	direct := dialTest(t, srv.addr)
	var logs syncLog
	watching := dialTest(t, px.addr(), WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	caseID := newCase(t, direct)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		mu      sync.Mutex
		seen    = map[string]int{}
		last    int64
		backErr error
		msgs    int
	)
	done := make(chan error, 1)
	go func() {
		done <- watching.Watch(ctx, &pb.WatchCaseRequest{CaseId: caseID}, func(m *pb.WatchCaseResponse) error {
			mu.Lock()
			defer mu.Unlock()
			if m.GetPosition() < last || (m.GetPosition() == last && !m.GetFinal() && !(m.GetCaughtUp() && len(m.GetEntries()) == 0)) {
				backErr = fmt.Errorf("position %d after %d", m.GetPosition(), last)
			}
			last = m.GetPosition()
			msgs++
			for _, e := range m.GetEntries() {
				seen[e.GetEntryId()]++
			}
			return nil
		})
	}()
	position := func() int64 { mu.Lock(); defer mu.Unlock(); return last }
	head := func() int64 {
		resp, err := direct.GetCase(ctx, &pb.GetCaseRequest{CaseId: caseID})
		if err != nil {
			t.Fatalf("GetCase: %v", err)
		}
		return resp.GetCase().GetLedgerHead().GetSequence()
	}
	waitFor := func(pos int64) {
		t.Helper()
		for position() < pos {
			if ctx.Err() != nil {
				t.Fatalf("watcher at %d, want %d", position(), pos)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	var ids []string
	note := func(i int) {
		id := uuid.NewString()
		_, err := direct.RecordEntry(ctx, &pb.RecordEntryRequest{Entry: &pb.Entry{EntryId: id, CaseId: caseID,
			OccurredAt: timestamppb.Now(), Detail: &pb.Entry_Note{Note: &pb.Note{Text: fmt.Sprintf("note %d", i)}}}})
		if err != nil {
			t.Fatalf("RecordEntry: %v", err)
		}
		ids = append(ids, id)
	}
	for round := range 3 {
		for i := range 4 {
			note(round*4 + i)
		}
		waitFor(head())
		px.refuse() // the link drops; writes go on without the watcher
		for i := range 4 {
			note(100 + round*4 + i)
		}
		px.restore()
	}
	waitFor(head())
	if _, err := direct.CloseCase(ctx, &pb.CloseCaseRequest{CaseId: caseID}); err != nil {
		t.Fatalf("CloseCase: %v", err)
	}
	if _, err := direct.SignCase(ctx, &pb.SignCaseRequest{CaseId: caseID, Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED, SignerDisplayName: "P"}); err != nil {
		t.Fatalf("SignCase: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Watch returned %v after the case was signed, want nil", err)
	}
	if n := strings.Count(logs.String(), "resuming watch"); n < 3 {
		t.Fatalf("Watch resumed %d times, want at least once per cut (3)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if backErr != nil {
		t.Fatal(backErr)
	}
	if len(seen) != len(ids) {
		t.Fatalf("saw %d distinct entries, wrote %d", len(seen), len(ids))
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Fatalf("entry %s seen %d times, want once", id, seen[id])
		}
	}
}

// syncLog is a log sink read after the writers are done.
type syncLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestWatchStops checks that Watch returns fn's error and the server's
// refusal unchanged, without retrying them.
func TestWatchStops(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.Watch(ctx, &pb.WatchCaseRequest{CaseId: uuid.NewString()}, func(*pb.WatchCaseResponse) error { return nil })
	if status.Code(err) != codes.NotFound {
		t.Fatalf("watching an unknown case: %v, want NotFound", err)
	}
	caseID := newCase(t, c)
	stop := errors.New("display closed")
	if err := c.Watch(ctx, &pb.WatchCaseRequest{CaseId: caseID}, func(*pb.WatchCaseResponse) error { return stop }); err != stop {
		t.Fatalf("Watch returned %v, want fn's error", err)
	}
}
