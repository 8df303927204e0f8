package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"perfusion/store"
	"perfusion/store/postgres"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/storetest"
)

// servingDB is a fresh database migrated by its owner (the test server's
// superuser) and opened as a login role that is only a member of
// perfusion_app, the way the README deploys `perfusiond serve`.
type servingDB struct {
	admin, app *postgres.Backend
	role       string
}

func openServing(t *testing.T) *servingDB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := pgtest.DSN(t)
	admin, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	if err := admin.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	role := "perfusion_serve_" + hex.EncodeToString(rnd[:])
	ident := pgx.Identifier{role}.Sanitize()
	if _, err := admin.Pool().Exec(ctx, `CREATE ROLE `+ident+` LOGIN IN ROLE perfusion_app`); err != nil {
		t.Fatal(err)
	}
	// Runs after the app backend closes (cleanups run last-registered
	// first) and before the database is dropped.
	t.Cleanup(func() {
		if _, err := admin.Pool().Exec(context.Background(), `DROP ROLE IF EXISTS `+ident); err != nil {
			t.Errorf("drop role: %v", err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	app, err := postgres.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })
	return &servingDB{admin: admin, app: app, role: role}
}

// TestServingRoleCannotDisableGuards: the serving role is refused every
// way of switching the append-only guards off that a table owner has
// (issue 16), while the owner is flagged by CheckServingRole.
func TestServingRoleCannotDisableGuards(t *testing.T) {
	ctx := context.Background()
	db := openServing(t)

	if r, err := db.admin.CheckServingRole(ctx); err != nil || r.Safe() {
		t.Fatalf("the owner's role was reported safe: %+v, %v", r, err)
	}
	if r, err := db.app.CheckServingRole(ctx); err != nil || !r.Safe() {
		t.Fatalf("the serving role was reported unsafe: %+v, %v", r, err)
	}
	refused := []string{
		`ALTER TABLE ledger DISABLE TRIGGER ledger_append_only`,
		`ALTER TABLE ledger DISABLE TRIGGER ALL`,
		`ALTER TABLE cases DISABLE TRIGGER cases_guard`,
		`DROP TRIGGER entries_append_only ON entries`,
		`DROP TRIGGER sample_batches_append_only ON sample_batches`,
		`DROP TABLE signatures`,
		`DROP FUNCTION perfusion_refuse_change() CASCADE`,
		`TRUNCATE ledger`,
		`SET session_replication_role = replica`,
		`CREATE OR REPLACE FUNCTION perfusion_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`,
		`ALTER TABLE sample_batches DROP COLUMN min_time_ms`,
		`UPDATE sample_batches SET min_time_ms = 0`,
		`DELETE FROM ledger`,
		`UPDATE cases SET room = 'x'`,
	}
	for _, q := range refused {
		_, err := db.app.Pool().Exec(ctx, q)
		if err == nil {
			t.Errorf("the serving role was allowed %q", q)
		} else if !strings.Contains(err.Error(), "must be owner") && !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%q: refused with %v, want a privilege error", q, err)
		}
	}
	// The owner, by contrast, can: the reason the server must not be it.
	if _, err := db.admin.Pool().Exec(ctx, `ALTER TABLE ledger DISABLE TRIGGER ledger_append_only`); err != nil {
		t.Fatalf("the owner could not disable a trigger: %v", err)
	}
	// A migrated database is left alone by Migrate, so `serve --migrate`
	// as the serving role starts.
	if err := db.app.Migrate(ctx); err != nil {
		t.Fatalf("migrate as the serving role on a migrated database: %v", err)
	}
	if err := db.app.CheckSchema(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestConformanceAsServingRole runs the suite's write, read, lifecycle,
// sample, verification, metrics, audit, outbox and watch tests with the
// backend connected as the serving role: it has every privilege the store
// needs.
func TestConformanceAsServingRole(t *testing.T) {
	var mu sync.Mutex
	admins := map[store.Backend]*postgres.Backend{}
	adminOf := func(b store.Backend) *postgres.Backend {
		mu.Lock()
		defer mu.Unlock()
		return admins[b]
	}
	storetest.RunOnly(t, storetest.Harness{
		Open: func(t *testing.T) store.Backend {
			db := openServing(t)
			mu.Lock()
			admins[db.app] = db.admin
			mu.Unlock()
			return db.app
		},
		Exec: func(t *testing.T, b store.Backend, sql string, args ...any) error {
			_, err := b.(*postgres.Backend).Pool().Exec(context.Background(), sql, args...)
			return err
		},
		Tamper: func(t *testing.T, b store.Backend, sql string, args ...any) {
			t.Helper()
			ctx := context.Background()
			err := pgx.BeginFunc(ctx, adminOf(b).Pool(), func(tx pgx.Tx) error {
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
	},
		"CreateAndGetCase", "ListCasesFiltersAndPages", "DetailsVersioned", "Lifecycle", "SignOnce",
		"EntryIdempotent", "CorrectionsKeepHistory", "SamplesShuffledAndDuplicated",
		"SamplesGroupCommitAcrossCases", "QuerySamples", "SourceSummaries", "SampleRuns",
		"AuditTrail", "VerifyIntactRecord", "TamperBatchSummaryDetected", "AppendOnlyEnforced",
		"CaseStateOnlyForward", "MetricsLifecycle", "MetricsRepair", "AccessEvents", "AccessChainVerifies", "BreakGlass",
		"OutboxEnqueue", "OutboxClaimLifecycle", "IdentityReconciliation", "WatchFeed", "InboundJournal", "InboundIndex",
		"SealedReadsIdentical", "SealedTamperDetected", "SealedRemovalRefused",
	)
}
