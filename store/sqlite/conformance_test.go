package sqlite_test

import (
	"context"
	"strings"
	"testing"

	"perfusion/store"
	"perfusion/store/sqlite"
	"perfusion/store/sqlite/sqlitetest"
	"perfusion/store/storetest"
)

// TestConformance runs the shared store suite against SQLite, each test on
// a fresh database file.
func TestConformance(t *testing.T) { storetest.Run(t, harness()) }

// TestConformanceRetrying runs the suite again with every transaction
// rolled back once and run a second time, as a serialization failure or a
// deadlock makes SQLite do: no write may keep state across runs.
func TestConformanceRetrying(t *testing.T) { storetest.RunRetrying(t, harness()) }

// harness adapts this backend to the conformance suite.
func harness() storetest.Harness {
	return storetest.Harness{
		Open: func(t *testing.T) store.Backend { return sqlitetest.Open(t) },
		// Exec uses a connection of its own, like any other client of the
		// file: enforcement must live in the database, not in the backend's
		// connections.
		Exec: func(t *testing.T, b store.Backend, sql string, args ...any) error {
			_, err := rawDB(t, b.(*sqlite.Backend)).Exec(sql, args...)
			return err
		},
		Tamper: tamper,
		// Refuse installs a BEFORE INSERT trigger on sample_batches that
		// aborts the statement for the source's rows (SQLITE_CONSTRAINT_TRIGGER).
		Refuse: func(t *testing.T, b store.Backend, sourceID, marker string) {
			t.Helper()
			q := `CREATE TRIGGER refuse_source BEFORE INSERT ON sample_batches
				WHEN NEW.source_id = ` + quote(sourceID) + `
				BEGIN SELECT RAISE(ABORT, ` + quote(marker) + `); END`
			if _, err := rawDB(t, b.(*sqlite.Backend)).Exec(q); err != nil {
				t.Fatalf("refuse: %v", err)
			}
		},
	}
}

// quote is a SQL string literal of s, for DDL that takes no parameters.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// tamper acts as someone with write access to the file: SQLite has no
// switch that disables triggers, so it drops them, runs the statement and
// recreates them, all in one transaction, so the backend's own connections
// never see the schema without its triggers.
func tamper(t *testing.T, b store.Backend, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := rawDB(t, b.(*sqlite.Backend)).Conn(ctx)
	if err != nil {
		t.Fatalf("tamper: %v", err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("tamper: %v", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT name, sql FROM sqlite_schema WHERE type = 'trigger'`)
	if err != nil {
		t.Fatalf("tamper: list triggers: %v", err)
	}
	triggers := map[string]string{}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			t.Fatalf("tamper: %v", err)
		}
		triggers[name] = def
	}
	if err := rows.Close(); err != nil {
		t.Fatalf("tamper: %v", err)
	}
	if len(triggers) == 0 {
		t.Fatal("tamper: the database has no append-only triggers")
	}
	for name := range triggers {
		if _, err := tx.ExecContext(ctx, `DROP TRIGGER "`+name+`"`); err != nil {
			t.Fatalf("tamper: drop trigger: %v", err)
		}
	}
	if _, err := tx.ExecContext(ctx, sql, args...); err != nil {
		t.Fatalf("tamper: %v", err)
	}
	for _, def := range triggers {
		if _, err := tx.ExecContext(ctx, def); err != nil {
			t.Fatalf("tamper: recreate trigger: %v", err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("tamper: %v", err)
	}
}
