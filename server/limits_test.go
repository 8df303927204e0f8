package server_test

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/server"
	"perfusion/server/servertest"
)

// limitsServer serves with the given limits and returns the address and a
// connection.
func limitsServer(t *testing.T, l server.Limits) (string, *grpc.ClientConn) {
	t.Helper()
	addr := servertest.Start(t, func(c *server.Config) { c.Limits = l })
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return addr, conn
}

func asPrincipal(principal string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), server.PrincipalHeader, principal)
}

// openUnary starts a unary call as a raw stream and sends no request, the
// way a client stalls mid-body: what the server does next shows whether it
// looked at the headers first and whether the call has a deadline.
func openUnary(t *testing.T, ctx context.Context, conn *grpc.ClientConn, method string) error {
	t.Helper()
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
	if err != nil {
		return err
	}
	return s.RecvMsg(&pb.GetCaseResponse{})
}

// TestGateRefusesBeforeBody: a call without plausible credentials is
// refused as soon as its headers arrive, without waiting for (or
// buffering) its body. Before, the server waited for the whole body.
func TestGateRefusesBeforeBody(t *testing.T) {
	_, conn := limitsServer(t, server.Limits{})
	for name, md := range map[string][]string{
		"no credentials": nil,
		"junk token":     {"authorization", "Bearer junk"},
		"junk JWT shape": {"authorization", "Bearer a.b.c"},
		"basic auth":     {"authorization", "Basic dXNlcjpwdw=="},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), md...), 5*time.Second)
			defer cancel()
			start := time.Now()
			err := openUnary(t, ctx, conn, "/perfusion.v1.CaseService/GetCase")
			if status.Code(err) != codes.Unauthenticated || time.Since(start) > 2*time.Second {
				t.Fatalf("stalled call with %s: %v after %v, want Unauthenticated at once", name, err, time.Since(start))
			}
		})
	}
	// Health needs no credentials.
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health: %v", err)
	}
}

// TestRecvLimit: a request over the receive limit is refused with
// ResourceExhausted from its length prefix; before, 16 MiB were accepted.
func TestRecvLimit(t *testing.T) {
	_, conn := limitsServer(t, server.Limits{})
	big := strings.Repeat("x", 2<<20)
	_, err := pb.NewCaseServiceClient(conn).GetCase(asPrincipal("alice"), &pb.GetCaseRequest{CaseId: big})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("2 MiB request: %v, want ResourceExhausted", err)
	}
}

// TestMaxBatchFitsRecvLimit: the largest valid sample batch (10,000
// samples with the widest encodings) fits the receive limit with room.
func TestMaxBatchFitsRecvLimit(t *testing.T) {
	b := &pb.SampleBatch{SourceId: strings.Repeat("s", 64), Sequence: 1 << 62}
	per := charting.MaxSamplesPerBatch / 256
	for ch := 0; ch < 256; ch++ {
		s := &pb.SampleSeries{Channel: strings.Repeat("c", 64)}
		for i := 0; i < per+1 && ch*per+i < charting.MaxSamplesPerBatch; i++ {
			s.OccurredAtUnixMs = append(s.OccurredAtUnixMs, 1<<62+int64(i))
			s.Values = append(s.Values, 1.5)
			s.InvalidIndexes = append(s.InvalidIndexes, 1<<30+int32(i))
		}
		b.Series = append(b.Series, s)
	}
	size := proto.Size(&pb.StreamSamplesRequest{Message: &pb.StreamSamplesRequest_Batch{Batch: b}})
	t.Logf("largest sample batch: %d bytes; receive limit %d", size, server.DefaultMaxRecvMessageSize)
	if size*3 > server.DefaultMaxRecvMessageSize {
		t.Fatalf("a maximal batch (%d bytes) leaves too little room under the receive limit", size)
	}
}

// TestUnaryDeadline: a unary call whose body never comes ends at the
// server's deadline, not the client's. Before, the server waited as long
// as the client did.
func TestUnaryDeadline(t *testing.T) {
	_, conn := limitsServer(t, server.Limits{CallTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(asPrincipal("alice"), 20*time.Second)
	defer cancel()
	start := time.Now()
	err := openUnary(t, ctx, conn, "/perfusion.v1.CaseService/GetCase")
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > 5*time.Second {
		t.Fatalf("stalled unary call: %v after %v, want DeadlineExceeded after about 300 ms", err, time.Since(start))
	}
}

// TestStreamsPerPrincipal: one principal may hold MaxStreamsPerPrincipal
// streams; one more is ResourceExhausted, another principal is unaffected,
// and a closed stream frees its place. Before, one token opened 2,000.
func TestStreamsPerPrincipal(t *testing.T) {
	_, conn := limitsServer(t, server.Limits{MaxStreamsPerPrincipal: 3})
	cs, err := pb.NewCaseServiceClient(conn).CreateCase(asPrincipal("alice"), &pb.CreateCaseRequest{Kind: pb.CaseKind_CASE_KIND_ECMO, Site: "MAIN", Room: "ICU-1", ScheduledStart: timestamppb.Now()})
	if err != nil {
		t.Fatal(err)
	}
	charting := pb.NewChartingServiceClient(conn)
	watch := func(who string) (context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(as(who))
		s, err := charting.WatchCase(ctx, &pb.WatchCaseRequest{CaseId: cs.GetCase().GetCaseId()})
		if err == nil {
			_, err = s.Recv() // the snapshot, or the refusal
		}
		if err != nil {
			cancel()
		}
		return cancel, err
	}
	var open []context.CancelFunc
	for i := 0; i < 3; i++ {
		cancel, err := watch("alice")
		if err != nil {
			t.Fatalf("stream %d: %v", i+1, err)
		}
		open = append(open, cancel)
	}
	defer func() {
		for _, c := range open {
			c()
		}
	}()
	if _, err := watch("alice"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("4th stream of one principal: %v, want ResourceExhausted", err)
	}
	cancel, err := watch("bob")
	if err != nil {
		t.Fatalf("another principal: %v", err)
	}
	cancel()
	open[0]()
	deadline := time.Now().Add(5 * time.Second)
	for {
		cancel, err := watch("alice")
		if err == nil {
			open[0] = cancel
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("after closing one: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHandshakeTimeout: a connection that never speaks is closed after
// the connection timeout. Before, gRPC's 120 s applied.
func TestHandshakeTimeout(t *testing.T) {
	addr, _ := limitsServer(t, server.Limits{ConnectionTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, c) // the server's settings, then EOF or reset
	if time.Since(start) > 5*time.Second {
		t.Fatalf("silent connection held %v (%v), want closed after about 300 ms", time.Since(start), err)
	}
}

// TestConnectionLimit: beyond MaxConnections a new connection is not
// served until one closes.
func TestConnectionLimit(t *testing.T) {
	addr, _ := limitsServer(t, server.Limits{MaxConnections: 2, ConnectionTimeout: 30 * time.Second})
	var silent []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	time.Sleep(100 * time.Millisecond) // both accepted
	check := func(d time.Duration) error {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := check(500 * time.Millisecond); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("third connection at the limit: %v, want it kept waiting", err)
	}
	silent[0].Close()
	if err := check(10 * time.Second); err != nil {
		t.Fatalf("after one closed: %v", err)
	}
}

// TestIdleConnectionClosed: a connection without calls is closed after
// MaxConnectionIdle; the client goes idle and reconnects on its next call.
func TestIdleConnectionClosed(t *testing.T) {
	_, conn := limitsServer(t, server.Limits{MaxConnectionIdle: 300 * time.Millisecond})
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for st := conn.GetState(); st != connectivity.Idle; st = conn.GetState() {
		if !conn.WaitForStateChange(ctx, st) {
			t.Fatalf("connection still %v after 5 s idle, want closed after about 300 ms", st)
		}
	}
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("call after the idle close: %v", err)
	}
}
