package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite/sqlitetest"
)

// BenchmarkWatchFanout measures how long an entry takes from the start of
// its RecordEntry call until every one of N displays watching the case has
// received it, over real gRPC connections: the write, the commit wake, each
// watcher's read of the ledger and the entry, and the send.
//
//	PERFUSION_TEST_DATABASE_URL=… go test ./server -run XXX -bench WatchFanout -benchtime 200x
func BenchmarkWatchFanout(b *testing.B) {
	backends := []struct {
		name string
		open func(testing.TB) store.Backend
	}{{"sqlite", func(tb testing.TB) store.Backend { return sqlitetest.Open(tb) }}}
	if os.Getenv("PERFUSION_TEST_DATABASE_URL") != "" {
		backends = append(backends, struct {
			name string
			open func(testing.TB) store.Backend
		}{"postgres", func(tb testing.TB) store.Backend { return pgtest.Open(tb) }})
	}
	for _, be := range backends {
		for _, n := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/watchers=%d", be.name, n), func(b *testing.B) { benchFanout(b, be.open(b), n) })
		}
	}
}

func benchFanout(b *testing.B, backend store.Backend, watchers int) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := server.New(server.Config{Store: store.New(backend, store.Config{}), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ReadinessInterval: 20 * time.Millisecond})
	go srv.Serve(lis)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	dial := func() *grpc.ClientConn {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		return conn
	}
	conn := dial()
	created, err := pb.NewCaseServiceClient(conn).CreateCase(as(perfusionist), &pb.CreateCaseRequest{CaseId: uuid.NewString(),
		Kind: pb.CaseKind_CASE_KIND_CPB, Site: "MAIN", Room: "OR-B", ScheduledStart: timestamppb.Now(), Details: sampleDetails()})
	if err != nil {
		b.Fatal(err)
	}
	caseID := created.GetCase().GetCaseId()
	ctx, cancel := context.WithCancel(as(reviewer))
	defer cancel()
	seen := make(chan struct{}, watchers*4)
	ready := make(chan struct{}, watchers)
	for i := range watchers {
		// A connection per ten watchers, as displays spread over devices.
		if i%10 == 0 {
			conn = dial()
		}
		s, err := pb.NewChartingServiceClient(conn).WatchCase(ctx, &pb.WatchCaseRequest{CaseId: caseID})
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				m, err := s.Recv()
				if err != nil {
					return
				}
				if m.GetCaughtUp() {
					select {
					case ready <- struct{}{}:
					default:
					}
				}
				for range m.GetEntries() {
					seen <- struct{}{}
				}
			}
		}()
	}
	for range watchers {
		<-ready
	}
	charting := pb.NewChartingServiceClient(dial())
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		began := time.Now()
		if _, err := charting.RecordEntry(as(perfusionist), &pb.RecordEntryRequest{Entry: noteEntry(caseID, fmt.Sprint("note ", i), began)}); err != nil {
			b.Fatal(err)
		}
		for range watchers {
			<-seen
		}
		lat = append(lat, time.Since(began))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
