package postgres

import (
	"context"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"perfusion/store"
)

// ChunkCandidates finds sources with complete batches not yet in a run, from
// the watermark and run end kept side by side in sample_sources.
func (b *Backend) ChunkCandidates(ctx context.Context, runBatches, limit int) ([]store.ChunkCandidate, error) {
	rows, err := b.pool.Query(ctx, `SELECT s.case_id, s.source_id, s.chunked, s.watermark, c.status IN ('closed', 'signed')
		FROM sample_sources s JOIN cases c ON c.case_id = s.case_id
		WHERE s.watermark - s.chunked >= $1
		   OR (s.watermark > s.chunked AND c.status IN ('closed', 'signed'))
		ORDER BY c.status IN ('closed', 'signed'), c.created_at DESC, s.case_id, s.source_id
		LIMIT $2`, runBatches, limit)
	if err != nil {
		return nil, wrap("chunk candidates", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.ChunkCandidate, error) {
		var c store.ChunkCandidate
		err := row.Scan(&c.Key.CaseID, &c.Key.SourceID, &c.Covered, &c.Watermark, &c.Closed)
		return c, err
	})
	return out, wrap("chunk candidates", err)
}

// ScanSampleChunks streams the matching chunk rows of a case to fn.
func (b *Backend) ScanSampleChunks(ctx context.Context, caseID uuid.UUID, f store.ChunkFilter, fn func(*store.SampleChunkRow) error) error {
	return reader{q: b.pool}.ScanSampleChunks(ctx, caseID, f, fn)
}

// ScanSampleChunks reads chunk rows in one statement, so the runs it sees
// are those committed when it started, each whole (a run is inserted in one
// transaction).
func (r reader) ScanSampleChunks(ctx context.Context, caseID uuid.UUID, f store.ChunkFilter, fn func(*store.SampleChunkRow) error) error {
	q := `SELECT source_id, seq_from, seq_to, channel, min_time_ms, max_time_ms, sample_count, block
		FROM sample_chunks WHERE case_id = $1`
	args := []any{caseID}
	if f.SourceID != "" {
		args = append(args, f.SourceID)
		q += " AND source_id = $" + strconv.Itoa(len(args))
	}
	var cond string
	if f.Channels != nil {
		args = append(args, f.Channels)
		cond += " AND channel = ANY($" + strconv.Itoa(len(args)) + ")"
	}
	if f.ToMs != 0 {
		args = append(args, f.ToMs)
		cond += " AND min_time_ms < $" + strconv.Itoa(len(args))
	}
	if f.FromMs != 0 {
		args = append(args, f.FromMs)
		cond += " AND max_time_ms >= $" + strconv.Itoa(len(args))
	}
	if cond != "" {
		q += " AND (channel = '' OR (TRUE" + cond + "))"
	}
	q += " ORDER BY source_id, seq_to, channel"
	rows, err := r.q.Query(ctx, q, args...)
	if err != nil {
		return wrap("scan sample chunks", err)
	}
	defer rows.Close()
	for rows.Next() {
		c := &store.SampleChunkRow{CaseID: caseID}
		if err := rows.Scan(&c.SourceID, &c.SeqFrom, &c.SeqTo, &c.Channel, &c.MinTimeMs, &c.MaxTimeMs, &c.SampleCount, &c.Block); err != nil {
			return wrap("scan sample chunks", err)
		}
		if err := fn(c); err != nil {
			return err // fn's error, unchanged
		}
	}
	return wrap("scan sample chunks", rows.Err())
}

// ChunkCoverage reads where the source's last run ends, from the runs
// themselves.
func (t *pgTx) ChunkCoverage(ctx context.Context, key store.SourceKey) (int64, error) {
	var covered int64
	err := t.queryRow(ctx, `SELECT coalesce(max(seq_to), 0) FROM sample_chunks
		WHERE case_id = $1 AND source_id = $2 AND channel = ''`, key.CaseID, key.SourceID).Scan(&covered)
	return covered, wrap("chunk coverage", err)
}

// InsertSampleChunks stores one run's rows and moves the source's run end.
func (t *pgTx) InsertSampleChunks(ctx context.Context, rows []*store.SampleChunkRow) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	var (
		ids      = make([][16]byte, n)
		srcs     = make([]string, n)
		from, to = make([]int64, n), make([]int64, n)
		channels = make([]string, n)
		lo, hi   = make([]int64, n), make([]int64, n)
		counts   = make([]int32, n)
		blocks   = make([][]byte, n)
		last     int64
		caseID   = rows[0].CaseID
		sourceID = rows[0].SourceID
	)
	for i, r := range rows {
		ids[i], srcs[i], from[i], to[i], channels[i] = r.CaseID, r.SourceID, r.SeqFrom, r.SeqTo, r.Channel
		lo[i], hi[i], counts[i], blocks[i] = r.MinTimeMs, r.MaxTimeMs, int32(r.SampleCount), r.Block
		last = max(last, r.SeqTo)
	}
	tag, err := t.exec(ctx, `INSERT INTO sample_chunks (case_id, source_id, seq_from, seq_to, channel, min_time_ms, max_time_ms, sample_count, block)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[], $8::integer[], $9::bytea[])
		ON CONFLICT DO NOTHING`, ids, srcs, from, to, channels, lo, hi, counts, blocks)
	if err != nil {
		return wrap("insert sample chunks", err)
	}
	if err := insertedAll("insert sample chunks", tag.RowsAffected(), n); err != nil {
		return err
	}
	_, err = t.exec(ctx, `UPDATE sample_sources SET chunked = greatest(chunked, $3) WHERE case_id = $1 AND source_id = $2`,
		caseID, sourceID, last)
	return wrap("insert sample chunks", err)
}
