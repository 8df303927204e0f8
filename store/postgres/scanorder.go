package postgres

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"perfusion/store"
)

// scanInIndexOrder runs a sample batch scan with sorting disabled for its
// one statement, so PostgreSQL streams the rows in the order of the
// sample_batches_time index instead of collecting and sorting them.
//
// Why: the planner picks the plan from its row estimate, and for a case
// that is being written that estimate is stale (autovacuum analyses a table
// only after a fraction of it changed; the times just written lie past the
// histogram's end and are estimated at a handful of rows). It then chooses a
// bitmap heap scan plus a sort, and for a 4-hour case of 1-s batches that
// sort spills 14 MB to disk: measured 66 ms in the database alone, against
// 9 ms for the index scan (EXPLAIN ANALYZE, BenchmarkQuerySamples' data).
// The index already yields the scan's order, so disabling the sort changes
// only the plan, never the result. SET LOCAL ends with the transaction.
func (b *Backend) scanInIndexOrder(ctx context.Context, caseID uuid.UUID, f store.SampleFilter, fn func(*store.SampleBatchRow) error) error {
	return pgx.BeginTxFunc(ctx, b.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL enable_sort = off"); err != nil {
			return wrap("scan sample batches", err)
		}
		return reader{q: tx}.ScanSampleBatches(ctx, caseID, f, fn)
	})
}
