package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "perfusion/api/perfusion/v1"
	"perfusion/clients/perfusion"
	"perfusion/clients/pumpsim/sim"
	"perfusion/store/postgres/pgtest"
)

// buildBinary builds a command of this module into dir.
func buildBinary(t *testing.T, dir, pkg string) string {
	t.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg))
	// -tags devauth: perfusiond's test build, with the development header
	// this test names its callers by (no effect on pumpsim).
	cmd := exec.Command("go", "build", "-tags", "devauth", "-o", bin, pkg)
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
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

// TestResumeAfterSIGKILL runs the real pumpsim binary against a real
// perfusiond, kills pumpsim with SIGKILL mid-run, starts it again with the
// same arguments and spool directory, and proves that it finished its own
// cases: no other case was made, every sample the seeded simulation makes
// is stored exactly once with its first-simulated device time and value,
// every entry once, and the cases are signed and verify.
func TestResumeAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("TestResumeAfterSIGKILL: builds and kills binaries; skipped in -short")
	}
	bins := t.TempDir()
	perfusiond := buildBinary(t, bins, "./cmd/perfusiond")
	pumpsim := buildBinary(t, bins, "./clients/pumpsim")
	t.Run("sqlite", func(t *testing.T) {
		resumeAfterKill(t, perfusiond, pumpsim, "--data-dir", t.TempDir())
	})
	t.Run("postgres", func(t *testing.T) {
		resumeAfterKill(t, perfusiond, pumpsim, "--database-url", pgtest.DSN(t))
	})
}

func resumeAfterKill(t *testing.T, perfusiond, pumpsim string, storeArgs ...string) {
	addr := freeAddr(t)
	srv := exec.Command(perfusiond, append([]string{"--listen", addr, "--http-listen", "127.0.0.1:0", "--dev-header-auth", "--log-format", "text"}, storeArgs...)...)
	var srvLog bytes.Buffer
	srv.Stderr = &srvLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Kill()
		srv.Wait()
		if t.Failed() {
			t.Logf("perfusiond log:\n%s", srvLog.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := perfusion.Dial(ctx, addr, perfusion.WithPrincipal("reviewer"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitServing(t, ctx, c)

	// 2 × 30 simulated minutes at 300× take 6 s of wall time.
	const cases = 2
	spool := t.TempDir()
	args := []string{"--addr", addr, "--principal", "pumpsim-test", "--seed", "11", "--speed", "300",
		"--duration", "30m", "--cases", fmt.Sprint(cases), "--sign", "--spool-dir", spool, "--progress", "0"}

	// The first run is killed as soon as both cases exist (while the
	// pre-bypass checklist is being charted), the restarted one once both
	// cases hold a third of their data (the spool then holds more: the
	// streamers trail by up to a second of batching); the third finishes.
	var ids []string
	for k, killAt := range []time.Duration{-1, 10 * time.Minute} {
		sim := exec.Command(pumpsim, args...)
		var out bytes.Buffer
		sim.Stdout, sim.Stderr = &out, &out
		if err := sim.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			if time.Now().After(deadline) {
				sim.Process.Kill()
				sim.Wait()
				t.Fatalf("pumpsim made no progress:\n%s", out.String())
			}
			if ids = caseIDs(t, ctx, c); len(ids) == cases && (killAt < 0 || allPast(t, ctx, c, ids, killAt)) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := sim.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := sim.Wait()
		if ws, ok := sim.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("pumpsim was not killed mid-run (%v); it finished first:\n%s", err, out.String())
		}
		if k > 0 && !strings.Contains(out.String(), "resuming 2 case(s)") {
			t.Errorf("restarted pumpsim did not say it resumed:\n%s", out.String())
		}
		for _, id := range ids {
			gc, err := c.GetCase(ctx, &pb.GetCaseRequest{CaseId: id})
			if err != nil {
				t.Fatal(err)
			}
			if st := gc.GetCase().GetStatus(); st != pb.CaseStatus_CASE_STATUS_PLANNED && st != pb.CaseStatus_CASE_STATUS_IN_PROGRESS {
				t.Fatalf("killed case %s is %v, want planned or in progress", id, st)
			}
		}
		var entries int
		for _, id := range ids {
			le, err := c.ListEntries(ctx, &pb.ListEntriesRequest{CaseId: id})
			if err != nil {
				t.Fatal(err)
			}
			entries += len(le.GetEntries())
		}
		t.Logf("SIGKILL %d: both cases past %v of simulated time, %d entries on the record", k+1, max(killAt, 0), entries)
	}
	// Down long enough that pacing by the first run's clock would have
	// nothing left to wait for: the restart must pace from where the data
	// stops instead.
	time.Sleep(2 * time.Second)

	second := exec.CommandContext(ctx, pumpsim, args...)
	var secondOut, secondErr bytes.Buffer
	second.Stdout, second.Stderr = &secondOut, &secondErr
	began := time.Now()
	if err := second.Run(); err != nil {
		t.Fatalf("restarted pumpsim: %v\n%s\n%s", err, secondOut.String(), secondErr.String())
	}
	took := time.Since(began)
	t.Logf("restarted pumpsim (%v):\n%s", took.Round(time.Millisecond), secondOut.String())
	if !strings.Contains(secondOut.String(), "resuming 2 case(s)") {
		t.Errorf("restarted pumpsim did not say it resumed:\n%s", secondOut.String())
	}
	// Each case says where it resumed; the rest is paced at --speed.
	var h, m, sec int
	at := strings.Index(secondOut.String(), "resuming at ")
	if at < 0 {
		t.Fatal("no resume point in the output")
	}
	if _, err := fmt.Sscanf(secondOut.String()[at:], "resuming at %d:%d:%d", &h, &m, &sec); err != nil {
		t.Fatal(err)
	}
	from := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second
	if pace := (30*time.Minute - from) / 300; took < pace*8/10 {
		t.Errorf("restart resumed at %v and took %v; paced at 300× the rest takes %v", from, took, pace)
	}

	if got := caseIDs(t, ctx, c); !slices.Equal(got, ids) {
		t.Fatalf("cases after the restart %v, want only the killed run's %v", got, ids)
	}
	cfg := Config{Seed: 11, Speed: 300, Duration: 30 * time.Minute, Cases: cases, HeightCm: 175, WeightKg: 80, BSAFormula: "mosteller"}
	for _, id := range ids {
		checkCase(t, ctx, c, cfg, id)
	}
	if left, _ := filepath.Glob(filepath.Join(spool, "pumpsim-*.json")); len(left) > 0 {
		t.Errorf("run state left after the run finished: %v", left)
	}
}

func waitServing(t *testing.T, ctx context.Context, c *perfusion.Client) {
	t.Helper()
	hc := healthpb.NewHealthClient(c.Conn())
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		r, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("perfusiond did not become SERVING")
}

// caseIDs lists every case on the server, sorted.
func caseIDs(t *testing.T, ctx context.Context, c *perfusion.Client) []string {
	t.Helper()
	lc, err := c.ListCases(ctx, &pb.ListCasesRequest{PageSize: 500})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, cs := range lc.GetCases() {
		ids = append(ids, cs.GetCaseId())
	}
	slices.Sort(ids)
	return ids
}

// allPast reports whether every case holds samples of every source past
// simulated time at.
func allPast(t *testing.T, ctx context.Context, c *perfusion.Client, ids []string, at time.Duration) bool {
	t.Helper()
	for _, id := range ids {
		gc, err := c.GetCase(ctx, &pb.GetCaseRequest{CaseId: id})
		if err != nil {
			t.Fatal(err)
		}
		start := gc.GetCase().GetScheduledStart().AsTime()
		ls, err := c.ListSources(ctx, &pb.ListSourcesRequest{CaseId: id})
		if err != nil {
			t.Fatal(err)
		}
		if len(ls.GetSources()) < len(sources) {
			return false
		}
		for _, s := range ls.GetSources() {
			if s.GetLastSampleAt().AsTime().Sub(start) < at {
				return false
			}
		}
	}
	return true
}

// sample is one stored or expected reading.
type sample struct {
	ms      int64
	value   float64
	invalid bool
}

// checkCase compares a case with what its seeded simulation makes: every
// sample once, at its first-simulated device time, bit-identical; every
// entry once under its deterministic id; signed; verified.
func checkCase(t *testing.T, ctx context.Context, c *perfusion.Client, cfg Config, id string) {
	t.Helper()
	gc, err := c.GetCase(ctx, &pb.GetCaseRequest{CaseId: id})
	if err != nil {
		t.Fatal(err)
	}
	cs := gc.GetCase()
	if cs.GetStatus() != pb.CaseStatus_CASE_STATUS_SIGNED {
		t.Errorf("case %s is %v, want signed", id, cs.GetStatus())
	}
	var i int
	if _, err := fmt.Sscanf(cs.GetRoom(), "OR-%d", &i); err != nil {
		t.Fatalf("case %s room %q", id, cs.GetRoom())
	}
	i--
	simStart := cs.GetScheduledStart().AsTime()
	caseUUID := uuid.MustParse(id)

	want := map[string][]sample{}
	wantEntries := map[string]bool{}
	s := sim.New(simConfig(cfg, i))
	for n := 0; !s.Done(); {
		tk := s.Step()
		ms := simStart.Add(tk.At).UnixMilli()
		for _, r := range append(tk.Numerics, tk.Gases...) {
			v := r.Value
			if r.Invalid {
				v = 0 // stored as 0
			}
			want[r.Channel] = append(want[r.Channel], sample{ms, v, r.Invalid})
		}
		for _, ev := range tk.Events {
			for j := range entries(id, simStart, ev) {
				wantEntries[entryID(caseUUID, n, j)] = true
			}
			n++
		}
	}

	var total, dup, missing, differ int
	for ch, exp := range want {
		q, err := c.QuerySamples(ctx, &pb.QuerySamplesRequest{CaseId: id, Channels: []string{ch}})
		if err != nil {
			t.Fatalf("QuerySamples %s: %v", ch, err)
		}
		var got []sample
		for _, rs := range q.GetRaw() {
			inv := map[int32]bool{}
			for _, k := range rs.GetInvalidIndexes() {
				inv[k] = true
			}
			for k, ms := range rs.GetOccurredAtUnixMs() {
				got = append(got, sample{ms, rs.GetValues()[k], inv[int32(k)]})
			}
		}
		slices.SortStableFunc(got, func(a, b sample) int { return int(a.ms - b.ms) })
		total += len(got)
		for k := 1; k < len(got); k++ {
			if got[k].ms == got[k-1].ms {
				dup++
			}
		}
		if len(got) != len(exp) {
			missing += len(exp) - len(got)
			t.Errorf("case %s %s: %d samples stored, the simulation made %d", id, ch, len(got), len(exp))
			continue
		}
		for k := range exp {
			if got[k].ms != exp[k].ms || got[k].invalid != exp[k].invalid || math.Float64bits(got[k].value) != math.Float64bits(exp[k].value) {
				differ++
				if differ <= 3 {
					t.Errorf("case %s %s sample %d: stored %+v, simulated %+v", id, ch, k, got[k], exp[k])
				}
			}
		}
	}
	if dup > 0 || missing != 0 || differ > 0 {
		t.Errorf("case %s: %d samples stored twice, %d missing, %d differ", id, dup, missing, differ)
	}

	le, err := c.ListEntries(ctx, &pb.ListEntriesRequest{CaseId: id, IncludeHistory: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range le.GetEntries() {
		if seen[e.GetEntryId()] {
			t.Errorf("case %s: entry %s listed twice", id, e.GetEntryId())
		}
		seen[e.GetEntryId()] = true
		if !wantEntries[e.GetEntryId()] {
			t.Errorf("case %s: entry %s is not one the simulation makes", id, e.GetEntryId())
		}
	}
	if len(le.GetEntries()) != len(wantEntries) {
		t.Errorf("case %s: %d entries stored, the simulation makes %d", id, len(le.GetEntries()), len(wantEntries))
	}

	// Paced, no batch was sent before the wall clock reached its newest
	// device time (the server and pumpsim share this machine's clock).
	ls, err := c.ListSources(ctx, &pb.ListSourcesRequest{CaseId: id})
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range ls.GetSources() {
		if lag := src.GetMinReceiptLagMs(); lag < 0 {
			t.Errorf("case %s %s: a batch reached the server %d ms before its device time", id, src.GetSourceId(), -lag)
		}
	}

	v, err := c.VerifyRecord(ctx, &pb.VerifyRecordRequest{CaseId: id})
	if err != nil {
		t.Fatal(err)
	}
	if !v.GetOk() || v.GetSamplesVerified() != int64(total) {
		t.Errorf("case %s: VerifyRecord %v (stored samples %d)", id, v, total)
	}
	t.Logf("case %d %s: %d samples, %d entries, each once; %v; verified", i, id, total, len(le.GetEntries()), cs.GetStatus())
}
