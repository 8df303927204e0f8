// Command limitprobe reproduces the resource attacks of issue 16 against
// real perfusiond processes and reports what each held: stalled 15 MiB
// requests with junk tokens, silent TCP connections, and many WatchCase
// streams from one token. With --before-rev it builds that git revision
// too and runs the same attacks against both, one after the other, so the
// figures compare on one machine in one run.
//
//	go run ./clients/limitprobe --before-rev a9991a6
//
// Each server runs on a fresh embedded store on loopback with its default
// settings; the probe mints a development token with `perfusiond token`.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
)

type config struct {
	beforeRev            string
	junk, junkBytes      int
	idle, streams, conns int
	hold                 time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.beforeRev, "before-rev", "", "git revision to build and probe first, for comparison (empty: only the working tree)")
	flag.IntVar(&c.junk, "junk", 40, "stalled requests with junk tokens")
	flag.IntVar(&c.junkBytes, "junk-bytes", 15<<20, "size each stalled request claims")
	flag.IntVar(&c.idle, "idle", 1000, "silent TCP connections")
	flag.IntVar(&c.streams, "streams", 2000, "WatchCase streams from one token")
	flag.IntVar(&c.conns, "stream-conns", 20, "connections the streams are spread over")
	flag.DurationVar(&c.hold, "hold", 15*time.Second, "how long each attack is held before it is measured")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "limitprobe:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	dir, err := os.MkdirTemp("", "limitprobe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	type build struct{ label, bin string }
	var builds []build
	if c.beforeRev != "" {
		src := filepath.Join(dir, "before-src")
		if err := os.MkdirAll(src, 0o700); err != nil {
			return err
		}
		archive := exec.Command("sh", "-c", "git archive "+strconv.Quote(c.beforeRev)+" | tar -x -C "+strconv.Quote(src))
		if out, err := archive.CombinedOutput(); err != nil {
			return fmt.Errorf("git archive %s: %v\n%s", c.beforeRev, err, out)
		}
		bin := filepath.Join(dir, "perfusiond-before")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/perfusiond")
		cmd.Dir = src
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", c.beforeRev, err, out)
		}
		builds = append(builds, build{"before (" + c.beforeRev + ")", bin})
	}
	bin := filepath.Join(dir, "perfusiond-after")
	if out, err := exec.Command("go", "build", "-o", bin, "perfusion/cmd/perfusiond").CombinedOutput(); err != nil {
		return fmt.Errorf("build perfusiond: %v\n%s", err, out)
	}
	builds = append(builds, build{"after (working tree)", bin})

	fmt.Printf("%-24s %-44s %s\n", "server", "attack", "result")
	for _, b := range builds {
		for _, attack := range []struct {
			name string
			do   func(*server, config) (string, error)
		}{
			{fmt.Sprintf("%d stalled %d MiB junk-token requests", c.junk, c.junkBytes>>20), func(s *server, c config) (string, error) {
				return junkRequests(s, c, "junk-not-a-token")
			}},
			// Shaped like a signed JWT, so it passes the header check and
			// meets the receive limit instead.
			{fmt.Sprintf("%d stalled %d MiB forged-JWT requests", c.junk, c.junkBytes>>20), func(s *server, c config) (string, error) {
				return junkRequests(s, c, forgedJWT)
			}},
			{fmt.Sprintf("%d silent TCP connections", c.idle), idleConns},
			{fmt.Sprintf("%d WatchCase streams, one token", c.streams), manyStreams},
		} {
			// A fresh server per attack, so each starts from the same RSS.
			s, err := start(b.bin, filepath.Join(dir, fmt.Sprintf("data-%d", time.Now().UnixNano())))
			if err != nil {
				return fmt.Errorf("%s: %w", b.label, err)
			}
			res, err := attack.do(s, c)
			s.stop()
			if err != nil {
				return fmt.Errorf("%s, %s: %w", b.label, attack.name, err)
			}
			fmt.Printf("%-24s %-44s %s\n", b.label, attack.name, res)
		}
	}
	return nil
}

// server is a perfusiond child process.
type server struct {
	cmd   *exec.Cmd
	addr  string
	token string
}

func start(bin, dataDir string) (*server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "serve", "--listen", addr, "--http-listen", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "error")
	cmd.Env = withoutPerfusionEnv()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, addr: addr}
	tok, err := exec.Command(bin, "token", "--data-dir", dataDir, "--subject", "probe", "--roles", "perfusionist", "--sites", "MAIN").Output()
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("token: %w", err)
	}
	s.token = strings.TrimSpace(string(tok))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.stop()
		return nil, err
	}
	defer conn.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.Status == healthpb.HealthCheckResponse_SERVING {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("server did not become SERVING")
		}
	}
}

func (s *server) stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

func withoutPerfusionEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PERFUSION_") {
			env = append(env, kv)
		}
	}
	return env
}

// rssMiB reads the process's resident set size.
func (s *server) rssMiB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

// fds counts the process's open file descriptors (sockets included).
func (s *server) fds() int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// forgedJWT has the shape of a signed JWT (header {"alg":"ES256"}) and a
// signature nobody made.
const forgedJWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJl"

// junkRequests opens c.junk HTTP/2 connections, each starting a GetCase
// call with a junk bearer token whose gRPC length prefix claims
// c.junkBytes, sends body bytes as fast as flow control allows, and never
// finishes it.
func junkRequests(s *server, c config, token string) (string, error) {
	before := s.rssMiB()
	var sent atomic.Int64
	var refused atomic.Int32
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), c.hold)
	defer cancel()
	peak := before
	for i := 0; i < c.junk; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if stalled(ctx, s.addr, token, c.junkBytes, &sent) {
				refused.Add(1)
			}
		}()
	}
	for ctx.Err() == nil {
		time.Sleep(250 * time.Millisecond)
		peak = max(peak, s.rssMiB())
	}
	held := s.rssMiB()
	wg.Wait()
	return fmt.Sprintf("RSS %.0f → peak %.0f MiB (%.0f after %v); %d MiB of body sent; %d of %d refused before the body was read",
		before, peak, held, c.hold, sent.Load()>>20, refused.Load(), c.junk), nil
}

// stalled runs one stalled request until ctx ends; it reports whether the
// server refused it (a RST_STREAM or a response) before ctx ended.
func stalled(ctx context.Context, addr, token string, claim int, sent *atomic.Int64) bool {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	context.AfterFunc(ctx, func() { conn.Close() })
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		return false
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		return false
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/perfusion.v1.CaseService/GetCase"},
		{":authority", addr}, {"content-type", "application/grpc"}, {"te", "trailers"}, {"authorization", "Bearer " + token}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		return false
	}
	prefix := make([]byte, 5)
	binary.BigEndian.PutUint32(prefix[1:], uint32(claim))
	if err := fr.WriteData(1, false, prefix); err != nil {
		return false
	}
	window, remaining := int64(65535-5), int64(claim-1) // never the last byte
	chunk := make([]byte, 16<<10)
	send := func() error {
		for window > 0 && remaining > 0 {
			n := min(int64(len(chunk)), window, remaining)
			if err := fr.WriteData(1, false, chunk[:n]); err != nil {
				return err
			}
			window -= n
			remaining -= n
			sent.Add(n)
		}
		return nil
	}
	if send() != nil {
		return false
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return false
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 || f.StreamID == 1 {
				window += int64(f.Increment)
				if send() != nil {
					return false
				}
			}
		case *http2.RSTStreamFrame:
			return true
		case *http2.HeadersFrame:
			if f.StreamID == 1 {
				return true // an early response: refused
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = fr.WritePing(true, f.Data)
			}
		}
	}
}

// idleConns opens c.idle TCP connections that never speak, holds them
// for c.hold and counts how many the server still keeps.
func idleConns(s *server, c config) (string, error) {
	before, fdsBefore := s.rssMiB(), s.fds()
	var conns []net.Conn
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	for i := 0; i < c.idle; i++ {
		cn, err := net.Dial("tcp", s.addr)
		if err != nil {
			return "", fmt.Errorf("dial %d: %w", i, err)
		}
		conns = append(conns, cn)
	}
	time.Sleep(time.Second)
	fdsPeak := s.fds()
	time.Sleep(c.hold - time.Second)
	open := 0
	buf := make([]byte, 4096)
	for _, cn := range conns {
		// Drain what the server sent (its settings) and see whether it
		// has closed the connection.
		for {
			cn.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
			if _, err := cn.Read(buf); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					open++
				}
				break
			}
		}
	}
	return fmt.Sprintf("RSS %.0f → %.0f MiB; server fds %d → %d after 1 s, %d after %v; %d of %d connections still open",
		before, s.rssMiB(), fdsBefore, fdsPeak, s.fds(), c.hold, open, c.idle), nil
}

// manyStreams opens c.streams WatchCase streams on one case with one
// token, spread over c.conns connections, and counts those that opened.
func manyStreams(s *server, c config) (string, error) {
	before := s.rssMiB()
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+s.token))
	defer cancel()
	var conns []*grpc.ClientConn
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	for i := 0; i < c.conns; i++ {
		cn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return "", err
		}
		conns = append(conns, cn)
	}
	cs, err := pb.NewCaseServiceClient(conns[0]).CreateCase(ctx, &pb.CreateCaseRequest{Kind: pb.CaseKind_CASE_KIND_ECMO, Site: "MAIN", Room: "ICU-1", ScheduledStart: timestamppb.Now()})
	if err != nil {
		return "", fmt.Errorf("create case: %w", err)
	}
	var opened, exhausted, other atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < c.streams; i++ {
		wg.Add(1)
		go func(cn *grpc.ClientConn) {
			defer wg.Done()
			sctx, scancel := context.WithTimeout(ctx, c.hold)
			defer scancel()
			st, err := pb.NewChartingServiceClient(cn).WatchCase(sctx, &pb.WatchCaseRequest{CaseId: cs.GetCase().GetCaseId()})
			if err == nil {
				_, err = st.Recv()
			}
			switch {
			case err == nil:
				opened.Add(1)
				<-sctx.Done() // hold it
			case status.Code(err) == codes.ResourceExhausted:
				exhausted.Add(1)
			default:
				other.Add(1)
			}
		}(conns[i%len(conns)])
	}
	time.Sleep(c.hold / 2)
	held := s.rssMiB()
	wg.Wait()
	return fmt.Sprintf("RSS %.0f → %.0f MiB; %d streams open, %d ResourceExhausted, %d other errors",
		before, held, opened.Load(), exhausted.Load(), other.Load()), nil
}
