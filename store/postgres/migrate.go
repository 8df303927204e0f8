package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"perfusion/migrations"
)

// Schema version errors, returned wrapped by CheckSchema, Ready and Migrate
// so callers can tell the two situations apart with errors.Is.
var (
	// ErrSchemaNewer: the database was migrated by a newer binary. This
	// binary does not know the schema and must not write to it.
	ErrSchemaNewer = errors.New("postgres: database schema is newer than this binary")
	// ErrSchemaOutdated: the database needs migrating before use.
	ErrSchemaOutdated = errors.New("postgres: database schema is older than this binary")
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

// Migrate applies the embedded migrations the database lacks, each in its
// own transaction that also records it in schema_migrations. The whole run
// holds an advisory lock on one dedicated connection, so concurrent callers
// queue and the later ones find nothing left to do. It refuses a database
// whose schema is newer than this binary, or whose recorded migrations do
// not match the embedded ones.
func (b *Backend) Migrate(ctx context.Context) (err error) {
	ms, err := migrations.For("postgres")
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	// A database already at this binary's version needs nothing, and a
	// serving role that does not own the schema (008_serving_role) could not
	// even create schema_migrations: so `serve --migrate` as that role
	// starts on a migrated database instead of failing.
	if v, err := b.SchemaVersion(ctx); err == nil && v == len(ms) {
		return nil
	}
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: acquire connection: %w", safeErr(err))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLockKey); err != nil {
		return fmt.Errorf("postgres: migrate: take migration lock: %w", safeErr(err))
	}
	defer func() {
		// Unlock even when ctx is done. If that fails the session may still
		// hold the lock, so close the connection: ending the session is what
		// releases a session-level advisory lock for certain.
		uctx := context.WithoutCancel(ctx)
		if _, uerr := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, migrationLockKey); uerr != nil {
			_ = conn.Conn().Close(uctx)
		}
	}()
	if _, err := conn.Exec(ctx, createMigrationsTable); err != nil {
		return fmt.Errorf("postgres: migrate: create schema_migrations: %w", safeErr(err))
	}
	applied, err := appliedMigrations(ctx, conn)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	for v, name := range applied {
		if v > len(ms) {
			return fmt.Errorf("postgres: migrate: database has migration %d, this binary knows up to %d: %w", v, len(ms), ErrSchemaNewer)
		}
		if want := ms[v-1].Name; name != want {
			return fmt.Errorf("postgres: migrate: migration %d is recorded as %q but this binary calls it %q", v, name, want)
		}
	}
	for _, m := range ms {
		if _, ok := applied[m.Version]; ok {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// No arguments: pgx sends it over the simple protocol, which
			// runs a multi-statement script.
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: migrate: apply %03d_%s: %w", m.Version, m.Name, safeErr(err))
		}
	}
	return nil
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
	latest, err := migrations.Latest("postgres")
	if err != nil {
		return fmt.Errorf("postgres: check schema: %w", err)
	}
	v, err := b.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	switch {
	case v > latest:
		return fmt.Errorf("database schema is at version %d but this binary knows only up to %d; run a binary at least as new as the one that migrated it: %w", v, latest, ErrSchemaNewer)
	case v < latest:
		return fmt.Errorf("database schema is at version %d but this binary needs %d; run `perfusiond migrate` first: %w", v, latest, ErrSchemaOutdated)
	}
	return nil
}
