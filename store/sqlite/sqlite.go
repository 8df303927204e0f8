// Package sqlite is the embedded store backend: one SQLite file, no server
// to run, for a perfusion cart or a developer's machine. It offers the same
// semantics as store/postgres (the system of record) and passes the same
// conformance suite (store/storetest).
//
// SQLite allows one writer at a time, so the backend keeps a dedicated
// writer connection and a separate pool of read connections. In WAL mode
// readers never block the writer and see a consistent snapshot; write
// transactions begin IMMEDIATE, taking the write lock up front, which both
// serialises writers per database (so LockCase needs no row lock) and avoids
// the deadlock of two deferred transactions upgrading to write at once.
// synchronous=FULL makes every commit durable before ReadWrite returns:
// the server acknowledges data only after that, and acknowledged means
// durable.
//
// The database refuses UPDATE and DELETE on the append-only tables itself,
// through triggers installed by the migrations (migrations/sqlite).
//
// Open does not migrate: the server or `perfusiond migrate` calls Migrate,
// and CheckSchema refuses to serve a database whose schema this binary does
// not know.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// busyTimeoutMs is how long a connection waits for a lock held by another
// connection (another process: a migrate command, a backup tool) before
// SQLite reports SQLITE_BUSY. Within this process writers queue for the one
// writer connection instead.
const busyTimeoutMs = 5000

// Backend is a perfusion record database in one SQLite file. It is safe for
// concurrent use.
type Backend struct {
	path string
	// w holds exactly one connection: SQLite has one writer, and queueing
	// writers in database/sql's pool is cheaper and fairer than letting them
	// spin on SQLITE_BUSY.
	w *sql.DB
	// r is the read pool, opened query-only so no read path can write.
	r *sql.DB
}

// Open opens (creating if needed) the database at path and its parent
// directory. It configures WAL mode, full synchronous commits and foreign
// keys, but does not migrate: call Migrate, then CheckSchema.
func Open(ctx context.Context, path string) (*Backend, error) {
	if path == "" {
		return nil, errors.New("sqlite: open: a database path is required")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	// The file holds patient data: keep the directory and the file private
	// to the service's user. SQLite gives the -wal and -shm files the
	// permissions of the database file.
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: open: create directory: %w", err)
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}

	b := &Backend{path: abs}
	b.w, err = sql.Open("sqlite", dsn(abs, "_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open writer: %w", err)
	}
	b.w.SetMaxOpenConns(1)
	b.w.SetMaxIdleConns(1)
	b.w.SetConnMaxLifetime(0)
	b.w.SetConnMaxIdleTime(0)

	b.r, err = sql.Open("sqlite", dsn(abs, "_pragma=query_only(1)"))
	if err != nil {
		b.w.Close()
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	b.r.SetMaxOpenConns(n)
	b.r.SetMaxIdleConns(n)

	if err := b.init(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// dsn builds the driver's connection string. The path goes in a file: URI,
// escaped, so that a '?' or '#' in a directory name cannot be read as
// connection parameters. Every connection gets the busy timeout, foreign
// keys and full synchronous commits; these are per-connection settings.
func dsn(path string, extra ...string) string {
	u := url.URL{Path: filepath.ToSlash(path)}
	s := "file:" + u.EscapedPath() +
		fmt.Sprintf("?_pragma=busy_timeout(%d)", busyTimeoutMs) +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)"
	for _, e := range extra {
		s += "&" + e
	}
	return s
}

// init switches the file to WAL mode. journal_mode=WAL is persistent in the
// file, so setting it once on the writer is enough; reading it back catches
// a filesystem where WAL cannot work (no shared memory), which would
// otherwise silently fall back to a rollback journal that blocks readers.
func (b *Backend) init(ctx context.Context) error {
	var mode string
	if err := b.w.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		return fmt.Errorf("sqlite: open: set WAL mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("sqlite: open: the database is in %s journal mode, WAL could not be enabled", mode)
	}
	if err := b.r.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: open readers: %w", err)
	}
	return nil
}

// Name returns "sqlite".
func (b *Backend) Name() string { return "sqlite" }

// Path returns the absolute path of the database file.
func (b *Backend) Path() string { return b.path }

// Ready reports whether the database answers and its schema is the one this
// binary expects.
func (b *Backend) Ready(ctx context.Context) error {
	if err := b.r.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: not ready: %w", err)
	}
	return b.CheckSchema(ctx)
}

// Close closes every connection. A clean close of the last connection also
// checkpoints the WAL into the database file.
func (b *Backend) Close() error {
	var errs []error
	if b.r != nil {
		errs = append(errs, b.r.Close())
	}
	if b.w != nil {
		errs = append(errs, b.w.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// Backup writes a consistent copy of the database to destPath while the
// server keeps running. VACUUM INTO reads one snapshot (a WAL read
// transaction, so writers are not blocked) and writes a compact, standalone
// database file; it is then synced so the copy survives a power loss.
// Backup refuses to overwrite an existing file.
func (b *Backend) Backup(ctx context.Context, destPath string) error {
	if destPath == "" {
		return errors.New("sqlite: backup: a destination path is required")
	}
	dest, err := filepath.Abs(destPath)
	if err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	if dest == b.path {
		return errors.New("sqlite: backup: the destination is the database itself")
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		return fmt.Errorf("sqlite: backup: create directory: %w", err)
	}
	// Creating the file exclusively refuses an existing one without a race,
	// and gives the copy of patient data owner-only permissions. VACUUM INTO
	// accepts an empty destination file (and refuses a non-empty one).
	f, err := os.OpenFile(dest, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("sqlite: backup: destination already exists: %w", os.ErrExist)
		}
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	if err := b.vacuumInto(ctx, dest); err != nil {
		os.Remove(dest) // a partial copy must not pass for a backup
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	if err := syncFile(dest); err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	if err := syncFile(filepath.Dir(dest)); err != nil {
		return fmt.Errorf("sqlite: backup: sync directory: %w", err)
	}
	return nil
}

// vacuumInto writes the snapshot. The read pool is query-only, which SQLite
// extends to VACUUM INTO, so the backup gets a connection of its own. It is
// not the writer: copying a large file must not hold up charting.
func (b *Backend) vacuumInto(ctx context.Context, dest string) error {
	db, err := sql.Open("sqlite", dsn(b.path))
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, "VACUUM INTO ?", dest)
	return err
}

// syncFile flushes a file or directory to stable storage.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
