package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"perfusion/migrations"
)

// dialect names this backend's migrations in the migrations package.
const dialect = "sqlite"

// Schema version errors of CheckSchema and Migrate.
var (
	// ErrSchemaTooNew: the database was migrated by a newer binary. Serving
	// it could misread or corrupt columns this binary does not know.
	ErrSchemaTooNew = errors.New("sqlite: database schema is newer than this binary")
	// ErrSchemaOutdated: the database lacks migrations this binary needs.
	ErrSchemaOutdated = errors.New("sqlite: database schema is out of date: run migrate")
)

// createMigrationsTable bootstraps the version table. It belongs to the
// runner rather than to a migration because it must exist before the
// first migration can be recorded.
const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
) STRICT`

// Migrate applies every migration the database lacks, in order, each in
// its own transaction that also records its version, so a failure leaves
// the database at the last complete version. Running it again is a no-op.
// Each transaction begins IMMEDIATE on the writer connection and re-reads
// the version inside it, so two processes migrating the same file at once
// apply every migration exactly once. A database newer than this binary is
// refused with ErrSchemaTooNew.
func (b *Backend) Migrate(ctx context.Context) error {
	ms, err := migrations.For(dialect)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	if _, err := b.w.ExecContext(ctx, createMigrationsTable); err != nil {
		return fmt.Errorf("sqlite: migrate: create schema_migrations: %w", err)
	}
	for _, m := range ms {
		if err := b.apply(ctx, m, len(ms)); err != nil {
			return err
		}
	}
	return nil
}

// apply runs one migration unless it is already recorded.
func (b *Backend) apply(ctx context.Context, m migrations.Migration, latest int) error {
	tx, err := b.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: begin: %w", err)
	}
	defer tx.Rollback()
	cur, err := schemaVersion(ctx, tx)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	if cur > latest {
		return fmt.Errorf("%w: database is at version %d, this binary knows up to %d", ErrSchemaTooNew, cur, latest)
	}
	if cur >= m.Version {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return fmt.Errorf("sqlite: migrate: apply %03d_%s: %w", m.Version, m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.Version, m.Name, time.Now().UnixMicro()); err != nil {
		return fmt.Errorf("sqlite: migrate: record %03d_%s: %w", m.Version, m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: migrate: commit %03d_%s: %w", m.Version, m.Name, err)
	}
	return nil
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
	latest, err := migrations.Latest(dialect)
	if err != nil {
		return fmt.Errorf("sqlite: check schema: %w", err)
	}
	cur, err := b.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	switch {
	case cur > latest:
		return fmt.Errorf("%w: database is at version %d, this binary knows up to %d; upgrade the binary", ErrSchemaTooNew, cur, latest)
	case cur < latest:
		return fmt.Errorf("%w: database is at version %d, this binary needs %d", ErrSchemaOutdated, cur, latest)
	}
	return nil
}
