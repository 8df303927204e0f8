package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
)

// TestReadWriteReconnects: a transaction whose connection is killed before
// its COMMIT (as when the primary it was on dies or shuts down) runs again
// on a new connection and commits once.
func TestReadWriteReconnects(t *testing.T) {
	ctx := context.Background()
	b := pgtest.Open(t)
	f := newFixture()
	killer, err := pgx.Connect(ctx, b.Pool().Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer killer.Close(ctx)

	calls := 0
	err = b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		calls++
		c := f.c
		if err := tx.InsertCase(ctx, &c); err != nil {
			return err
		}
		if calls == 1 {
			// Every other session of this database ends: this one too.
			if _, err := killer.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
				t.Fatal(err)
			}
			_, err := tx.LockCase(ctx, c.ID) // meets the dead connection
			if !store.IsUnavailable(err) {
				t.Errorf("statement on a terminated connection: %v, want an unavailable error", err)
			}
			return err
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("ReadWrite after its connection was killed: %v after %d calls, want success after 2", err, calls)
	}
	got, err := b.GetCase(ctx, f.c.ID)
	if err != nil || got.ID != f.c.ID {
		t.Fatalf("case after the reconnect: %v, %v", got, err)
	}
}

// TestReadWriteGivesUpOnLongOutage: while no database can be reached,
// ReadWrite tries a new connection twice and then reports an error that
// store.IsUnavailable recognises, so the server answers Unavailable.
func TestReadWriteGivesUpOnLongOutage(t *testing.T) {
	ctx := context.Background()
	b := pgtest.Open(t)
	calls := 0
	down := &pgconnStub{code: "57P03"} // the database is starting or stopping
	err := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error { calls++; return down })
	if calls != 3 || !store.IsUnavailable(err) {
		t.Fatalf("persistent outage: %v after %d calls, want unavailable after 3", err, calls)
	}
	mine := charting.ErrNotFound
	calls = 0
	err = b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error { calls++; return mine })
	if calls != 1 || !errors.Is(err, mine) {
		t.Fatalf("not found: %v after %d calls, want it once", err, calls)
	}
}

// pgconnStub is an error with a SQLSTATE, as pgx's are.
type pgconnStub struct{ code string }

func (e *pgconnStub) Error() string    { return "SQLSTATE " + e.code }
func (e *pgconnStub) SQLState() string { return e.code }
