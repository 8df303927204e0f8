// Package pgtest gives tests a fresh PostgreSQL database of their own.
//
// The server comes from PERFUSION_TEST_DATABASE_URL (for example
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable); its user must be
// allowed to create databases. Each call creates a database with a random
// name on that server and drops it when the test ends, so tests can run in
// parallel and never see each other's rows. Without the variable the tests
// are skipped on a developer machine but fail in CI (CI set), so a
// misconfigured pipeline cannot pass by skipping the system of record; Main,
// called from a package's TestMain, sums the skipped tests up in one line.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"perfusion/store/postgres"
)

// EnvURL names the environment variable holding the test server's URL.
const EnvURL = "PERFUSION_TEST_DATABASE_URL"

// Open returns a migrated Backend on a fresh database. The backend is
// closed and the database dropped when the test ends.
func Open(t testing.TB) *postgres.Backend {
	t.Helper()
	dsn := DSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: open: %v", err)
	}
	// Registered after DSN's cleanup, so it runs first: the pool is closed
	// before the database is dropped.
	t.Cleanup(func() { _ = b.Close() })
	if err := b.Migrate(ctx); err != nil {
		t.Fatalf("pgtest: migrate: %v", err)
	}
	return b
}

// DSN creates a fresh, empty (not migrated) database and returns its
// connection string, for tests that open it themselves, such as tests that
// start the server binary. The database is dropped when the test ends,
// forcibly disconnecting anything still connected.
func DSN(t testing.TB) string {
	t.Helper()
	base := BaseURL(t)
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("pgtest: random name: %v", err)
	}
	name := "perfusion_test_" + hex.EncodeToString(rnd[:])
	ident := pgx.Identifier{name}.Sanitize()
	if err := admin(base, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		if err := admin(base, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(base, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// BaseURL returns the test server's URL itself, for tests that make their
// own databases on it. Without EnvURL it skips t on a developer machine,
// noting it for Main's summary, and fails it in CI.
func BaseURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvURL)
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s: %s is not set; PostgreSQL tests must run in CI", t.Name(), EnvURL)
		}
		skipped.add(t.Name())
		t.Skipf("%s: %s is not set; skipping PostgreSQL test", t.Name(), EnvURL)
	}
	return base
}

// skipped holds the names of the tests BaseURL skipped. It is state of
// the test binary, which is one package's tests, so Main can sum them up.
var skipped skipList

type skipList struct {
	mu    sync.Mutex
	names []string
}

func (l *skipList) add(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, name)
}

// Main runs a package's tests; call it from the package's TestMain as
// os.Exit(pgtest.Main(m, "perfusion/store")). When tests were skipped for
// want of EnvURL it prints one line naming the package and them, e.g.
//
//	perfusion/store: 4 PostgreSQL tests skipped, PERFUSION_TEST_DATABASE_URL is not set (in TestQueryBucketsMatchNaive)
//
// so a skipped system of record is not mistaken for a tested one. It shows
// with go test -v, and whenever go test shows a package's output (a
// failure, a package tested from its own directory); go test ./... without
// -v prints only "ok" for a package that passed.
func Main(m *testing.M, pkg string) int {
	code := m.Run()
	if line := skipped.summary(pkg); line != "" {
		fmt.Println(line)
	}
	return code
}

// summary is Main's line, or "" when nothing was skipped.
func (l *skipList) summary(pkg string) string {
	l.mu.Lock()
	names := slices.Clone(l.names)
	l.mu.Unlock()
	if len(names) == 0 {
		return ""
	}
	// Named by top-level test: subtests (TestX/postgres/…) would make the
	// one line unreadable; go test -v names each.
	var tops []string
	for _, n := range names {
		top, _, _ := strings.Cut(n, "/")
		tops = append(tops, top)
	}
	slices.Sort(tops)
	tops = slices.Compact(tops)
	const shown = 6
	list := strings.Join(tops[:min(len(tops), shown)], ", ")
	if len(tops) > shown {
		list += fmt.Sprintf(" and %d more", len(tops)-shown)
	}
	noun := "tests"
	if len(names) == 1 {
		noun = "test"
	}
	return fmt.Sprintf("%s: %d PostgreSQL %s skipped, %s is not set (in %s)", pkg, len(names), noun, EnvURL, list)
}

// admin runs one statement on the base database over a connection of its
// own (CREATE/DROP DATABASE cannot run inside a transaction or a pool
// whose other connections might be using the target).
func admin(dsn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns dsn pointing at database name instead, for both
// URL and keyword/value connection strings.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// In keyword/value strings a later keyword overrides an earlier one.
	return dsn + " dbname=" + name, nil
}
