package server_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
	"perfusion/server/servertest"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite/sqlitetest"
)

// noAudit hides the backend's access audit, so the server serves without
// one: the baseline of BenchmarkGetCaseAccessAudit.
type noAudit struct{ store.Backend }

// BenchmarkGetCaseAccessAudit measures what recording every patient-data
// read costs: GetCase over a real connection with the access audit (one
// insert per call) and without it, on the same backend in the same run.
//
//	PERFUSION_TEST_DATABASE_URL=… go test ./server -run XXX -bench GetCaseAccessAudit -benchtime 2000x
func BenchmarkGetCaseAccessAudit(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, audited := range []bool{false, true} {
			name := backend + "/without-audit"
			if audited {
				name = backend + "/audited"
			}
			b.Run(name, func(b *testing.B) {
				var be store.Backend
				if backend == "sqlite" {
					be = sqlitetest.Open(b)
				} else {
					be = pgtest.Open(b)
				}
				if !audited {
					be = noAudit{be}
				}
				addr := servertest.Start(b, func(c *server.Config) { c.Store = store.New(be, store.Config{}) })
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				cases := pb.NewCaseServiceClient(conn)
				ctx := as(perfusionist)
				id := uuid.NewString()
				var created error
				for range 100 { // the server turns ready within 20 ms
					if _, created = cases.CreateCase(ctx, &pb.CreateCaseRequest{CaseId: id, Kind: pb.CaseKind_CASE_KIND_CPB, Site: "MAIN", Room: "OR-1",
						ScheduledStart: timestamppb.New(time.Now().Truncate(time.Minute)), Details: sampleDetails()}); created == nil {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				if created != nil {
					b.Fatal(created)
				}
				b.ResetTimer()
				for range b.N {
					if _, err := cases.GetCase(context.WithoutCancel(ctx), &pb.GetCaseRequest{CaseId: id}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkAccessAuditParallel measures what chaining costs concurrent
// callers: 8 goroutines per core read cases over one connection, every
// read appending a link. "one-site" puts every link on one chain head (the
// cost a single global chain would have everywhere); "four-sites" spreads
// them over four sites' chains, as the per-site chain does in a system of
// several hospitals.
//
//	PERFUSION_TEST_DATABASE_URL=… go test ./server -run XXX -bench AccessAuditParallel -benchtime 2000x
func BenchmarkAccessAuditParallel(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, sites := range []int{1, 4} {
			name := backend + "/one-site"
			if sites > 1 {
				name = backend + "/four-sites"
			}
			b.Run(name, func(b *testing.B) {
				var be store.Backend
				if backend == "sqlite" {
					be = sqlitetest.Open(b)
				} else {
					be = pgtest.Open(b)
				}
				addr := servertest.Start(b, func(c *server.Config) { c.Store = store.New(be, store.Config{}) })
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				cases := pb.NewCaseServiceClient(conn)
				ctx := as(perfusionist)
				var ids []string
				for i := range sites {
					id := uuid.NewString()
					var created error
					for range 100 { // the server turns ready within 20 ms
						if _, created = cases.CreateCase(ctx, &pb.CreateCaseRequest{CaseId: id, Kind: pb.CaseKind_CASE_KIND_CPB, Site: []string{"MAIN", "NORTH", "SOUTH", "EAST"}[i],
							Room: "OR-1", ScheduledStart: timestamppb.New(time.Now().Truncate(time.Minute)), Details: sampleDetails()}); created == nil {
							break
						}
						time.Sleep(10 * time.Millisecond)
					}
					if created != nil {
						b.Fatal(created)
					}
					ids = append(ids, id)
				}
				var next atomic.Int64
				b.SetParallelism(8)
				b.ResetTimer()
				b.RunParallel(func(pb_ *testing.PB) {
					for pb_.Next() {
						id := ids[int(next.Add(1))%len(ids)]
						if _, err := cases.GetCase(context.WithoutCancel(ctx), &pb.GetCaseRequest{CaseId: id}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
