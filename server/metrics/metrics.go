// Package metrics is what operators watch of a running perfusiond: a
// Prometheus registry fed by the observers of the server (calls,
// acknowledgements, audit failures), the group committer, the compactor
// and the delivery worker, plus collectors read at scrape time (queue
// depth, database pool, delivery backlog, build). Every metric is named
// perfusion_…; docs/metrics.md lists them with the alerts worth paging on.
//
// Nothing here reaches the record or the patient: labels are method
// names, status codes, destinations and states — never a case, a person
// or a value.
package metrics

import (
	"context"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"perfusion/store"
)

// Metrics is one process's metrics. Its methods implement server.Observer,
// ingest.Observer, store.Observer and export.Observer.
type Metrics struct {
	reg *prometheus.Registry

	calls        *prometheus.CounterVec
	callSeconds  *prometheus.HistogramVec
	inFlight     *prometheus.GaugeVec
	samplesAcked prometheus.Counter
	batchesAcked prometheus.Counter
	ackSeconds   prometheus.Histogram
	auditFailed  prometheus.Counter

	commits        *prometheus.CounterVec
	commitBatches  prometheus.Histogram
	commitGather   prometheus.Histogram
	commitSeconds  prometheus.Histogram
	batchesFailed  prometheus.Counter
	backpressured  prometheus.Counter
	compactions    *prometheus.CounterVec
	compactedRuns  prometheus.Counter
	compactSeconds prometheus.Histogram
	compactLastOK  prometheus.Gauge
	deliveries     *prometheus.CounterVec
	deliverSeconds *prometheus.HistogramVec
}

// New returns metrics with the Go runtime, process and build collectors
// registered; version is the build's version string.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}
	f := factory{reg}
	m.calls = f.counterVec("perfusion_rpc_calls_total", "Calls ended, by full method name and gRPC status code (native gRPC and browser calls alike).", "method", "code")
	m.callSeconds = f.histogramVec("perfusion_rpc_duration_seconds", "Duration of unary calls, by method.", prometheus.ExponentialBuckets(0.001, 2, 16), "method")
	m.inFlight = f.gaugeVec("perfusion_rpc_in_flight", "Calls in progress, by method: StreamSamples is the open device streams, WatchCase the open watchers.", "method")
	m.samplesAcked = f.counter("perfusion_ingest_samples_total", "Samples acknowledged to device gateways (durably stored).")
	m.batchesAcked = f.counter("perfusion_ingest_batches_total", "Sample batches acknowledged to device gateways.")
	m.ackSeconds = f.histogram("perfusion_ingest_ack_latency_seconds", "Time from a sample batch's arrival to its acknowledgement: queueing, group commit and the database.",
		prometheus.ExponentialBuckets(0.0005, 2, 16))
	m.auditFailed = f.counter("perfusion_access_audit_write_failures_total", "Access-audit writes that failed; each failed its call, so callers saw Unavailable.")
	m.commits = f.counterVec("perfusion_ingest_commits_total", "Group commits of sample batches, by result (ok, failed: at least one batch failed and is resent by its gateway).", "result")
	m.commitBatches = f.histogram("perfusion_ingest_commit_batches", "Batches per group commit.", prometheus.ExponentialBuckets(1, 2, 11))
	m.commitGather = f.histogram("perfusion_ingest_commit_gather_seconds", "How long a group commit gathered batches after its first (at most --commit-delay).",
		prometheus.ExponentialBuckets(0.0001, 2, 14))
	m.commitSeconds = f.histogram("perfusion_ingest_commit_duration_seconds", "How long the database took to store one group commit.", prometheus.ExponentialBuckets(0.0005, 2, 16))
	m.batchesFailed = f.counter("perfusion_ingest_batches_failed_total", "Batches whose group commit failed for them (the gateway resends them).")
	m.backpressured = f.counter("perfusion_ingest_backpressure_waits_total", "Batches that waited for room in the ingest queue (--ingest-queue-samples): the database is behind.")
	m.compactions = f.counterVec("perfusion_compactor_passes_total", "Compactor passes, by result (ok, failed).", "result")
	m.compactedRuns = f.counter("perfusion_compactor_runs_total", "Runs of sample batches copied into trend chunks.")
	m.compactSeconds = f.histogram("perfusion_compactor_pass_duration_seconds", "Duration of compactor passes.", prometheus.ExponentialBuckets(0.001, 2, 16))
	m.compactLastOK = f.gauge("perfusion_compactor_last_success_timestamp_seconds", "When the compactor last finished a pass without error (Unix time); how far trend chunks lag behind.")
	m.deliveries = f.counterVec("perfusion_delivery_attempts_total", "Delivery attempts, by destination and outcome (delivered, retry, failed, held).", "destination", "outcome")
	m.deliverSeconds = f.histogramVec("perfusion_delivery_attempt_duration_seconds", "Duration of delivery attempts (render and send), by destination.",
		prometheus.ExponentialBuckets(0.005, 2, 14), "destination")
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo(version))
	return m
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorHandling: promhttp.ContinueOnError})
}

// Registry is the registry the metrics are in, for tests that gather them.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// CallStarted counts a call in flight.
func (m *Metrics) CallStarted(method string) { m.inFlight.WithLabelValues(method).Inc() }

// CallEnded counts a call ended with code.
func (m *Metrics) CallEnded(method, code string, took time.Duration) {
	m.inFlight.WithLabelValues(method).Dec()
	m.calls.WithLabelValues(method, code).Inc()
	if !streaming[method] {
		m.callSeconds.WithLabelValues(method).Observe(took.Seconds())
	}
}

// streaming names the methods whose duration is a stream's life, not a
// latency.
var streaming = map[string]bool{
	"/perfusion.v1.ChartingService/StreamSamples": true,
	"/perfusion.v1.ChartingService/WatchCase":     true,
	"/perfusion.v1.ReviewService/ExportCohort":    true,
	"/grpc.health.v1.Health/Watch":                true,
}

// SamplesAcked counts one acknowledged batch.
func (m *Metrics) SamplesAcked(samples int, latency time.Duration) {
	m.samplesAcked.Add(float64(samples))
	m.batchesAcked.Inc()
	m.ackSeconds.Observe(latency.Seconds())
}

// AuditWriteFailed counts a failed access-audit write.
func (m *Metrics) AuditWriteFailed() { m.auditFailed.Inc() }

// Committed records one group commit.
func (m *Metrics) Committed(batches, _ int, gathered, took time.Duration, failed int) {
	result := "ok"
	if failed > 0 {
		result = "failed"
	}
	m.commits.WithLabelValues(result).Inc()
	m.commitBatches.Observe(float64(batches))
	m.commitGather.Observe(gathered.Seconds())
	m.commitSeconds.Observe(took.Seconds())
	m.batchesFailed.Add(float64(failed))
}

// Backpressured counts a wait for ingest-queue room.
func (m *Metrics) Backpressured() { m.backpressured.Inc() }

// Compacted records one compactor pass.
func (m *Metrics) Compacted(runs int, took time.Duration, err error) {
	m.compactSeconds.Observe(took.Seconds())
	if err != nil {
		m.compactions.WithLabelValues("failed").Inc()
		return
	}
	m.compactions.WithLabelValues("ok").Inc()
	m.compactedRuns.Add(float64(runs))
	m.compactLastOK.SetToCurrentTime()
}

// DeliveryAttempted records one delivery attempt.
func (m *Metrics) DeliveryAttempted(destination, outcome string, took time.Duration) {
	m.deliveries.WithLabelValues(destination, outcome).Inc()
	m.deliverSeconds.WithLabelValues(destination).Observe(took.Seconds())
}

// WatchQueue exports the group committer's queue depth and its bound.
func (m *Metrics) WatchQueue(queued func() int64, bound int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "perfusion_ingest_queue_samples",
		Help: "Samples received and not yet committed; backpressure starts at perfusion_ingest_queue_samples_limit."},
		func() float64 { return float64(queued()) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "perfusion_ingest_queue_samples_limit",
		Help: "The ingest queue's bound (--ingest-queue-samples)."}, func() float64 { return float64(bound) }))
}

// WatchPool exports the PostgreSQL connection pool's statistics.
func (m *Metrics) WatchPool(pool *pgxpool.Pool) { m.reg.MustRegister(&poolCollector{pool: pool}) }

// WatchOutbox exports the delivery backlog, read from the outbox at each
// scrape (bounded by timeout).
func (m *Metrics) WatchOutbox(outbox store.OutboxBackend, timeout time.Duration) {
	m.reg.MustRegister(&backlogCollector{outbox: outbox, timeout: timeout, now: time.Now})
}

type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// buildInfo is perfusion_build_info{version, go_version} 1.
func buildInfo(version string) prometheus.Collector {
	goVersion := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "perfusion_build_info", Help: "The running build (always 1).",
		ConstLabels: prometheus.Labels{"version": version, "go_version": goVersion}})
	g.Set(1)
	return g
}

// poolCollector reads pgxpool's statistics at scrape time.
type poolCollector struct{ pool *pgxpool.Pool }

var (
	poolConns    = prometheus.NewDesc("perfusion_db_pool_connections", "PostgreSQL pool connections, by state (acquired, idle, constructing).", []string{"state"}, nil)
	poolMax      = prometheus.NewDesc("perfusion_db_pool_max_connections", "The pool's most connections.", nil, nil)
	poolAcquires = prometheus.NewDesc("perfusion_db_pool_acquires_total", "Connections acquired from the pool.", nil, nil)
	poolWaits    = prometheus.NewDesc("perfusion_db_pool_acquire_waits_total", "Acquires that had to wait for a connection (the pool is too small or the database slow).", nil, nil)
	poolWaitSecs = prometheus.NewDesc("perfusion_db_pool_acquire_wait_seconds_total", "Total time spent waiting to acquire connections.", nil, nil)
	poolFailed   = prometheus.NewDesc("perfusion_db_pool_acquire_failures_total", "Acquires that failed or were cancelled (the database unreachable).", nil, nil)
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolConns, poolMax, poolAcquires, poolWaits, poolWaitSecs, poolFailed} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(s.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(s.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(s.ConstructingConns()), "constructing")
	ch <- prometheus.MustNewConstMetric(poolMax, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(poolAcquires, prometheus.CounterValue, float64(s.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWaits, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWaitSecs, prometheus.CounterValue, s.AcquireDuration().Seconds())
	ch <- prometheus.MustNewConstMetric(poolFailed, prometheus.CounterValue, float64(s.CanceledAcquireCount()))
}

// backlogCollector reads the delivery backlog at scrape time.
type backlogCollector struct {
	outbox  store.OutboxBackend
	timeout time.Duration
	now     func() time.Time
}

var (
	backlogCount  = prometheus.NewDesc("perfusion_delivery_backlog", "Deliveries not yet settled, by destination and state (pending, delivering, held, failed).", []string{"destination", "state"}, nil)
	backlogOldest = prometheus.NewDesc("perfusion_delivery_oldest_undelivered_seconds", "Age of the oldest delivery not yet settled, by destination and state.", []string{"destination", "state"}, nil)
	backlogUp     = prometheus.NewDesc("perfusion_delivery_backlog_up", "1 when the backlog could be read at this scrape, 0 when the database did not answer.", nil, nil)
)

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- backlogCount
	ch <- backlogOldest
	ch <- backlogUp
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	rows, err := c.outbox.DeliveryBacklog(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(backlogUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(backlogUp, prometheus.GaugeValue, 1)
	now := c.now()
	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(backlogCount, prometheus.GaugeValue, float64(r.Count), string(r.Destination), string(r.State))
		ch <- prometheus.MustNewConstMetric(backlogOldest, prometheus.GaugeValue, max(0, now.Sub(r.Oldest).Seconds()), string(r.Destination), string(r.State))
	}
}
