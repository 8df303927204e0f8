package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	pb "perfusion/api/perfusion/v1"
)

// TestCaseWatch watches a signed case (so the command ends by itself) as a
// table and as NDJSON, and resumes from a position.
func TestCaseWatch(t *testing.T) {
	addr := startServer(t)
	r := ctl(t, addr, "case", "create", "--kind", "cpb", "--site", "MAIN", "--room", "OR-1", "--start", "now")
	mustCode(t, r, exitOK)
	caseID := uuidRE.FindString(r.stdout)
	streamSamples(t, addr, caseID)
	mustCode(t, ctl(t, addr, "entry", "add", "note", "--case", caseID, "--text", "flows steady"), exitOK)
	mustCode(t, ctl(t, addr, "case", "close", caseID), exitOK)
	mustCode(t, ctl(t, addr, "case", "sign", caseID, "--meaning", "authored", "--name", "P"), exitOK)

	r = ctl(t, addr, "case", "watch", caseID, "--channels", "pump_flow", "--bucket", "10s")
	mustCode(t, r, exitOK)
	for _, want := range []string{"trend  pump_flow/hlm-1", "note ", "flows steady", "case signed: watch ended"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("watch output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "temp_arterial_outlet") {
		t.Fatalf("watch printed a channel not asked for:\n%s", r.stdout)
	}
	// Ten flow samples, one invalid: nine counted in all.
	if n := strings.Count(r.stdout, "n="); n < 1 || n > 2 {
		t.Fatalf("%d trend lines for 10 s of samples in 10 s buckets:\n%s", n, r.stdout)
	}

	r = ctl(t, addr, "--output", "json", "case", "watch", caseID)
	mustCode(t, r, exitOK)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	var last struct {
		Position string `json:"position"`
		Final    bool   `json:"final"`
	}
	var entries int
	for _, l := range lines {
		var m struct {
			Entries []json.RawMessage `json:"entries"`
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line is not one JSON message: %q: %v", l, err)
		}
		entries += len(m.Entries)
		if err := json.Unmarshal([]byte(l), &last); err != nil {
			t.Fatal(err)
		}
	}
	if entries != 1 || !last.Final {
		t.Fatalf("NDJSON: %d entries, last final %v:\n%s", entries, last.Final, r.stdout)
	}
	if !strings.Contains(r.stderr, "resume with --after "+last.Position) {
		t.Fatalf("stderr does not give the resume position %s: %q", last.Position, r.stderr)
	}

	// Resuming at the end of a signed case prints only the end.
	r = ctl(t, addr, "case", "watch", caseID, "--after", last.Position)
	mustCode(t, r, exitOK)
	if strings.TrimSpace(r.stdout) != "case signed: watch ended" {
		t.Fatalf("resume at the end:\n%s", r.stdout)
	}
	mustCode(t, ctl(t, addr, "case", "watch", caseID, "--bucket", "1ms"), exitUsage)
}

// TestSamplesQueryLTTB prints LTTB points: real samples, at most --buckets.
func TestSamplesQueryLTTB(t *testing.T) {
	addr := startServer(t)
	r := ctl(t, addr, "case", "create", "--kind", "cpb", "--site", "MAIN", "--room", "OR-1", "--start", "now")
	mustCode(t, r, exitOK)
	caseID := uuidRE.FindString(r.stdout)
	streamSamples(t, addr, caseID)
	r = ctl(t, addr, "samples", "query", caseID, "--channels", "pump_flow", "--buckets", "4", "--method", "lttb")
	mustCode(t, r, exitOK)
	// Header and four rows: 4.0 (first valid), 4.9 (last), two between.
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 5 || !strings.Contains(lines[1], "4") || !strings.Contains(lines[4], "4.9") || strings.Contains(r.stdout, "invalid") {
		t.Fatalf("LTTB table:\n%s", r.stdout)
	}
	mustCode(t, ctl(t, addr, "samples", "query", caseID, "--method", "spline"), exitUsage)
	mustCode(t, ctl(t, addr, "samples", "query", caseID, "--method", "lttb", "--buckets", "2"), exitError)
}

// TestInvalidBucketIsNotANumber: a bucket whose samples are all invalid
// (a saturation probe off the finger) prints as invalid in case watch and
// without min, mean or max in samples query --stats, never as 0.
func TestInvalidBucketIsNotANumber(t *testing.T) {
	series := &pb.BucketSeries{Channel: "spo2", SourceId: "mon-1", Unit: "%", BucketWidthMs: 5000,
		Buckets: []*pb.Bucket{
			{StartUnixMs: 1_800_000_000_000, Count: 2, Min: 97, Max: 98, Mean: 97.5},
			{StartUnixMs: 1_800_000_005_000, InvalidCount: 5},
		}}
	var out bytes.Buffer
	e := &env{g: &globals{output: "table"}, stdout: &out, stderr: io.Discard}
	if err := printWatch(e, &pb.WatchCaseResponse{Samples: []*pb.BucketSeries{series}}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "97.5 % [97–98] n=2") ||
		!strings.Contains(lines[1], "invalid n=0 invalid=5") || strings.Contains(lines[1], "0 %") {
		t.Fatalf("case watch printed:\n%s", out.String())
	}

	out.Reset()
	if err := printStats(e, &pb.QuerySamplesResponse{Downsampled: []*pb.BucketSeries{series}}); err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSpace(out.String()), "\n")
	if f := strings.Fields(lines[2]); len(lines) != 3 || strings.Join(f[len(f)-5:], " ") != "0 - - - 5" {
		t.Fatalf("samples query --stats printed:\n%s", out.String())
	}
}
