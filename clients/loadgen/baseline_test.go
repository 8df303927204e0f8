package main

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"perfusion/store/postgres/pgtest"
)

// testBaseDSN returns the PostgreSQL the repository's tests use
// (PERFUSION_TEST_DATABASE_URL), skipping without it and failing in CI, as
// pgtest does. The generator's tests create their own scratch databases on
// it.
func testBaseDSN(t *testing.T) string { return pgtest.BaseURL(t) }

// The baseline loads exactly the rows asked for, per case and in all,
// across COPY chunks and case boundaries, and drops its scratch database.
func TestBaseline(t *testing.T) {
	base := testBaseDSN(t)
	c := &config{channels: 40, sourcesPerCase: 2, waveform: true, batchInterval: time.Second, baselineWork: 2, seed: 3}
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	perCase := []int64{baselineChunk + 17, 0, 1234} // one case spans two COPYs, one has nothing
	ctx := context.Background()
	res, err := runBaseline(ctx, c, base, ids, perCase, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.samples != baselineChunk+17+1234 || res.tableBytes <= 0 || res.indexBytes <= 0 || res.workers != 2 {
		t.Errorf("baseline %+v", res)
	}
	// runBaseline counted the rows itself before returning; what is left
	// to check is that the scratch database is gone.
	conn := mustConnect(t, base)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname LIKE 'perfusion_loadgen_baseline_%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d baseline databases left behind", n)
	}
}

// measureStored finds every table of the schema in the catalog (so a
// migration that adds one is counted) and counts stored samples from
// sample_batches when it can, else says it cannot.
func TestMeasureStored(t *testing.T) {
	ctx := context.Background()
	_, dsn, drop, err := createScratchDB(ctx, testBaseDSN(t), "perfusion_loadgen_test_")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drop() })
	if err := adminExec(ctx, dsn, `CREATE TABLE ledger (hash bytea)`); err != nil {
		t.Fatal(err)
	}
	s, err := measureStored(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.tables["ledger"]; !ok || len(s.tables) != 1 || s.samples != -1 {
		t.Errorf("without sample_batches: %+v, want the ledger and unknown samples", s)
	}
	if err := adminExec(ctx, dsn, `CREATE TABLE sample_batches (sample_count integer, block bytea);
		INSERT INTO sample_batches SELECT 40, decode(repeat('ab', 200), 'hex') FROM generate_series(1, 1000)`); err != nil {
		t.Fatal(err)
	}
	after, err := measureStored(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	g := growth(s, after)
	if g.samples != -1 || g.tables["sample_batches"] < 1000*200 || g.tables["ledger"] != 0 {
		t.Errorf("growth %+v: want sample_batches grown by at least the blocks, the ledger not, samples unknown (before had none)", g)
	}
	if after.samples != 40000 {
		t.Errorf("samples %d, want 40000", after.samples)
	}
}

func mustConnect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}
