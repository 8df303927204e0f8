package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
	"perfusion/store/postgres/pgtest"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the screenshots of the board, a running case and the sign-off to docs/tablet/")

// TestMain builds nothing itself: binaries are built on first use, so a
// run that skips every test (no chromium) builds nothing.
func TestMain(m *testing.M) {
	code := pgtest.Main(m, "perfusion/clients/tablet/e2e")
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds perfusiond and pumpsim from source once per test run.
func binaries(t *testing.T) (perfusiond, pumpsim string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "tablet-e2e-bin-")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{"perfusion/cmd/perfusiond", "perfusion/clients/pumpsim"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, filepath.Base(pkg)), pkg)
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "perfusiond"), filepath.Join(binDir, "pumpsim")
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// perfusiond is a running server.
type perfusiond struct {
	grpcAddr string
	// base is the tablet's origin, http://127.0.0.1:port.
	base    string
	dataDir string
	logs    *lockedBuffer
	// mint issues a bearer token the server trusts.
	mint func(subject string, roles []server.Role, sites []string, ttl time.Duration) string
}

// serverConfig selects how perfusiond runs.
type serverConfig struct {
	// databaseURL selects PostgreSQL; empty means the embedded store.
	databaseURL string
	// idp, when set, is the identity provider perfusiond trusts.
	idp *mockIDP
	// extra flags, e.g. --jwt-leeway.
	extra []string
}

// startDev starts perfusiond on the embedded store in a fresh data
// directory, with development sign-in (the README's quick start).
func startDev(t *testing.T, extra ...string) *perfusiond {
	return startServer(t, serverConfig{extra: extra})
}

// startOIDC starts perfusiond on a fresh PostgreSQL database trusting idp.
// Without PERFUSION_TEST_DATABASE_URL, or with the server unreachable, it
// skips the test naming it — and fails it in CI.
func startOIDC(t *testing.T, idp *mockIDP, extra ...string) *perfusiond {
	t.Helper()
	base := pgtest.BaseURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	conn, err := pgx.Connect(ctx, base)
	cancel()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s: PostgreSQL at %s is unreachable: %v", t.Name(), pgtest.EnvURL, err)
		}
		t.Skipf("%s: PostgreSQL at %s is unreachable (%v); skipping", t.Name(), pgtest.EnvURL, err)
	}
	conn.Close(context.Background())
	return startServer(t, serverConfig{databaseURL: pgtest.DSN(t), idp: idp, extra: extra})
}

func startServer(t *testing.T, c serverConfig) *perfusiond {
	t.Helper()
	requireChromium(t) // every server here is for a browser: skip before building
	bin, _ := binaries(t)
	p := &perfusiond{grpcAddr: freeAddr(t), dataDir: t.TempDir(), logs: &lockedBuffer{}}
	os.Chmod(p.dataDir, 0o700) // as perfusiond makes it: it holds patient data
	httpAddr := freeAddr(t)
	p.base = "http://" + httpAddr
	args := []string{"serve", "--listen", p.grpcAddr, "--http-listen", httpAddr, "--data-dir", p.dataDir, "--log-format", "text"}
	if c.databaseURL != "" {
		args = append(args, "--database-url", c.databaseURL)
	}
	if c.idp != nil {
		args = append(args, "--jwks-url", c.idp.url+"/jwks", "--jwt-issuer", c.idp.url, "--jwt-audience", c.idp.audience,
			"--oidc-client-id", c.idp.clientID)
		p.mint = func(subject string, roles []server.Role, sites []string, ttl time.Duration) string {
			return c.idp.mint(t, subject, roles, sites, ttl, time.Now())
		}
	} else {
		p.mint = func(subject string, roles []server.Role, sites []string, ttl time.Duration) string {
			key, err := server.LoadOrCreateDevKey(p.dataDir)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := key.Issue(server.DevTokenClaims{Subject: subject, Roles: roles, Sites: sites, TTL: ttl}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
	}
	args = append(args, c.extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("perfusiond log:\n%s", tail(p.logs.String(), 60))
		}
	})
	// Ready when the tablet's configuration is served and gRPC health
	// says SERVING.
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("perfusiond exited before it was ready (%v):\n%s", err, p.logs.String())
		default:
		}
		if p.ready() {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("perfusiond not ready after 60 s:\n%s", p.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *perfusiond) ready() bool {
	resp, err := http.Get(p.base + "/tablet/config.json")
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err == nil && h.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

// cleanEnv is the test's environment without PERFUSION_* settings a
// developer may have exported, so the flags alone configure the server.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PERFUSION_") {
			env = append(env, kv)
		}
	}
	return env
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// bearer attaches a token to every call; plaintext is fine on loopback.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

// api is a native gRPC client of the server, the independent witness of
// what the tablet stored.
type api struct {
	cases    pb.CaseServiceClient
	charting pb.ChartingServiceClient
	record   pb.RecordServiceClient
}

// client returns a gRPC client acting as a perfusionist of MAIN and SIM.
func (p *perfusiond) client(t *testing.T) *api {
	t.Helper()
	tok := p.mint("e2e-witness", []server.Role{server.RolePerfusionist}, []string{"MAIN", "SIM"}, time.Hour)
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(bearer(tok)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &api{cases: pb.NewCaseServiceClient(conn), charting: pb.NewChartingServiceClient(conn), record: pb.NewRecordServiceClient(conn)}
}

// entries lists a case's current entries (include_history shows
// superseded ones too).
func (a *api) entries(t *testing.T, caseID string, history bool) []*pb.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := a.charting.ListEntries(ctx, &pb.ListEntriesRequest{CaseId: caseID, IncludeHistory: history})
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	return resp.GetEntries()
}

func (a *api) getCase(t *testing.T, caseID string) *pb.Case {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := a.cases.GetCase(ctx, &pb.GetCaseRequest{CaseId: caseID})
	if err != nil {
		t.Fatalf("GetCase: %v", err)
	}
	return resp.GetCase()
}

// simRun is a pumpsim run.
type simRun struct {
	caseID string
	out    *lockedBuffer
	done   chan error
}

// wait waits for pumpsim to end by itself.
func (s *simRun) wait(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			t.Fatalf("pumpsim: %v\n%s", err, s.out.String())
		}
	case <-time.After(limit):
		t.Fatalf("pumpsim did not finish within %s:\n%s", limit, tail(s.out.String(), 20))
	}
}

var caseIDPattern = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// startPumpsim runs pumpsim against p with args (e.g. --speed 30
// --duration 4h) and returns once it printed the id of the case it
// created. It is stopped when the test ends. pumpsim charts at site SIM.
func (p *perfusiond) startPumpsim(t *testing.T, args ...string) *simRun {
	t.Helper()
	_, bin := binaries(t)
	tok := p.mint("pumpsim", []server.Role{server.RolePerfusionist}, []string{"SIM"}, 48*time.Hour)
	args = append([]string{"--addr", p.grpcAddr, "--spool-dir", t.TempDir(), "--progress", "0"}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), "PERFUSION_TOKEN="+tok)
	s := &simRun{out: &lockedBuffer{}, done: make(chan error, 1)}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = s.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ids := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			fmt.Fprintln(s.out, sc.Text())
			if id := caseIDPattern.FindString(sc.Text()); id != "" && !sent {
				ids <- id
				sent = true
			}
		}
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-s.done:
			s.done <- err
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
		}
	})
	select {
	case s.caseID = <-ids:
		return s
	case err := <-s.done:
		t.Fatalf("pumpsim ended without a case (%v):\n%s", err, s.out.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("pumpsim printed no case id:\n%s", s.out.String())
	}
	return nil
}

// eventually polls f until it returns nil or the time is up, then fails
// with f's last error.
func eventually(t *testing.T, limit time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var errNotYet = errors.New("not yet")

// httpGet fetches a JSON object.
func httpGet(url string) (map[string]any, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, fmt.Errorf("GET %s: %v", url, err)
	}
	return m, nil
}
