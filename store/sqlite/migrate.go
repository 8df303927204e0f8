package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"perfusion/migrations"
)

// dialect names this backend's migrations in the migrations package.
const dialect = "sqlite"

// Schema version errors of CheckSchema and Migrate: the migrations
// package's, shared by every dialect.
var (
	// ErrSchemaTooNew: the database was migrated by a newer binary. Serving
	// it could misread or corrupt columns this binary does not know.
	ErrSchemaTooNew = migrations.ErrSchemaNewer
	// ErrSchemaOutdated: the database lacks migrations this binary needs.
	ErrSchemaOutdated = migrations.ErrSchemaOutdated
)

// createMigrationsTable bootstraps the version table. It belongs to the
// runner rather than to a migration because it must exist before the
// first migration can be recorded.
const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
) STRICT`

// Migrate applies every migration the database lacks with the one runner
// (migrations.Run), in order, each in its own transaction that also
// records its version, so a failure leaves the database at the last
// complete version. Running it again is a no-op. Each transaction begins
// IMMEDIATE on the writer connection and re-reads the recorded versions
// inside it, so two processes migrating the same file at once apply every
// migration exactly once. A database newer than this binary is refused
// with ErrSchemaTooNew.
func (b *Backend) Migrate(ctx context.Context) error {
	if err := migrations.Run(ctx, &migrator{b: b}); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// migrator is the runner's SQLite driver, on the writer connection.
type migrator struct{ b *Backend }

func (m *migrator) Dialect() string { return dialect }

// Lock does nothing: every step's IMMEDIATE transaction takes the file's
// write lock and re-reads what is recorded.
func (m *migrator) Lock(context.Context) (func(), error) { return func() {}, nil }

func (m *migrator) Applied(ctx context.Context) (map[int]string, error) {
	if _, err := m.b.w.ExecContext(ctx, createMigrationsTable); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	return applied(ctx, m.b.r)
}

func applied(ctx context.Context, q queryer) (map[int]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT version, name FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	out := map[int]string{}
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		out[v] = name
	}
	return out, rows.Err()
}

// renumberOffset parks renumbered rows above every real version.
const renumberOffset = 1_000_000

func (m *migrator) Renumber(ctx context.Context, moves map[int]int) error {
	tx, err := m.b.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for from, to := range moves {
		if _, err := tx.ExecContext(ctx, `UPDATE schema_migrations SET version = ? WHERE version = ?`, renumberOffset+to, from); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_migrations SET version = version - ? WHERE version > ?`, renumberOffset, renumberOffset); err != nil {
		return err
	}
	return tx.Commit()
}

// Apply runs one migration unless it is recorded by the time its
// transaction holds the write lock.
func (m *migrator) Apply(ctx context.Context, mg migrations.Migration) error {
	tx, err := m.b.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, mg.Version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil // another process applied it meanwhile
	}
	if !mg.Empty() {
		if _, err := tx.ExecContext(ctx, mg.SQL); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		mg.Version, mg.Name, time.Now().UnixMicro()); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	return tx.Commit()
}

// SchemaVersion returns the highest applied migration, 0 for a database
// never migrated.
func (b *Backend) SchemaVersion(ctx context.Context) (int, error) {
	v, err := schemaVersion(ctx, b.r)
	if err != nil {
		return 0, fmt.Errorf("sqlite: schema version: %w", err)
	}
	return v, nil
}

func schemaVersion(ctx context.Context, q queryer) (int, error) {
	var n int
	if err := q.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, err
	}
	return int(v.Int64), nil
}

// CheckSchema verifies that the database is at exactly the version this
// binary was built with: ErrSchemaOutdated when it is older (run migrate),
// ErrSchemaTooNew when a newer binary has migrated it.
func (b *Backend) CheckSchema(ctx context.Context) error {
	cur, err := b.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if err := migrations.Check(dialect, cur); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	return nil
}

// AppliedMigrations returns the recorded migrations by version.
func (b *Backend) AppliedMigrations(ctx context.Context) (map[int]string, error) {
	return applied(ctx, b.r)
}

// MigrateTo migrates up to version only: upgrade tests make a database as
// an earlier release left it.
func (b *Backend) MigrateTo(ctx context.Context, version int) error {
	return migrations.RunTo(ctx, &migrator{b: b}, version)
}
