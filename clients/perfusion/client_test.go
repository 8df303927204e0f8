package perfusion

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
)

func bypassOn(caseID string) *pb.RecordEntryRequest {
	return &pb.RecordEntryRequest{Entry: &pb.Entry{CaseId: caseID, OccurredAt: timestamppb.Now(),
		Detail: &pb.Entry_Event{Event: &pb.Event{Type: pb.EventType_EVENT_TYPE_BYPASS_ON}}}}
}

// loseReplies is an interceptor that lets the first n calls of method reach
// the server and then reports failure with code instead of the answer, as
// when the network drops the reply.
func loseReplies(method string, n int32, code codes.Code) (grpc.UnaryClientInterceptor, *atomic.Int32) {
	var calls atomic.Int32
	return func(ctx context.Context, m string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, m, req, reply, cc, opts...)
		if m == method && calls.Add(1) <= n && err == nil {
			return status.Error(code, "reply lost (test)")
		}
		return err
	}, &calls
}

// TestRecordEntryRetriesLostReplies: the entry is stored on the first
// attempt, the replies are lost, the retries get "duplicate" — success —
// and exactly one entry is on the record.
func TestRecordEntryRetriesLostReplies(t *testing.T) {
	srv := startServer(t)
	for _, code := range []codes.Code{codes.Unavailable, codes.DeadlineExceeded} {
		t.Run(code.String(), func(t *testing.T) {
			lose, calls := loseReplies(pb.ChartingService_RecordEntry_FullMethodName, 2, code)
			c := dialTest(t, srv.addr, WithDialOptions(grpc.WithChainUnaryInterceptor(lose)))
			caseID := newCase(t, c)
			req := bypassOn(caseID)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := c.RecordEntry(ctx, req)
			if err != nil {
				t.Fatalf("RecordEntry: %v", err)
			}
			if _, err := uuid.Parse(req.GetEntry().GetEntryId()); err != nil {
				t.Fatalf("no entry id was assigned: %q", req.GetEntry().GetEntryId())
			}
			if !resp.GetDuplicate() || resp.GetEntry().GetEntryId() != req.GetEntry().GetEntryId() || calls.Load() != 3 {
				t.Fatalf("duplicate %v, id %s (sent %s), %d calls; want the stored entry after 3 calls",
					resp.GetDuplicate(), resp.GetEntry().GetEntryId(), req.GetEntry().GetEntryId(), calls.Load())
			}
			list, err := c.ListEntries(ctx, &pb.ListEntriesRequest{CaseId: caseID, IncludeHistory: true})
			if err != nil || len(list.GetEntries()) != 1 {
				t.Fatalf("ListEntries = %d entries, %v; want 1", len(list.GetEntries()), err)
			}
		})
	}
}

// TestRecordEntryWaitsOutAnOutage: with the network down the call keeps
// retrying and succeeds once the network is back.
func TestRecordEntryWaitsOutAnOutage(t *testing.T) {
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	c := dialTest(t, px.addr())
	caseID := newCase(t, c)
	px.refuse()
	time.AfterFunc(300*time.Millisecond, px.restore)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	resp, err := c.RecordEntry(ctx, bypassOn(caseID))
	if err != nil {
		t.Fatalf("RecordEntry: %v", err)
	}
	if resp.GetDuplicate() || time.Since(began) < 250*time.Millisecond {
		t.Fatalf("duplicate %v after %v: the outage was not waited out", resp.GetDuplicate(), time.Since(began))
	}

	// A deadline during an outage returns the last status, not a hang.
	px.refuse()
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	_, err = c.RecordEntry(short, bypassOn(caseID))
	if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
		t.Fatalf("RecordEntry during an outage = %v", err)
	}
	px.restore()
}

// TestErrorsStayStatuses: server errors come back as the server's status,
// and FieldViolations names the offending fields.
func TestErrorsStayStatuses(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.addr)
	ctx := context.Background()
	_, err := c.CreateCase(ctx, &pb.CreateCaseRequest{CaseId: uuid.NewString(), Site: "MAIN"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("CreateCase without kind = %v", err)
	}
	fields := map[string]bool{}
	for _, v := range FieldViolations(err) {
		fields[v.GetField()] = true
	}
	if !fields["kind"] || !fields["room"] {
		t.Fatalf("field violations %v; want kind and room", fields)
	}
	_, err = c.GetCase(ctx, &pb.GetCaseRequest{CaseId: uuid.NewString()})
	if status.Code(err) != codes.NotFound || FieldViolations(err) != nil {
		t.Fatalf("GetCase of an unknown case = %v", err)
	}
	if FieldViolations(nil) != nil || FieldViolations(errors.New("x")) != nil {
		t.Fatal("FieldViolations of a non-status error is not nil")
	}

	// Without the principal the server refuses; with one set by the caller
	// in the context, that one is used.
	anon, err := Dial(ctx, srv.addr, WithPerRPCCredentials(noCreds{}))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.ListCases(ctx, &pb.ListCasesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("anonymous call = %v", err)
	}
	own := metadata.AppendToOutgoingContext(ctx, PrincipalHeader, "someone-else")
	if _, err := c.ListCases(own, &pb.ListCasesRequest{}); err != nil {
		t.Fatalf("call with the caller's own principal: %v", err)
	}
	if _, err := Dial(ctx, srv.addr); err == nil {
		t.Fatal("Dial without an identity succeeded")
	}
}

// noCreds is a per-RPC credentials hook that adds nothing.
type noCreds struct{}

func (noCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return nil, nil
}
func (noCreds) RequireTransportSecurity() bool { return false }

func TestBackoffDelay(t *testing.T) {
	for attempt := 0; attempt < 40; attempt++ {
		d := backoffDelay(100*time.Millisecond, 5*time.Second, attempt)
		want := min(100*time.Millisecond<<min(attempt, 20), 5*time.Second)
		if d < want/2 || d > want {
			t.Fatalf("attempt %d: %v, want within [%v, %v]", attempt, d, want/2, want)
		}
	}
}
