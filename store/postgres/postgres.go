// Package postgres is the PostgreSQL store.Backend, the system of record
// for perfusion cases. It speaks plain SQL through pgx/v5 and a pgxpool
// connection pool; the schema lives in migrations/postgres and is applied
// by Migrate, never implicitly by Open, so an operator decides when a
// production schema changes.
//
// The database itself keeps the record append-only: triggers refuse UPDATE,
// DELETE and TRUNCATE on every table holding recorded data, so neither a bug
// here nor a user with a SQL prompt can silently rewrite the record. Every
// table is keyed by case id first and no write joins across cases, so the
// schema can be sharded by case (Citus) when one machine is not enough.
//
// Error messages produced here name the operation and the SQLSTATE, never
// SQL text or values: values are patient data and errors can reach clients
// and logs.
package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"perfusion/store"
)

// Backend is a perfusion record in one PostgreSQL database. It is safe for
// concurrent use.
type Backend struct {
	pool *pgxpool.Pool
}

var _ store.Backend = (*Backend)(nil)

// Option adjusts the connection pool configuration before it is opened.
type Option func(*pgxpool.Config)

// WithMaxConns caps the number of pooled connections. Each in-flight
// ReadWrite holds one for its duration, so this also bounds concurrent
// write transactions.
func WithMaxConns(n int32) Option {
	return func(c *pgxpool.Config) { c.MaxConns = n }
}

// WithPoolConfig lets the caller change any pool setting (timeouts, hooks,
// tracing) that has no dedicated option.
func WithPoolConfig(f func(*pgxpool.Config)) Option {
	return Option(f)
}

// Open connects to the database named by dsn (a postgres:// URL or a
// keyword/value string) and checks that it answers. It does not migrate or
// check the schema: call Migrate and CheckSchema (or Ready) for that, so a
// server never changes a production schema it was not told to.
func Open(ctx context.Context, dsn string, opts ...Option) (*Backend, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgconn redacts the password from its parse errors.
		return nil, fmt.Errorf("postgres: parse connection string: %w", err)
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		// Lets a DBA tell our sessions apart in pg_stat_activity.
		cfg.ConnConfig.RuntimeParams["application_name"] = "perfusiond"
	}
	// When a call's context ends mid-statement, close the connection
	// (pgx's deadline handler) rather than send a cancel request: a
	// cancelled wait for a synchronous standby makes PostgreSQL report the
	// COMMIT as successful although the standby may not have the
	// transaction, and that success would be acknowledged. This is pgx's
	// default; it is set here so that a change of default cannot weaken
	// synchronous replication (docs/deployment.md, section 4).
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	for _, o := range opts {
		o(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open pool: %w", err)
	}
	// The pool connects lazily; ping so a wrong address or password fails
	// at start-up rather than on the first clinical write.
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", safeErr(err))
	}
	return &Backend{pool: pool}, nil
}

// Name returns "postgres".
func (b *Backend) Name() string { return "postgres" }

// Close releases the pool's connections. It waits for connections in use to
// be returned.
func (b *Backend) Close() error {
	b.pool.Close()
	return nil
}

// Pool returns the underlying connection pool, for administrative tooling
// and tests that must run SQL the store does not offer (for example to
// prove that the database refuses changes to the record).
func (b *Backend) Pool() *pgxpool.Pool { return b.pool }

// Ready reports whether the database answers and its schema is exactly the
// version this binary was built for.
//
// It also requires the database to accept writes: a standby (or a session
// defaulting to read-only) answers every write with 25006, so a server
// connected to one must not take traffic. With a multi-host connection
// string and target_session_attrs=read-write this only happens while no
// primary exists, during a failover; without that setting it is how
// health tells a pool that reached a standby.
func (b *Backend) Ready(ctx context.Context) error {
	var readOnly string
	if err := b.pool.QueryRow(ctx, "SHOW transaction_read_only").Scan(&readOnly); err != nil {
		return fmt.Errorf("postgres: ping: %w", safeErr(err))
	}
	if readOnly == "on" {
		return fmt.Errorf("postgres: the database is read-only (a standby, or default_transaction_read_only): %w", store.ErrUnavailable)
	}
	return b.CheckSchema(ctx)
}

// querier is what both the pool (reads) and a transaction (writes, and the
// read-only transaction of a Snapshot) offer, so row-reading code serves
// all of them.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var (
	_ querier = (*pgxpool.Pool)(nil)
	_ querier = (pgx.Tx)(nil)
)

// appendOnlyPrefix starts the message of every refusal raised by the
// schema's enforcement triggers (migrations/postgres/001_initial.up.sql).
const appendOnlyPrefix = "perfusion record is append-only"

// IsAppendOnlyViolation reports whether err is the database refusing to
// change or delete recorded data.
func IsAppendOnlyViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "P0001" && len(pe.Message) >= len(appendOnlyPrefix) &&
		pe.Message[:len(appendOnlyPrefix)] == appendOnlyPrefix
}
