package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/store/postgres/pgtest"
)

// daemon runs the real perfusiond binary as a child process, so the test
// can kill it the way a power cut or an OOM kill would.
type daemon struct {
	t    *testing.T
	bin  string
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
}

// buildDaemon builds a test binary (-tags devauth): the crash test names
// its caller with the development header, which ordinary builds lack.
func buildDaemon(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "perfusiond")
	out, err := exec.Command("go", "build", "-tags", "devauth", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build perfusiond: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (d *daemon) start() {
	d.t.Helper()
	cmd := exec.Command(d.bin, d.args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if !testing.Verbose() {
		cmd.Stdout, cmd.Stderr = nil, nil
	}
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start perfusiond: %v", err)
	}
	d.mu.Lock()
	d.cmd = cmd
	d.mu.Unlock()
}

func (d *daemon) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		_ = d.cmd.Process.Signal(syscall.SIGKILL)
		_ = d.cmd.Wait()
		d.cmd = nil
	}
}

func waitServing(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.Status == healthpb.HealthCheckResponse_SERVING {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("perfusiond did not become SERVING")
}

// crashBatch is the deterministic content of one batch, so a resend after a
// crash is byte-identical to the first send.
func crashBatch(source string, seq int64, startMs int64, channels []string, perBatch int) *pb.SampleBatch {
	b := &pb.SampleBatch{SourceId: source, Sequence: seq}
	for ci, ch := range channels {
		s := &pb.SampleSeries{Channel: ch}
		for i := 0; i < perBatch; i++ {
			s.OccurredAtUnixMs = append(s.OccurredAtUnixMs, startMs+(seq-1)*int64(perBatch)*1000+int64(i)*1000)
			v := float64(30 + (int(seq)+i+ci)%10) // plausible for pressures, temperatures, FiO2…
			if ch == "pump_flow" || ch == "sweep_flow" {
				v /= 10 // …and 3.0–3.9 L/min for flows
			}
			s.Values = append(s.Values, v)
		}
		b.Series = append(b.Series, s)
	}
	return b
}

// TestCrashSafety kills the server with SIGKILL at random points during
// ingest, restarts it, lets each client resend from the sequence the server
// reports, and proves that no acknowledged sample is lost, none is stored
// twice, and the record verifies.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("TestCrashSafety: builds and kills the server; skipped in -short")
	}
	dsn := pgtest.DSN(t)
	addr := freeAddr(t)
	d := &daemon{t: t, bin: buildDaemon(t), args: []string{"--listen", addr, "--http-listen", "127.0.0.1:0", "--database-url", dsn, "--dev-header-auth"}}
	d.start()
	t.Cleanup(d.kill)

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitServing(t, conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-perfusion-principal", "gateway-crash-test")
	cs, err := pb.NewCaseServiceClient(conn).CreateCase(ctx, &pb.CreateCaseRequest{Kind: pb.CaseKind_CASE_KIND_CPB, Site: "MAIN", Room: "OR-1", ScheduledStart: timestamppb.Now()})
	if err != nil {
		t.Fatal(err)
	}
	caseID := cs.Case.CaseId

	const sources, batchesPerSource, perBatch, kills = 4, 150, 10, 4
	channels := []string{"pump_flow", "pump_speed", "arterial_line_pressure", "venous_line_pressure", "reservoir_level",
		"sweep_flow", "fio2", "temp_arterial_outlet", "temp_venous_inlet", "map"}
	startMs := time.Now().Add(-2 * time.Hour).UnixMilli()

	var acked ackLog
	done := make(chan struct{})
	var wg sync.WaitGroup
	began := time.Now()
	for s := 0; s < sources; s++ {
		wg.Add(1)
		go func(source string) {
			defer wg.Done()
			streamUntilAllAcked(t, ctx, conn, caseID, source, batchesPerSource, func(seq int64) *pb.SampleBatch {
				return crashBatch(source, seq, startMs, channels, perBatch)
			}, &acked)
		}(fmt.Sprintf("hlm-%d", s))
	}
	go func() { wg.Wait(); close(done) }()

	// Kill at random points spread over the ingest, chosen by progress
	// rather than by time, so the crashes land mid-ingest however fast the
	// server is.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	total := int64(sources * batchesPerSource)
	killed := 0
	for killed < kills {
		slice := total / (kills + 1)
		threshold := slice*int64(killed+1) - rng.Int64N(slice/2)
		if !waitForAcks(&acked, threshold, done) {
			t.Fatalf("ingest finished after %d of %d SIGKILLs: the server was not crashed mid-ingest", killed, kills)
		}
		d.kill()
		killed++
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		d.start()
	}
	<-done
	elapsed := time.Since(began)
	samples := sources * batchesPerSource * perBatch * len(channels)
	t.Logf("ingest: %d samples in %d batches over %v with %d SIGKILLs: %.0f samples/s", samples, sources*batchesPerSource, elapsed.Round(time.Millisecond), killed, float64(samples)/elapsed.Seconds())

	waitServing(t, conn)
	checkExactlyOnce(t, ctx, conn, caseID, sources, batchesPerSource, perBatch, channels, &acked)
	v, err := pb.NewRecordServiceClient(conn).VerifyRecord(ctx, &pb.VerifyRecordRequest{CaseId: caseID})
	if err != nil {
		t.Fatal(err)
	}
	if !v.Ok || v.SampleBatchesVerified != sources*batchesPerSource || v.SamplesVerified != int64(samples) {
		t.Fatalf("verify after crashes: %v", v)
	}
}

// streamUntilAllAcked sends batches 1..n of one source, reconnecting after
// every failure and resending from the server's reported watermark, until
// every batch is acknowledged.
func streamUntilAllAcked(t *testing.T, ctx context.Context, conn *grpc.ClientConn, caseID, source string, n int64, mk func(int64) *pb.SampleBatch, acked *ackLog) {
	client := pb.NewChartingServiceClient(conn)
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		done, err := streamOnce(ctx, client, caseID, source, n, mk, acked)
		if done {
			return
		}
		switch status.Code(err) {
		case codes.OK, codes.Unavailable, codes.Canceled, codes.Unknown:
			time.Sleep(20 * time.Millisecond) // the server is down or restarting
		default:
			t.Errorf("%s: the server refused the stream: %v", source, err)
			return
		}
	}
	t.Errorf("%s: not every batch was acknowledged within the deadline", source)
}

func streamOnce(ctx context.Context, client pb.ChartingServiceClient, caseID, source string, n int64, mk func(int64) *pb.SampleBatch, acked *ackLog) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := client.StreamSamples(ctx)
	if err != nil {
		return false, err
	}
	if err := st.Send(&pb.StreamSamplesRequest{Message: &pb.StreamSamplesRequest_Open{Open: &pb.OpenSampleStream{CaseId: caseID, SourceIds: []string{source}}}}); err != nil {
		return false, err
	}
	first, err := st.Recv()
	if err != nil {
		return false, err
	}
	var from int64
	for _, p := range first.GetOpened().GetPositions() {
		if p.SourceId == source {
			from = p.LastCommittedSequence
		}
	}
	if from >= n {
		return true, nil
	}
	sendErr := make(chan error, 1)
	go func() {
		for seq := from + 1; seq <= n; seq++ {
			if err := st.Send(&pb.StreamSamplesRequest{Message: &pb.StreamSamplesRequest_Batch{Batch: mk(seq)}}); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- st.CloseSend()
	}()
	for {
		r, err := st.Recv()
		if err != nil {
			return false, errors.Join(err, <-sendErr)
		}
		a := r.GetAck()
		acked.record(a.SourceId, a.Sequence)
		if a.Sequence == n && a.LastCommittedSequence == n {
			return true, nil
		}
	}
}

func checkExactlyOnce(t *testing.T, ctx context.Context, conn *grpc.ClientConn, caseID string, sources int, batches int64, perBatch int, channels []string, acked *ackLog) {
	t.Helper()
	client := pb.NewChartingServiceClient(conn)
	missing, extra := 0, 0
	for s := 0; s < sources; s++ {
		source := fmt.Sprintf("hlm-%d", s)
		r, err := client.QuerySamples(ctx, &pb.QuerySamplesRequest{CaseId: caseID, SourceId: source})
		if err != nil {
			t.Fatal(err)
		}
		for _, series := range r.Raw {
			seen := make(map[int64]int)
			for _, ts := range series.OccurredAtUnixMs {
				seen[ts]++
			}
			for _, c := range seen {
				if c > 1 {
					extra += c - 1
				}
			}
			if len(seen) != int(batches)*perBatch {
				missing += int(batches)*perBatch - len(seen)
			}
		}
		if len(r.Raw) != len(channels) {
			t.Errorf("%s: %d channels stored, want %d", source, len(r.Raw), len(channels))
		}
	}
	// Every batch is stored, so every acknowledged one is; count the acks
	// to show the test saw acknowledgements from several server lives.
	nAcked := 0
	acked.batches.Range(func(any, any) bool { nAcked++; return true })
	if missing != 0 || extra != 0 {
		t.Fatalf("+%d missing, -%d extra samples (%d batches acknowledged)", missing, extra, nAcked)
	}
	t.Logf("exactly once: %d batches acknowledged, every sample stored once", nAcked)
}

// ackLog records which batches were acknowledged, and how many acks
// arrived, for the kill schedule.
type ackLog struct {
	batches sync.Map // "source/seq" → true
	n       atomic.Int64
}

func (a *ackLog) record(source string, seq int64) {
	a.batches.Store(fmt.Sprintf("%s/%d", source, seq), true)
	a.n.Add(1)
}

// waitForAcks waits until at least n acks arrived; false when the ingest
// finished first.
func waitForAcks(a *ackLog, n int64, done <-chan struct{}) bool {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for a.n.Load() < n {
		select {
		case <-done:
			return false
		case <-tick.C:
		}
	}
	return true
}
