package perfusion

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
	"perfusion/store"
	"perfusion/store/sqlite/sqlitetest"
)

// startOn serves st on a new 127.0.0.1 socket: one of several servers on
// one database, as perfusiond processes behind a load balancer are.
func startOn(t *testing.T, st *store.Store) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ReadinessInterval: 20 * time.Millisecond})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return lis.Addr().String()
}

// TestClientMovesBetweenServers: a Client given two servers keeps
// streaming and charting when the one it uses dies (its connections cut,
// new ones refused), moves back when the other dies in turn, and the case
// ends with every sample and entry stored exactly once.
func TestClientMovesBetweenServers(t *testing.T) {
	st := store.New(sqlitetest.Open(t), store.Config{})
	pa, pb2 := newProxy(t, startOn(t, st)), newProxy(t, startOn(t, st))
	c := dialTest(t, pa.addr()+", "+pb2.addr())
	caseID := newCase(t, c)
	s, err := OpenSampleStreamer(context.Background(), c, caseID, "hlm-1", t.TempDir(),
		StreamerOptions{FlushInterval: 10 * time.Millisecond, MaxReconnectDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g, sent := newGen(), ledger{}
	var entries []string
	round := func(what string) {
		t.Helper()
		for i := 0; i < 5; i++ {
			series := g.next(10)
			sent.add("hlm-1", series...)
			if err := s.Send(context.Background(), series...); err != nil {
				t.Fatalf("%s: Send: %v", what, err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Flush(ctx); err != nil {
			t.Fatalf("%s: Flush: %v (stats %+v)", what, err, s.Stats())
		}
		id := uuid.NewString()
		if _, err := c.RecordEntry(ctx, &pb.RecordEntryRequest{Entry: &pb.Entry{EntryId: id, CaseId: caseID, OccurredAt: timestamppb.Now(),
			Detail: &pb.Entry_Note{Note: &pb.Note{Text: what}}}}); err != nil {
			t.Fatalf("%s: RecordEntry: %v", what, err)
		}
		entries = append(entries, id)
	}
	round("both servers up")
	pa.refuse() // server A dies
	round("A down")
	pb2.refuse() // B dies too, A is back
	pa.restore()
	round("B down, A back")
	pb2.restore()
	round("both up again")
	if pa.cuts == 0 || pb2.cuts == 0 {
		t.Fatal("a server was never cut")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	missing, extra, changed, report := diffSamples(sent, stored(t, c, caseID, testChannels))
	if missing+extra+changed != 0 {
		t.Fatalf("+%d missing, -%d extra, ~%d changed:\n%s", missing, extra, changed, report)
	}
	list, err := c.ListEntries(ctx, &pb.ListEntriesRequest{CaseId: caseID})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range list.GetEntries() {
		got[e.GetEntryId()]++
	}
	for _, id := range entries {
		if got[id] != 1 {
			t.Errorf("entry %s stored %d times", id, got[id])
		}
	}
	verify(t, c, caseID)
	t.Logf("stats: %+v", s.Stats())
}

func TestSplitServers(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "a:1,b:2", want: "a:1|b:2"},
		{in: " a:1 , [::1]:2 ", want: "a:1|[::1]:2"},
		{in: "a:1,", err: "empty"},
		{in: "a:1,b", err: "want host:port"},
		{in: "a:1,a:1", err: "twice"},
	} {
		got, err := SplitServers(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("SplitServers(%q) = %v, %v; want an error saying %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(got, "|") != tc.want {
			t.Errorf("SplitServers(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := Dial(context.Background(), "a:1,,b:2", WithPrincipal("x")); err == nil {
		t.Error("Dial accepted a list with an empty address")
	}
}
