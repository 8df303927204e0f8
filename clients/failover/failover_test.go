package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/clients/perfusion"
)

// The drill's load: 100 device streams (one per case, as 100 operating
// rooms) at 10 samples a second on four channels, cut into a batch every
// 500 ms, and entry writers charting a note every 100 ms each.
const (
	drillCases     = 100
	entryWriters   = 8
	sampleEvery    = 100 * time.Millisecond
	flushEvery     = 500 * time.Millisecond
	entryEvery     = 100 * time.Millisecond
	warmUpAcks     = 1500 // batch acks before the fault
	afterFailover  = 4 * time.Second
	drillPrincipal = "failover-gateway"
)

var channels = []string{"pump_flow", "pump_speed", "arterial_line_pressure", "temp_arterial_outlet"}

// TestFailoverSynchronous: with Patroni's synchronous_mode and
// synchronous_mode_strict, killing the primary's machine loses nothing
// that was acknowledged, even when its standbys had fallen behind (their
// replication link held) just before.
func TestFailoverSynchronous(t *testing.T) {
	r := runDrill(t, clusterOptions{synchronous: true, nodes: 3})
	if r.lostBatches != 0 || r.lostEntries != 0 {
		t.Errorf("synchronous replication lost %d acknowledged batches and %d acknowledged entries", r.lostBatches, r.lostEntries)
	}
	if r.missingSamples != 0 {
		t.Errorf("%d samples sent and acknowledged are not stored", r.missingSamples)
	}
}

// TestFailoverAsynchronous: the same drill on Patroni's default,
// asynchronous replication. The primary acknowledges commits its standbys
// have not received; when it dies they are gone. The test fails if the
// drill did not provoke that loss, since then it would show nothing.
func TestFailoverAsynchronous(t *testing.T) {
	r := runDrill(t, clusterOptions{synchronous: false, nodes: 3})
	t.Logf("asynchronous replication lost %d of %d acknowledged batches and %d of %d acknowledged entries (%d samples)",
		r.lostBatches, r.ackedBatches, r.lostEntries, r.ackedEntries, r.missingSamples)
	if r.lostBatches+r.lostEntries == 0 {
		t.Errorf("no acknowledged write was lost: %d were acknowledged while the standbys' link was held, and the drill should have lost them", r.acksDuringHold)
	}
}

// drillResult is what a drill counted.
type drillResult struct {
	ackedBatches, lostBatches int
	ackedEntries, lostEntries int
	missingSamples            int
	acksDuringHold            int
}

// runDrill runs the failover drill on a fresh cluster and checks what
// holds in both modes: nothing stored twice, every case verifies, no
// Internal error reached a client, and the surviving server said
// NOT_SERVING while no database was writable and SERVING again after.
func runDrill(t *testing.T, o clusterOptions) drillResult {
	if testing.Short() {
		t.Skipf("%s: starts a PostgreSQL cluster; skipped in -short", t.Name())
	}
	tl := needTools(t, "patroni", "etcd", "postgres")
	bin := buildPerfusiond(t)
	c := startCluster(t, tl, o)
	ctx := context.Background()
	old := c.nodes[0]
	if err := execSQL(ctx, old.superDSN("postgres"), "CREATE DATABASE perfusion"); err != nil {
		t.Fatal(err)
	}

	// Two servers on the cluster. The multi-host connection string with
	// target_session_attrs=read-write makes each new connection try every
	// node and keep only the writable one: after a failover the pool's
	// next connection lands on the new primary without anyone telling the
	// server.
	logDir := t.TempDir()
	srvA := startServer(t, bin, logDir, "perfusiond-a", c.dsn("perfusion"))
	srvB := startServer(t, bin, logDir, "perfusiond-b", c.dsn("perfusion"))

	obs := newObserver()
	client, err := perfusion.Dial(ctx, srvA.addr+","+srvB.addr,
		perfusion.WithPrincipal(drillPrincipal),
		perfusion.WithBackoff(50*time.Millisecond, time.Second),
		perfusion.WithAttemptTimeout(5*time.Second),
		perfusion.WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))),
		perfusion.WithDialOptions(grpc.WithChainStreamInterceptor(obs.stream), grpc.WithChainUnaryInterceptor(obs.unary)))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	cases := make([]string, drillCases)
	for i := range cases {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := client.CreateCase(cctx, &pb.CreateCaseRequest{CaseId: uuid.NewString(), Kind: pb.CaseKind_CASE_KIND_CPB,
			Site: "MAIN", Room: fmt.Sprintf("OR-%d", i+1), ScheduledStart: timestamppb.Now()})
		cancel()
		if err != nil {
			t.Fatalf("create case %d: %v", i, err)
		}
		cases[i] = resp.Case.CaseId
	}

	// Health of the server that survives, every 100 ms.
	health := watchHealth(t, srvB.addr)

	// The load.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	streams := make([]*drillStream, drillCases)
	spool := t.TempDir()
	for i, id := range cases {
		s, err := perfusion.OpenSampleStreamer(ctx, client, id, "hlm-1", filepath.Join(spool, id),
			perfusion.StreamerOptions{FlushInterval: flushEvery, AckTimeout: 10 * time.Second, MaxReconnectDelay: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = &drillStream{caseID: id, s: s}
		wg.Add(1)
		go func(ds *drillStream) { defer wg.Done(); ds.feed(t, stop) }(streams[i])
	}
	entries := &entryLog{acked: map[string]time.Time{}}
	for w := 0; w < entryWriters; w++ {
		wg.Add(1)
		go func(w int) { defer wg.Done(); entries.write(client, cases, w, stop, obs) }(w)
	}

	// Warm up, then hold the replication link so the standbys fall behind,
	// as a congested network would; wait until the primary has
	// acknowledged writes the standbys lack (asynchronous), or 1.5 s
	// (synchronous: commits wait for the standby instead).
	waitUntil(t, 60*time.Second, "warm-up acknowledgements", func() bool { return obs.batchAcks() >= warmUpAcks })
	holdAt := time.Now()
	c.proxy.hold()
	before := obs.acksTotal()
	held := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(held) && obs.acksTotal()-before < 200 {
		time.Sleep(5 * time.Millisecond)
	}
	acksDuringHold := obs.acksTotal() - before

	// The primary's machine dies.
	killAt := time.Now()
	old.killMachine()
	c.proxy.cut()
	t.Logf("killed the primary %s (Patroni and PostgreSQL, SIGKILL) %v after holding its replication link; %d acknowledgements arrived while held",
		old.name, killAt.Sub(holdAt).Round(time.Millisecond), acksDuringHold)

	// And one server with it, while no database is writable.
	time.Sleep(time.Until(killAt.Add(time.Second)))
	srvA.proc.kill()
	t.Logf("killed perfusiond A (SIGKILL) %v after the primary", time.Since(killAt).Round(time.Millisecond))

	var promoted *node
	var promotedAt time.Time
	if err := waitFor(ctx, 100*time.Millisecond, func() error {
		if time.Since(killAt) > 90*time.Second {
			return nil
		}
		if promoted = c.primary(ctx, old); promoted == nil {
			return errors.New("no primary yet")
		}
		promotedAt = time.Now()
		return nil
	}); err != nil || promoted == nil {
		t.Fatalf("Patroni did not promote a standby within 90s")
	}
	waitUntil(t, 90*time.Second, "acknowledgements after the failover", func() bool { return obs.lastAck().After(promotedAt) })
	time.Sleep(afterFailover)
	close(stop)
	wg.Wait()

	// Every stream delivers what it still holds.
	var closeErrs []error
	for _, ds := range streams {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		if err := ds.s.Close(cctx); err != nil {
			closeErrs = append(closeErrs, fmt.Errorf("case %s: %w", ds.caseID, err))
		}
		cancel()
	}
	if o.synchronous {
		for _, err := range closeErrs {
			t.Errorf("stream close: %v", err)
		}
	} else if len(closeErrs) > 0 {
		t.Logf("%d streams could not deliver everything after the loss (first: %v)", len(closeErrs), closeErrs[0])
	}

	gap, lastBefore, firstAfter := obs.outage(holdAt.Add(-time.Second))
	t.Logf("failover (%s): no acknowledgement for %v (last before the fault → first after, holding the link %v of it); primary killed → %s promoted %v; primary killed → first acknowledgement %v",
		mode(o), gap.Round(time.Millisecond), killAt.Sub(holdAt).Round(time.Millisecond), promoted.name,
		promotedAt.Sub(killAt).Round(time.Millisecond), firstAfter.Sub(killAt).Round(time.Millisecond))
	_ = lastBefore

	r := drillResult{acksDuringHold: acksDuringHold}
	r.ackedBatches, r.lostBatches = checkBatches(t, c, obs)
	r.ackedEntries, r.lostEntries = checkEntries(t, c, entries)
	r.missingSamples = checkSamples(t, client, streams)
	verifyAll(t, client, cases)
	checkCompactor(t, c, promotedAt, o.synchronous)
	obs.checkCodes(t)
	health.check(t, killAt, promotedAt)
	return r
}

// testWriter sends the client library's warnings to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func mode(o clusterOptions) string {
	if o.synchronous {
		return "synchronous"
	}
	return "asynchronous"
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

// buildPerfusiond builds a test binary of perfusiond (-tags devauth: the
// drill names its caller with the development header) once per run.
func buildPerfusiond(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "perfusion-drill-bin-")
		if buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "perfusiond")
		out, err := exec.Command("go", "build", "-tags", "devauth", "-o", builtBin, "perfusion/cmd/perfusiond").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build perfusiond: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// server is a perfusiond the drill started.
type server struct {
	addr string
	proc *proc
}

// startServer starts perfusiond on a free port (the browser port off) and
// waits until it is SERVING.
func startServer(t *testing.T, bin, dir, name, dsn string) *server {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startProc(t, osUser{}, dir, name, nil, bin, "serve",
		"--listen", addr, "--http-listen=", "--database-url", dsn, "--dev-header-auth",
		"--max-streams-per-principal", "0", "--log-level", "warn", "--readiness-interval", "500ms",
		// Trend runs of 10 batches every second, so the drill sees the
		// compactor work before and after the failover.
		"--compact-interval", "1s", "--compact-run-batches", "10")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	waitUntil(t, 60*time.Second, name+" SERVING", func() bool {
		select {
		case <-p.done:
			t.Fatalf("%s exited:\n%s", name, tail(p.logPath, 3000))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && r.Status == healthpb.HealthCheckResponse_SERVING
	})
	return &server{addr: addr, proc: p}
}

// drillStream is one device stream and what it sent.
type drillStream struct {
	caseID string
	s      *perfusion.SampleStreamer
	sent   atomic.Int64 // samples per channel handed to Send
}

// base is the device time of every stream's first sample: two hours ago,
// so no sample lies in the future however long the drill runs.
var base = time.Now().Add(-2 * time.Hour).UnixMilli()

// feed sends one sample per channel every sampleEvery, with device times
// one second apart, until stop.
func (ds *drillStream) feed(t *testing.T, stop <-chan struct{}) {
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for i := int64(0); ; i++ {
		series := make([]*pb.SampleSeries, len(channels))
		for ci, ch := range channels {
			v := float64(30 + (int(i)+ci)%10)
			if ch == "pump_flow" {
				v /= 10
			}
			series[ci] = &pb.SampleSeries{Channel: ch, OccurredAtUnixMs: []int64{base + i*1000}, Values: []float64{v}}
		}
		if err := ds.s.Send(context.Background(), series...); err != nil {
			t.Errorf("case %s: Send: %v", ds.caseID, err)
			return
		}
		ds.sent.Add(1)
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// entryLog records the entries the server acknowledged.
type entryLog struct {
	mu    sync.Mutex
	acked map[string]time.Time // entry id → when
}

// write charts notes round the cases until stop. Each RecordEntry is
// retried by the library (same entry id) until it is acknowledged or its
// 60 s run out.
func (l *entryLog) write(c *perfusion.Client, cases []string, w int, stop <-chan struct{}, obs *observer) {
	tick := time.NewTicker(entryEvery)
	defer tick.Stop()
	for i := w; ; i += entryWriters {
		id := uuid.NewString()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		_, err := c.RecordEntry(ctx, &pb.RecordEntryRequest{Entry: &pb.Entry{EntryId: id, CaseId: cases[i%len(cases)],
			OccurredAt: timestamppb.Now(), Detail: &pb.Entry_Note{Note: &pb.Note{Text: fmt.Sprintf("drill note %d", i)}}}})
		cancel()
		if err == nil {
			now := time.Now()
			l.mu.Lock()
			l.acked[id] = now
			l.mu.Unlock()
			obs.ack(now)
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// batchKey names one sample batch.
type batchKey struct {
	caseID, source string
	seq            int64
}

// observer sees every call the client library makes, as interceptors: the
// batch acknowledgements in the streams, and every status a call or
// stream ended with.
type observer struct {
	mu        sync.Mutex
	acked     map[batchKey]time.Time
	times     []time.Time // every acknowledgement, batch or entry
	codes     map[codes.Code]int
	bad       []string // Internal or Unknown statuses
	nBatch    atomic.Int64
	nTotal    atomic.Int64
	lastAckNs atomic.Int64 // unix nanoseconds
}

func newObserver() *observer {
	return &observer{acked: map[batchKey]time.Time{}, codes: map[codes.Code]int{}}
}

func (o *observer) ack(at time.Time) {
	o.mu.Lock()
	o.times = append(o.times, at)
	o.mu.Unlock()
	o.nTotal.Add(1)
	o.lastAckNs.Store(at.UnixNano())
}

func (o *observer) batchAcks() int64 { return o.nBatch.Load() }
func (o *observer) acksTotal() int   { return int(o.nTotal.Load()) }
func (o *observer) lastAck() time.Time {
	return time.Unix(0, o.lastAckNs.Load())
}

func (o *observer) failed(err error) {
	st := status.Convert(err)
	if st.Code() == codes.OK || st.Code() == codes.Canceled {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.codes[st.Code()]++
	if st.Code() == codes.Internal || st.Code() == codes.Unknown {
		o.bad = append(o.bad, st.Code().String()+": "+st.Message())
	}
}

func (o *observer) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil && ctx.Err() == nil {
		o.failed(err)
	}
	return err
}

func (o *observer) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		o.failed(err)
		return nil, err
	}
	return &observedStream{ClientStream: cs, o: o}, nil
}

type observedStream struct {
	grpc.ClientStream
	o      *observer
	caseID string
}

func (s *observedStream) SendMsg(m any) error {
	if r, ok := m.(*pb.StreamSamplesRequest); ok && r.GetOpen() != nil {
		s.caseID = r.GetOpen().GetCaseId()
	}
	return s.ClientStream.SendMsg(m)
}

func (s *observedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		if s.Context().Err() == nil {
			s.o.failed(err)
		}
		return err
	}
	if r, ok := m.(*pb.StreamSamplesResponse); ok {
		if a := r.GetAck(); a != nil {
			now := time.Now()
			s.o.mu.Lock()
			k := batchKey{s.caseID, a.GetSourceId(), a.GetSequence()}
			if _, seen := s.o.acked[k]; !seen {
				s.o.acked[k] = now
			}
			s.o.mu.Unlock()
			s.o.nBatch.Add(1)
			s.o.ack(now)
		}
	}
	return nil
}

// outage returns the longest time without any acknowledgement after from,
// and its ends.
func (o *observer) outage(from time.Time) (gap time.Duration, last, first time.Time) {
	o.mu.Lock()
	ts := slices.Clone(o.times)
	o.mu.Unlock()
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(ts); i++ {
		if ts[i].Before(from) {
			continue
		}
		if d := ts[i].Sub(ts[i-1]); d > gap {
			gap, last, first = d, ts[i-1], ts[i]
		}
	}
	return gap, last, first
}

// checkCodes: a database outage reaches clients as Unavailable (or a
// deadline), never as Internal or Unknown.
func (o *observer) checkCodes(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	t.Logf("statuses the clients saw during the drill: %v", o.codes)
	for _, b := range o.bad {
		t.Errorf("a client saw %s", b)
	}
}

// checkBatches compares the acknowledged batches with the new primary's
// sample_batches: each must be there (the primary key makes twice
// impossible; checkSamples counts samples).
func checkBatches(t *testing.T, c *cluster, o *observer) (acked, lost int) {
	t.Helper()
	stored := map[batchKey]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.dsn("perfusion"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT case_id::text, source_id, seq FROM sample_batches")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k batchKey
		if err := rows.Scan(&k.caseID, &k.source, &k.seq); err != nil {
			t.Fatal(err)
		}
		stored[k] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for k := range o.acked {
		if !stored[k] {
			lost++
		}
	}
	t.Logf("batches: %d acknowledged, %d stored, %d acknowledged and missing", len(o.acked), len(stored), lost)
	return len(o.acked), lost
}

// checkEntries: every acknowledged entry is stored exactly once.
func checkEntries(t *testing.T, c *cluster, l *entryLog) (acked, lost int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.dsn("perfusion"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT entry_id::text, count(*) FROM entries GROUP BY entry_id")
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int64{}
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		stored[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.acked {
		switch n := stored[id]; {
		case n == 0:
			lost++
		case n > 1:
			t.Errorf("entry %s stored %d times", id, n)
		}
	}
	t.Logf("entries: %d acknowledged, %d stored, %d acknowledged and missing", len(l.acked), len(stored), lost)
	return len(l.acked), lost
}

// checkSamples reads every stream's samples back: none may be stored
// twice, and the ones missing are counted (a stream that closed cleanly
// had every batch acknowledged, so in the synchronous drill none is).
func checkSamples(t *testing.T, c *perfusion.Client, streams []*drillStream) (missing int) {
	t.Helper()
	for _, ds := range streams {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		r, err := c.QuerySamples(ctx, &pb.QuerySamplesRequest{CaseId: ds.caseID, SourceId: "hlm-1"})
		cancel()
		if err != nil {
			t.Fatalf("query samples of %s: %v", ds.caseID, err)
		}
		sent := ds.sent.Load()
		got := map[string]map[int64]int{}
		for _, s := range r.Raw {
			m := map[int64]int{}
			for _, ts := range s.OccurredAtUnixMs {
				m[ts]++
			}
			got[s.Channel] = m
		}
		for _, ch := range channels {
			m := got[ch]
			for ts, n := range m {
				if n > 1 {
					t.Errorf("case %s %s: sample at %d stored %d times", ds.caseID, ch, ts, n)
				}
			}
			for i := int64(0); i < sent; i++ {
				if m[base+i*1000] == 0 {
					missing++
				}
			}
		}
	}
	return missing
}

// checkCompactor: the trend compactor, which failed while no database was
// writable, resumed by itself: it built runs over batches committed after
// the new primary took over. Not after an asynchronous failover: a source
// whose acknowledged batches were lost has a hole below which its resume
// position stays, and runs are built only below it — one more way the loss
// shows.
func checkCompactor(t *testing.T, c *cluster, promoted time.Time, synchronous bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var runs, after int
	if err := queryRow(ctx, c.dsn("perfusion"), fmt.Sprintf(`SELECT count(*), count(*) FILTER (WHERE EXISTS (
		SELECT 1 FROM sample_batches b WHERE b.case_id = k.case_id AND b.source_id = k.source_id AND b.seq = k.seq_to
		AND b.recorded_at > to_timestamp(%f))) FROM sample_chunks k WHERE k.channel = ''`, float64(promoted.UnixMicro())/1e6), &runs, &after); err != nil {
		t.Fatal(err)
	}
	t.Logf("compactor: %d trend runs, %d of them ending in a batch committed after the failover", runs, after)
	if after == 0 && synchronous {
		t.Error("the compactor built no run over batches committed after the failover: it did not resume")
	}
}

// verifyAll runs VerifyRecord on every case.
func verifyAll(t *testing.T, c *perfusion.Client, cases []string) {
	t.Helper()
	var links int64
	for _, id := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		v, err := c.VerifyRecord(ctx, &pb.VerifyRecordRequest{CaseId: id})
		cancel()
		if err != nil {
			t.Fatalf("verify %s: %v", id, err)
		}
		if !v.Ok {
			t.Errorf("case %s does not verify: %v", id, v)
		}
		links += v.LinksVerified
	}
	t.Logf("VerifyRecord OK on all %d cases (%d ledger links)", len(cases), links)
}

// healthLog is the surviving server's health over the drill.
type healthLog struct {
	mu     sync.Mutex
	states []healthState
}

type healthState struct {
	at      time.Time
	serving bool
}

func watchHealth(t *testing.T, addr string) *healthLog {
	h := &healthLog{}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; conn.Close() })
	hc := healthpb.NewHealthClient(conn)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cctx, ccancel := context.WithTimeout(ctx, time.Second)
			r, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
			ccancel()
			if err == nil {
				h.mu.Lock()
				h.states = append(h.states, healthState{time.Now(), r.Status == healthpb.HealthCheckResponse_SERVING})
				h.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return h
}

// check: NOT_SERVING at some point after the primary died and before a
// new one was promoted, SERVING again after.
func (h *healthLog) check(t *testing.T, killed, promoted time.Time) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var notServing, servingAfter time.Time
	for _, s := range h.states {
		if s.at.After(killed) && !s.serving && notServing.IsZero() {
			notServing = s.at
		}
		if !notServing.IsZero() && s.serving && servingAfter.IsZero() {
			servingAfter = s.at
		}
	}
	if notServing.IsZero() {
		t.Errorf("the surviving server never reported NOT_SERVING while no database was writable")
		return
	}
	if servingAfter.IsZero() {
		t.Errorf("the surviving server did not report SERVING again after the failover")
		return
	}
	t.Logf("surviving server's health: NOT_SERVING %v after the primary died, SERVING again %v after (new primary at %v)",
		notServing.Sub(killed).Round(time.Millisecond), servingAfter.Sub(killed).Round(time.Millisecond), promoted.Sub(killed).Round(time.Millisecond))
}
