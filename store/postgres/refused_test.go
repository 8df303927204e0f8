package postgres_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/postgres"
	"perfusion/store/postgres/pgtest"
)

// TestRefusalClassified: the errors of PostgreSQL that are about the data
// written become store.RefusedError with a reason that names the kind and
// SQLSTATE and quotes nothing; errors about the database do not. The NUL
// byte is the fault that started this: text cannot hold one (22021), and
// the server's message quotes the bytes around it.
func TestRefusalClassified(t *testing.T) {
	b := pgtest.Open(t)
	ctx := context.Background()
	s := store.New(b, store.Config{})
	c, err := s.CreateCase(ctx, "pf", store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: "OR-1", ScheduledStart: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	row := func(source string, seq int64) *store.SampleBatchRow {
		return &store.SampleBatchRow{CaseID: c.ID, SourceID: source, Seq: seq, RecordedAt: time.Now(), Actor: "gw",
			MinTimeMs: 1, MaxTimeMs: 2, SampleCount: 1, Block: []byte{1}}
	}
	insert := func(r *store.SampleBatchRow) error {
		return b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
			return tx.InsertSampleBatches(ctx, []*store.SampleBatchRow{r})
		})
	}
	for _, tc := range []struct {
		name string
		row  *store.SampleBatchRow
		code string
	}{
		{"NUL in text", row("hlm\x00MRN-123", 1), "22021"},
		{"check constraint", row("hlm", -1), "23514"},
	} {
		err := insert(tc.row)
		var re *store.RefusedError
		var pe *pgconn.PgError
		switch {
		case !errors.As(err, &re):
			t.Errorf("%s: %v, want a store.RefusedError", tc.name, err)
		case !errors.As(err, &pe) || pe.Code != tc.code:
			t.Errorf("%s: %v, want SQLSTATE %s reachable", tc.name, err, tc.code)
		case !strings.Contains(re.Reason, tc.code) || strings.Contains(err.Error(), "MRN-123") || strings.Contains(err.Error(), "0x00"):
			t.Errorf("%s: %q (reason %q) must name the code and quote nothing", tc.name, err, re.Reason)
		}
	}

	// A key the store should have ruled out keeps its own meaning.
	if err := insert(row("hlm", 1)); err != nil {
		t.Fatal(err)
	}
	if err := insert(row("hlm", 1)); !errors.Is(err, store.ErrDuplicate) || store.IsRefused(err) {
		t.Errorf("duplicate key: %v, want store.ErrDuplicate", err)
	}

	// The database's own trouble (here a statement cancelled, 57014, as an
	// operator or statement_timeout would) is not a refusal.
	if _, err := b.Pool().Exec(ctx, `CREATE FUNCTION cancel_source() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.source_id = 'outage' THEN RAISE EXCEPTION 'cancelled by test' USING ERRCODE = '57014'; END IF;
			RETURN NEW;
		END $$`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pool().Exec(ctx, `CREATE TRIGGER cancel_source BEFORE INSERT ON sample_batches FOR EACH ROW EXECUTE FUNCTION cancel_source()`); err != nil {
		t.Fatal(err)
	}
	if err := insert(row("outage", 1)); err == nil || store.IsRefused(err) {
		t.Errorf("cancelled statement: %v, want an error that is not a refusal", err)
	}
}

// countingBackend counts transactions.
type countingBackend struct {
	*postgres.Backend
	txs atomic.Int64
}

func (b *countingBackend) ReadWrite(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	b.txs.Add(1)
	return b.Backend.ReadWrite(ctx, fn)
}

// TestGroupFailsWholeOnDatabaseError: a group one of whose batches meets an
// error about the database inside PostgreSQL (a trigger cancels the
// statement: 57014) fails as a whole, in one transaction, without
// bisection; the same group with a refused batch instead (22021, raised
// the same way) stores all but that batch.
func TestGroupFailsWholeOnDatabaseError(t *testing.T) {
	pg := pgtest.Open(t)
	b := &countingBackend{Backend: pg}
	ctx := context.Background()
	s := store.New(b, store.Config{})
	if _, err := pg.Pool().Exec(ctx, `CREATE FUNCTION fail_source() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.source_id = 'outage' THEN RAISE EXCEPTION 'cancelled by test' USING ERRCODE = '57014'; END IF;
			IF NEW.source_id = 'bad-text' THEN RAISE EXCEPTION 'bad text' USING ERRCODE = '22021'; END IF;
			RETURN NEW;
		END $$`); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Pool().Exec(ctx, `CREATE TRIGGER fail_source BEFORE INSERT ON sample_batches FOR EACH ROW EXECUTE FUNCTION fail_source()`); err != nil {
		t.Fatal(err)
	}
	var ids []uuid.UUID
	for i := 0; i < 8; i++ {
		c, err := s.CreateCase(ctx, "pf", store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: "OR", ScheduledStart: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	ms := time.Now().Add(-time.Hour).UnixMilli()
	group := func(seq int64, odd string) []*charting.SampleBatch {
		var g []*charting.SampleBatch
		for i, id := range ids {
			src := "hlm"
			if i == 5 {
				src = odd
			}
			g = append(g, &charting.SampleBatch{CaseID: id, SourceID: src, Seq: seq,
				Series: []charting.Series{{Channel: "pump_flow", TimesMs: []int64{ms + seq*1000}, Values: []float64{4.5}}}})
		}
		return g
	}

	before := b.txs.Load()
	for i, r := range s.AppendSamples(ctx, "gw", group(1, "outage")) {
		if r.Err == nil || store.IsRefused(r.Err) {
			t.Errorf("batch %d of a group the database cancelled: %+v, want the database's error", i, r)
		}
	}
	if n := b.txs.Load() - before; n != 1 {
		t.Errorf("a group failing for the database took %d transactions, want 1", n)
	}

	before = b.txs.Load()
	for i, r := range s.AppendSamples(ctx, "gw", group(1, "bad-text")) {
		if i == 5 {
			if !store.IsRefused(r.Err) {
				t.Errorf("refused batch: %+v, want a store.RefusedError", r)
			}
		} else if r.Err != nil || r.Watermark != 1 {
			t.Errorf("batch %d beside a refused one: %+v, want stored", i, r)
		}
	}
	if n := b.txs.Load() - before; n < 3 || n > 7 {
		t.Errorf("isolating one refused batch among 8 took %d transactions, want 3 to 7", n)
	}
}
