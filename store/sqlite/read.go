package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

var caseCols = []string{"case_id", "kind", "site", "room", "scheduled_start", "created_at", "created_by",
	"status", "started_at", "closed_at", "closed_by", "details_version", "head_seq", "head_hash"}

// caseColumns is the column list scanCase reads.
var caseColumns = strings.Join(caseCols, ", ")

// caseColumnsOf is caseColumns qualified by a table alias.
func caseColumnsOf(alias string) string {
	return alias + "." + strings.Join(caseCols, ", "+alias+".")
}

// scanCase reads caseColumns (with extra destinations appended after them).
func scanCase(row scanner, extra ...any) (*charting.Case, error) {
	var (
		c                               charting.Case
		id, closedBy                    sql.NullString
		start, created, started, closed sql.NullInt64
		kind, status                    string
		headHash                        []byte
	)
	dest := append([]any{&id, &kind, &c.Site, &c.Room, &start, &created, &c.CreatedBy,
		&status, &started, &closed, &closedBy, &c.DetailsVersion, &c.Head.Seq, &headHash}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	var err error
	if c.ID, err = parseUUID(id, "case id"); err != nil {
		return nil, err
	}
	c.Kind, c.Status = charting.Kind(kind), charting.Status(status)
	c.ScheduledStart, c.CreatedAt = fromMicros(start), fromMicros(created)
	c.StartedAt, c.ClosedAt, c.ClosedBy = fromMicros(started), fromMicros(closed), closedBy.String
	if c.Head.Hash, err = toHash(headHash, "case head hash"); err != nil {
		return nil, err
	}
	return &c, nil
}

const entryColumns = `case_id, entry_id, kind, occurred_at, recorded_at, late, author, supersedes, reason, void, detail`

func scanEntry(row scanner) (*charting.Entry, error) {
	var (
		e                       charting.Entry
		caseID, entryID, supers sql.NullString
		kind, detail            string
		occurred, recorded      sql.NullInt64
	)
	if err := row.Scan(&caseID, &entryID, &kind, &occurred, &recorded, &e.Late, &e.Author, &supers, &e.Reason, &e.Void, &detail); err != nil {
		return nil, err
	}
	var err error
	if e.CaseID, err = parseUUID(caseID, "case id"); err != nil {
		return nil, err
	}
	if e.ID, err = parseUUID(entryID, "entry id"); err != nil {
		return nil, err
	}
	if e.Supersedes, err = parseUUID(supers, "superseded entry id"); err != nil {
		return nil, err
	}
	e.Kind = charting.EntryKind(kind)
	e.OccurredAt, e.RecordedAt = fromMicros(occurred), fromMicros(recorded)
	if err := json.Unmarshal([]byte(detail), &e.Detail); err != nil {
		return nil, decodeErr("entry detail", err)
	}
	// JSON keeps the instant but not necessarily the location; the record's
	// times are UTC.
	if m := e.Detail.ArtifactMark; m != nil {
		m.Start, m.End = charting.NormTime(m.Start), charting.NormTime(m.End)
	}
	return &e, nil
}

// Snapshot runs fn with a Reader bound to one read transaction on the read
// pool. In WAL mode a read transaction sees the database as of its first
// read until it ends, whatever is committed meanwhile, so all of fn's reads
// see one committed state; readers never block the writer, nor it them. An
// error from fn is returned unchanged.
func (b *Backend) Snapshot(ctx context.Context, fn func(ctx context.Context, r store.Reader) error) error {
	q, err := b.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return wrap("begin snapshot", err)
	}
	// Nothing is written: rolling back just ends the read transaction and
	// returns the connection to the pool, also after a panic in fn.
	defer q.Rollback()
	return fn(ctx, reader{q: q})
}

// reader implements store.Reader on a queryer: the read pool for the
// Backend's own reads, or the read transaction of a Snapshot.
type reader struct {
	q queryer
}

var _ store.Reader = reader{}

// consistent runs fn on a queryer that reads one snapshot: a new read
// transaction when r reads the pool, r's own transaction when r already is
// one (a Snapshot is consistent throughout).
func (r reader) consistent(ctx context.Context, fn func(q queryer) error) error {
	db, ok := r.q.(*sql.DB)
	if !ok {
		return fn(r.q)
	}
	q, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return wrap("begin read", err)
	}
	defer q.Rollback()
	return fn(q)
}

// The Backend's reads go straight to the read pool, each in its own
// statement (or, for GetCase and ListCases, its own read transaction).

// GetCase reads a case with its current details and signatures.
func (b *Backend) GetCase(ctx context.Context, id uuid.UUID) (*charting.Case, error) {
	return reader{q: b.r}.GetCase(ctx, id)
}

// ListCases returns the cases matching f, newest scheduled start first.
func (b *Backend) ListCases(ctx context.Context, f store.CaseFilter) ([]charting.Case, error) {
	return reader{q: b.r}.ListCases(ctx, f)
}

// DetailsVersions returns every details version of a case, oldest first.
func (b *Backend) DetailsVersions(ctx context.Context, caseID uuid.UUID) ([]charting.DetailsVersion, error) {
	return reader{q: b.r}.DetailsVersions(ctx, caseID)
}

// Entries returns every entry of a case in the order they were recorded.
func (b *Backend) Entries(ctx context.Context, caseID uuid.UUID) ([]charting.Entry, error) {
	return reader{q: b.r}.Entries(ctx, caseID)
}

// Signatures returns a case's signatures by number.
func (b *Backend) Signatures(ctx context.Context, caseID uuid.UUID) ([]charting.Signature, error) {
	return reader{q: b.r}.Signatures(ctx, caseID)
}

// ScanSampleBatches streams the matching batches of a case to fn.
func (b *Backend) ScanSampleBatches(ctx context.Context, caseID uuid.UUID, f store.SampleFilter, fn func(*store.SampleBatchRow) error) error {
	return reader{q: b.r}.ScanSampleBatches(ctx, caseID, f, fn)
}

// Links returns ledger links after a sequence, in order.
func (b *Backend) Links(ctx context.Context, caseID uuid.UUID, after int64, limit int) ([]charting.Link, error) {
	return reader{q: b.r}.Links(ctx, caseID, after, limit)
}

// SourceWatermarks returns the watermark of every source of a case.
func (b *Backend) SourceWatermarks(ctx context.Context, caseID uuid.UUID) (map[string]int64, error) {
	return reader{q: b.r}.SourceWatermarks(ctx, caseID)
}

// GetCase reads a case with its current details and signatures, all from
// one snapshot.
func (r reader) GetCase(ctx context.Context, id uuid.UUID) (*charting.Case, error) {
	var out *charting.Case
	err := r.consistent(ctx, func(q queryer) error {
		cs, err := casesWhere(ctx, q, `c.case_id = ?`, []any{id.String()}, "")
		if err != nil {
			return err
		}
		if len(cs) == 0 {
			return notFound("get case")
		}
		out = &cs[0]
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListCases returns the cases matching f, newest scheduled start first,
// continuing after f.After (keyset pagination: stable under concurrent
// inserts, and each page costs the same).
func (r reader) ListCases(ctx context.Context, f store.CaseFilter) ([]charting.Case, error) {
	var (
		conds []string
		args  []any
	)
	add := func(cond string, a ...any) {
		conds = append(conds, cond)
		args = append(args, a...)
	}
	if f.Status != "" {
		add(`c.status = ?`, string(f.Status))
	}
	if f.Site != "" {
		add(`c.site = ?`, f.Site)
	}
	if f.Room != "" {
		add(`c.room = ?`, f.Room)
	}
	if !f.From.IsZero() {
		add(`c.scheduled_start >= ?`, micros(f.From))
	}
	if !f.To.IsZero() {
		add(`c.scheduled_start < ?`, micros(f.To))
	}
	if a := f.After; a != nil {
		start := micros(a.ScheduledStart)
		add(`(c.scheduled_start < ? OR (c.scheduled_start = ? AND c.case_id < ?))`, start, start, a.ID.String())
	}
	where := `1 = 1`
	if len(conds) > 0 {
		where = strings.Join(conds, ` AND `)
	}
	limit := ""
	if f.Limit > 0 {
		limit = ` LIMIT ?`
		args = append(args, f.Limit)
	}
	var out []charting.Case
	err := r.consistent(ctx, func(q queryer) error {
		var err error
		out, err = casesWhere(ctx, q, where, args, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// casesWhere reads cases with their current details, then their
// signatures in one more query.
func casesWhere(ctx context.Context, q queryer, where string, args []any, limit string) ([]charting.Case, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+caseColumnsOf("c")+`, d.details
		FROM cases c LEFT JOIN case_details d ON d.case_id = c.case_id AND d.version = c.details_version
		WHERE `+where+`
		ORDER BY c.scheduled_start DESC, c.case_id DESC`+limit, args...)
	if err != nil {
		return nil, wrap("list cases", err)
	}
	defer rows.Close()
	var (
		out   []charting.Case
		index = make(map[uuid.UUID]int)
	)
	for rows.Next() {
		var details sql.NullString
		c, err := scanCase(rows, &details)
		if err != nil {
			return nil, wrap("list cases", err)
		}
		if details.Valid {
			if err := json.Unmarshal([]byte(details.String), &c.Details); err != nil {
				return nil, decodeErr("case details", err)
			}
		}
		index[c.ID] = len(out)
		out = append(out, *c)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list cases", err)
	}
	if len(out) == 0 {
		return out, nil
	}
	ids := make([]any, 0, len(out))
	for _, c := range out {
		ids = append(ids, c.ID.String())
	}
	sigs, err := signaturesWhere(ctx, q, `case_id IN (?`+strings.Repeat(`, ?`, len(ids)-1)+`)`, ids)
	if err != nil {
		return nil, err
	}
	for _, s := range sigs {
		c := &out[index[s.CaseID]]
		c.Signatures = append(c.Signatures, s)
	}
	return out, nil
}

// DetailsVersions returns every details version of a case, oldest first.
func (r reader) DetailsVersions(ctx context.Context, caseID uuid.UUID) ([]charting.DetailsVersion, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT version, details, reason, actor, recorded_at
		FROM case_details WHERE case_id = ? ORDER BY version`, caseID.String())
	if err != nil {
		return nil, wrap("details versions", err)
	}
	defer rows.Close()
	var out []charting.DetailsVersion
	for rows.Next() {
		var (
			d        charting.DetailsVersion
			js       string
			recorded sql.NullInt64
		)
		if err := rows.Scan(&d.Version, &js, &d.Reason, &d.Actor, &recorded); err != nil {
			return nil, wrap("details versions", err)
		}
		if err := json.Unmarshal([]byte(js), &d.Details); err != nil {
			return nil, decodeErr("case details", err)
		}
		d.RecordedAt = fromMicros(recorded)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("details versions", err)
	}
	return out, nil
}

// Entries returns every entry of a case in the order they were recorded.
// That order is insertion order, which the rowid keeps: rows are never
// deleted, so SQLite assigns each new row a rowid above every existing one.
func (r reader) Entries(ctx context.Context, caseID uuid.UUID) ([]charting.Entry, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT `+entryColumns+` FROM entries WHERE case_id = ? ORDER BY rowid`, caseID.String())
	if err != nil {
		return nil, wrap("entries", err)
	}
	defer rows.Close()
	var out []charting.Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, wrap("entries", err)
		}
		out = append(out, *e)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("entries", err)
	}
	return out, nil
}

// Signatures returns a case's signatures by number.
func (r reader) Signatures(ctx context.Context, caseID uuid.UUID) ([]charting.Signature, error) {
	return signaturesWhere(ctx, r.q, `case_id = ?`, []any{caseID.String()})
}

func signaturesWhere(ctx context.Context, q queryer, where string, args []any) ([]charting.Signature, error) {
	rows, err := q.QueryContext(ctx, `SELECT case_id, number, signer, display_name, meaning, signed_at, covers_seq, covers_hash, staff_id
		FROM signatures WHERE `+where+` ORDER BY case_id, number`, args...)
	if err != nil {
		return nil, wrap("signatures", err)
	}
	defer rows.Close()
	var out []charting.Signature
	for rows.Next() {
		var (
			s       charting.Signature
			caseID  sql.NullString
			meaning string
			signed  sql.NullInt64
			hash    []byte
		)
		if err := rows.Scan(&caseID, &s.Number, &s.Signer, &s.DisplayName, &meaning, &signed, &s.CoversSeq, &hash, &s.StaffID); err != nil {
			return nil, wrap("signatures", err)
		}
		if s.CaseID, err = parseUUID(caseID, "case id"); err != nil {
			return nil, err
		}
		if s.CoversHash, err = toHash(hash, "signature hash"); err != nil {
			return nil, err
		}
		s.Meaning, s.SignedAt = charting.SignatureMeaning(meaning), fromMicros(signed)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("signatures", err)
	}
	return out, nil
}

// ScanSampleBatches streams the batches of a case overlapping the filter's
// time range, ordered by first sample time, source and sequence, calling fn
// for each as it is read; a case's blocks are never all in memory at once.
func (r reader) ScanSampleBatches(ctx context.Context, caseID uuid.UUID, f store.SampleFilter, fn func(*store.SampleBatchRow) error) error {
	block := "block"
	if f.WithoutBlocks {
		block = "X''"
	}
	query := `SELECT source_id, seq, recorded_at, actor, min_time_ms, max_time_ms, sample_count, ` + block + `
		FROM sample_batches WHERE case_id = ?`
	args := []any{caseID.String()}
	if f.SourceID != "" {
		query += ` AND source_id = ?`
		args = append(args, f.SourceID)
	}
	if f.ToMs != 0 {
		query += ` AND min_time_ms < ?`
		args = append(args, f.ToMs)
	}
	if f.FromMs != 0 {
		query += ` AND max_time_ms >= ?`
		args = append(args, f.FromMs)
	}
	if f.Implausible != nil {
		// recorded_at is in microseconds since the epoch, always positive:
		// integer division floors it to milliseconds.
		query += ` AND (min_time_ms < ? OR max_time_ms > recorded_at / 1000 + ?)`
		args = append(args, f.Implausible.BeginsMs, f.Implausible.AheadMs)
	}
	for _, src := range slices.Sorted(maps.Keys(f.After)) {
		query += ` AND NOT (source_id = ? AND seq <= ?)`
		args = append(args, src, f.After[src])
	}
	query += ` ORDER BY min_time_ms, source_id, seq`
	rows, err := r.q.QueryContext(ctx, query, args...)
	if err != nil {
		return wrap("scan sample batches", err)
	}
	defer rows.Close()
	any := false
	for rows.Next() {
		any = true
		row := &store.SampleBatchRow{CaseID: caseID}
		var recorded sql.NullInt64
		if err := rows.Scan(&row.SourceID, &row.Seq, &recorded, &row.Actor, &row.MinTimeMs, &row.MaxTimeMs, &row.SampleCount, &row.Block); err != nil {
			return wrap("scan sample batches", err)
		}
		row.RecordedAt = fromMicros(recorded)
		if err := fn(row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil || any {
		return wrap("scan sample batches", err)
	}
	// No batch row: the case may be sealed, its batches kept in its
	// sealed form (store/sealed.go).
	rows.Close()
	_, err = store.SealedBatches(ctx, r, caseID, f, fn)
	return err
}

// Links returns ledger links after a sequence, in order.
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
	query := `SELECT seq, kind, ref, actor, reason, recorded_at, prev_hash, hash
		FROM ledger WHERE case_id = ? AND seq > ? ORDER BY seq`
	args := []any{caseID.String(), after}
	if limit > 0 {
		query += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := r.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, wrap("links", err)
	}
	defer rows.Close()
	var out []charting.Link
	for rows.Next() {
		var (
			l          = charting.Link{CaseID: caseID}
			kind       string
			recorded   sql.NullInt64
			prev, hash []byte
		)
		if err := rows.Scan(&l.Seq, &kind, &l.Ref, &l.Actor, &l.Reason, &recorded, &prev, &hash); err != nil {
			return nil, wrap("links", err)
		}
		l.Kind, l.RecordedAt = charting.LinkKind(kind), fromMicros(recorded)
		if l.PrevHash, err = toHash(prev, "link previous hash"); err != nil {
			return nil, err
		}
		if l.Hash, err = toHash(hash, "link hash"); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("links", err)
	}
	return out, nil
}

// SourceWatermarks returns the watermark of every source of a case.
func (r reader) SourceWatermarks(ctx context.Context, caseID uuid.UUID) (map[string]int64, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT source_id, watermark FROM sample_sources WHERE case_id = ?`, caseID.String())
	if err != nil {
		return nil, wrap("source watermarks", err)
	}
	defer rows.Close()
	out := make(map[string]int64)
	for rows.Next() {
		var (
			src string
			w   int64
		)
		if err := rows.Scan(&src, &w); err != nil {
			return nil, wrap("source watermarks", err)
		}
		out[src] = w
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("source watermarks", err)
	}
	return out, nil
}

var _ store.Backend = (*Backend)(nil)
