package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// spawned is a perfusiond this run built and started, on a store of its
// own, so the numbers measure that process and that data only.
type spawned struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	addr    string
	dir     string // temporary: binary, embedded store, log
	logPath string
	dsn     string       // the fresh database, "" on the embedded store
	dropDB  func() error // drops the fresh database
}

// spawnServer builds perfusiond (unless given a binary), creates a fresh
// database on baseDSN (or a temporary embedded store when baseDSN is
// empty), and starts the server on a free loopback port.
func spawnServer(ctx context.Context, c *config, progress io.Writer) (_ *spawned, err error) {
	dir, err := os.MkdirTemp("", "perfusion-loadgen-")
	if err != nil {
		return nil, err
	}
	s := &spawned{dir: dir, logPath: filepath.Join(dir, "perfusiond.log"), exited: make(chan struct{})}
	defer func() {
		if err != nil {
			s.stop(progress)
		}
	}()
	bin := c.perfusiond
	if bin == "" {
		bin = filepath.Join(dir, "perfusiond")
		fmt.Fprintln(progress, "loadgen: building perfusiond")
		out, err := exec.CommandContext(ctx, "go", "build", "-tags", "devauth", "-o", bin, "perfusion/cmd/perfusiond").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("build perfusiond (run from inside the perfusion module, or pass --perfusiond): %v\n%s", err, out)
		}
	}
	if s.addr, err = freeLoopbackAddr(); err != nil {
		return nil, err
	}
	// loadgen names itself with the development header, which only test
	// builds of perfusiond have (go build -tags devauth; built so above).
	// Every stream is the one principal's: its per-principal limit is off.
	args := []string{"serve", "--listen", s.addr, "--log-level", "warn", "--dev-header-auth", "--max-streams-per-principal", "0"}
	if c.databaseURL != "" {
		name, dsn, drop, err := createScratchDB(ctx, c.databaseURL, "perfusion_loadgen_")
		if err != nil {
			return nil, err
		}
		s.dsn, s.dropDB = dsn, drop
		fmt.Fprintf(progress, "loadgen: created database %s for the server\n", name)
		args = append(args, "--database-url", dsn)
	} else {
		args = append(args, "--data-dir", filepath.Join(dir, "data"))
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// The browser face listens as in production, on a free port; by
	// the environment, which a perfusiond older than it ignores, so one
	// loadgen compares builds before and after it.
	s.cmd.Env = append(childEnv(), "PERFUSION_HTTP_LISTEN=127.0.0.1:0")
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		return nil, fmt.Errorf("start perfusiond: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	fmt.Fprintf(progress, "loadgen: perfusiond pid %d on %s\n", s.cmd.Process.Pid, s.addr)
	return s, nil
}

// childEnv is our environment without PERFUSION_* variables: the flags we
// pass must be the whole configuration (a PERFUSION_DATABASE_URL would
// otherwise turn the embedded-store run into a PostgreSQL one).
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PERFUSION_") {
			env = append(env, kv)
		}
	}
	return env
}

func (s *spawned) pid() int { return s.cmd.Process.Pid }

// waitServing waits for the health service to say SERVING, or the process
// to die.
func (s *spawned) waitServing(ctx context.Context, conn *grpc.ClientConn) error {
	return waitServing(ctx, conn, s.exited, s.logPath)
}

// waitServing polls the standard health service until SERVING. exited,
// when not nil, ends the wait early with the server's log.
func waitServing(ctx context.Context, conn *grpc.ClientConn, exited <-chan struct{}, logPath string) error {
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		r, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.Status == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("perfusiond exited before serving:\n%s", tail(logPath))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("the server did not report SERVING within 60s")
}

// stop ends the server gracefully (SIGTERM, then SIGKILL after 20 s),
// drops its database and removes the temporary directory.
func (s *spawned) stop(progress io.Writer) {
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
			fmt.Fprintln(progress, "loadgen: perfusiond did not stop within 20s; killing it")
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	if s.dropDB != nil {
		if err := s.dropDB(); err != nil {
			fmt.Fprintf(progress, "loadgen: drop database: %v\n", err)
		}
	}
	_ = os.RemoveAll(s.dir)
}

// freeLoopbackAddr picks a free port on 127.0.0.1. Another process could
// take it before the server binds; the server then fails to start, loudly.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
