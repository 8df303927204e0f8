package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
	"perfusion/store"
)

// TestAuthentication: every API call needs a principal; health and
// reflection do not.
func TestAuthentication(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		f := newFixture(t, b)
		e := f.e
		before := f.snapshot(t)
		req := f.entry(nil)
		for name, ctx := range map[string]context.Context{
			"missing":  context.Background(),
			"empty":    as(""),
			"too long": as(strings.Repeat("p", server.MaxPrincipalLen+1)),
			"twice":    metadata.AppendToOutgoingContext(as("a"), server.PrincipalHeader, "b"),
		} {
			_, err := e.charting.RecordEntry(ctx, req)
			wantCode(t, "record entry with principal "+name, err, codes.Unauthenticated)
			s, err := e.charting.StreamSamples(ctx)
			if err == nil {
				_, err = s.Recv()
			}
			wantCode(t, "stream with principal "+name, err, codes.Unauthenticated)
		}
		_, err := e.cases.GetCase(context.Background(), &pb.GetCaseRequest{CaseId: f.caseID})
		wantCode(t, "read without principal", err, codes.Unauthenticated)
		f.assertUnchanged(t, before)

		// The longest allowed principal is the entry's author.
		long := strings.Repeat("p", server.MaxPrincipalLen)
		resp, err := e.charting.RecordEntry(as(long), req)
		if err != nil || resp.GetEntry().GetAuthor() != long {
			t.Fatalf("record as a 128-character principal: %v, author %q", err, resp.GetEntry().GetAuthor())
		}

		// Health and reflection are open.
		if _, err := healthpb.NewHealthClient(e.conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("health without principal: %v", err)
		}
		rc, err := reflectionpb.NewServerReflectionClient(e.conn).ServerReflectionInfo(context.Background())
		if err != nil {
			t.Fatalf("reflection: %v", err)
		}
		if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatalf("reflection send: %v", err)
		}
		listed, err := rc.Recv()
		if err != nil {
			t.Fatalf("reflection without principal: %v", err)
		}
		var names []string
		for _, s := range listed.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		for _, want := range []string{"perfusion.v1.CaseService", "perfusion.v1.ChartingService", "perfusion.v1.RecordService", "grpc.health.v1.Health"} {
			if !strings.Contains(strings.Join(names, " "), want) {
				t.Fatalf("reflection lists %v, missing %s", names, want)
			}
		}
		rc.CloseSend()
	})
}

// TestInternalErrorsAndPanics: a failing or panicking backend yields
// Internal with a generic message; the detail is logged, never sent, and a
// panic's value (which may carry data) is not even logged.
func TestInternalErrorsAndPanics(t *testing.T) {
	fb := &faultyBackend{Backend: sqliteBackend(t)}
	e := start(t, fb)
	id := e.createCase("OR-1").GetCaseId()

	fb.fail.Store(true)
	_, err := e.cases.GetCase(as(reviewer), &pb.GetCaseRequest{CaseId: id})
	st := wantCode(t, "failing backend", err, codes.Internal)
	if st.Message() != "internal error" || len(st.Details()) != 0 {
		t.Fatalf("internal error sent %q %v to the client", st.Message(), st.Details())
	}
	if !strings.Contains(e.logs.String(), "internal error") || !strings.Contains(e.logs.String(), "query failed") {
		t.Fatalf("internal error not logged")
	}
	fb.fail.Store(false)

	fb.panics.Store(true)
	_, err = e.cases.GetCase(as(reviewer), &pb.GetCaseRequest{CaseId: id})
	st = wantCode(t, "panicking backend", err, codes.Internal)
	if st.Message() != "internal error" {
		t.Fatalf("panic sent %q to the client", st.Message())
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "panic in handler") || !strings.Contains(logs, "faultyBackend") {
		t.Fatalf("panic not logged with its stack")
	}
	if strings.Contains(logs, "panic value carrying") {
		t.Fatalf("panic value reached the log")
	}
	fb.panics.Store(false)

	// The server survived both.
	ctx, cancel := context.WithTimeout(as(reviewer), 5*time.Second)
	defer cancel()
	if _, err := e.cases.GetCase(ctx, &pb.GetCaseRequest{CaseId: id}); err != nil {
		t.Fatalf("after a panic: %v", err)
	}
	e.assertNoPHI()
}
