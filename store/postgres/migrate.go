package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"perfusion/migrations"
)

// Schema version errors, returned wrapped by CheckSchema, Ready and Migrate
// so callers can tell the two situations apart with errors.Is. They are the
// migrations package's, shared by every dialect.
var (
	// ErrSchemaNewer: the database was migrated by a newer binary. This
	// binary does not know the schema and must not write to it.
	ErrSchemaNewer = migrations.ErrSchemaNewer
	// ErrSchemaOutdated: the database needs migrating before use.
	ErrSchemaOutdated = migrations.ErrSchemaOutdated
)

// migrationLockKey is the pg_advisory_lock key held while migrating, so
// servers starting at once do not apply the same migration twice. Advisory
// locks are scoped to the current database; the value is "perfmig1" in
// ASCII, unlikely to collide with another application's key.
const migrationLockKey int64 = 0x706572666d696731

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer     NOT NULL PRIMARY KEY,
	name       text        NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// Migrate applies the embedded migrations the database lacks with the
// one runner (migrations.Run), each in its own transaction that also
// records it in schema_migrations. The whole run holds an advisory lock on
// one dedicated connection, so concurrent callers queue and the later ones
// find nothing left to do. It refuses a database whose schema is newer
// than this binary, or whose recorded migrations do not match the embedded
// ones.
func (b *Backend) Migrate(ctx context.Context) (err error) {
	latest, err := migrations.Latest("postgres")
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	// A database already at this binary's version needs nothing, and a
	// serving role that does not own the schema (008_serving_role) could not
	// even create schema_migrations: so `serve --migrate` as that role
	// starts on a migrated database instead of failing.
	if v, err := b.SchemaVersion(ctx); err == nil && v == latest {
		if applied, err := appliedMigrations(ctx, b.pool); err == nil && len(applied) == latest {
			return nil
		}
	}
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: acquire connection: %w", safeErr(err))
	}
	defer conn.Release()
	if err := migrations.Run(ctx, &migrator{conn: conn.Conn()}); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// migrator is the runner's PostgreSQL driver, on one connection.
type migrator struct{ conn *pgx.Conn }

func (m *migrator) Dialect() string { return "postgres" }

func (m *migrator) Lock(ctx context.Context) (func(), error) {
	if _, err := m.conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLockKey); err != nil {
		return nil, fmt.Errorf("take migration lock: %w", safeErr(err))
	}
	return func() {
		// Unlock even when ctx is done. If that fails the session may still
		// hold the lock, so close the connection: ending the session is what
		// releases a session-level advisory lock for certain.
		uctx := context.WithoutCancel(ctx)
		if _, uerr := m.conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, migrationLockKey); uerr != nil {
			_ = m.conn.Close(uctx)
		}
	}, nil
}

func (m *migrator) Applied(ctx context.Context) (map[int]string, error) {
	if _, err := m.conn.Exec(ctx, createMigrationsTable); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", safeErr(err))
	}
	return appliedMigrations(ctx, m.conn)
}

func (m *migrator) Renumber(ctx context.Context, moves map[int]int) error {
	return pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
		// Through numbers no migration has, so no two rows ever collide.
		for from, to := range moves {
			if _, err := tx.Exec(ctx, `UPDATE schema_migrations SET version = $2 WHERE version = $1`, from, renumberOffset+to); err != nil {
				return safeErr(err)
			}
		}
		_, err := tx.Exec(ctx, `UPDATE schema_migrations SET version = version - $1 WHERE version > $1`, renumberOffset)
		return safeErr(err)
	})
}

// renumberOffset parks renumbered rows above every real version.
const renumberOffset = 1_000_000

func (m *migrator) Apply(ctx context.Context, mg migrations.Migration) error {
	err := pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
		if !mg.Empty() {
			// No arguments: pgx sends it over the simple protocol, which
			// runs a multi-statement script.
			if _, err := tx.Exec(ctx, mg.SQL); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, mg.Version, mg.Name)
		return err
	})
	return safeErr(err)
}

func appliedMigrations(ctx context.Context, q querier) (map[int]string, error) {
	rows, err := q.Query(ctx, `SELECT version, name FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", safeErr(err))
	}
	out := make(map[int]string)
	var v int
	var name string
	_, err = pgx.ForEachRow(rows, []any{&v, &name}, func() error {
		out[v] = name
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", safeErr(err))
	}
	return out, nil
}

// SchemaVersion returns the highest migration version applied to the
// database, 0 when it has never been migrated.
func (b *Backend) SchemaVersion(ctx context.Context) (int, error) {
	var exists bool
	// to_regclass honours the connection's search_path like the store's
	// unqualified table names do.
	if err := b.pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("postgres: schema version: %w", safeErr(err))
	}
	if !exists {
		return 0, nil
	}
	var v int
	if err := b.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("postgres: schema version: %w", safeErr(err))
	}
	return v, nil
}

// CheckSchema fails unless the database schema is exactly the version this
// binary was built for: ErrSchemaNewer when a newer binary migrated it (this
// one must not start), ErrSchemaOutdated when it needs `perfusiond migrate`.
func (b *Backend) CheckSchema(ctx context.Context) error {
	v, err := b.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if err := migrations.Check("postgres", v); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// AppliedMigrations returns the recorded migrations by version.
func (b *Backend) AppliedMigrations(ctx context.Context) (map[int]string, error) {
	return appliedMigrations(ctx, b.pool)
}

// MigrateTo migrates up to version only: upgrade tests make a database as
// an earlier release left it.
func (b *Backend) MigrateTo(ctx context.Context, version int) error {
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: acquire connection: %w", safeErr(err))
	}
	defer conn.Release()
	return migrations.RunTo(ctx, &migrator{conn: conn.Conn()}, version)
}
