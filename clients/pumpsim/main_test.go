package main

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "perfusion/api/perfusion/v1"
	"perfusion/clients/perfusion"
	"perfusion/clients/pumpsim/sim"
	"perfusion/server/servertest"
)

// startServer serves on a fresh embedded store (see server/servertest).
func startServer(t *testing.T) string { return servertest.Start(t) }

func TestRunEndToEnd(t *testing.T) {
	addr := startServer(t)
	var out strings.Builder
	cfg := Config{Addr: addr, Principal: "pumpsim-test", Seed: 42, Speed: 0, Cases: 2, Duration: 25 * time.Minute,
		SpoolDir: t.TempDir(), Sign: true, Out: &out,
		ClientOptions: []perfusion.Option{perfusion.WithBackoff(5*time.Millisecond, 100*time.Millisecond)}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := run(ctx, cfg)
	t.Log(out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	c, err := perfusion.Dial(ctx, addr, perfusion.WithPrincipal("reviewer"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, r := range res {
		if !r.Signed || r.Samples == 0 || r.Entries == 0 {
			t.Fatalf("result %+v", r)
		}
		gc, err := c.GetCase(ctx, &pb.GetCaseRequest{CaseId: r.CaseID})
		if err != nil {
			t.Fatal(err)
		}
		if st := gc.GetCase().GetStatus(); st != pb.CaseStatus_CASE_STATUS_SIGNED {
			t.Errorf("case %s status %v", r.CaseID, st)
		}
		var stored, invalid int64
		for _, ch := range sim.Channels() {
			q, err := c.QuerySamples(ctx, &pb.QuerySamplesRequest{CaseId: r.CaseID, Channels: []string{ch}})
			if err != nil {
				t.Fatalf("QuerySamples %s: %v", ch, err)
			}
			for _, s := range q.GetRaw() {
				stored += int64(len(s.GetValues()))
				invalid += int64(len(s.GetInvalidIndexes()))
			}
		}
		if stored != r.Samples || invalid != r.Invalid {
			t.Errorf("case %s: stored %d samples (%d invalid), sent %d (%d invalid)", r.CaseID, stored, invalid, r.Samples, r.Invalid)
		}
		le, err := c.ListEntries(ctx, &pb.ListEntriesRequest{CaseId: r.CaseID})
		if err != nil {
			t.Fatal(err)
		}
		if len(le.GetEntries()) != r.Entries {
			t.Errorf("case %s: %d entries stored, %d sent", r.CaseID, len(le.GetEntries()), r.Entries)
		}
		kinds := map[string]bool{}
		for _, e := range le.GetEntries() {
			switch d := e.GetDetail().(type) {
			case *pb.Entry_Event:
				kinds[d.Event.GetType().String()] = true
			case *pb.Entry_Cardioplegia:
				kinds["cardioplegia"] = true
			case *pb.Entry_LabResult:
				kinds["lab"] = true
			}
		}
		for _, k := range []string{"EVENT_TYPE_BYPASS_ON", "EVENT_TYPE_CROSS_CLAMP_ON", "EVENT_TYPE_BYPASS_OFF", "cardioplegia", "lab"} {
			if !kinds[k] {
				t.Errorf("case %s: no %s entry", r.CaseID, k)
			}
		}
		v, err := c.VerifyRecord(ctx, &pb.VerifyRecordRequest{CaseId: r.CaseID})
		if err != nil {
			t.Fatal(err)
		}
		if !v.GetOk() {
			t.Errorf("case %s: VerifyRecord not ok: %v", r.CaseID, v.GetFirstBadLink())
		}
	}
}

// TestRunPacedECMONeonate runs paced (--speed) so that the case ends at the
// wall clock: no sample may be in the future, the last close to now.
func TestRunPacedECMONeonate(t *testing.T) {
	addr := startServer(t)
	cfg := Config{Addr: addr, Principal: "pumpsim-test", Seed: 3, Speed: 1200, Cases: 1, Duration: 20 * time.Minute,
		ECMO: true, HeightCm: 50, WeightKg: 3.2, BSAFormula: "haycock", SpoolDir: t.TempDir(), Close: true, Out: io.Discard}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := run(ctx, cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if wall := time.Since(start); wall < 900*time.Millisecond {
		t.Errorf("paced run took %v, want ≥ 1 s", wall)
	}
	c, err := perfusion.Dial(ctx, addr, perfusion.WithPrincipal("reviewer"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := res[0]
	if !r.Closed || r.Signed {
		t.Fatalf("result %+v", r)
	}
	got, err := c.GetCase(ctx, &pb.GetCaseRequest{CaseId: r.CaseID})
	if err != nil {
		t.Fatal(err)
	}
	if f := got.GetCase().GetDetails().GetPatient().GetBsaFormula(); f != pb.BsaFormula_BSA_FORMULA_HAYCOCK {
		t.Errorf("case BSA formula %v, want Haycock as asked", f)
	}
	bad := cfg
	bad.BSAFormula = "boyd"
	if _, err := run(ctx, bad); err == nil || !strings.Contains(err.Error(), "--bsa-formula") {
		t.Errorf("unknown formula: %v", err)
	}
	q, err := c.QuerySamples(ctx, &pb.QuerySamplesRequest{CaseId: r.CaseID, Channels: []string{"pump_flow"}})
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	maxFlow := 0.0
	for _, s := range q.GetRaw() {
		ts := s.GetOccurredAtUnixMs()
		last = max(last, ts[len(ts)-1])
		for _, v := range s.GetValues() {
			maxFlow = max(maxFlow, v)
		}
	}
	now := time.Now().UnixMilli()
	if last > now || now-last > 10_000 {
		t.Errorf("last sample %d ms before now", now-last)
	}
	if maxFlow > 0.7 || maxFlow < 0.2 {
		t.Errorf("neonatal ECMO flow up to %v L/min", maxFlow)
	}
	le, err := c.ListEntries(ctx, &pb.ListEntriesRequest{CaseId: r.CaseID})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range le.GetEntries() {
		if e.GetCardioplegia() != nil {
			t.Errorf("ECMO case has cardioplegia")
		}
	}
	if v, err := c.VerifyRecord(ctx, &pb.VerifyRecordRequest{CaseId: r.CaseID}); err != nil || !v.GetOk() {
		t.Errorf("VerifyRecord: %v %v", v, err)
	}
}

// TestRunInterruptedResumes stops a run (as Ctrl-C does), then shows that a
// run with another seed leaves it alone and starts its own case, that the
// same arguments take the interrupted case up and finish it with every
// sample and entry once, and that a finished run leaves no state behind,
// so the same arguments then start a new case.
func TestRunInterruptedResumes(t *testing.T) {
	addr := startServer(t)
	spool := t.TempDir()
	cfg := Config{Addr: addr, Principal: "pumpsim-test", Seed: 5, Speed: 600, Cases: 1, Duration: 20 * time.Minute,
		SpoolDir: spool, Close: true, Out: io.Discard,
		ClientOptions: []perfusion.Option{perfusion.WithBackoff(5*time.Millisecond, 100*time.Millisecond)}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := perfusion.Dial(ctx, addr, perfusion.WithPrincipal("reviewer"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	stopped, stop := context.WithTimeout(ctx, 700*time.Millisecond)
	first, err := run(stopped, cfg)
	stop()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("interrupted run: %v", err)
	}
	id := first[0].CaseID
	if states, _ := filepath.Glob(filepath.Join(spool, "pumpsim-*.json")); len(states) != 1 {
		t.Fatalf("run state after the interruption: %v", states)
	}

	other := cfg
	other.Seed, other.Speed = 6, 0
	o, err := run(ctx, other)
	if err != nil {
		t.Fatalf("run with another seed: %v", err)
	}
	if o[0].CaseID == id || o[0].Resumed {
		t.Fatalf("a run with another seed took up the interrupted case: %+v", o[0])
	}

	var out strings.Builder
	again := cfg
	again.Out = &out
	res, err := run(ctx, again)
	if err != nil {
		t.Fatalf("resumed run: %v\n%s", err, out.String())
	}
	r := res[0]
	if r.CaseID != id || !r.Resumed || !r.Closed || r.OnRecord == 0 || r.OnRecord >= r.Samples {
		t.Fatalf("resumed run: %+v\n%s", r, out.String())
	}
	var stored int64
	for _, ch := range sim.Channels() {
		q, err := c.QuerySamples(ctx, &pb.QuerySamplesRequest{CaseId: id, Channels: []string{ch}})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range q.GetRaw() {
			stored += int64(len(s.GetValues()))
		}
	}
	le, err := c.ListEntries(ctx, &pb.ListEntriesRequest{CaseId: id, IncludeHistory: true})
	if err != nil {
		t.Fatal(err)
	}
	if stored != r.Samples || len(le.GetEntries()) != r.Entries {
		t.Errorf("case %s holds %d samples and %d entries, the simulation makes %d and %d", id, stored, len(le.GetEntries()), r.Samples, r.Entries)
	}
	if v, err := c.VerifyRecord(ctx, &pb.VerifyRecordRequest{CaseId: id}); err != nil || !v.GetOk() {
		t.Errorf("VerifyRecord: %v %v", v, err)
	}
	if states, _ := filepath.Glob(filepath.Join(spool, "pumpsim-*.json")); len(states) != 0 {
		t.Errorf("run state left after the runs finished: %v", states)
	}

	n, err := run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n[0].CaseID == id || n[0].Resumed {
		t.Errorf("a finished run was taken up again: %+v", n[0])
	}
}
