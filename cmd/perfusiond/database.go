package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"perfusion/store"
	"perfusion/store/postgres"
	"perfusion/store/sqlite"
)

// database is what both backends offer the binary beyond store.Backend:
// schema management.
type database interface {
	store.Backend
	// Migrate applies the embedded migrations the database lacks.
	Migrate(ctx context.Context) error
	// CheckSchema fails unless the schema is exactly this binary's.
	CheckSchema(ctx context.Context) error
	// SchemaVersion is the highest migration applied.
	SchemaVersion(ctx context.Context) (int, error)
}

var (
	_ database = (*postgres.Backend)(nil)
	_ database = (*sqlite.Backend)(nil)
)

// openDatabase opens the store the flags select — PostgreSQL with
// --database-url, else the embedded file in --data-dir — and logs which one
// and where its data lives. For PostgreSQL only host and database name are
// logged: the connection string may hold a password.
func openDatabase(ctx context.Context, c *common, log *slog.Logger) (database, error) {
	if c.databaseURL != "" {
		where, err := describeDSN(c.databaseURL)
		if err != nil {
			return nil, usageErrorf("--database-url: %v", err)
		}
		log.Info("store: PostgreSQL", "where", where)
		b, err := postgres.Open(ctx, c.databaseURL)
		if err != nil {
			return nil, fmt.Errorf("open PostgreSQL store at %s: %w", where, err)
		}
		return b, nil
	}
	path, err := filepath.Abs(filepath.Join(c.dataDir, dbFileName))
	if err != nil {
		return nil, fmt.Errorf("embedded store path: %w", err)
	}
	log.Info("store: embedded SQLite", "path", path)
	b, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("open embedded store: %w", err)
	}
	warnOpenPermissions(log, filepath.Dir(path), path)
	return b, nil
}

// warnOpenPermissions warns about each of paths that others than its owner
// may read or enter: the embedded store holds patient data, and a
// directory or file made by hand (or restored from a backup) may not have
// the 0700/0600 that perfusiond creates them with. Nothing is changed: the
// operator decides.
func warnOpenPermissions(log *slog.Logger, paths ...string) {
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			want := os.FileMode(0o600)
			if st.IsDir() {
				want = 0o700
			}
			log.Warn("the embedded store is open to other users: it holds patient data", "path", p,
				"mode", fmt.Sprintf("%04o", perm), "fix", fmt.Sprintf("chmod %04o %s", want, p))
		}
	}
}

// describeDSN names the PostgreSQL host(s) and database of a connection
// string, URL or keyword/value, and nothing else: no user, no password, no
// parameters.
func describeDSN(dsn string) (string, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "", fmt.Errorf("not a PostgreSQL connection string") // the parse error may quote it
	}
	hosts := []string{hostPort(cfg.Host, cfg.Port)}
	for _, f := range cfg.Fallbacks {
		if h := hostPort(f.Host, f.Port); !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return fmt.Sprintf("host=%s database=%s", strings.Join(hosts, ","), cfg.Database), nil
}

func hostPort(host string, port uint16) string {
	if strings.HasPrefix(host, "/") { // a Unix socket directory
		return host
	}
	return fmt.Sprintf("%s:%d", host, port)
}

// prepareSchema migrates the database, or with migrate false only checks
// that its schema is this binary's, and returns the schema version. A
// server must never run on a schema it does not know: an older one lacks
// tables it writes, a newer one may hold data it would misread.
func prepareSchema(ctx context.Context, db database, migrate bool, log *slog.Logger) (int, error) {
	if migrate {
		if err := db.Migrate(ctx); err != nil {
			return 0, fmt.Errorf("migrate: %w", err)
		}
	}
	if err := db.CheckSchema(ctx); err != nil {
		return 0, fmt.Errorf("check schema: %w", err)
	}
	v, err := db.SchemaVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	log.Info("store schema ready", "backend", db.Name(), "version", v, "migrated", migrate)
	return v, nil
}
