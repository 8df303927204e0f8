package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// createScratchDB creates a database with a random name prefix+hex on the
// server of baseDSN and returns its name, a DSN for it, and a function that
// drops it (forcibly disconnecting whatever is left).
func createScratchDB(ctx context.Context, baseDSN, prefix string) (name, dsn string, drop func() error, err error) {
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", "", nil, err
	}
	name = prefix + hex.EncodeToString(rnd[:])
	ident := pgx.Identifier{name}.Sanitize()
	if err := adminExec(ctx, baseDSN, "CREATE DATABASE "+ident); err != nil {
		return "", "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	drop = func() error {
		// Not ctx: the run may be ending because ctx was cancelled, and
		// the database must go all the same.
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return adminExec(dctx, baseDSN, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
	}
	if dsn, err = withDatabase(baseDSN, name); err != nil {
		_ = drop()
		return "", "", nil, err
	}
	return name, dsn, drop, nil
}

// adminExec runs one statement over a connection of its own: CREATE and
// DROP DATABASE cannot run in a transaction.
func adminExec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns dsn pointing at database name instead, for URL and
// keyword/value connection strings.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("--database-url is not a valid URL")
		}
		u.Path, u.RawPath = "/"+name, ""
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil // in keyword/value strings a later keyword wins
}

// storedSize is what the record's tables hold on disk at one moment.
type storedSize struct {
	tables  map[string]int64 // table → bytes, with its indexes and TOAST
	samples int64            // samples stored, -1 when unknown
}

func (s storedSize) total() int64 {
	var t int64
	for _, v := range s.tables {
		t += v
	}
	return t
}

// measureStored sums pg_total_relation_size (heap, TOAST, indexes, free
// space map) over every table of the server's schema, found in the catalog
// at run time so a migration that adds a table is counted without changing
// the generator. It also counts stored samples, if the schema still has
// sample_batches.sample_count; the caller falls back to acked samples.
func measureStored(ctx context.Context, dsn string) (storedSize, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return storedSize{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `
		SELECT c.relname, pg_total_relation_size(c.oid)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')`)
	if err != nil {
		return storedSize{}, err
	}
	s := storedSize{tables: map[string]int64{}, samples: -1}
	for rows.Next() {
		var name string
		var size int64
		if err := rows.Scan(&name, &size); err != nil {
			return storedSize{}, err
		}
		s.tables[name] = size
	}
	if err := rows.Err(); err != nil {
		return storedSize{}, err
	}
	if err := conn.QueryRow(ctx, `SELECT coalesce(sum(sample_count), 0) FROM sample_batches`).Scan(&s.samples); err != nil {
		s.samples = -1 // the schema changed: the caller uses acked samples
	}
	return s, nil
}

// growth is what was added to the tables between two measurements.
func growth(before, after storedSize) storedSize {
	g := storedSize{tables: map[string]int64{}, samples: -1}
	for name, v := range after.tables {
		if d := v - before.tables[name]; d != 0 {
			g.tables[name] = d
		}
	}
	if before.samples >= 0 && after.samples >= 0 {
		g.samples = after.samples - before.samples
	}
	return g
}
