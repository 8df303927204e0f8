package failover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// tools are the programs a drill runs.
type tools struct {
	patroni, etcd string
	pgBin         string // PostgreSQL's server binaries (initdb, postgres, pg_ctl, pg_basebackup)
}

// needTools finds Patroni, etcd and PostgreSQL's server binaries. When one
// is missing the test is skipped, naming it, or fails in CI, where
// .ci/run installs them.
func needTools(t *testing.T, what ...string) tools {
	t.Helper()
	var tl tools
	var missing []string
	for _, w := range what {
		switch w {
		case "patroni", "etcd":
			p, err := exec.LookPath(w)
			if err != nil {
				missing = append(missing, w)
			}
			if w == "patroni" {
				tl.patroni = p
			} else {
				tl.etcd = p
			}
		case "postgres":
			tl.pgBin = pgBinDir()
			if tl.pgBin == "" {
				missing = append(missing, "PostgreSQL server binaries (initdb, postgres)")
			}
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%s: %s not installed (Debian: apt-get install patroni etcd-server postgresql)", t.Name(), strings.Join(missing, ", "))
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; .ci/run installs them, so CI must run this test")
		}
		t.Skip(msg + "; skipping")
	}
	return tl
}

// pgBinDir is the newest of Debian's /usr/lib/postgresql/N/bin, or where
// pg_config says, or "" when initdb is nowhere.
func pgBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	return ""
}

// osUser is whom the database processes run as: the postgres user when
// the test runs as root (PostgreSQL refuses root), else the test's own.
type osUser struct {
	uid, gid uint32
	switched bool
}

func dbUser(t *testing.T) osUser {
	t.Helper()
	if os.Geteuid() != 0 {
		return osUser{uid: uint32(os.Getuid()), gid: uint32(os.Getgid())}
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root, and there is no postgres user to run PostgreSQL as: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return osUser{uid: uint32(uid), gid: uint32(gid), switched: true}
}

// workDir makes a temporary directory owned by u (mode 0700), removed when
// the test ends. It is not t.TempDir: that one's parent is the test's own
// and closed to other users.
func workDir(t *testing.T, u osUser, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chown(dir, int(u.uid), int(u.gid)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mkdirOwned makes dir (0700) owned by u.
func mkdirOwned(t *testing.T, u osUser, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, int(u.uid), int(u.gid)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeOwned writes a file owned by u.
func writeOwned(t *testing.T, u osUser, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, int(u.uid), int(u.gid)); err != nil {
		t.Fatal(err)
	}
}

// proc is a process a drill started, with its output in a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

// startProc starts bin as u, output to dir/name.log. Its environment is
// the test's less PERFUSION_* and PG* variables (so a developer's
// settings cannot leak into the drill) plus env.
func startProc(t *testing.T, u osUser, dir, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(cleanEnv(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if u.switched {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.uid, Gid: u.gid}
		cmd.Env = append(cmd.Env, "HOME="+dir, "USER=postgres", "LOGNAME=postgres")
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- end of %s's log:\n%s", name, tail(logPath, 3000))
		}
	})
	return p
}

// runAs runs a command as u to completion and returns its output.
func runAs(u osUser, dir string, env []string, bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	if u.switched {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PERFUSION_") || strings.HasPrefix(kv, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// kill ends the process and everything in its process group with
// SIGKILL, as a power cut would, and waits for it.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Process.Kill()
	<-p.done
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// freePort returns a port that was free a moment ago on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// etcdServer starts a one-member etcd on free loopback ports and returns
// its client address.
func startEtcd(t *testing.T, tl tools, u osUser, dir string) string {
	t.Helper()
	client, peer := freePort(t), freePort(t)
	cu, pu := fmt.Sprintf("http://127.0.0.1:%d", client), fmt.Sprintf("http://127.0.0.1:%d", peer)
	data := mkdirOwned(t, u, filepath.Join(dir, "etcd"))
	startProc(t, u, dir, "etcd", nil, tl.etcd,
		"--name", "drill", "--data-dir", data,
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
		"--initial-cluster", "drill="+pu, "--initial-cluster-state", "new",
		"--log-level", "warn")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(cu + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(body), "true") {
				return fmt.Sprintf("127.0.0.1:%d", client)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("etcd did not become healthy within 30s")
	return ""
}

// node is one PostgreSQL server with its Patroni.
type node struct {
	name     string
	pgPort   int
	restPort int
	dir      string
	dataDir  string
	cfgPath  string
	patroni  *proc
}

// pgAddr is the node's PostgreSQL address.
func (n *node) pgAddr() string { return fmt.Sprintf("127.0.0.1:%d", n.pgPort) }

// killMachine ends the node as the loss of its machine would: Patroni and
// PostgreSQL (the postmaster runs in a session of its own, so its process
// group holds every backend) with SIGKILL, Patroni first so it cannot
// restart PostgreSQL.
func (n *node) killMachine() {
	n.patroni.kill()
	b, err := os.ReadFile(filepath.Join(n.dataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 1 {
		return
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

// clusterOptions choose the replication mode.
type clusterOptions struct {
	// synchronous: Patroni's synchronous_mode and synchronous_mode_strict.
	synchronous bool
	// nodes: how many PostgreSQL servers (3: a primary, its synchronous
	// standby, and a second standby that becomes the new primary's
	// synchronous standby after a failover).
	nodes int
}

// cluster is a Patroni-managed PostgreSQL cluster on loopback. The first
// node bootstraps and is the primary; its replication traffic to the
// standbys passes through walProxy, so a drill can delay it.
type cluster struct {
	t     *testing.T
	tl    tools
	u     osUser
	dir   string
	nodes []*node
	proxy *walProxy
}

// Patroni timing: the leader key lives ttl seconds unless renewed (every
// loop_wait); a standby takes over once it has expired. Patroni's
// defaults (30, 10, 10) suit a real network; these make a drill's
// failover about 10 s.
const (
	patroniTTL          = 8
	patroniLoopWait     = 1
	patroniRetryTimeout = 3
)

// startCluster starts etcd, bootstraps the first node, waits until it is
// the primary, then starts the others as its standbys and waits until they
// stream (and, when synchronous, one is the synchronous standby).
func startCluster(t *testing.T, tl tools, o clusterOptions) *cluster {
	t.Helper()
	u := dbUser(t)
	c := &cluster{t: t, tl: tl, u: u, dir: workDir(t, u, "perfusion-failover-")}
	etcdAddr := startEtcd(t, tl, u, c.dir)
	for i := 0; i < o.nodes; i++ {
		n := &node{name: fmt.Sprintf("pg%d", i), pgPort: freePort(t), restPort: freePort(t)}
		n.dir = mkdirOwned(t, u, filepath.Join(c.dir, n.name))
		n.dataDir = filepath.Join(n.dir, "data")
		c.nodes = append(c.nodes, n)
	}
	c.proxy = newWALProxy(t, c.nodes[0].pgAddr())
	for i, n := range c.nodes {
		connect := n.pgAddr()
		if i == 0 {
			connect = c.proxy.addr()
		}
		cfg := patroniConfig(n, connect, etcdAddr, tl.pgBin, o.synchronous)
		n.cfgPath = filepath.Join(n.dir, "patroni.yml")
		b, err := json.MarshalIndent(cfg, "", "  ") // JSON is YAML
		if err != nil {
			t.Fatal(err)
		}
		writeOwned(t, u, n.cfgPath, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	first := c.nodes[0]
	c.startPatroni(first)
	if err := waitFor(ctx, 100*time.Millisecond, func() error { return c.isPrimary(ctx, first) }); err != nil {
		t.Fatalf("%s did not become the primary: %v", first.name, err)
	}
	for _, n := range c.nodes[1:] {
		c.startPatroni(n)
	}
	if err := c.waitStandbys(ctx, first, o.nodes-1, o.synchronous); err != nil {
		t.Fatalf("standbys: %v", err)
	}
	return c
}

func (c *cluster) startPatroni(n *node) {
	n.patroni = startProc(c.t, c.u, n.dir, "patroni-"+n.name, nil, c.tl.patroni, n.cfgPath)
}

// patroniConfig is one node's Patroni configuration. Every node trusts
// loopback connections: the drill is about failover, not passwords (the
// deployment guide sets scram-sha-256 and TLS).
func patroniConfig(n *node, connectAddr, etcdAddr, pgBin string, synchronous bool) map[string]any {
	dcs := map[string]any{
		"ttl": patroniTTL, "loop_wait": patroniLoopWait, "retry_timeout": patroniRetryTimeout,
		"synchronous_mode":        synchronous,
		"synchronous_mode_strict": synchronous,
		// Patroni's default (1 MB): a standby further behind than this is
		// not promoted. Left as it is, so the asynchronous drill shows
		// the loss Patroni's own default allows.
		"maximum_lag_on_failover": 1 << 20,
		"postgresql": map[string]any{
			"use_pg_rewind": true,
			"use_slots":     true,
			"parameters": map[string]any{
				"wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on",
				"max_wal_senders": 10, "max_replication_slots": 10, "max_connections": 100,
				"wal_keep_size": "128MB",
			},
		},
	}
	return map[string]any{
		"scope":     "perfusion-drill",
		"namespace": "/perfusion-drill/",
		"name":      n.name,
		"log":       map[string]any{"level": "INFO"},
		"restapi": map[string]any{
			"listen":          fmt.Sprintf("127.0.0.1:%d", n.restPort),
			"connect_address": fmt.Sprintf("127.0.0.1:%d", n.restPort),
		},
		"etcd3": map[string]any{"hosts": []string{etcdAddr}},
		"bootstrap": map[string]any{
			"dcs":    dcs,
			"initdb": []any{map[string]string{"encoding": "UTF8"}, map[string]string{"locale": "C"}, "data-checksums"},
		},
		"postgresql": map[string]any{
			"listen":          n.pgAddr(),
			"connect_address": connectAddr,
			"data_dir":        n.dataDir,
			"bin_dir":         pgBin,
			"pgpass":          filepath.Join(n.dir, "pgpass"),
			"authentication": map[string]any{
				"superuser":   map[string]string{"username": "postgres", "password": "postgres"},
				"replication": map[string]string{"username": "replicator", "password": "replicator"},
				"rewind":      map[string]string{"username": "postgres", "password": "postgres"},
			},
			"pg_hba": []string{
				"local all all trust",
				"host all all 127.0.0.1/32 trust",
				"host replication all 127.0.0.1/32 trust",
			},
			"parameters": map[string]any{
				"unix_socket_directories": n.dir,
				"shared_buffers":          "32MB",
			},
			"remove_data_directory_on_rewind_failure":     true,
			"remove_data_directory_on_diverged_timelines": true,
		},
	}
}

// superDSN connects to one node as the superuser.
func (n *node) superDSN(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&connect_timeout=2", n.pgAddr(), db)
}

// dsn is what perfusiond is given: every node, and only a writable one
// will do (target_session_attrs=read-write), so after a failover new
// connections find the new primary by themselves.
func (c *cluster) dsn(db string) string {
	hosts := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		hosts[i] = n.pgAddr()
	}
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&target_session_attrs=read-write&connect_timeout=2",
		strings.Join(hosts, ","), db)
}

// isPrimary reports whether n accepts writes.
func (c *cluster) isPrimary(ctx context.Context, n *node) error {
	var recovery bool
	if err := queryRow(ctx, n.superDSN("postgres"), "SELECT pg_is_in_recovery()", &recovery); err != nil {
		return err
	}
	if recovery {
		return errors.New("in recovery")
	}
	return nil
}

// waitStandbys waits until want standbys stream from primary and, when
// synchronous, one of them is synchronous.
func (c *cluster) waitStandbys(ctx context.Context, primary *node, want int, synchronous bool) error {
	return waitFor(ctx, 200*time.Millisecond, func() error {
		var streaming, sync int
		if err := queryRow(ctx, primary.superDSN("postgres"),
			"SELECT count(*) FILTER (WHERE state = 'streaming'), count(*) FILTER (WHERE sync_state = 'sync') FROM pg_stat_replication",
			&streaming, &sync); err != nil {
			return err
		}
		if streaming < want || (synchronous && sync < 1) {
			return fmt.Errorf("%d of %d standbys streaming, %d synchronous", streaming, want, sync)
		}
		return nil
	})
}

// primary returns the node that accepts writes now, if any.
func (c *cluster) primary(ctx context.Context, except *node) *node {
	for _, n := range c.nodes {
		if n == except {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.isPrimary(cctx, n)
		cancel()
		if err == nil {
			return n
		}
	}
	return nil
}

// queryRow runs one query on a fresh connection.
func queryRow(ctx context.Context, dsn, sql string, dest ...any) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, sql).Scan(dest...)
}

func execSQL(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// waitFor calls f every interval until it returns nil or ctx ends (then
// f's last error is returned).
func waitFor(ctx context.Context, interval time.Duration, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(interval):
		}
	}
}

// walProxy carries the primary's replication connections (and
// pg_basebackup's) to its standbys. hold stops the primary's bytes from
// reaching the standbys — as a congested or partitioned link would — while
// both ends stay connected; cut drops every connection and what it held,
// as the primary's machine dying would.
type walProxy struct {
	lis    net.Listener
	target string

	mu    sync.Mutex
	held  bool
	cond  *sync.Cond
	conns map[net.Conn]struct{}
	dead  bool
}

func newWALProxy(t *testing.T, target string) *walProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &walProxy{lis: lis, target: target, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	go p.accept()
	t.Cleanup(p.cut)
	return p
}

func (p *walProxy) addr() string { return p.lis.Addr().String() }

func (p *walProxy) accept() {
	for {
		down, err := p.lis.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		if p.dead {
			p.mu.Unlock()
			down.Close()
			up.Close()
			return
		}
		p.conns[down], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.pipe(down, up, true) // primary → standby: may be held
		go p.pipe(up, down, false)
	}
}

func (p *walProxy) pipe(dst, src net.Conn, holdable bool) {
	defer func() { dst.Close(); src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && holdable {
			p.mu.Lock()
			for p.held && !p.dead {
				p.cond.Wait()
			}
			dead := p.dead
			p.mu.Unlock()
			if dead {
				return // what was held is lost with the link
			}
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// hold stops forwarding the primary's bytes.
func (p *walProxy) hold() {
	p.mu.Lock()
	p.held = true
	p.mu.Unlock()
}

// cut closes every connection and the listener, dropping what was held.
func (p *walProxy) cut() {
	p.mu.Lock()
	p.dead = true
	for c := range p.conns {
		c.Close()
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	p.lis.Close()
}
