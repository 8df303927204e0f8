package main

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	pb "perfusion/api/perfusion/v1"
)

// streamSamples stores one batch: pump_flow and an arterial temperature,
// one sample a second for 10 s ending 10 s ago, the fourth flow invalid.
func streamSamples(t *testing.T, addr, caseID string) time.Time {
	t.Helper()
	start := time.Now().Add(-20 * time.Second).Truncate(time.Second)
	streamBatchFrom(t, addr, caseID, "hlm-1", start)
	return start
}

// streamBatchFrom sends one batch of ten seconds of pump flow (one reading
// invalid) and temperature from source, starting at start.
func streamBatchFrom(t *testing.T, addr, caseID, source string, start time.Time) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-perfusion-principal", "gw-1"), 10*time.Second)
	defer cancel()
	st, err := pb.NewChartingServiceClient(conn).StreamSamples(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&pb.StreamSamplesRequest{Message: &pb.StreamSamplesRequest_Open{Open: &pb.OpenSampleStream{CaseId: caseID, SourceIds: []string{source}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatalf("open: %v", err)
	}
	var ts []int64
	var flow, temp []float64
	for i := 0; i < 10; i++ {
		ts = append(ts, start.Add(time.Duration(i)*time.Second).UnixMilli())
		flow = append(flow, 4+float64(i)/10)
		temp = append(temp, 32)
	}
	batch := &pb.SampleBatch{SourceId: source, Sequence: 1, Series: []*pb.SampleSeries{
		{Channel: "pump_flow", OccurredAtUnixMs: ts, Values: flow, InvalidIndexes: []int32{3}},
		{Channel: "temp_arterial_outlet", OccurredAtUnixMs: ts, Values: temp},
	}}
	if err := st.Send(&pb.StreamSamplesRequest{Message: &pb.StreamSamplesRequest_Batch{Batch: batch}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatalf("ack: %v", err)
	}
	st.CloseSend()
}

func TestSamplesQuery(t *testing.T) {
	addr := startServer(t)
	r := ctl(t, addr, "case", "create", "--kind", "cpb", "--site", "MAIN", "--room", "OR-1", "--start", "now")
	mustCode(t, r, exitOK)
	caseID := uuidRE.FindString(r.stdout)
	start := streamSamples(t, addr, caseID)
	from, to := start.UTC().Format(time.RFC3339), start.Add(10*time.Second).UTC().Format(time.RFC3339)

	r = ctl(t, addr, "samples", "query", caseID, "--channels", "pump_flow,temp_arterial_outlet", "--from", from, "--to", to, "--buckets", "2")
	mustCode(t, r, exitOK)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "pump_flow (L/min)") || !strings.Contains(lines[0], "temp_arterial_outlet") {
		t.Fatalf("trend table:\n%s", r.stdout)
	}
	// First bucket: 4.0, 4.1, 4.2, (invalid), 4.4 → mean 4.175.
	if !strings.Contains(lines[1], "4.175") || !strings.Contains(lines[1], "32") || !strings.Contains(lines[2], "4.7") {
		t.Fatalf("trend values:\n%s", r.stdout)
	}

	// One-second buckets: the fourth holds only the invalid reading, and
	// must not be charted as a flow of 0.
	r = ctl(t, addr, "samples", "query", caseID, "--channels", "pump_flow", "--from", from, "--to", to, "--buckets", "10")
	mustCode(t, r, exitOK)
	if lines = strings.Split(strings.TrimRight(r.stdout, "\n"), "\n"); len(lines) != 11 || !strings.HasSuffix(strings.TrimSpace(lines[4]), "invalid") {
		t.Fatalf("bucket of only invalid readings:\n%s", r.stdout)
	}

	r = ctl(t, addr, "samples", "query", caseID, "--channels", "pump_flow", "--buckets", "0")
	mustCode(t, r, exitOK)
	if n := strings.Count(r.stdout, "\n"); n != 11 || !strings.Contains(r.stdout, "invalid") {
		t.Fatalf("raw table (%d lines):\n%s", n, r.stdout)
	}

	r = ctl(t, addr, "samples", "query", caseID, "--channels", "pump_flow", "--from", from, "--to", to, "--buckets", "2", "--stats")
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "INVALID") || !strings.Contains(r.stdout, "5s") {
		t.Fatalf("stats table:\n%s", r.stdout)
	}

	r = ctl(t, addr, "samples", "query", caseID, "--buckets", "3", "--output", "json")
	mustCode(t, r, exitOK)
	var resp pb.QuerySamplesResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil || len(resp.GetDownsampled()) != 2 {
		t.Fatalf("json: %v, %d series", err, len(resp.GetDownsampled()))
	}

	// The verify count includes the batch.
	r = ctl(t, addr, "record", "verify", caseID)
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "1 sample batches (20 samples)") {
		t.Fatalf("verify:\n%s", r.stdout)
	}
}

// fakeRecord answers VerifyRecord with a failure, as the real server does
// for an altered record (which the append-only database will not let a
// test produce).
type fakeRecord struct {
	pb.UnimplementedRecordServiceServer
}

func (fakeRecord) VerifyRecord(_ context.Context, req *pb.VerifyRecordRequest) (*pb.VerifyRecordResponse, error) {
	if req.GetCaseId() == "" {
		return nil, status.Error(codes.InvalidArgument, "case_id required")
	}
	return &pb.VerifyRecordResponse{Ok: false, LinksVerified: 6, FirstBadLink: &pb.BadLink{Sequence: 7, Kind: "entry", Ref: "e-7",
		Problem: pb.VerificationProblem_VERIFICATION_PROBLEM_CONTENT_ALTERED, Detail: "content digest differs"}}, nil
}

func TestVerifyFailureExit5(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterRecordServiceServer(gs, fakeRecord{})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	addr := lis.Addr().String()

	r := ctl(t, addr, "record", "verify", "some-case")
	mustCode(t, r, exitVerifyFail)
	if !strings.Contains(r.stderr, "link 7 (entry e-7): content-altered — content digest differs") || !strings.HasPrefix(r.stdout, "FAILED") {
		t.Fatalf("verify failure output:\nstdout %s\nstderr %s", r.stdout, r.stderr)
	}
	r = ctl(t, addr, "record", "verify", "some-case", "--output", "json")
	mustCode(t, r, exitVerifyFail)
	var resp pb.VerifyRecordResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil || resp.GetFirstBadLink().GetSequence() != 7 {
		t.Fatalf("json: %v\n%s", err, r.stdout)
	}
}

// TestSamplesSources lists the one source streamSamples used, whose newest
// sample was 11 s old on arrival: its lag shows, in the table and as JSON.
func TestSamplesSources(t *testing.T) {
	addr := startServer(t)
	r := ctl(t, addr, "case", "create", "--kind", "cpb", "--site", "MAIN", "--room", "OR-1", "--start", "now")
	mustCode(t, r, exitOK)
	caseID := uuidRE.FindString(r.stdout)
	streamSamples(t, addr, caseID)

	r = ctl(t, addr, "samples", "sources", caseID)
	mustCode(t, r, exitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "SOURCE") {
		t.Fatalf("want a header and one source:\n%s", r.stdout)
	}
	f := strings.Fields(lines[1])
	if f[0] != "hlm-1" || f[1] != "1" || f[2] != "20" || f[3] != "1" || !strings.HasPrefix(f[len(f)-3], "+1") || f[len(f)-1] != "ok" {
		t.Fatalf("source row %q: want hlm-1, 1 batch, 20 samples, acked through 1, a lag of about +11s, clock ok", lines[1])
	}

	// A gateway whose clock reset to 1970: stored, and shown as such.
	streamBatchFrom(t, addr, caseID, "hlm-reset", time.Unix(0, 0))
	r = ctl(t, addr, "samples", "sources", caseID)
	mustCode(t, r, exitOK)
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[2], "hlm-reset") || !strings.HasSuffix(lines[2], "IMPLAUSIBLE") ||
		!strings.Contains(lines[3], "warning: hlm-reset sent 20 sample(s) in 1 batch(es) timed far outside the case") {
		t.Fatalf("want the reset clock flagged and a warning:\n%s", r.stdout)
	}

	r = ctl(t, addr, "samples", "sources", caseID, "--output", "json")
	mustCode(t, r, exitOK)
	var resp struct {
		Sources []struct {
			SourceID         string `json:"sourceId"`
			MinReceiptLagMs  string `json:"minReceiptLagMs"`
			ClockImplausible bool   `json:"clockImplausible"`
		} `json:"sources"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if len(resp.Sources) != 2 || resp.Sources[0].SourceID != "hlm-1" || resp.Sources[0].ClockImplausible || !resp.Sources[1].ClockImplausible {
		t.Fatalf("json: %s", r.stdout)
	}
	lag, err := strconv.ParseInt(resp.Sources[0].MinReceiptLagMs, 10, 64)
	if err != nil || lag < 11_000 || lag > 20_000 {
		t.Fatalf("min receipt lag %q, want about 11 s", resp.Sources[0].MinReceiptLagMs)
	}
	mustCode(t, ctl(t, addr, "samples", "sources"), exitUsage)
}

// anchoredRecord answers VerifyRecord OK only when asked to check against
// the checkpoint log.
type anchoredRecord struct {
	pb.UnimplementedRecordServiceServer
}

func (anchoredRecord) VerifyRecord(_ context.Context, req *pb.VerifyRecordRequest) (*pb.VerifyRecordResponse, error) {
	if !req.GetAgainstCheckpoints() {
		return &pb.VerifyRecordResponse{Ok: false, FirstBadLink: &pb.BadLink{Sequence: 1, Problem: pb.VerificationProblem_VERIFICATION_PROBLEM_ANCHOR_MISMATCH}}, nil
	}
	return &pb.VerifyRecordResponse{Ok: true, LinksVerified: 9}, nil
}

// TestVerifyAgainstCheckpoints: --against-checkpoints asks the server to
// check the chain against its checkpoint log.
func TestVerifyAgainstCheckpoints(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterRecordServiceServer(gs, anchoredRecord{})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	r := ctl(t, lis.Addr().String(), "record", "verify", "some-case", "--against-checkpoints")
	mustCode(t, r, exitOK)
	if !strings.HasPrefix(r.stdout, "OK: 9 links") {
		t.Fatalf("stdout %s", r.stdout)
	}
}
