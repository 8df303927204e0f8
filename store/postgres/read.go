package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"perfusion/charting"
	"perfusion/store"
)

// caseWithDetails selects a case and its current details. LEFT JOIN: a case
// must stay readable even if its details row is missing (it never is unless
// someone tampered with the database), so verification can report it.
const caseWithDetails = `SELECT c.case_id, c.kind, c.site, c.room, c.scheduled_start, c.created_at, c.created_by,
	c.status, c.started_at, c.closed_at, c.closed_by, c.details_version, c.head_seq, c.head_hash, d.details
	FROM cases c LEFT JOIN case_details d ON d.case_id = c.case_id AND d.version = c.details_version`

// snapshotOptions begin the transactions that read one consistent state:
// REPEATABLE READ takes one snapshot at the first statement and keeps it to
// the end, and READ ONLY both documents and enforces that nothing is
// written through a Reader.
var snapshotOptions = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}

// Snapshot runs fn with a Reader bound to one read-only REPEATABLE READ
// transaction, so all of fn's reads see the same committed state. A read
// only transaction under REPEATABLE READ never fails to serialise, so there
// is nothing to retry. An error from fn is returned unchanged.
func (b *Backend) Snapshot(ctx context.Context, fn func(ctx context.Context, r store.Reader) error) error {
	tx, err := b.pool.BeginTx(ctx, snapshotOptions)
	if err != nil {
		return fmt.Errorf("postgres: begin snapshot: %w", safeErr(err))
	}
	defer func() {
		// Ends the snapshot, also after a panic in fn; a no-op after Commit.
		_ = tx.Rollback(context.WithoutCancel(ctx))
	}()
	if err := fn(ctx, reader{q: tx}); err != nil {
		return err
	}
	// Nothing was written; committing just ends the transaction cleanly.
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: end snapshot: %w", safeErr(err))
	}
	return nil
}

// reader implements store.Reader on a querier: the pool for the Backend's
// own reads, or the transaction of a Snapshot.
type reader struct {
	q querier
}

var _ store.Reader = reader{}

// consistent runs fn on a querier that reads one snapshot: a new read-only
// REPEATABLE READ transaction when r reads the pool, r's own transaction
// when r already is one (nesting a transaction would be an error, and is
// not needed: a Snapshot is consistent throughout).
func (r reader) consistent(ctx context.Context, fn func(q querier) error) error {
	if pool, ok := r.q.(*pgxpool.Pool); ok {
		return pgx.BeginTxFunc(ctx, pool, snapshotOptions, func(tx pgx.Tx) error { return fn(tx) })
	}
	return fn(r.q)
}

// The Backend's reads go straight to the pool, each in its own statement
// (or, for GetCase and ListCases, its own snapshot).

// GetCase reads a case with its current details and signatures.
func (b *Backend) GetCase(ctx context.Context, id uuid.UUID) (*charting.Case, error) {
	return reader{q: b.pool}.GetCase(ctx, id)
}

// ListCases lists cases newest first with keyset pagination.
func (b *Backend) ListCases(ctx context.Context, f store.CaseFilter) ([]charting.Case, error) {
	return reader{q: b.pool}.ListCases(ctx, f)
}

// DetailsVersions returns every details version of a case, oldest first.
func (b *Backend) DetailsVersions(ctx context.Context, caseID uuid.UUID) ([]charting.DetailsVersion, error) {
	return reader{q: b.pool}.DetailsVersions(ctx, caseID)
}

// Entries returns every entry of a case in the order they were recorded.
func (b *Backend) Entries(ctx context.Context, caseID uuid.UUID) ([]charting.Entry, error) {
	return reader{q: b.pool}.Entries(ctx, caseID)
}

// Signatures returns a case's signatures by number.
func (b *Backend) Signatures(ctx context.Context, caseID uuid.UUID) ([]charting.Signature, error) {
	return reader{q: b.pool}.Signatures(ctx, caseID)
}

// ScanSampleBatches streams the matching batches of a case to fn.
func (b *Backend) ScanSampleBatches(ctx context.Context, caseID uuid.UUID, f store.SampleFilter, fn func(*store.SampleBatchRow) error) error {
	return b.scanInIndexOrder(ctx, caseID, f, fn)
}

// Links returns ledger links with sequence > after, in order, at most limit
// of them (limit <= 0: all).
func (b *Backend) Links(ctx context.Context, caseID uuid.UUID, after int64, limit int) ([]charting.Link, error) {
	return reader{q: b.pool}.Links(ctx, caseID, after, limit)
}

// SourceWatermarks returns the watermark of every source of a case.
func (b *Backend) SourceWatermarks(ctx context.Context, caseID uuid.UUID) (map[string]int64, error) {
	return reader{q: b.pool}.SourceWatermarks(ctx, caseID)
}

// GetCase reads a case with its current details and signatures.
func (r reader) GetCase(ctx context.Context, id uuid.UUID) (*charting.Case, error) {
	var c *charting.Case
	err := r.consistent(ctx, func(tx querier) error {
		var err error
		c, err = scanCaseDetails(tx.QueryRow(ctx, caseWithDetails+` WHERE c.case_id = $1`, id))
		if err != nil {
			return err
		}
		sigs, err := signaturesOf(ctx, tx, []uuid.UUID{id})
		c.Signatures = sigs[id]
		return err
	})
	if err != nil {
		return nil, wrap("get case", err)
	}
	return c, nil
}

// ListCases lists cases newest first with keyset pagination, in two
// queries: the cases joined with their current details, then the
// signatures of all of them at once.
func (r reader) ListCases(ctx context.Context, f store.CaseFilter) ([]charting.Case, error) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	// Only the conditions in use are added, so each filter combination is
	// its own prepared statement with a plan fitted to it.
	if f.Status != "" {
		where = append(where, "c.status = "+arg(string(f.Status)))
	}
	if f.Site != "" {
		where = append(where, "c.site = "+arg(f.Site))
	}
	if f.Room != "" {
		where = append(where, "c.room = "+arg(f.Room))
	}
	if !f.From.IsZero() {
		where = append(where, "c.scheduled_start >= "+arg(f.From))
	}
	if !f.To.IsZero() {
		where = append(where, "c.scheduled_start < "+arg(f.To))
	}
	if f.After != nil {
		where = append(where, "(c.scheduled_start, c.case_id) < ("+arg(f.After.ScheduledStart)+", "+arg(f.After.ID)+")")
	}
	q := caseWithDetails
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY c.scheduled_start DESC, c.case_id DESC"
	if f.Limit > 0 {
		q += " LIMIT " + arg(f.Limit)
	}
	var out []charting.Case
	err := r.consistent(ctx, func(tx querier) error {
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		var ids []uuid.UUID
		for rows.Next() {
			c, err := scanCaseDetails(rows)
			if err != nil {
				return err
			}
			out = append(out, *c)
			ids = append(ids, c.ID)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		sigs, err := signaturesOf(ctx, tx, ids)
		if err != nil {
			return err
		}
		for i := range out {
			out[i].Signatures = sigs[out[i].ID]
		}
		return nil
	})
	if err != nil {
		return nil, wrap("list cases", err)
	}
	return out, nil
}

// DetailsVersions returns every details version of a case, oldest first.
func (r reader) DetailsVersions(ctx context.Context, caseID uuid.UUID) ([]charting.DetailsVersion, error) {
	rows, err := r.q.Query(ctx, `SELECT version, details, reason, actor, recorded_at FROM case_details
		WHERE case_id = $1 ORDER BY version`, caseID)
	if err != nil {
		return nil, wrap("details versions", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (charting.DetailsVersion, error) {
		var (
			d   charting.DetailsVersion
			doc []byte
		)
		if err := row.Scan(&d.Version, &doc, &d.Reason, &d.Actor, &d.RecordedAt); err != nil {
			return d, err
		}
		if err := json.Unmarshal(doc, &d.Details); err != nil {
			return d, fmt.Errorf("details version %d does not decode: %w", d.Version, err)
		}
		d.RecordedAt = charting.NormTime(d.RecordedAt)
		return d, nil
	})
	if err != nil {
		return nil, wrap("details versions", err)
	}
	return out, nil
}

// Entries returns every entry of a case in the order they were recorded.
func (r reader) Entries(ctx context.Context, caseID uuid.UUID) ([]charting.Entry, error) {
	rows, err := r.q.Query(ctx, `SELECT `+entryColumns+` FROM entries WHERE case_id = $1 ORDER BY entry_no`, caseID)
	if err != nil {
		return nil, wrap("entries", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (charting.Entry, error) {
		e, err := scanEntry(row)
		if err != nil {
			return charting.Entry{}, err
		}
		return *e, nil
	})
	if err != nil {
		return nil, wrap("entries", err)
	}
	return out, nil
}

// Signatures returns a case's signatures by number.
func (r reader) Signatures(ctx context.Context, caseID uuid.UUID) ([]charting.Signature, error) {
	sigs, err := signaturesOf(ctx, r.q, []uuid.UUID{caseID})
	if err != nil {
		return nil, wrap("signatures", err)
	}
	return sigs[caseID], nil
}

// ScanSampleBatches streams the matching batches of a case to fn, one row at
// a time: a long case holds many megabytes of blocks, and only the one being
// decoded needs to be in memory. The query shape follows the filter so each
// variant gets its own plan on the (case_id, min_time_ms, source_id, seq)
// index, which also yields the order without a sort.
func (r reader) ScanSampleBatches(ctx context.Context, caseID uuid.UUID, f store.SampleFilter, fn func(*store.SampleBatchRow) error) error {
	block := "block"
	if f.WithoutBlocks {
		block = "''::bytea"
	}
	q := `SELECT source_id, seq, recorded_at, actor, min_time_ms, max_time_ms, sample_count, ` + block + `
		FROM sample_batches WHERE case_id = $1`
	args := []any{caseID}
	if f.SourceID != "" {
		args = append(args, f.SourceID)
		q += " AND source_id = $" + strconv.Itoa(len(args))
	}
	if f.ToMs != 0 {
		args = append(args, f.ToMs)
		q += " AND min_time_ms < $" + strconv.Itoa(len(args))
	}
	if f.FromMs != 0 {
		args = append(args, f.FromMs)
		q += " AND max_time_ms >= $" + strconv.Itoa(len(args))
	}
	if f.Implausible != nil {
		args = append(args, f.Implausible.BeginsMs, f.Implausible.AheadMs)
		q += " AND (min_time_ms < $" + strconv.Itoa(len(args)-1) +
			" OR max_time_ms > floor(extract(epoch FROM recorded_at) * 1000)::bigint + $" + strconv.Itoa(len(args)) + ")"
	}
	for _, src := range slices.Sorted(maps.Keys(f.After)) {
		args = append(args, src, f.After[src])
		q += " AND NOT (source_id = $" + strconv.Itoa(len(args)-1) + " AND seq <= $" + strconv.Itoa(len(args)) + ")"
	}
	q += " ORDER BY min_time_ms, source_id, seq"
	rows, err := r.q.Query(ctx, q, args...)
	if err != nil {
		return wrap("scan sample batches", err)
	}
	defer rows.Close()
	any := false
	for rows.Next() {
		any = true
		row := &store.SampleBatchRow{CaseID: caseID}
		if err := rows.Scan(&row.SourceID, &row.Seq, &row.RecordedAt, &row.Actor, &row.MinTimeMs, &row.MaxTimeMs, &row.SampleCount, &row.Block); err != nil {
			return wrap("scan sample batches", err)
		}
		row.RecordedAt = charting.NormTime(row.RecordedAt)
		if err := fn(row); err != nil {
			return err // fn's error, unchanged
		}
	}
	if err := rows.Err(); err != nil {
		return wrap("scan sample batches", err)
	}
	if any {
		return nil
	}
	// No batch row: the case may be sealed, its batches kept in its
	// sealed form (store/sealed.go).
	rows.Close()
	_, err = store.SealedBatches(ctx, r, caseID, f, fn)
	return err
}

// Links returns ledger links with sequence > after, in order, at most limit
// of them (limit <= 0: all).
func (r reader) Links(ctx context.Context, caseID uuid.UUID, after int64, limit int) ([]charting.Link, error) {
	out, err := r.rawLinks(ctx, caseID, after, limit)
	if err != nil || !store.LinksHaveGap(after, out) {
		return out, err
	}
	// Sequences missing: a sealed case's sample links are in its sealed
	// form (store/sealed.go).
	return store.SealedLinks(ctx, r, caseID, after, limit, out, func(ctx context.Context, after int64, limit int) ([]charting.Link, error) {
		return r.rawLinks(ctx, caseID, after, limit)
	})
}

// rawLinks reads the ledger rows after a sequence, as stored.
func (r reader) rawLinks(ctx context.Context, caseID uuid.UUID, after int64, limit int) ([]charting.Link, error) {
	q := `SELECT seq, kind, ref, actor, reason, recorded_at, prev_hash, hash FROM ledger
		WHERE case_id = $1 AND seq > $2 ORDER BY seq`
	args := []any{caseID, after}
	if limit > 0 {
		q += " LIMIT $3"
		args = append(args, limit)
	}
	rows, err := r.q.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap("links", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (charting.Link, error) {
		l := charting.Link{CaseID: caseID}
		var kind string
		var prev, hash []byte
		if err := row.Scan(&l.Seq, &kind, &l.Ref, &l.Actor, &l.Reason, &l.RecordedAt, &prev, &hash); err != nil {
			return l, err
		}
		l.Kind = charting.LinkKind(kind)
		l.RecordedAt = charting.NormTime(l.RecordedAt)
		l.PrevHash, l.Hash = toHash(prev), toHash(hash)
		return l, nil
	})
	if err != nil {
		return nil, wrap("links", err)
	}
	return out, nil
}

// SourceWatermarks returns the watermark of every source of a case.
func (r reader) SourceWatermarks(ctx context.Context, caseID uuid.UUID) (map[string]int64, error) {
	rows, err := r.q.Query(ctx, `SELECT source_id, watermark FROM sample_sources WHERE case_id = $1`, caseID)
	if err != nil {
		return nil, wrap("source watermarks", err)
	}
	out := make(map[string]int64)
	var (
		src string
		w   int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&src, &w}, func() error {
		out[src] = w
		return nil
	}); err != nil {
		return nil, wrap("source watermarks", err)
	}
	return out, nil
}

// signaturesOf reads the signatures of the given cases in one query,
// grouped by case and ordered by number.
func signaturesOf(ctx context.Context, q querier, ids []uuid.UUID) (map[uuid.UUID][]charting.Signature, error) {
	rows, err := q.Query(ctx, `SELECT case_id, number, signer, display_name, meaning, signed_at, covers_seq, covers_hash, staff_id
		FROM signatures WHERE case_id = ANY($1) ORDER BY case_id, number`, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[uuid.UUID][]charting.Signature, len(ids))
	var (
		s       charting.Signature
		meaning string
		covers  []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&s.CaseID, &s.Number, &s.Signer, &s.DisplayName, &meaning, &s.SignedAt, &s.CoversSeq, &covers, &s.StaffID}, func() error {
		sig := s
		sig.Meaning = charting.SignatureMeaning(meaning)
		sig.SignedAt = charting.NormTime(sig.SignedAt)
		sig.CoversHash = toHash(covers)
		out[sig.CaseID] = append(out[sig.CaseID], sig)
		return nil
	})
	return out, err
}

// scanCase reads the columns of caseColumns.
func scanCase(row pgx.Row) (*charting.Case, error) {
	c, _, err := scanCaseRow(row, false)
	return c, err
}

// scanCaseDetails reads the columns of caseWithDetails.
func scanCaseDetails(row pgx.Row) (*charting.Case, error) {
	c, doc, err := scanCaseRow(row, true)
	if err != nil {
		return nil, err
	}
	if doc != nil {
		if err := json.Unmarshal(doc, &c.Details); err != nil {
			return nil, fmt.Errorf("case %s: details do not decode: %w", c.ID, err)
		}
	}
	return c, nil
}

func scanCaseRow(row pgx.Row, withDetails bool) (*charting.Case, []byte, error) {
	var (
		c               charting.Case
		kind, status    string
		started, closed pgtype.Timestamptz
		head            []byte
		doc             []byte
	)
	dest := []any{&c.ID, &kind, &c.Site, &c.Room, &c.ScheduledStart, &c.CreatedAt, &c.CreatedBy,
		&status, &started, &closed, &c.ClosedBy, &c.DetailsVersion, &c.Head.Seq, &head}
	if withDetails {
		dest = append(dest, &doc)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, nil, err
	}
	c.Kind, c.Status = charting.Kind(kind), charting.Status(status)
	c.ScheduledStart, c.CreatedAt = charting.NormTime(c.ScheduledStart), charting.NormTime(c.CreatedAt)
	c.StartedAt, c.ClosedAt = fromNullTime(started), fromNullTime(closed)
	c.Head.Hash = toHash(head)
	return &c, doc, nil
}

// scanEntry reads the columns of entryColumns.
func scanEntry(row pgx.Row) (*charting.Entry, error) {
	var (
		e          charting.Entry
		kind       string
		supersedes pgtype.UUID
		detail     []byte
	)
	if err := row.Scan(&e.ID, &e.CaseID, &kind, &e.OccurredAt, &e.RecordedAt, &e.Late, &e.Author, &supersedes, &e.Reason, &e.Void, &detail); err != nil {
		return nil, err
	}
	e.Kind = charting.EntryKind(kind)
	e.OccurredAt, e.RecordedAt = charting.NormTime(e.OccurredAt), charting.NormTime(e.RecordedAt)
	if supersedes.Valid {
		e.Supersedes = supersedes.Bytes
	}
	if err := json.Unmarshal(detail, &e.Detail); err != nil {
		return nil, fmt.Errorf("entry %s: detail does not decode: %w", e.ID, err)
	}
	if m := e.Detail.ArtifactMark; m != nil {
		// JSON keeps the offset it was written with; the record is UTC.
		m.Start, m.End = charting.NormTime(m.Start), charting.NormTime(m.End)
	}
	return &e, nil
}

// fromNullTime reads NULL as the zero time and anything else in UTC.
func fromNullTime(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return charting.NormTime(t.Time)
}

// toHash copies a stored digest. A stored value of the wrong length (only
// possible by tampering past the schema's CHECK) yields a hash that will not
// verify, which is where such damage should be reported.
func toHash(b []byte) charting.Hash {
	var h charting.Hash
	copy(h[:], b)
	return h
}
