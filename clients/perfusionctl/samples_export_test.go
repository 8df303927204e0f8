package main

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"
)

func TestSamplesExport(t *testing.T) {
	addr := startServer(t)
	r := ctl(t, addr, "case", "create", "--kind", "cpb", "--site", "MAIN", "--room", "OR-1", "--start", "now")
	mustCode(t, r, exitOK)
	caseID := uuidRE.FindString(r.stdout)
	start := streamSamples(t, addr, caseID)

	// --window 6 splits the 20 samples over several reads (groupWindows
	// is tested below): every sample must come out once, none twice.
	r = ctl(t, addr, "samples", "export", caseID, "--window", "6", "--progress", "always")
	mustCode(t, r, exitOK)
	recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 21 || strings.Join(recs[0], ",") != "time,source,channel,unit,value,invalid" {
		t.Fatalf("want header + 20 rows, got %d:\n%s", len(recs), r.stdout)
	}
	seen := map[string]bool{}
	var invalid int
	for _, rec := range recs[1:] {
		key := rec[0] + "/" + rec[2]
		if seen[key] {
			t.Fatalf("sample %s exported twice", key)
		}
		seen[key] = true
		if rec[5] == "true" {
			invalid++
			if rec[2] != "pump_flow" || rec[4] != "" {
				t.Fatalf("invalid row %v: want pump_flow with no value", rec)
			}
		}
	}
	if invalid != 1 {
		t.Fatalf("%d invalid rows, want 1", invalid)
	}
	first := start.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	if recs[1][0] != first || recs[1][2] != "pump_flow" || recs[1][4] != "4" || recs[1][3] != "L/min" {
		t.Fatalf("first row %v, want %s pump_flow 4 L/min", recs[1], first)
	}
	if !strings.Contains(r.stderr, "100% 20/20") {
		t.Fatalf("progress bar did not reach 20/20:\n%q", r.stderr)
	}

	// A range and a channel: only the flow samples of the first 5 s.
	from, to := start.UTC().Format(time.RFC3339), start.Add(5*time.Second).UTC().Format(time.RFC3339)
	r = ctl(t, addr, "samples", "export", caseID, "--channels", "pump_flow", "--from", from, "--to", to, "--progress", "never")
	mustCode(t, r, exitOK)
	if n := strings.Count(r.stdout, "\n"); n != 6 || strings.Contains(r.stdout, "temp_arterial_outlet") || r.stderr != "" {
		t.Fatalf("ranged export (%d lines):\n%s\nstderr %q", n, r.stdout, r.stderr)
	}

	mustCode(t, ctl(t, addr, "samples", "export", caseID, "--window", "0"), exitUsage)
	mustCode(t, ctl(t, addr, "samples", "export", caseID, "--progress", "sometimes"), exitUsage)
}

func TestGroupWindows(t *testing.T) {
	counts := map[int64]int64{0: 4, 10: 4, 20: 3, 40: 25, 50: 1}
	got, total, err := groupWindows([]int64{0, 10, 20, 40, 50}, counts, 10, 10)
	if err != nil {
		t.Fatal(err)
	}
	// 0+10 fit (8), 20 would make 11 → new window; 40 is dense (25 > 10)
	// → three parts of width 3,3,4; 50 alone.
	want := []window{{0, 20}, {20, 30}, {40, 43}, {43, 46}, {46, 50}, {50, 60}}
	if total != 37 || len(got) != len(want) {
		t.Fatalf("total %d windows %v, want 37 %v", total, got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("window %d = %v, want %v (all %v)", i, got[i], want[i], got)
		}
	}
}

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	if p := newProgress(&buf, "auto", "x", 10); p != nil {
		t.Fatal("auto drew a bar on a buffer, which is not a terminal")
	}
	now := time.Unix(0, 0)
	p := newProgress(&buf, "always", "samples", 10)
	p.now = func() time.Time { return now }
	p.started = now
	now = now.Add(2 * time.Second)
	p.Add(4)
	if s := buf.String(); !strings.Contains(s, "[============                  ]  40% 4/10, 3s left") {
		t.Fatalf("bar at 40%%: %q", s)
	}
	p.Add(1) // within the redraw interval: not drawn
	if strings.Count(buf.String(), "\r") != 1 {
		t.Fatalf("redrew within the interval: %q", buf.String())
	}
	p.Add(5)
	p.Finish()
	if !strings.HasSuffix(buf.String(), "100% 10/10 \n") {
		t.Fatalf("finish: %q", buf.String())
	}
	var nilBar *progress
	nilBar.Add(1) // a disabled bar is a no-op, not a panic
	nilBar.Finish()
}
