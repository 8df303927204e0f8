package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/store/postgres/pgtest"
)

// scrape reads the metrics endpoint into name{labels} → value.
func scrape(t *testing.T, addr net.Addr) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape: %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// sum adds the values of every series whose name{labels} starts with
// prefix and contains every part.
func sum(m map[string]float64, prefix string, parts ...string) float64 {
	total := 0.0
next:
	for k, v := range m {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		for _, p := range parts {
			if !strings.Contains(k, p) {
				continue next
			}
		}
		total += v
	}
	return total
}

// TestMetricsMoveUnderLoad serves on PostgreSQL with the metrics endpoint
// on, streams device data through a small ingest queue, charts, signs a
// case whose HL7 destination is down, makes the access audit fail once,
// and checks that every metric operators page on moved.
func TestMetricsMoveUnderLoad(t *testing.T) {
	dsn := pgtest.DSN(t)
	// A port nobody listens on: the delivery is attempted and retried.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	metricsAddr := make(chan net.Addr, 1)
	srv := startServeApp(t, nil, func(a *app) {
		a.devHeaderAuth = true
		a.onMetricsListen = func(addr net.Addr) { metricsAddr <- addr }
	}, "--database-url", dsn, "--dev-header-auth", "--log-format", "text", "--metrics-listen", "127.0.0.1:0",
		"--compact-interval", "50ms", "--compact-run-batches", "4", "--ingest-queue-samples", "400", "--commit-delay", "20ms",
		"--hl7-mllp-addr", deadAddr, "--hl7-receiving-application", "EHR", "--delivery-poll-interval", "50ms")
	maddr := <-metricsAddr
	before := scrape(t, maddr)
	if sum(before, "perfusion_build_info") != 1 || sum(before, "go_goroutines") == 0 {
		t.Fatalf("first scrape has no build info or Go runtime metrics")
	}

	conn, err := grpc.NewClient(srv.addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitServing(t, conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-perfusion-principal", "metrics-test")
	cases := pb.NewCaseServiceClient(conn)
	c, err := cases.CreateCase(ctx, &pb.CreateCaseRequest{CaseId: uuid.NewString(), Kind: pb.CaseKind_CASE_KIND_CPB, Site: "MAIN", Room: "OR-1",
		ScheduledStart: timestamppb.Now(), Details: &pb.CaseDetails{Patient: &pb.Patient{Mrn: "MRN-METRICS", MrnAssigningAuthority: "MAIN", HeightCm: 170, WeightKg: 70}}})
	if err != nil {
		t.Fatal(err)
	}
	id := c.GetCase().GetCaseId()

	// Four gateways at once, 40 batches of 10 channels × 10 samples each:
	// 100 samples a batch against a 400-sample queue, so some wait.
	channels := []string{"pump_flow", "pump_speed", "arterial_line_pressure", "venous_line_pressure", "reservoir_level",
		"sweep_flow", "fio2", "temp_arterial_outlet", "temp_venous_inlet", "map"}
	startMs := time.Now().Add(-2 * time.Hour).UnixMilli()
	var acked ackLog
	done := make(chan struct{}, 4)
	for s := 0; s < 4; s++ {
		source := fmt.Sprintf("hlm-%d", s)
		go func() {
			streamUntilAllAcked(t, ctx, conn, id, source, 40, func(seq int64) *pb.SampleBatch {
				return crashBatch(source, seq, startMs, channels, 10)
			}, &acked)
			done <- struct{}{}
		}()
	}
	for range 4 {
		<-done
	}
	charting := pb.NewChartingServiceClient(conn)
	for i, typ := range []pb.EventType{pb.EventType_EVENT_TYPE_BYPASS_ON, pb.EventType_EVENT_TYPE_BYPASS_OFF} {
		if _, err := charting.RecordEntry(ctx, &pb.RecordEntryRequest{Entry: &pb.Entry{EntryId: uuid.NewString(), CaseId: id,
			OccurredAt: timestamppb.New(time.UnixMilli(startMs).Add(time.Duration(i) * time.Hour)), Detail: &pb.Entry_Event{Event: &pb.Event{Type: typ}}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := charting.RecordEntry(ctx, &pb.RecordEntryRequest{Entry: &pb.Entry{CaseId: "not-a-uuid"}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad entry: %v", err)
	}
	if _, err := cases.CloseCase(ctx, &pb.CloseCaseRequest{CaseId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := cases.SignCase(ctx, &pb.SignCaseRequest{CaseId: id, Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED, SignerDisplayName: "M T"}); err != nil {
		t.Fatal(err)
	}

	// The access audit refuses writes for a moment: the call fails
	// Unavailable and the failure is counted.
	db, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	if _, err := db.Exec(context.Background(), `ALTER TABLE access_events ADD CONSTRAINT metrics_test_refuse CHECK (false) NOT VALID`); err != nil {
		t.Fatal(err)
	}
	_, err = cases.GetCase(ctx, &pb.GetCaseRequest{CaseId: id})
	if _, derr := db.Exec(context.Background(), `ALTER TABLE access_events DROP CONSTRAINT metrics_test_refuse`); derr != nil {
		t.Fatal(derr)
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("GetCase while the audit refuses writes: %v, want Unavailable", err)
	}

	// Wait for the worker's failed attempt and the compactor's runs.
	var after map[string]float64
	deadline := time.Now().Add(30 * time.Second)
	for {
		after = scrape(t, maddr)
		if sum(after, "perfusion_delivery_attempts_total", `outcome="retry"`) > 0 && sum(after, "perfusion_compactor_runs_total") > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivery attempt or compaction within 30 s:\n%s", srv.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}

	const samples = 4 * 40 * 10 * 10
	for _, c := range []struct {
		name       string
		got, least float64
	}{
		{"samples acknowledged", sum(after, "perfusion_ingest_samples_total") - sum(before, "perfusion_ingest_samples_total"), samples},
		{"batches acknowledged", sum(after, "perfusion_ingest_batches_total") - sum(before, "perfusion_ingest_batches_total"), 160},
		{"ack latencies observed", sum(after, "perfusion_ingest_ack_latency_seconds_count"), 160},
		{"group commits", sum(after, "perfusion_ingest_commits_total", `result="ok"`), 1},
		{"commit sizes observed", sum(after, "perfusion_ingest_commit_batches_count"), 1},
		{"commit gathers observed", sum(after, "perfusion_ingest_commit_gather_seconds_count"), 1},
		{"backpressure waits", sum(after, "perfusion_ingest_backpressure_waits_total"), 1},
		{"queue bound", sum(after, "perfusion_ingest_queue_samples_limit"), 400},
		{"StreamSamples calls", sum(after, "perfusion_rpc_calls_total", "StreamSamples"), 4},
		{"refused RecordEntry", sum(after, "perfusion_rpc_calls_total", "RecordEntry", `code="InvalidArgument"`), 1},
		{"unary latencies", sum(after, "perfusion_rpc_duration_seconds_count", "RecordEntry"), 3},
		{"audit write failures", sum(after, "perfusion_access_audit_write_failures_total"), 1},
		{"pool acquires", sum(after, "perfusion_db_pool_acquires_total") - sum(before, "perfusion_db_pool_acquires_total"), 10},
		{"compactor passes", sum(after, "perfusion_compactor_passes_total", `result="ok"`), 1},
		{"delivery backlog", sum(after, "perfusion_delivery_backlog", `destination="hl7v2_mllp"`), 1},
		{"delivery backlog readable", after["perfusion_delivery_backlog_up"], 1},
		{"oldest undelivered age", sum(after, "perfusion_delivery_oldest_undelivered_seconds", `destination="hl7v2_mllp"`), 0.001},
		{"build info", sum(after, "perfusion_build_info"), 1},
		{"compactor last success", after["perfusion_compactor_last_success_timestamp_seconds"], float64(time.Now().Add(-time.Minute).Unix())},
	} {
		if c.got < c.least {
			t.Errorf("%s: %v, want at least %v", c.name, c.got, c.least)
		}
	}
	if in := sum(after, "perfusion_rpc_in_flight", "StreamSamples"); in != 0 {
		t.Errorf("open device streams after they all ended: %v", in)
	}
	if q := after["perfusion_ingest_queue_samples"]; q != 0 {
		t.Errorf("ingest queue after every batch was acknowledged: %v samples", q)
	}
}
