package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestEndToEnd builds and spawns a real perfusiond on a temporary embedded
// store (no PostgreSQL, so no stored size and no baseline), runs the
// generator for 3 s in real time with a waveform and a short history, and
// checks the report: samples acknowledged, no errors, server measured,
// queries answered. Both output formats are checked.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("TestEndToEnd: builds and runs the server; skipped in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := realMain(ctx, []string{"--spawn", "--cases", "4", "--sources-per-case", "2", "--waveform",
		"--duration", "3s", "--history", "5m", "--query-iterations", "10", "--json"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, stdout.String())
	}
	in := rep.Ingest
	if !rep.OK || in.SamplesAcked == 0 || in.Errors != 0 || in.BatchesAcked != in.BatchesSent {
		t.Errorf("ingest: ok %v, %d samples acked, %d errors %v, %d of %d batches acked",
			rep.OK, in.SamplesAcked, in.Errors, in.ErrorKinds, in.BatchesAcked, in.BatchesSent)
	}
	// 4 cases × (2 sources + waveform) × about 3 batches, each batch timed.
	if in.AckLatency.Count != int(in.BatchesAcked) || in.AckLatency.P50 <= 0 || in.AckLatency.Max < in.AckLatency.P99 {
		t.Errorf("ack latency %+v over %d batches", in.AckLatency, in.BatchesAcked)
	}
	if rep.Server == nil || rep.Server.PID == 0 || rep.Server.PeakRSSBytes == 0 {
		t.Errorf("server not measured: %+v", rep.Server)
	}
	if rep.History == nil || rep.History.Samples != 5*60*40 {
		t.Errorf("history %+v, want 5 minutes of 40 channels", rep.History)
	}
	if q := rep.Query; q == nil || q.Latency.Count != 10 || q.Errors != 0 || q.SamplesCovered < 5*60*10 {
		t.Errorf("query %+v", rep.Query)
	}
	if rep.Storage != nil || rep.Baseline != nil {
		t.Error("storage or baseline measured without PostgreSQL")
	}

	var text bytes.Buffer
	if err := rep.writeText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"samples/s", "ack latency", "errors        0", "query", "\nok\n"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}
