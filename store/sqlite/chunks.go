package sqlite

import (
	"context"
	"database/sql"
	"strings"

	"github.com/google/uuid"

	"perfusion/store"
)

// ChunkCandidates finds sources with complete batches not yet in a run, from
// the watermark and run end kept side by side in sample_sources.
func (b *Backend) ChunkCandidates(ctx context.Context, runBatches, limit int) ([]store.ChunkCandidate, error) {
	rows, err := b.r.QueryContext(ctx, `SELECT s.case_id, s.source_id, s.chunked, s.watermark, c.status IN ('closed', 'signed')
		FROM sample_sources s JOIN cases c ON c.case_id = s.case_id
		WHERE s.watermark - s.chunked >= ?
		   OR (s.watermark > s.chunked AND c.status IN ('closed', 'signed'))
		ORDER BY c.status IN ('closed', 'signed'), c.created_at DESC, s.case_id, s.source_id
		LIMIT ?`, runBatches, limit)
	if err != nil {
		return nil, wrap("chunk candidates", err)
	}
	defer rows.Close()
	var out []store.ChunkCandidate
	for rows.Next() {
		var c store.ChunkCandidate
		var id string
		if err := rows.Scan(&id, &c.Key.SourceID, &c.Covered, &c.Watermark, &c.Closed); err != nil {
			return nil, wrap("chunk candidates", err)
		}
		if c.Key.CaseID, err = uuid.Parse(id); err != nil {
			return nil, wrap("chunk candidates", err)
		}
		out = append(out, c)
	}
	return out, wrap("chunk candidates", rows.Err())
}

// ScanSampleChunks streams the matching chunk rows of a case to fn.
func (b *Backend) ScanSampleChunks(ctx context.Context, caseID uuid.UUID, f store.ChunkFilter, fn func(*store.SampleChunkRow) error) error {
	return reader{q: b.r}.ScanSampleChunks(ctx, caseID, f, fn)
}

// ScanSampleChunks reads chunk rows in one statement, so the runs it sees
// are those committed when it started, each whole (a run is inserted in one
// transaction).
func (r reader) ScanSampleChunks(ctx context.Context, caseID uuid.UUID, f store.ChunkFilter, fn func(*store.SampleChunkRow) error) error {
	query := `SELECT source_id, seq_from, seq_to, channel, min_time_ms, max_time_ms, sample_count, block
		FROM sample_chunks WHERE case_id = ?`
	args := []any{caseID.String()}
	if f.SourceID != "" {
		query += ` AND source_id = ?`
		args = append(args, f.SourceID)
	}
	var cond string
	if f.Channels != nil {
		cond += ` AND channel IN (` + strings.Repeat("?,", len(f.Channels)) + `NULL)`
		for _, ch := range f.Channels {
			args = append(args, ch)
		}
	}
	if f.ToMs != 0 {
		cond += ` AND min_time_ms < ?`
		args = append(args, f.ToMs)
	}
	if f.FromMs != 0 {
		cond += ` AND max_time_ms >= ?`
		args = append(args, f.FromMs)
	}
	if cond != "" {
		query += ` AND (channel = '' OR (1` + cond + `))`
	}
	query += ` ORDER BY source_id, seq_to, channel`
	rows, err := r.q.QueryContext(ctx, query, args...)
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
			return err
		}
	}
	return wrap("scan sample chunks", rows.Err())
}

// ChunkCoverage reads where the source's last run ends, from the runs
// themselves.
func (t *tx) ChunkCoverage(ctx context.Context, key store.SourceKey) (int64, error) {
	var covered int64
	err := t.tx.QueryRowContext(ctx, `SELECT coalesce(max(seq_to), 0) FROM sample_chunks
		WHERE case_id = ? AND source_id = ? AND channel = ''`, key.CaseID.String(), key.SourceID).Scan(&covered)
	return covered, wrap("chunk coverage", err)
}

// InsertSampleChunks stores one run's rows and moves the source's run end.
func (t *tx) InsertSampleChunks(ctx context.Context, rows []*store.SampleChunkRow) error {
	if len(rows) == 0 {
		return nil
	}
	var last int64
	err := t.each(ctx, "insert sample chunks", `INSERT INTO sample_chunks
		(case_id, source_id, seq_from, seq_to, channel, min_time_ms, max_time_ms, sample_count, block)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, func(st *sql.Stmt) error {
		for _, r := range rows {
			if _, err := st.ExecContext(ctx, r.CaseID.String(), r.SourceID, r.SeqFrom, r.SeqTo, r.Channel,
				r.MinTimeMs, r.MaxTimeMs, r.SampleCount, r.Block); err != nil {
				return wrap("insert sample chunks", err)
			}
			last = max(last, r.SeqTo)
		}
		return nil
	})
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, "insert sample chunks", `UPDATE sample_sources SET chunked = max(chunked, ?)
		WHERE case_id = ? AND source_id = ?`, last, rows[0].CaseID.String(), rows[0].SourceID)
	return err
}
