package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"perfusion/charting"
)

// config is one run of the generator, from the command line.
type config struct {
	addr           string        // server to talk to (without --spawn)
	spawn          bool          // build and launch perfusiond ourselves
	perfusiond     string        // prebuilt perfusiond for --spawn; empty: go build it
	databaseURL    string        // PostgreSQL: spawned server's base, storage size, baseline
	serverPID      int           // with --addr: the server's pid, for CPU and RSS
	cases          int           // concurrent cases, one stream each
	sourcesPerCase int           // device sources per stream; channels are shared out among them
	channels       int           // numeric channels per case, at 1 Hz
	waveform       bool          // one extra 125 Hz source per case
	batchInterval  time.Duration // device time carried by one batch
	duration       time.Duration // how long streams send
	maxRate        bool          // send as fast as acks allow instead of in real time
	window         int           // in-flight batches per stream
	conns          int           // gRPC connections; 0: one per case
	drainTimeout   time.Duration // how long to wait for outstanding acks after sending stops
	history        time.Duration // 1 Hz history bulk-loaded into the queried case first
	historyBatch   time.Duration // device time per history batch; 0: batchInterval
	queryIters     int
	queryChannels  int
	queryBuckets   int
	baseline       bool
	baselineWork   int
	json           bool
	principal      string
	seed           uint64
}

// Bounds on a run. The generator is a measuring tool, not a weapon: it
// stops by itself and never grows without limit.
const (
	maxCases    = 10000
	maxDuration = time.Hour
	maxHistory  = 48 * time.Hour
	maxWindow   = 1024
	maxQueries  = 100000
	// waveformHz is the sample rate of the optional waveform channel.
	waveformHz = 125
	// waveformChannel is the catalogue channel the waveform is sent on: the
	// post-oxygenator line pressure, the one HLM pressure that is pulsatile
	// with a roller pump.
	waveformChannel = "arterial_line_pressure"
)

// parseConfig reads the command line. Errors are usage errors.
func parseConfig(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.addr, "addr", "127.0.0.1:7070", "address of a running perfusiond (loopback only); ignored with --spawn")
	fs.BoolVar(&c.spawn, "spawn", false, "build and launch perfusiond on a free loopback port, on a fresh database (with --database-url) or a temporary embedded store, and stop it at the end")
	fs.StringVar(&c.perfusiond, "perfusiond", "", "with --spawn: a prebuilt perfusiond test binary (go build -tags devauth) instead of building ./cmd/perfusiond")
	fs.StringVar(&c.databaseURL, "database-url", "", "PostgreSQL server (loopback only). With --spawn: where the fresh database is created and dropped. Enables stored-size and the baseline; with --addr it must be the running server's database")
	fs.IntVar(&c.serverPID, "server-pid", 0, "with --addr: the server's pid, to report its CPU time and peak RSS")
	fs.IntVar(&c.cases, "cases", 100, "concurrent cases, one StreamSamples stream each")
	fs.IntVar(&c.sourcesPerCase, "sources-per-case", 1, "device sources per stream; the channels are dealt out among them")
	fs.IntVar(&c.channels, "channels", 40, "numeric channels per case at 1 Hz, the first of the catalogue")
	fs.BoolVar(&c.waveform, "waveform", false, fmt.Sprintf("add one %d Hz %s source per case", waveformHz, waveformChannel))
	fs.DurationVar(&c.batchInterval, "batch-interval", time.Second, "device time per batch: each source sends one batch per interval")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long the streams send")
	fs.BoolVar(&c.maxRate, "max-rate", false, "send as fast as acks allow (window-bounded), device time advancing synthetically days in the past; default is real time")
	fs.IntVar(&c.window, "window", 8, "in-flight (unacknowledged) batches per stream")
	fs.IntVar(&c.conns, "conns", 0, "gRPC connections shared by the streams; 0 means one per case, as separate gateways would have")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 30*time.Second, "after sending stops, how long to wait for outstanding acks")
	fs.DurationVar(&c.history, "history", 0, "first bulk-load this much 1 Hz history into the queried case at max rate (e.g. 4h)")
	fs.DurationVar(&c.historyBatch, "history-batch", 0, "device time per history batch; default --batch-interval, as a live gateway would have sent it")
	fs.IntVar(&c.queryIters, "query-iterations", 200, "QuerySamples calls after ingest; 0 skips the query measurement")
	fs.IntVar(&c.queryChannels, "query-channels", 10, "channels per QuerySamples call")
	fs.IntVar(&c.queryBuckets, "query-buckets", 600, "downsampling buckets per QuerySamples call")
	fs.BoolVar(&c.baseline, "baseline", true, "with --database-url: also COPY the same samples one row each into a scratch database")
	fs.IntVar(&c.baselineWork, "baseline-workers", runtime.NumCPU(), "parallel COPY connections for the baseline")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON")
	fs.StringVar(&c.principal, "principal", "loadgen-gateway", "x-perfusion-principal sent with every call (trusted by the --spawn server; with --addr, set PERFUSION_TOKEN instead)")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the simulated signals")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.historyBatch == 0 {
		c.historyBatch = c.batchInterval
	}
	return c, c.validate()
}

const usage = `loadgen — load and measure perfusiond's sample ingest and queries

Usage:
  go run ./clients/loadgen [--addr HOST:PORT [--server-pid PID] | --spawn] [flags]

Simulates --cases concurrent cases, each one StreamSamples stream of
--channels 1 Hz numeric channels (and with --waveform one 125 Hz channel),
for --duration, then measures QuerySamples, and prints throughput,
acknowledgement latency, errors, server CPU and RSS, stored bytes per sample
and a one-row-per-sample COPY baseline on the same PostgreSQL.

Flags:
`

// validate refuses configurations that are unbounded, would break the
// server's batch limits, or would reach beyond this machine.
func (c *config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	nChannels := len(charting.DefaultCatalogue().Channels())
	switch {
	case c.cases < 1 || c.cases > maxCases:
		bad("--cases must be 1 to %d", maxCases)
	case c.duration <= 0 || c.duration > maxDuration:
		bad("--duration must be positive and at most %s", maxDuration)
	case c.channels < 1 || c.channels > nChannels:
		bad("--channels must be 1 to %d", nChannels)
	case c.sourcesPerCase < 1 || c.sourcesPerCase > c.channels:
		bad("--sources-per-case must be 1 to --channels")
	case c.batchInterval < 10*time.Millisecond || c.batchInterval%time.Millisecond != 0:
		bad("--batch-interval must be a whole number of milliseconds, at least 10ms")
	case c.window < 1 || c.window > maxWindow:
		bad("--window must be 1 to %d", maxWindow)
	case c.conns < 0:
		bad("--conns must not be negative")
	case c.drainTimeout <= 0:
		bad("--drain-timeout must be positive")
	case c.history < 0 || c.history > maxHistory || c.history%time.Second != 0:
		bad("--history must be whole seconds, 0 to %s", maxHistory)
	case c.historyBatch < 10*time.Millisecond || c.historyBatch%time.Millisecond != 0:
		bad("--history-batch must be a whole number of milliseconds, at least 10ms")
	case c.queryIters < 0 || c.queryIters > maxQueries:
		bad("--query-iterations must be 0 to %d", maxQueries)
	case c.queryChannels < 1 || c.queryChannels > c.channels:
		bad("--query-channels must be 1 to --channels")
	case c.queryBuckets < 1 || c.queryBuckets > 10000:
		bad("--query-buckets must be 1 to 10000")
	case c.baselineWork < 1:
		bad("--baseline-workers must be at least 1")
	case c.principal == "":
		bad("--principal must not be empty")
	case c.serverPID < 0 || (c.spawn && c.serverPID != 0):
		bad("--server-pid is a positive pid, and only for --addr")
	}
	// The largest batch is one source's share of the channels (or the
	// waveform) over one interval; the server refuses more than 10,000.
	perSource := (c.channels + c.sourcesPerCase - 1) / c.sourcesPerCase
	secs := (c.batchInterval + time.Second - 1) / time.Second
	if int64(perSource)*int64(secs) > charting.MaxSamplesPerBatch {
		bad("--batch-interval %s makes batches of over %d samples", c.batchInterval, charting.MaxSamplesPerBatch)
	}
	if hsecs := (c.historyBatch + time.Second - 1) / time.Second; int64(perSource)*int64(hsecs) > charting.MaxSamplesPerBatch {
		bad("--history-batch %s makes batches of over %d samples", c.historyBatch, charting.MaxSamplesPerBatch)
	}
	if c.waveform && int64(c.batchInterval/time.Millisecond)*waveformHz/1000 > charting.MaxSamplesPerBatch {
		bad("--batch-interval %s makes waveform batches of over %d samples", c.batchInterval, charting.MaxSamplesPerBatch)
	}
	if !c.spawn {
		if err := checkLoopbackAddr(c.addr); err != nil {
			bad("--addr: %v", err)
		}
	}
	if c.databaseURL != "" {
		if err := checkLoopbackDSN(c.databaseURL); err != nil {
			bad("--database-url: %v", err)
		}
	}
	return errors.Join(errs...)
}

// checkLoopbackAddr accepts only addresses on this machine: a load
// generator pointed at a shared or production server by mistake would do
// real harm.
func checkLoopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if !loopbackHost(host) {
		return fmt.Errorf("%s is not a loopback address; the generator only loads servers on this machine", host)
	}
	return nil
}

// checkLoopbackDSN accepts only a PostgreSQL on this machine (loopback TCP
// or a Unix socket): the generator creates and drops databases there.
func checkLoopbackDSN(dsn string) error {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return errors.New("not a PostgreSQL connection string") // the parse error may quote a password
	}
	hosts := []string{cfg.Host}
	for _, f := range cfg.Fallbacks {
		hosts = append(hosts, f.Host)
	}
	for _, h := range hosts {
		if !strings.HasPrefix(h, "/") && !loopbackHost(h) {
			return fmt.Errorf("host %s is not on this machine; the generator creates and drops databases, so it only talks to a local PostgreSQL", h)
		}
	}
	return nil
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// offeredPerSecond is the sample rate the configuration sends in real time.
func (c *config) offeredPerSecond() float64 {
	per := float64(c.channels)
	if c.waveform {
		per += waveformHz
	}
	return per * float64(c.cases)
}
