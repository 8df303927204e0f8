package perfusion

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server/servertest"
)

const testPrincipal = "gateway-test-1"

// testServer is perfusiond's server running in-process on the embedded
// store, on a real 127.0.0.1 socket (server/servertest).
type testServer struct {
	addr string
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	return &testServer{addr: servertest.Start(t)}
}

// proxy is a TCP proxy between client and server that can cut every
// connection, refuse new ones (accepting and closing them at once, like a
// dead link), and be restored.
type proxy struct {
	t      *testing.T
	lis    net.Listener
	target string

	mu       sync.Mutex
	refusing bool
	conns    map[net.Conn]struct{}
	cuts     int
	wg       sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &proxy{t: t, lis: lis, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		lis.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.lis.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refusing := p.refusing
		p.mu.Unlock()
		if refusing {
			c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.refusing { // refused while dialling
			p.mu.Unlock()
			c.Close()
			s.Close()
			continue
		}
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Add(2)
		go pipe(s, c)
		go pipe(c, s)
	}
}

// cut closes every open connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	p.cuts++
}

// refuse cuts everything and refuses new connections until restore.
func (p *proxy) refuse() {
	p.mu.Lock()
	p.refusing = true
	p.mu.Unlock()
	p.cut()
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.refusing = false
	p.mu.Unlock()
}

// testLogger sends the library's logs to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// dialTest makes a Client with quick back-off, closed when the test ends.
func dialTest(t *testing.T, addr string, opts ...Option) *Client {
	t.Helper()
	opts = append([]Option{WithPrincipal(testPrincipal), WithBackoff(5*time.Millisecond, 100*time.Millisecond),
		WithAttemptTimeout(2 * time.Second), WithLogger(testLogger(t))}, opts...)
	c, err := Dial(context.Background(), addr, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newCase creates a case and returns its id.
func newCase(t *testing.T, c *Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.CreateCase(ctx, &pb.CreateCaseRequest{CaseId: uuid.NewString(), Kind: pb.CaseKind_CASE_KIND_CPB,
		Site: "MAIN", Room: "OR-3", ScheduledStart: timestamppb.Now()})
	if err != nil {
		t.Fatalf("CreateCase: %v", err)
	}
	return resp.GetCase().GetCaseId()
}

// sample is one stored datum, for counting.
type sample struct {
	value   float64
	invalid bool
}

// ledger is what the test sent, keyed "source/channel@ms".
type ledger map[string]sample

func key(source, channel string, ms int64) string {
	return fmt.Sprintf("%s/%s@%d", source, channel, ms)
}

func (l ledger) add(source string, series ...*pb.SampleSeries) {
	for _, s := range series {
		inv := map[int32]bool{}
		for _, x := range s.GetInvalidIndexes() {
			inv[x] = true
		}
		for i, ms := range s.GetOccurredAtUnixMs() {
			v := s.GetValues()[i]
			if inv[int32(i)] {
				v = 0 // stored as 0, never as a value
			}
			l[key(source, s.GetChannel(), ms)] = sample{value: v, invalid: inv[int32(i)]}
		}
	}
}

// stored reads back every sample of a case, per channel so each raw query
// stays under the server's limit, counting occurrences.
func stored(t *testing.T, c *Client, caseID string, channels []string) map[string][]sample {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string][]sample{}
	for _, ch := range channels {
		resp, err := c.QuerySamples(ctx, &pb.QuerySamplesRequest{CaseId: caseID, Channels: []string{ch}})
		if err != nil {
			t.Fatalf("QuerySamples %s: %v", ch, err)
		}
		for _, s := range resp.GetRaw() {
			inv := map[int32]bool{}
			for _, x := range s.GetInvalidIndexes() {
				inv[x] = true
			}
			for i, ms := range s.GetOccurredAtUnixMs() {
				k := key(s.GetSourceId(), s.GetChannel(), ms)
				got[k] = append(got[k], sample{value: s.GetValues()[i], invalid: inv[int32(i)]})
			}
		}
	}
	return got
}

// diffSamples reports every sample sent but not stored (+missing), stored
// more than once or never sent (-extra), and stored with another value.
func diffSamples(want ledger, got map[string][]sample) (missing, extra, changed int, report string) {
	var lines []string
	for k, w := range want {
		g := got[k]
		switch {
		case len(g) == 0:
			missing++
			lines = append(lines, "+"+k)
		case len(g) > 1:
			extra += len(g) - 1
			lines = append(lines, fmt.Sprintf("-%s (stored %d times)", k, len(g)))
		}
		if len(g) > 0 && (math.Float64bits(g[0].value) != math.Float64bits(w.value) || g[0].invalid != w.invalid) {
			changed++
			lines = append(lines, fmt.Sprintf("~%s sent %v stored %v", k, w, g[0]))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			extra += len(g)
			lines = append(lines, "-"+k+" (never sent)")
		}
	}
	sort.Strings(lines)
	if len(lines) > 10 {
		lines = append(lines[:10], fmt.Sprintf("… and %d more", len(lines)-10))
	}
	return missing, extra, changed, strings.Join(lines, "\n")
}

// verify checks the case's record on the server.
func verify(t *testing.T, c *Client, caseID string) *pb.VerifyRecordResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := c.VerifyRecord(ctx, &pb.VerifyRecordRequest{CaseId: caseID})
	if err != nil {
		t.Fatalf("VerifyRecord: %v", err)
	}
	if !v.GetOk() {
		t.Fatalf("VerifyRecord: not ok: %v", v.GetFirstBadLink())
	}
	return v
}

// sampleRefs returns the sample-batch refs ("source/sequence") on the
// case's audit trail.
func sampleRefs(t *testing.T, c *Client, caseID string) []string {
	t.Helper()
	var refs []string
	var after int64
	for {
		resp, err := c.GetAuditTrail(context.Background(), &pb.GetAuditTrailRequest{CaseId: caseID, AfterSequence: after, PageSize: 5000})
		if err != nil {
			t.Fatalf("GetAuditTrail: %v", err)
		}
		for _, e := range resp.GetEvents() {
			if e.GetKind() == "samples" {
				refs = append(refs, e.GetRef())
			}
		}
		if after = resp.GetNextAfterSequence(); after == 0 {
			return refs
		}
	}
}
