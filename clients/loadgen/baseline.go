package main

import (
	"context"
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

// runBaseline loads into a scratch database on baseDSN's server exactly as
// many samples per case as the run acknowledged, replaying the same
// simulated signals (same seed, channels and cadence), one row each, with
// one COPY per case spread over c.baselineWork connections. The index is
// created before the load, as it would exist during live ingest.
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
	conns := make([]*pgx.Conn, workers)
	for i := range conns {
		if conns[i], err = pgx.Connect(ctx, dsn); err != nil {
			return baselineResult{}, err
		}
		defer conns[i].Close(context.WithoutCancel(ctx))
	}
	var total int64
	for _, n := range perCase {
		total += n
	}
	fmt.Fprintf(progress, "loadgen: baseline: COPY %d rows into %s over %d connections\n", total, name, workers)

	todo := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for _, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range todo {
				id, err := uuid.Parse(caseIDs[i])
				if err != nil {
					errc <- err
					return
				}
				src := newRowSource(c, i, id, perCase[i])
				n, err := conn.CopyFrom(ctx, pgx.Identifier{"samples"}, []string{"case_id", "channel", "t", "value"}, src)
				if err != nil {
					errc <- fmt.Errorf("baseline COPY: %w", err)
					return
				}
				if n != perCase[i] {
					errc <- fmt.Errorf("baseline COPY stored %d rows, want %d", n, perCase[i])
					return
				}
			}
		}()
	}
feed:
	for i := range caseIDs {
		select {
		case todo <- i:
		case err = <-errc:
			break feed
		}
	}
	close(todo)
	wg.Wait()
	elapsed := time.Since(start)
	if err != nil {
		return baselineResult{}, err
	}
	select {
	case err := <-errc:
		return baselineResult{}, err
	default:
	}
	res := baselineResult{samples: total, elapsed: elapsed, workers: workers}
	if err := conns[0].QueryRow(ctx, `SELECT pg_table_size('samples'), pg_indexes_size('samples')`).Scan(&res.tableBytes, &res.indexBytes); err != nil {
		return baselineResult{}, err
	}
	return res, nil
}

// rowSource is a pgx.CopyFromSource replaying one case's simulated signals
// as one row per sample, n rows in all.
type rowSource struct {
	caseID   [16]byte
	srcs     []*source
	originMs int64
	ivMs     int64
	k        int64 // next batch window
	left     int64
	pending  []sampleRow
	row      []any
}

type sampleRow struct {
	channel string
	t       int64
	v       float64
}

func newRowSource(c *config, caseIdx int, id uuid.UUID, n int64) *rowSource {
	return &rowSource{caseID: id, srcs: caseSources(c, caseIdx, c.waveform),
		originMs: time.Now().Add(-24 * time.Hour).Truncate(time.Second).UnixMilli(),
		ivMs:     c.batchInterval.Milliseconds(), left: n}
}

// Next advances to the next row, generating the case's next batch window
// when the current one is used up.
func (r *rowSource) Next() bool {
	if r.left <= 0 {
		return false
	}
	for len(r.pending) == 0 {
		from := r.originMs + r.k*r.ivMs
		r.k++
		for _, src := range r.srcs {
			b := src.batch(r.originMs, from, from+r.ivMs)
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
	r.left--
	r.row = []any{r.caseID, p.channel, time.UnixMilli(p.t), p.v}
	return true
}

func (r *rowSource) Values() ([]any, error) { return r.row, nil }
func (r *rowSource) Err() error             { return nil }
