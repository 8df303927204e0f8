package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

// Sealed storage (store/sealed.go, migration 014). The sealed form is
// read here as rows; store rebuilds batches and links from them.

// SealedCase reads the row that marks a case sealed.
func (b *Backend) SealedCase(ctx context.Context, caseID uuid.UUID) (*store.SealedCaseRow, error) {
	return reader{q: b.r}.SealedCase(ctx, caseID)
}

// ScanSealedParts streams the matching rows of a sealed case.
func (b *Backend) ScanSealedParts(ctx context.Context, caseID uuid.UUID, f store.SealedFilter, fn func(*store.SealedPart) error) error {
	return reader{q: b.r}.ScanSealedParts(ctx, caseID, f, fn)
}

// SealedCase reads the row that marks a case sealed; nil when there is
// none (or its sealing has not finished).
func (r reader) SealedCase(ctx context.Context, caseID uuid.UUID) (*store.SealedCaseRow, error) {
	return sealedCase(ctx, r.q, caseID)
}

// ScanSealedParts streams the matching rows of a sealed case.
func (r reader) ScanSealedParts(ctx context.Context, caseID uuid.UUID, f store.SealedFilter, fn func(*store.SealedPart) error) error {
	return scanSealedParts(ctx, r.q, caseID, f, fn)
}

// SealedCase and ScanSealedParts within a write transaction.
func (t *tx) SealedCase(ctx context.Context, caseID uuid.UUID) (*store.SealedCaseRow, error) {
	return sealedCase(ctx, t.tx, caseID)
}

func (t *tx) ScanSealedParts(ctx context.Context, caseID uuid.UUID, f store.SealedFilter, fn func(*store.SealedPart) error) error {
	return scanSealedParts(ctx, t.tx, caseID, f, fn)
}

func sealedCase(ctx context.Context, q queryer, caseID uuid.UUID) (*store.SealedCaseRow, error) {
	h := &store.SealedCaseRow{CaseID: caseID}
	var at int64
	err := q.QueryRowContext(ctx, `SELECT format, sealed_at, segments, batches, samples, links FROM sealed_cases
		WHERE case_id = ? AND sealing IS NULL`, caseID.String()).Scan(&h.Format, &at, &h.Segments, &h.Batches, &h.Samples, &h.Links)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("sealed case", err)
	}
	h.SealedAt = time.UnixMicro(at).UTC()
	return h, nil
}

func scanSealedParts(ctx context.Context, q queryer, caseID uuid.UUID, f store.SealedFilter, fn func(*store.SealedPart) error) error {
	query := `SELECT seg, source_id, channel, min_time_ms, max_time_ms, sample_count, data FROM sealed_segments WHERE case_id = ?`
	args := []any{caseID.String()}
	in := func(n int) string { return `(` + strings.Repeat("?,", n) + `NULL)` }
	if f.ManifestsOnly {
		query += ` AND source_id = '' AND channel = ''`
	}
	if f.WithoutManifests {
		query += ` AND source_id <> ''`
	}
	if f.Segs != nil {
		query += ` AND seg IN ` + in(len(f.Segs))
		for _, s := range f.Segs {
			args = append(args, s)
		}
	}
	if f.SourceID != "" {
		query += ` AND (source_id = '' OR source_id = ?)`
		args = append(args, f.SourceID)
	}
	if f.Channels != nil {
		query += ` AND (channel = '' OR channel IN ` + in(len(f.Channels)) + `)`
		for _, ch := range f.Channels {
			args = append(args, ch)
		}
	}
	if f.ToMs != 0 {
		query += ` AND min_time_ms < ?`
		args = append(args, f.ToMs)
	}
	if f.FromMs != 0 {
		query += ` AND max_time_ms >= ?`
		args = append(args, f.FromMs)
	}
	query += ` ORDER BY seg`
	rows, err := q.QueryContext(ctx, query, args...)
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

// SealCase stores the sealed form of a case and removes what it replaces,
// after checking that the numbers of batches, samples and sample links
// removed are the header's. The database refuses the removal unless the
// case's sealed_cases row is sealing, and refuses to clear that flag while
// anything it replaces remains.
func (t *tx) SealCase(ctx context.Context, hdr *store.SealedCaseRow, parts []*store.SealedPart) error {
	id := hdr.CaseID.String()
	var exists int
	if err := t.tx.QueryRowContext(ctx, `SELECT count(*) FROM sealed_cases WHERE case_id = ?`, id).Scan(&exists); err != nil {
		return wrap("seal case", err)
	}
	if exists > 0 {
		return fmt.Errorf("sqlite: seal case: %w", store.ErrDuplicate)
	}
	var batches, samples, links int64
	if err := t.tx.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(sample_count), 0) FROM sample_batches WHERE case_id = ?`, id).Scan(&batches, &samples); err != nil {
		return wrap("seal case", err)
	}
	if err := t.tx.QueryRowContext(ctx, `SELECT count(*) FROM ledger WHERE case_id = ? AND kind = ?`, id, string(charting.LinkSamples)).Scan(&links); err != nil {
		return wrap("seal case", err)
	}
	if batches != hdr.Batches || samples != hdr.Samples || links != hdr.Links {
		return fmt.Errorf("sqlite: seal case: the sealed form holds %d batches, %d samples, %d links; the case %d, %d, %d",
			hdr.Batches, hdr.Samples, hdr.Links, batches, samples, links)
	}
	if _, err := t.exec(ctx, "seal case", `INSERT INTO sealed_cases (case_id, format, sealed_at, segments, batches, samples, links, sealing)
		VALUES (?, ?, ?, ?, ?, ?, ?, 1)`, id, hdr.Format, micros(hdr.SealedAt), hdr.Segments, hdr.Batches, hdr.Samples, hdr.Links); err != nil {
		return err
	}
	err := t.each(ctx, "seal case: segments", `INSERT INTO sealed_segments (case_id, seg, source_id, channel, min_time_ms, max_time_ms, sample_count, data)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, func(st *sql.Stmt) error {
		for _, p := range parts {
			if _, err := st.ExecContext(ctx, id, p.Seg, p.SourceID, p.Channel, p.MinTimeMs, p.MaxTimeMs, p.SampleCount, p.Data); err != nil {
				return wrap("seal case: segments", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, q := range []string{
		`DELETE FROM sample_chunks WHERE case_id = ?`,
		`DELETE FROM sample_batches WHERE case_id = ?`,
		`DELETE FROM ledger WHERE case_id = ? AND kind = 'samples'`,
		`UPDATE sample_sources SET chunked = watermark WHERE case_id = ?`,
		`UPDATE sealed_cases SET sealing = NULL WHERE case_id = ?`,
	} {
		if _, err := t.exec(ctx, "seal case", q, id); err != nil {
			return err
		}
	}
	return nil
}

// SealCandidates lists closed or signed cases that hold batches and are
// not sealed, oldest close first.
func (b *Backend) SealCandidates(ctx context.Context, closedBefore time.Time, limit int) ([]uuid.UUID, error) {
	rows, err := b.r.QueryContext(ctx, `SELECT c.case_id FROM cases c
		WHERE c.status IN ('closed', 'signed') AND c.closed_at < ?
		  AND NOT EXISTS (SELECT 1 FROM sealed_cases s WHERE s.case_id = c.case_id)
		  AND EXISTS (SELECT 1 FROM sample_batches b WHERE b.case_id = c.case_id)
		ORDER BY c.closed_at, c.case_id LIMIT ?`, micros(closedBefore), limit)
	if err != nil {
		return nil, wrap("seal candidates", err)
	}
	defer rows.Close()
	var out []uuid.UUID
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, wrap("seal candidates", err)
		}
		id, err := uuid.Parse(s)
		if err != nil {
			return nil, wrap("seal candidates", err)
		}
		out = append(out, id)
	}
	return out, wrap("seal candidates", rows.Err())
}

// withSealedBlocks adds to out the blocks of keys it lacks that are in a
// sealed case's sealed form.
func withSealedBlocks(ctx context.Context, r store.SealedReader, keys []store.SampleKey, out map[store.SampleKey][]byte) (map[store.SampleKey][]byte, error) {
	var missing []store.SampleKey
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	sealed, err := store.SealedBlocks(ctx, r, missing)
	if err != nil {
		return nil, err
	}
	for k, b := range sealed {
		out[k] = b
	}
	return out, nil
}
