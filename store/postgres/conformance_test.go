package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"perfusion/store"
	"perfusion/store/postgres"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/storetest"
)

// TestConformance runs the shared store suite against PostgreSQL, each
// test on a fresh database.
func TestConformance(t *testing.T) { storetest.Run(t, harness()) }

// TestConformanceRetrying runs the suite again with every transaction
// rolled back once and run a second time, as a serialization failure or a
// deadlock makes PostgreSQL do: no write may keep state across runs.
func TestConformanceRetrying(t *testing.T) { storetest.RunRetrying(t, harness()) }

// harness adapts this backend to the conformance suite.
func harness() storetest.Harness {
	return storetest.Harness{
		Open: func(t *testing.T) store.Backend { return pgtest.Open(t) },
		Exec: func(t *testing.T, b store.Backend, sql string, args ...any) error {
			_, err := b.(*postgres.Backend).Pool().Exec(context.Background(), sql, args...)
			return err
		},
		// Refuse installs a BEFORE INSERT trigger on sample_batches raising
		// an exception (SQLSTATE P0001) for the source's rows.
		Refuse: func(t *testing.T, b store.Backend, sourceID, marker string) {
			t.Helper()
			ctx := context.Background()
			pool := b.(*postgres.Backend).Pool()
			fn := `CREATE FUNCTION refuse_source() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN
					IF NEW.source_id = ` + quote(sourceID) + ` THEN
						RAISE EXCEPTION ` + quote(marker) + `;
					END IF;
					RETURN NEW;
				END $$`
			for _, q := range []string{fn, `CREATE TRIGGER refuse_source BEFORE INSERT ON sample_batches
				FOR EACH ROW EXECUTE FUNCTION refuse_source()`} {
				if _, err := pool.Exec(ctx, q); err != nil {
					t.Fatalf("refuse: %v", err)
				}
			}
		},
		// Tamper acts as a superuser who switches off triggers for the
		// session (session_replication_role = replica skips ordinary
		// triggers, foreign keys included): the one way past the database's
		// append-only rules, which only the ledger can then reveal.
		Tamper: func(t *testing.T, b store.Backend, sql string, args ...any) {
			t.Helper()
			ctx := context.Background()
			err := pgx.BeginFunc(ctx, b.(*postgres.Backend).Pool(), func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, sql, args...)
				return err
			})
			if err != nil {
				t.Fatalf("tamper: %v", err)
			}
		},
	}
}

// quote is a SQL string literal of s, for DDL that takes no parameters.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
