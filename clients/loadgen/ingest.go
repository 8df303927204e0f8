package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
)

// maxRateBack is how far in the past max-rate device time starts. The
// server refuses device times more than 5 minutes ahead of its clock; a
// stream that sends hours of device time per wall-clock minute must start
// far enough back never to catch up with now (7 days is over 600,000
// one-second batches per stream), and each stream also stops a minute
// short of now if it ever gets there.
const maxRateBack = 7 * 24 * time.Hour

// ingestResult is the ingest phase: every stream's result and what the
// processes used meanwhile.
type ingestResult struct {
	streams []streamResult
	elapsed time.Duration
	server  *procUsage // nil without a known server pid
	client  procUsage
	host    *hostUsage
	notes   []string
}

type procUsage struct {
	pid          int
	cpu          time.Duration
	wall         time.Duration
	peakRSS      int64 // 0 when unknown
	peakRSSScope string
}

type hostUsage struct {
	cpus      int
	busyCores float64
}

// dial opens a plaintext gRPC connection. The generator only ever talks
// to loopback (checked in config), where there is nothing to encrypt.
func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// ingest opens every case's stream, then starts them together, so the
// measured interval holds sending only (not connection setup), and waits
// until each has sent for c.duration and drained its acks. originMs is the
// device-time origin of max-rate streams. serverPID 0 means unknown.
func ingest(ctx context.Context, c *config, addr string, caseIDs []string, originMs int64, serverPID int, errs *errorCounts, progress io.Writer) (*ingestResult, error) {
	nconns := c.conns
	if nconns == 0 || nconns > len(caseIDs) {
		nconns = len(caseIDs)
	}
	conns := make([]*grpc.ClientConn, nconns)
	for i := range conns {
		conn, err := dial(addr)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		conns[i] = conn
	}
	streams := make([]*stream, len(caseIDs))
	for i, id := range caseIDs {
		streams[i] = &stream{caseID: id, sources: caseSources(c, i, c.waveform), interval: c.batchInterval,
			window: c.window, realTime: !c.maxRate, originMs: originMs, limitMs: time.Now().Add(-time.Minute).UnixMilli()}
	}
	fmt.Fprintf(progress, "loadgen: opening %d streams over %d connections\n", len(streams), nconns)
	opened := make([]bool, len(streams))
	parallel(len(streams), 64, func(i int) {
		client := pb.NewChartingServiceClient(conns[i%nconns])
		if err := streams[i].open(ctx, client); err != nil {
			errs.add("open stream: "+status.Code(err).String(), err)
			return
		}
		opened[i] = true
	})
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	res := &ingestResult{streams: make([]streamResult, len(streams))}
	probe := startProbe(serverPID, res)
	start := time.Now()
	deadline := start.Add(c.duration)
	if !c.maxRate {
		// Real time: stream i's clock is offset by i/n of an interval, as
		// independent gateways are, so the server sees a steady flow and
		// not a thundering herd every second. Its first batch holds the
		// interval before its first send.
		for i, s := range streams {
			phase := c.batchInterval * time.Duration(i) / time.Duration(len(streams))
			s.wallT0 = start.Add(phase - c.batchInterval).Truncate(time.Millisecond)
			s.originMs, s.limitMs = s.wallT0.UnixMilli(), noLimit
		}
	}
	fmt.Fprintf(progress, "loadgen: sending for %s (%s)\n", c.duration, modeName(c))
	var wg sync.WaitGroup
	for i, s := range streams {
		if !opened[i] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.streams[i] = s.run(deadline, c.drainTimeout, errs)
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	probe.finish(res)
	return res, nil
}

// probe samples CPU time of the server, of this process and of the host
// at the start and end of the ingest.
type probe struct {
	serverDir    string
	serverCPU    time.Duration
	serverErr    error
	clientCPU    time.Duration
	host         hostCPU
	hostErr      error
	start        time.Time
	peakRSSScope string
}

func startProbe(serverPID int, res *ingestResult) *probe {
	p := &probe{start: time.Now()}
	if serverPID > 0 {
		p.serverDir = "/proc/" + strconv.Itoa(serverPID)
		p.serverCPU, p.serverErr = procCPU(p.serverDir)
		// A wrong --server-pid (a shell wrapping the server, say) would
		// report a few MiB and no CPU as if they were the server's.
		if comm, err := os.ReadFile(p.serverDir + "/comm"); err == nil && strings.TrimSpace(string(comm)) != "perfusiond" {
			res.notes = append(res.notes, fmt.Sprintf("--server-pid %d is %q, not perfusiond: its CPU and RSS may not be the server's", serverPID, strings.TrimSpace(string(comm))))
		}
		p.peakRSSScope = "ingest"
		if err := resetPeakRSS(p.serverDir); err != nil {
			p.peakRSSScope = "process lifetime"
			res.notes = append(res.notes, "could not reset the server's peak RSS ("+err.Error()+"): the figure is its lifetime peak")
		}
	}
	p.clientCPU, _ = procCPU("/proc/self")
	p.host, p.hostErr = readHostCPU("/proc/stat")
	return p
}

func (p *probe) finish(res *ingestResult) {
	wall := time.Since(p.start)
	if p.serverDir != "" {
		cpu, err := procCPU(p.serverDir)
		if err != nil || p.serverErr != nil {
			res.notes = append(res.notes, fmt.Sprintf("server CPU unknown: %v", firstErr(p.serverErr, err)))
		} else {
			u := &procUsage{cpu: cpu - p.serverCPU, wall: wall, peakRSSScope: p.peakRSSScope}
			u.pid, _ = strconv.Atoi(p.serverDir[len("/proc/"):])
			if u.peakRSS, err = procPeakRSS(p.serverDir); err != nil {
				res.notes = append(res.notes, "server peak RSS unknown: "+err.Error())
			}
			res.server = u
		}
	}
	if cpu, err := procCPU("/proc/self"); err == nil {
		res.client = procUsage{pid: os.Getpid(), cpu: cpu - p.clientCPU, wall: wall}
		res.client.peakRSS, _ = procPeakRSS("/proc/self")
		res.client.peakRSSScope = "process lifetime"
	}
	if h, err := readHostCPU("/proc/stat"); err == nil && p.hostErr == nil {
		res.host = &hostUsage{cpus: runtime.NumCPU(), busyCores: busyCores(p.host, h, runtime.NumCPU())}
	}
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// parallel runs f(0..n-1) on at most width goroutines.
func parallel(n, width int, f func(int)) {
	sem := make(chan struct{}, width)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}

func modeName(c *config) string {
	if c.maxRate {
		return "max rate"
	}
	return "real time"
}
