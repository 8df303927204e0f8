package main

import (
	"encoding/json"
	"fmt"
	"io"
)

// report is everything a run measured, printed as text or JSON. Field
// names carry their units so the JSON can be compared across runs without
// reading this file.
type report struct {
	OK       bool            `json:"ok"`
	Mode     string          `json:"mode"`
	Setup    setupReport     `json:"setup"`
	Ingest   ingestReport    `json:"ingest"`
	History  *historyReport  `json:"history,omitempty"`
	Server   *procReport     `json:"server,omitempty"`
	Loadgen  *procReport     `json:"loadgen,omitempty"`
	Host     *hostReport     `json:"host,omitempty"`
	Storage  *storageReport  `json:"storage,omitempty"`
	Baseline *baselineReport `json:"baseline,omitempty"`
	Query    *queryReport    `json:"query,omitempty"`
	Notes    []string        `json:"notes,omitempty"`
	failed   bool
}

type setupReport struct {
	Server          string  `json:"server"`
	Cases           int     `json:"cases"`
	SourcesPerCase  int     `json:"sources_per_case"`
	Channels        int     `json:"channels"`
	Waveform        bool    `json:"waveform"`
	BatchIntervalMs int64   `json:"batch_interval_ms"`
	DurationS       float64 `json:"duration_s"`
	Window          int     `json:"window"`
	Conns           int     `json:"conns"`
}

type ingestReport struct {
	Streams            int               `json:"streams"`
	ElapsedS           float64           `json:"elapsed_s"`
	OfferedSamplesPerS float64           `json:"offered_samples_per_s,omitempty"`
	BatchesSent        int64             `json:"batches_sent"`
	BatchesAcked       int64             `json:"batches_acked"`
	SamplesAcked       int64             `json:"samples_acked"`
	SamplesPerS        float64           `json:"samples_per_s"`
	BatchesPerS        float64           `json:"batches_per_s"`
	AckLatency         summary           `json:"ack_latency"`
	Errors             int64             `json:"errors"`
	ErrorKinds         map[string]int64  `json:"error_kinds,omitempty"`
	FirstErrors        map[string]string `json:"first_errors,omitempty"`
	OutOfDeviceTime    int               `json:"streams_out_of_device_time,omitempty"`
}

type historyReport struct {
	SpanS       float64 `json:"span_s"`
	BatchS      float64 `json:"batch_s"`
	Samples     int64   `json:"samples"`
	Batches     int64   `json:"batches"`
	ElapsedS    float64 `json:"elapsed_s"`
	SamplesPerS float64 `json:"samples_per_s"`
}

type procReport struct {
	PID          int     `json:"pid"`
	CPUS         float64 `json:"cpu_s"`
	Cores        float64 `json:"cpu_cores"`
	PeakRSSBytes int64   `json:"peak_rss_bytes,omitempty"`
	PeakRSSScope string  `json:"peak_rss_scope,omitempty"`
}

type hostReport struct {
	CPUs      int     `json:"cpus"`
	BusyCores float64 `json:"busy_cores"`
}

type storageReport struct {
	Bytes          int64            `json:"bytes"`
	Samples        int64            `json:"samples"`
	SamplesFrom    string           `json:"samples_from"`
	BytesPerSample float64          `json:"bytes_per_sample"`
	Tables         map[string]int64 `json:"tables_bytes"`
}

type baselineReport struct {
	Samples        int64   `json:"samples"`
	Workers        int     `json:"workers"`
	ElapsedS       float64 `json:"elapsed_s"`
	SamplesPerS    float64 `json:"samples_per_s"`
	Bytes          int64   `json:"bytes"`
	TableBytes     int64   `json:"table_bytes"`
	IndexBytes     int64   `json:"index_bytes"`
	BytesPerSample float64 `json:"bytes_per_sample"`
	RateRatio      float64 `json:"ours_to_baseline_rate"`
	SizeRatio      float64 `json:"ours_to_baseline_bytes,omitempty"`
}

type queryReport struct {
	CaseID         string   `json:"case_id"`
	Channels       []string `json:"channels"`
	Buckets        int      `json:"buckets"`
	SpanS          float64  `json:"span_s"`
	SamplesCovered int64    `json:"samples_covered"`
	Series         int      `json:"series"`
	Latency        summary  `json:"latency"`
	Errors         int64    `json:"errors"`
	FirstError     string   `json:"first_error,omitempty"`
}

func newReport(c *config, addr string, withDB bool) *report {
	server := "external " + addr
	if c.spawn {
		server = "spawned on " + addr + ", embedded SQLite store"
		if withDB {
			server = "spawned on " + addr + ", fresh PostgreSQL database"
		}
	}
	r := &report{Mode: modeName(c), Setup: setupReport{Server: server, Cases: c.cases, SourcesPerCase: c.sourcesPerCase,
		Channels: c.channels, Waveform: c.waveform, BatchIntervalMs: c.batchInterval.Milliseconds(),
		DurationS: c.duration.Seconds(), Window: c.window, Conns: c.conns}}
	if r.Setup.Conns == 0 || r.Setup.Conns > c.cases {
		r.Setup.Conns = c.cases
	}
	return r
}

// fail notes a phase that could not be measured.
func (r *report) fail(format string, args ...any) {
	r.failed = true
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *report) addHistory(h historyResult) {
	r.History = &historyReport{SpanS: h.span.Seconds(), BatchS: h.batch.Seconds(), Samples: h.samples, Batches: h.batches,
		ElapsedS: h.elapsed.Seconds(), SamplesPerS: rate(h.samples, h.elapsed)}
}

func (r *report) addIngest(c *config, ing *ingestResult, errs *errorCounts) {
	in := &r.Ingest
	var lat latencies
	for _, s := range ing.streams {
		in.BatchesSent += s.batchesSent
		in.BatchesAcked += s.batchesAcked
		in.SamplesAcked += s.samplesAcked
		lat = append(lat, s.lat...)
		if s.exhausted {
			in.OutOfDeviceTime++
		}
	}
	in.Streams = len(ing.streams)
	in.ElapsedS = ing.elapsed.Seconds()
	in.SamplesPerS = rate(in.SamplesAcked, ing.elapsed)
	in.BatchesPerS = rate(in.BatchesAcked, ing.elapsed)
	in.AckLatency = lat.summarise()
	in.Errors = errs.total()
	in.ErrorKinds, in.FirstErrors = errs.snapshot()
	if !c.maxRate {
		in.OfferedSamplesPerS = c.offeredPerSecond()
	}
	if in.OutOfDeviceTime > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d streams ran out of device time (a minute before now) before --duration ended", in.OutOfDeviceTime))
	}
	if s := ing.server; s != nil {
		r.Server = &procReport{PID: s.pid, CPUS: s.cpu.Seconds(), Cores: cores(s.cpu, s.wall), PeakRSSBytes: s.peakRSS, PeakRSSScope: s.peakRSSScope}
	}
	if s := ing.client; s.pid != 0 {
		r.Loadgen = &procReport{PID: s.pid, CPUS: s.cpu.Seconds(), Cores: cores(s.cpu, s.wall), PeakRSSBytes: s.peakRSS, PeakRSSScope: s.peakRSSScope}
	}
	if h := ing.host; h != nil {
		r.Host = &hostReport{CPUs: h.cpus, BusyCores: h.busyCores}
	}
	r.Notes = append(r.Notes, ing.notes...)
}

// addStorage reports the tables' growth over the ingest per stored sample.
// Stored samples come from the sample_batches table when it has them (what
// is on disk, acknowledged or not), else from the acks.
func (r *report) addStorage(g storedSize, acked int64) {
	s := &storageReport{Bytes: g.total(), Samples: g.samples, SamplesFrom: "sample_batches.sample_count", Tables: g.tables}
	if s.Samples < 0 {
		s.Samples, s.SamplesFrom = acked, "acknowledgements"
	}
	if s.Samples > 0 {
		s.BytesPerSample = float64(s.Bytes) / float64(s.Samples)
	}
	r.Storage = s
}

func (r *report) addBaseline(b baselineResult) {
	br := &baselineReport{Samples: b.samples, Workers: b.workers, ElapsedS: b.elapsed.Seconds(),
		SamplesPerS: rate(b.samples, b.elapsed), Bytes: b.tableBytes + b.indexBytes, TableBytes: b.tableBytes, IndexBytes: b.indexBytes}
	if b.samples > 0 {
		br.BytesPerSample = float64(br.Bytes) / float64(b.samples)
	}
	if br.SamplesPerS > 0 {
		br.RateRatio = r.Ingest.SamplesPerS / br.SamplesPerS
	}
	if r.Storage != nil && br.BytesPerSample > 0 {
		br.SizeRatio = r.Storage.BytesPerSample / br.BytesPerSample
	}
	r.Baseline = br
}

func (r *report) addQuery(q *queryResult) {
	qr := &queryReport{CaseID: q.caseID, Channels: q.channels, Buckets: q.buckets, SpanS: q.span.Seconds(),
		SamplesCovered: q.covered, Series: q.series, Latency: q.lat.summarise(), Errors: q.errs.total()}
	if _, first := q.errs.snapshot(); len(first) > 0 {
		qr.FirstError = first["query"]
	}
	r.Query = qr
}

// finish decides whether the run was clean: samples acknowledged, no
// errors anywhere, every phase measured.
func (r *report) finish() {
	r.OK = !r.failed && r.Ingest.SamplesAcked > 0 && r.Ingest.Errors == 0 && (r.Query == nil || r.Query.Errors == 0)
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
