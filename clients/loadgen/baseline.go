package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The baseline is the design the record's block storage is meant to beat:
// one row per sample in a plain indexed table, loaded the fastest way
// PostgreSQL offers (COPY), with no server, no validation, no ledger. It
// runs on the same PostgreSQL as the measured server, in the same run, so
// the ratio compares like with like on this machine.
const baselineSchema = `
CREATE TABLE samples (
    case_id uuid        NOT NULL,
    channel text        NOT NULL,
    t       timestamptz NOT NULL,
    value   float8      NOT NULL
);
CREATE INDEX samples_case_channel_t ON samples (case_id, channel, t);`

// baselineResult is one baseline load.
type baselineResult struct {
	samples    int64
	elapsed    time.Duration
	tableBytes int64 // heap and TOAST
	indexBytes int64
	workers    int
}

// baselineChunk is the rows per COPY. The baseline is the best case for
// rows, so it must not depend on how the load was cut into cases (a
// thousand short cases would otherwise mean a thousand small
// transactions); 100,000 rows is well past where COPY's per-statement cost
// stops mattering, and still commits as a real bulk loader would.
const baselineChunk = 100000

// runBaseline loads into a scratch database on baseDSN's server exactly as
// many samples per case as the run acknowledged, replaying the same
// simulated signals (same seed, channels and cadence), one row each. The
// cases are dealt out to c.baselineWork connections, each streaming its
// cases' rows through COPYs of baselineChunk rows. The index is created
// before the load, as it would exist during live ingest.
func runBaseline(ctx context.Context, c *config, baseDSN string, caseIDs []string, perCase []int64, progress io.Writer) (baselineResult, error) {
	name, dsn, drop, err := createScratchDB(ctx, baseDSN, "perfusion_loadgen_baseline_")
	if err != nil {
		return baselineResult{}, err
	}
	defer func() {
		if err := drop(); err != nil {
			fmt.Fprintf(progress, "loadgen: drop baseline database %s: %v\n", name, err)
		}
	}()
	if err := adminExec(ctx, dsn, baselineSchema); err != nil {
		return baselineResult{}, fmt.Errorf("baseline schema: %w", err)
	}
	workers := min(c.baselineWork, len(caseIDs))
	shares := make([]*rowSource, workers)
	var total int64
	for i, id := range caseIDs {
		u, err := uuid.Parse(id)
		if err != nil {
			return baselineResult{}, err
		}
		w := i % workers
		if shares[w] == nil {
			shares[w] = &rowSource{c: c}
		}
		shares[w].cases = append(shares[w].cases, caseRows{idx: i, id: u, n: perCase[i]})
		total += perCase[i]
	}
	conns := make([]*pgx.Conn, workers)
	for i := range conns {
		if conns[i], err = pgx.Connect(ctx, dsn); err != nil {
			return baselineResult{}, err
		}
		defer conns[i].Close(context.WithoutCancel(ctx))
	}
	fmt.Fprintf(progress, "loadgen: baseline: COPY %d rows into %s over %d connections\n", total, name, workers)

	errs := make([]error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = copyAll(ctx, conns[w], shares[w])
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return baselineResult{}, err
	}
	res := baselineResult{samples: total, elapsed: elapsed, workers: workers}
	if err := conns[0].QueryRow(ctx, `SELECT pg_table_size('samples'), pg_indexes_size('samples')`).Scan(&res.tableBytes, &res.indexBytes); err != nil {
		return baselineResult{}, err
	}
	var stored int64
	if err := conns[0].QueryRow(ctx, `SELECT count(*) FROM samples`).Scan(&stored); err != nil || stored != total {
		return baselineResult{}, fmt.Errorf("baseline stored %d rows, want %d (%v)", stored, total, err)
	}
	return res, nil
}

// copyAll streams src through COPYs of at most baselineChunk rows.
func copyAll(ctx context.Context, conn *pgx.Conn, src *rowSource) error {
	cols := []string{"case_id", "channel", "t", "value"}
	for src.more() {
		src.chunkLeft = baselineChunk
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"samples"}, cols, src); err != nil {
			return fmt.Errorf("baseline COPY: %w", err)
		}
	}
	return nil
}

// rowSource is a pgx.CopyFromSource replaying some cases' simulated
// signals as one row per sample, case after case, and ending each COPY
// after chunkLeft rows.
type rowSource struct {
	c         *config
	cases     []caseRows
	cur       *caseRows
	srcs      []*source
	originMs  int64
	k         int64 // next batch window of the current case
	pending   []sampleRow
	row       []any
	chunkLeft int
}

// caseRows is one case's share of the baseline: n rows.
type caseRows struct {
	idx int
	id  uuid.UUID
	n   int64
}

type sampleRow struct {
	channel string
	t       int64
	v       float64
}

// more reports whether rows remain, moving to the next case when the
// current one is done.
func (r *rowSource) more() bool {
	for r.cur == nil || r.cur.n == 0 {
		if len(r.cases) == 0 {
			return false
		}
		r.cur, r.cases = &r.cases[0], r.cases[1:]
		r.srcs = caseSources(r.c, r.cur.idx, r.c.waveform)
		r.originMs = time.Now().Add(-24 * time.Hour).Truncate(time.Second).UnixMilli()
		r.k, r.pending = 0, r.pending[:0]
	}
	return true
}

// Next advances to the next row, generating the case's next batch window
// when the current one is used up.
func (r *rowSource) Next() bool {
	if r.chunkLeft <= 0 || !r.more() {
		return false
	}
	ivMs := r.c.batchInterval.Milliseconds()
	for len(r.pending) == 0 {
		from := r.originMs + r.k*ivMs
		r.k++
		for _, src := range r.srcs {
			b := src.batch(r.originMs, from, from+ivMs)
			if b == nil {
				continue
			}
			for _, s := range b.Series {
				for j, t := range s.OccurredAtUnixMs {
					r.pending = append(r.pending, sampleRow{s.Channel, t, s.Values[j]})
				}
			}
		}
	}
	p := r.pending[0]
	r.pending = r.pending[1:]
	r.cur.n--
	r.chunkLeft--
	r.row = []any{[16]byte(r.cur.id), p.channel, time.UnixMilli(p.t), p.v}
	return true
}

func (r *rowSource) Values() ([]any, error) { return r.row, nil }
func (r *rowSource) Err() error             { return nil }
