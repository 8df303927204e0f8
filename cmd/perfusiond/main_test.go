package main

import (
	"bytes"
	"context"
	"database/sql"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite"
)

// lockedBuffer collects a command's output while it runs.
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

// testApp returns an app with the given environment and captured output.
// Unless env or a --listen flag says otherwise it listens on a free port:
// never on the default 127.0.0.1:7070, where a developer's quick-start
// server may be running while the tests do.
func testApp(env map[string]string) (*app, *lockedBuffer, *lockedBuffer) {
	out, errb := &lockedBuffer{}, &lockedBuffer{}
	getenv := func(k string) string {
		if v, ok := env[k]; ok || (k != envListen && k != envHTTPListen) {
			return v
		}
		return "127.0.0.1:0"
	}
	return &app{stdout: out, stderr: errb, getenv: getenv}, out, errb
}

// running is a serve command running in-process.
type running struct {
	addr net.Addr
	web  net.Addr // the browser face; nil when --http-listen is empty
	logs *lockedBuffer
	stop context.CancelFunc
	code chan int
}

// startServe runs `perfusiond serve args…` until the test ends or stop.
func startServe(t *testing.T, env map[string]string, args ...string) *running {
	t.Helper()
	return startServeApp(t, env, nil, args...)
}

// startServeApp is startServe with the app adjusted first (for example as
// a test build with the development header switch).
func startServeApp(t *testing.T, env map[string]string, adjust func(*app), args ...string) *running {
	t.Helper()
	a, _, logs := testApp(env)
	if adjust != nil {
		adjust(a)
	}
	addrs, webAddrs := make(chan net.Addr, 1), make(chan net.Addr, 1)
	a.onListen = func(addr net.Addr) { addrs <- addr }
	a.onWebListen = func(addr net.Addr) { webAddrs <- addr }
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{logs: logs, stop: cancel, code: make(chan int, 1)}
	go func() { r.code <- a.run(ctx, append([]string{"serve"}, args...)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.code:
		case <-time.After(15 * time.Second):
			t.Errorf("serve did not stop")
		}
	})
	select {
	case r.addr = <-addrs:
		select {
		case r.web = <-webAddrs: // sent before addrs, when serving
		default:
		}
	case code := <-r.code:
		t.Fatalf("serve exited with %d before listening:\n%s", code, logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not start listening:\n%s", logs)
	}
	return r
}

// createCase creates a case over gRPC, as a perfusionist with a
// development token of dataDir's key, and returns its id.
func createCase(t *testing.T, addr net.Addr, dataDir string) string {
	t.Helper()
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitServing(t, conn)
	key, err := server.LoadOrCreateDevKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := key.Issue(server.DevTokenClaims{Subject: "perfusionist-1", Roles: []server.Role{server.RolePerfusionist}, Sites: []string{"MAIN"}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	resp, err := pb.NewCaseServiceClient(conn).CreateCase(ctx, &pb.CreateCaseRequest{CaseId: uuid.NewString(),
		Kind: pb.CaseKind_CASE_KIND_ECMO, Site: "MAIN", Room: "ICU-2", ScheduledStart: timestamppb.Now()})
	if err != nil {
		t.Fatalf("create case: %v", err)
	}
	return resp.GetCase().GetCaseId()
}

// TestEmbeddedStoreLifecycle serves on the embedded store, stops on the
// shutdown signal, migrates again, and backs the store up online.
func TestEmbeddedStoreLifecycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	env := map[string]string{envDataDir: dir, envListen: "127.0.0.1:0"}
	srv := startServe(t, env, "--log-format", "text", "--shutdown-timeout", "2s")
	id := createCase(t, srv.addr, dir)
	dbPath := filepath.Join(dir, dbFileName)
	logs := srv.logs.String()
	if !strings.Contains(logs, "store: embedded SQLite") || !strings.Contains(logs, dbPath) {
		t.Fatalf("start-up log does not say which store and where:\n%s", logs)
	}
	if strings.Contains(logs, "NON-LOOPBACK") {
		t.Fatalf("warned about a loopback listener:\n%s", logs)
	}

	// Online backup while the server runs, then a refused overwrite.
	backupPath := filepath.Join(t.TempDir(), "copy.db")
	a, out, errb := testApp(env)
	if code := a.run(context.Background(), []string{"backup", "--to", backupPath}); code != exitOK {
		t.Fatalf("backup exited %d: %s", code, errb)
	}
	if !strings.Contains(out.String(), backupPath) {
		t.Fatalf("backup output %q", out)
	}
	if code := a.run(context.Background(), []string{"backup", "--to", backupPath}); code != exitError {
		t.Fatalf("backup over an existing file exited %d, want %d", code, exitError)
	}
	copyDB, err := sqlite.Open(context.Background(), backupPath)
	if err != nil {
		t.Fatal(err)
	}
	defer copyDB.Close()
	if err := copyDB.CheckSchema(context.Background()); err != nil {
		t.Fatalf("backup schema: %v", err)
	}
	c, err := store.New(copyDB, store.Config{}).VerifyRecord(context.Background(), uuid.MustParse(id))
	if err != nil || !c.OK() {
		t.Fatalf("the case in the backup does not verify: %v %+v", err, c)
	}

	// SIGTERM (ctx cancelled) stops it cleanly.
	srv.stop()
	select {
	case code := <-srv.code:
		if code != exitOK {
			t.Fatalf("serve exited %d after shutdown:\n%s", code, srv.logs)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("serve did not stop within its shutdown timeout")
	}
	srv.code <- exitOK // for the cleanup

	a, out, errb = testApp(env)
	if code := a.run(context.Background(), []string{"migrate"}); code != exitOK {
		t.Fatalf("migrate exited %d: %s", code, errb)
	}
	if !strings.HasPrefix(out.String(), "sqlite schema at version ") {
		t.Fatalf("migrate printed %q", out)
	}
}

// TestRefusesForeignSchema: with --migrate=false the server refuses an
// unmigrated store and one migrated by a newer binary.
func TestRefusesForeignSchema(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{envListen: "127.0.0.1:0"}
	a, _, errb := testApp(env)
	if code := a.run(context.Background(), []string{"--data-dir", dir, "--migrate=false"}); code != exitError || !strings.Contains(errb.String(), "schema") {
		t.Fatalf("unmigrated store: exit %d, %s", code, errb)
	}

	a, _, errb = testApp(env)
	if code := a.run(context.Background(), []string{"migrate", "--data-dir", dir}); code != exitOK {
		t.Fatalf("migrate: %s", errb)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, dbFileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'from_the_future', 0)`); err != nil {
		t.Fatalf("simulate a newer schema: %v", err)
	}
	db.Close()
	for _, migrate := range []string{"--migrate=false", "--migrate=true"} {
		a, _, errb = testApp(env)
		if code := a.run(context.Background(), []string{"serve", "--data-dir", dir, migrate}); code != exitError || !strings.Contains(errb.String(), "newer") {
			t.Fatalf("newer schema with %s: exit %d, %s", migrate, code, errb)
		}
	}
}

// TestPostgresStore serves on PostgreSQL and logs host and database only:
// never the user or the password of the connection string.
func TestPostgresStore(t *testing.T) {
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	const password = "pw-never-logged"
	u.User = url.UserPassword(u.User.Username(), password) // trust auth ignores it
	dataDir := t.TempDir()
	env := map[string]string{envDatabaseURL: u.String(), envDataDir: dataDir}
	// Development tokens are refused with PostgreSQL; the test trusts its
	// development key as an identity provider's instead.
	srv := startServe(t, env, append([]string{"--listen", "127.0.0.1:0"}, devKeyJWKS(t, dataDir)...)...)
	createCase(t, srv.addr, dataDir)
	logs := srv.logs.String()
	dbName := strings.TrimPrefix(u.Path, "/")
	if !strings.Contains(logs, "store: PostgreSQL") || !strings.Contains(logs, "database="+dbName) || !strings.Contains(logs, "host=") {
		t.Fatalf("start-up log does not name the PostgreSQL host and database:\n%s", logs)
	}
	if strings.Contains(logs, password) || strings.Contains(logs, "postgres://") {
		t.Fatalf("the connection string reached the log:\n%s", logs)
	}

	a, out, errb := testApp(env)
	if code := a.run(context.Background(), []string{"migrate"}); code != exitOK || !strings.HasPrefix(out.String(), "postgres schema at version ") {
		t.Fatalf("migrate: exit %d, %q, %s", code, out, errb)
	}
	if code := a.run(context.Background(), []string{"backup", "--to", filepath.Join(t.TempDir(), "x.db")}); code != exitUsage {
		t.Fatalf("backup of PostgreSQL exited %d, want %d", code, exitUsage)
	}
}

// TestNonLoopbackWarning: plaintext reachable from other machines is
// refused unless allowed explicitly, and then warned about loudly.
func TestNonLoopbackWarning(t *testing.T) {
	dir := t.TempDir()
	idp := devKeyJWKS(t, dir)
	a, _, errb := testApp(map[string]string{envDataDir: dir})
	if code := a.run(context.Background(), append([]string{"serve", "--listen", "0.0.0.0:0"}, idp...)); code != exitUsage || !strings.Contains(errb.String(), "refusing plaintext") {
		t.Fatalf("plaintext on 0.0.0.0 exited %d, want %d with a reason:\n%s", code, exitUsage, errb)
	}
	srv := startServe(t, map[string]string{envDataDir: dir}, append([]string{"--listen", "0.0.0.0:0", "--allow-plaintext"}, idp...)...)
	if !strings.Contains(srv.logs.String(), "LISTENING IN PLAINTEXT ON A NON-LOOPBACK ADDRESS") {
		t.Fatalf("no warning for 0.0.0.0:\n%s", srv.logs)
	}
}

func TestDefaultDataDir(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{envDataDir: "/srv/perf", "XDG_STATE_HOME": "/x", "HOME": "/h"}, "/srv/perf"},
		{map[string]string{"XDG_STATE_HOME": "/x", "HOME": "/h"}, "/x/perfusion"},
		{map[string]string{"XDG_STATE_HOME": "relative", "HOME": "/h"}, "/h/.local/state/perfusion"},
		{map[string]string{"HOME": "/h"}, "/h/.local/state/perfusion"},
	}
	for _, tc := range tests {
		a, _, _ := testApp(tc.env)
		c, err := a.serveFlags(nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.dataDir; got != tc.want {
			t.Errorf("env %v: data dir %q, want %q", tc.env, got, tc.want)
		}
	}
}

func TestDescribeDSN(t *testing.T) {
	tests := map[string]string{
		"postgres://alice:secret@db.example:6543/perfusion?sslmode=require": "host=db.example:6543 database=perfusion",
		"host=db1 port=5433 user=bob password=secret dbname=rec":            "host=db1:5433 database=rec",
		"postgres://u:secret@h1:5432,h2:5433/rec":                           "host=h1:5432,h2:5433 database=rec",
	}
	for dsn, want := range tests {
		got, err := describeDSN(dsn)
		if err != nil || got != want {
			t.Errorf("describeDSN(%q) = %q, %v; want %q", dsn, got, err, want)
		}
		if strings.Contains(got, "secret") {
			t.Errorf("describeDSN leaks the password: %q", got)
		}
	}
	if _, err := describeDSN("postgres://u:secret@h:notaport/x"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("bad DSN: %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:7070": true, "[::1]:7070": true, "0.0.0.0:7070": false, "[::]:1": false, "10.1.2.3:7070": false} {
		tcp, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := isLoopback(tcp); got != want {
			t.Errorf("isLoopback(%s) = %v", addr, got)
		}
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--version"}, exitOK, "perfusiond "},
		{[]string{"version"}, exitOK, "perfusiond "},
		{[]string{"migrate", "--version"}, exitOK, "perfusiond "},
		{[]string{"frobnicate"}, exitUsage, ""},
		{[]string{"serve", "--no-such-flag"}, exitUsage, ""},
		{[]string{"serve", "stray"}, exitUsage, ""},
		{[]string{"backup"}, exitUsage, ""},
		{[]string{"serve", "--log-format", "xml"}, exitUsage, ""},
	} {
		a, out, errb := testApp(map[string]string{envDataDir: t.TempDir()})
		if code := a.run(context.Background(), tc.args); code != tc.code || !strings.HasPrefix(out.String(), tc.out) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d", tc.args, code, out, errb, tc.code)
		}
	}
	a, _, errb := testApp(map[string]string{envDatabaseURL: "postgres://u:pw-in-env@h/db"})
	if code := a.run(context.Background(), []string{"serve", "-h"}); code != exitOK || !strings.Contains(errb.String(), "-database-url") || strings.Contains(errb.String(), "pw-in-env") {
		t.Errorf("help: exit %d, leaks the environment's connection string or lacks flags:\n%s", code, errb)
	}
	a, _, errb = testApp(map[string]string{envShutdownTimeout: "soon"})
	if code := a.run(context.Background(), []string{"serve"}); code != exitUsage || !strings.Contains(errb.String(), envShutdownTimeout) {
		t.Errorf("bad %s: exit %d, %s", envShutdownTimeout, code, errb)
	}
}

// TestFlagOverridesEnv: a flag wins over its environment variable.
func TestFlagOverridesEnv(t *testing.T) {
	a, _, _ := testApp(map[string]string{envListen: "127.0.0.1:1", envMigrate: "false", envShutdownTimeout: "3s"})
	c, err := a.serveFlags([]string{"--listen", "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != "127.0.0.1:2" || c.migrate || c.shutdownTimeout != 3*time.Second {
		t.Fatalf("config = listen %s, migrate %v, shutdown %v", c.listen, c.migrate, c.shutdownTimeout)
	}
}
