package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// writeText prints the report for people: one block per phase, the
// headline figure first on each line.
func (r *report) writeText(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	s := r.Setup
	wave := ""
	if s.Waveform {
		wave = fmt.Sprintf(" + %d Hz %s", waveformHz, waveformChannel)
	}
	p("perfusion loadgen: %s, %d cases (one stream each, %d source(s)), %d channels at 1 Hz%s", r.Mode, s.Cases, s.SourcesPerCase, s.Channels, wave)
	p("  batch interval %s, window %d, %d connection(s), %s; server %s",
		time.Duration(s.BatchIntervalMs)*time.Millisecond, s.Window, s.Conns, fmtDur(s.DurationS), s.Server)
	if h := r.History; h != nil {
		p("history       %s of 1 Hz data in the queried case: %s samples in %s batches of %s, loaded in %s (%s samples/s)",
			fmtDur(h.SpanS), thousands(h.Samples), thousands(h.Batches), fmtDur(h.BatchS), fmtDur(h.ElapsedS), thousands(int64(h.SamplesPerS)))
	}
	in := r.Ingest
	p("ingest")
	p("  sustained     %s samples/s  (%s acked samples in %s batches over %s; %s batches/s)",
		thousands(int64(in.SamplesPerS)), thousands(in.SamplesAcked), thousands(in.BatchesAcked), fmtDur(in.ElapsedS), thousands(int64(in.BatchesPerS)))
	if in.OfferedSamplesPerS > 0 {
		p("  offered       %s samples/s in real time", thousands(int64(in.OfferedSamplesPerS)))
	}
	p("  ack latency   %s  (send→ack, %s batches)", fmtSummary(in.AckLatency), thousands(int64(in.AckLatency.Count)))
	p("  errors        %d%s", in.Errors, fmtKinds(in.ErrorKinds))
	for _, k := range slices.Sorted(maps.Keys(in.FirstErrors)) {
		p("    first %q: %s", k, in.FirstErrors[k])
	}
	if sv := r.Server; sv != nil {
		p("server (pid %d)  %.2f cores over the ingest (%.1f CPU s); peak RSS %s (%s)", sv.PID, sv.Cores, sv.CPUS, size(sv.PeakRSSBytes), sv.PeakRSSScope)
	} else {
		p("server        CPU and RSS unknown (give --server-pid, or --spawn)")
	}
	if h := r.Host; h != nil {
		lg := ""
		if l := r.Loadgen; l != nil {
			lg = fmt.Sprintf("; loadgen itself %.2f cores", l.Cores)
		}
		p("host          %.2f of %d CPUs busy during the ingest%s", h.BusyCores, h.CPUs, lg)
	}
	if st := r.Storage; st != nil {
		p("storage       %.1f bytes/sample  (%s over %s samples from %s; %s)",
			st.BytesPerSample, size(st.Bytes), thousands(st.Samples), st.SamplesFrom, fmtTables(st.Tables))
	}
	if bl := r.Baseline; bl != nil {
		p("baseline      one row per sample, COPY into an indexed table, no server, %d connection(s)", bl.Workers)
		p("  rate          %s samples/s  (%s rows in %s)", thousands(int64(bl.SamplesPerS)), thousands(bl.Samples), fmtDur(bl.ElapsedS))
		p("  size          %.1f bytes/sample  (%s: table %s, index %s)", bl.BytesPerSample, size(bl.Bytes), size(bl.TableBytes), size(bl.IndexBytes))
		ratio := fmt.Sprintf("%.2f× the baseline's rate", bl.RateRatio)
		if bl.SizeRatio > 0 {
			ratio += fmt.Sprintf(", %.2f× its bytes per sample", bl.SizeRatio)
		}
		if r.Ingest.OfferedSamplesPerS > 0 {
			ratio += " (in real time our rate is capped by the offered load: compare rates with --max-rate)"
		}
		p("  ours          %s", ratio)
	}
	if q := r.Query; q != nil {
		p("query         %s  (%d calls: %d channels over %s in %d buckets, %s samples, %d series; %d errors)",
			fmtSummary(q.Latency), q.Latency.Count, len(q.Channels), fmtDur(q.SpanS), q.Buckets, thousands(q.SamplesCovered), q.Series, q.Errors)
		if q.FirstError != "" {
			p("    first error: %s", q.FirstError)
		}
	}
	for _, n := range r.Notes {
		p("note: %s", n)
	}
	if r.OK {
		p("ok")
	} else {
		p("NOT OK: errors, no acknowledged samples, or a phase not measured")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtSummary(s summary) string {
	return fmt.Sprintf("p50 %s  p95 %s  p99 %s  max %s", fmtMs(s.P50), fmtMs(s.P95), fmtMs(s.P99), fmtMs(s.Max))
}

func fmtMs(ms float64) string {
	switch {
	case ms >= 1000:
		return fmt.Sprintf("%.2f s", ms/1000)
	case ms >= 10:
		return fmt.Sprintf("%.0f ms", ms)
	}
	return fmt.Sprintf("%.2f ms", ms)
}

func fmtDur(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Millisecond).String()
}

func fmtKinds(k map[string]int64) string {
	if len(k) == 0 {
		return ""
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(k)) {
		parts = append(parts, fmt.Sprintf("%s: %d", name, k[name]))
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// fmtTables lists the tables that grew, largest first.
func fmtTables(t map[string]int64) string {
	names := slices.Collect(maps.Keys(t))
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(t[b], t[a]) })
	var parts []string
	for _, n := range names {
		parts = append(parts, n+" "+size(t[n]))
	}
	return strings.Join(parts, ", ")
}

// size formats a byte count for people; 0 means not measured.
func size(b int64) string {
	switch {
	case b == 0:
		return "unknown"
	case b < 1<<20:
		return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// thousands formats n with thin separators: 1,234,567.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
