package postgres

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"perfusion/charting"
	"perfusion/store"
)

// Sealed storage (store/sealed.go, migration 014). The sealed form is
// read here as rows; store rebuilds batches and links from them.

// SealedCase reads the row that marks a case sealed; nil when there is
// none or its sealing has not committed.
func (b *Backend) SealedCase(ctx context.Context, caseID uuid.UUID) (*store.SealedCaseRow, error) {
	return reader{q: b.pool}.SealedCase(ctx, caseID)
}

// ScanSealedParts streams the matching rows of a sealed case.
func (b *Backend) ScanSealedParts(ctx context.Context, caseID uuid.UUID, f store.SealedFilter, fn func(*store.SealedPart) error) error {
	return reader{q: b.pool}.ScanSealedParts(ctx, caseID, f, fn)
}

// SealedCase reads the row that marks a case sealed.
func (r reader) SealedCase(ctx context.Context, caseID uuid.UUID) (*store.SealedCaseRow, error) {
	return sealedCase(ctx, r.q.QueryRow, caseID)
}

// ScanSealedParts streams the matching rows of a sealed case.
func (r reader) ScanSealedParts(ctx context.Context, caseID uuid.UUID, f store.SealedFilter, fn func(*store.SealedPart) error) error {
	return scanSealedParts(ctx, r.q.Query, caseID, f, fn)
}

// SealedCase and ScanSealedParts of a transaction, for the reads it makes
// of sealed batches (a resend to a sealed case).
func (t *pgTx) SealedCase(ctx context.Context, caseID uuid.UUID) (*store.SealedCaseRow, error) {
	return sealedCase(ctx, t.queryRow, caseID)
}

func (t *pgTx) ScanSealedParts(ctx context.Context, caseID uuid.UUID, f store.SealedFilter, fn func(*store.SealedPart) error) error {
	return scanSealedParts(ctx, t.query, caseID, f, fn)
}

func sealedCase(ctx context.Context, queryRow func(context.Context, string, ...any) pgx.Row, caseID uuid.UUID) (*store.SealedCaseRow, error) {
	h := &store.SealedCaseRow{CaseID: caseID}
	err := queryRow(ctx, `SELECT format, sealed_at, segments, batches, samples, links FROM sealed_cases
		WHERE case_id = $1 AND NOT sealing`, caseID).Scan(&h.Format, &h.SealedAt, &h.Segments, &h.Batches, &h.Samples, &h.Links)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("sealed case", err)
	}
	h.SealedAt = charting.NormTime(h.SealedAt)
	return h, nil
}

func scanSealedParts(ctx context.Context, query func(context.Context, string, ...any) (pgx.Rows, error), caseID uuid.UUID, f store.SealedFilter, fn func(*store.SealedPart) error) error {
	q := `SELECT seg, source_id, channel, min_time_ms, max_time_ms, sample_count, data FROM sealed_segments WHERE case_id = $1`
	args := []any{caseID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.ManifestsOnly {
		q += ` AND source_id = '' AND channel = ''`
	}
	if f.WithoutManifests {
		q += ` AND source_id <> ''`
	}
	if f.Segs != nil {
		segs := make([]int32, len(f.Segs))
		for i, s := range f.Segs {
			segs[i] = int32(s)
		}
		q += ` AND seg = ANY(` + arg(segs) + `)`
	}
	if f.SourceID != "" {
		q += ` AND (source_id = '' OR source_id = ` + arg(f.SourceID) + `)`
	}
	if f.Channels != nil {
		q += ` AND (channel = '' OR channel = ANY(` + arg(f.Channels) + `))`
	}
	if f.ToMs != 0 {
		q += ` AND min_time_ms < ` + arg(f.ToMs)
	}
	if f.FromMs != 0 {
		q += ` AND max_time_ms >= ` + arg(f.FromMs)
	}
	q += ` ORDER BY seg`
	rows, err := query(ctx, q, args...)
	if err != nil {
		return wrap("sealed parts", err)
	}
	defer rows.Close()
	for rows.Next() {
		p := &store.SealedPart{CaseID: caseID}
		if err := rows.Scan(&p.Seg, &p.SourceID, &p.Channel, &p.MinTimeMs, &p.MaxTimeMs, &p.SampleCount, &p.Data); err != nil {
			return wrap("sealed parts", err)
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return wrap("sealed parts", rows.Err())
}

// SealCase stores the sealed form of a case and has perfusion_seal_case
// remove what it replaces, which it refuses unless the numbers match.
func (t *pgTx) SealCase(ctx context.Context, hdr *store.SealedCaseRow, parts []*store.SealedPart) error {
	tag, err := t.exec(ctx, `INSERT INTO sealed_cases (case_id, format, sealed_at, segments, batches, samples, links, sealing)
		VALUES ($1, $2, $3, $4, $5, $6, $7, true) ON CONFLICT DO NOTHING`,
		hdr.CaseID, hdr.Format, hdr.SealedAt, hdr.Segments, hdr.Batches, hdr.Samples, hdr.Links)
	if err := inserted("seal case", tag.RowsAffected(), err); err != nil {
		return err
	}
	_, err = t.tx.CopyFrom(ctx, pgx.Identifier{"sealed_segments"},
		[]string{"case_id", "seg", "source_id", "channel", "min_time_ms", "max_time_ms", "sample_count", "data"},
		pgx.CopyFromSlice(len(parts), func(i int) ([]any, error) {
			p := parts[i]
			return []any{p.CaseID, int32(p.Seg), p.SourceID, p.Channel, p.MinTimeMs, p.MaxTimeMs, int32(p.SampleCount), p.Data}, nil
		}))
	if err != nil {
		return wrap("seal case: segments", err)
	}
	if _, err := t.exec(ctx, `SELECT perfusion_seal_case($1)`, hdr.CaseID); err != nil {
		return wrap("seal case", err)
	}
	return nil
}

// SealCandidates lists closed or signed cases that hold batches and are
// not sealed, oldest close first.
func (b *Backend) SealCandidates(ctx context.Context, closedBefore time.Time, limit int) ([]uuid.UUID, error) {
	rows, err := b.pool.Query(ctx, `SELECT c.case_id FROM cases c
		WHERE c.status IN ('closed', 'signed') AND c.closed_at < $1
		  AND NOT EXISTS (SELECT 1 FROM sealed_cases s WHERE s.case_id = c.case_id)
		  AND EXISTS (SELECT 1 FROM sample_batches b WHERE b.case_id = c.case_id)
		ORDER BY c.closed_at, c.case_id LIMIT $2`, closedBefore, limit)
	if err != nil {
		return nil, wrap("seal candidates", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	return ids, wrap("seal candidates", err)
}
