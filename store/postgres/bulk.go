package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"perfusion/charting"
	"perfusion/store"
)

// The bulk primitives of store.Tx. Each is one statement whatever the
// number of rows: the rows travel as one array per column and unnest turns
// them back into rows on the server, so a group commit of hundreds of
// batches costs the same few round trips as one batch. The four writes are
// queued and pipelined (see pgTx), so a group commit is BEGIN, LockCases,
// SourceStates, SampleBlocks when a batch may be a resend, one exchange
// carrying the writes, and COMMIT. Arrays are sent in
// pgx's binary format, so values are never spliced into SQL text.

// LockCases locks the existing cases among ids. ORDER BY … FOR UPDATE locks
// rows in the sorted order (PostgreSQL sorts before it locks), which is the
// fixed order that keeps group commits from deadlocking one another and
// with single-case writers.
func (t *pgTx) LockCases(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]*charting.Case, error) {
	out := make(map[uuid.UUID]*charting.Case, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := t.query(ctx, `SELECT `+caseColumns+` FROM cases WHERE case_id = ANY($1) ORDER BY case_id FOR UPDATE`, uuidArray(ids))
	if err != nil {
		return nil, wrap("lock cases", err)
	}
	defer rows.Close()
	for rows.Next() {
		c, err := scanCase(rows)
		if err != nil {
			return nil, wrap("lock cases", err)
		}
		out[c.ID] = c
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("lock cases", err)
	}
	return out, nil
}

// SampleBlocks reads the stored blocks of the keys that exist, one primary
// key probe per key.
func (t *pgTx) SampleBlocks(ctx context.Context, keys []store.SampleKey) (map[store.SampleKey][]byte, error) {
	out, err := sampleBlocks(ctx, t.query, keys)
	if err != nil {
		return nil, err
	}
	return withSealedBlocks(ctx, t, keys, out)
}

// withSealedBlocks adds to out the blocks of keys it lacks that are in a
// sealed case's sealed form (a resend to a sealed case, a watcher
// replaying one).
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

// sampleBlocks is SampleBlocks over any query function: a transaction's
// (which first flushes its queued writes) or the pool's.
func sampleBlocks(ctx context.Context, query func(context.Context, string, ...any) (pgx.Rows, error), keys []store.SampleKey) (map[store.SampleKey][]byte, error) {
	out := make(map[store.SampleKey][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	ids, srcs, seqs := make([][16]byte, len(keys)), make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		ids[i], srcs[i], seqs[i] = k.CaseID, k.SourceID, k.Seq
	}
	rows, err := query(ctx, `SELECT b.case_id, b.source_id, b.seq, b.block
		FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS k(case_id, source_id, seq)
		JOIN sample_batches b ON b.case_id = k.case_id AND b.source_id = k.source_id AND b.seq = k.seq`, ids, srcs, seqs)
	if err != nil {
		return nil, wrap("sample blocks", err)
	}
	var (
		k     store.SampleKey
		block []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&k.CaseID, &k.SourceID, &k.Seq, &block}, func() error {
		out[k] = block
		return nil
	})
	if err != nil {
		return nil, wrap("sample blocks", err)
	}
	return out, nil
}

// SourceStates reads each source's watermark and, by one probe of the
// primary key per source, the lowest sequence stored above it.
func (t *pgTx) SourceStates(ctx context.Context, keys []store.SourceKey) (map[store.SourceKey]store.SourceState, error) {
	out := make(map[store.SourceKey]store.SourceState, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	ids, srcs := make([][16]byte, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		ids[i], srcs[i] = k.CaseID, k.SourceID
	}
	rows, err := t.query(ctx, `SELECT k.case_id, k.source_id, w.watermark,
			coalesce((SELECT b.seq FROM sample_batches b
				WHERE b.case_id = k.case_id AND b.source_id = k.source_id AND b.seq > w.watermark
				ORDER BY b.seq LIMIT 1), 0)
		FROM unnest($1::uuid[], $2::text[]) AS k(case_id, source_id)
		LEFT JOIN sample_sources s ON s.case_id = k.case_id AND s.source_id = k.source_id
		CROSS JOIN LATERAL (SELECT coalesce(s.watermark, 0) AS watermark) w`, ids, srcs)
	if err != nil {
		return nil, wrap("source states", err)
	}
	var (
		k  store.SourceKey
		st store.SourceState
	)
	_, err = pgx.ForEachRow(rows, []any{&k.CaseID, &k.SourceID, &st.Watermark, &st.NextStored}, func() error {
		out[k] = st
		return nil
	})
	if err != nil {
		return nil, wrap("source states", err)
	}
	return out, nil
}

// StoredSeqs lists stored sequences of a source above after.
func (t *pgTx) StoredSeqs(ctx context.Context, key store.SourceKey, after int64, limit int) ([]int64, error) {
	rows, err := t.query(ctx, `SELECT seq FROM sample_batches WHERE case_id = $1 AND source_id = $2 AND seq > $3
		ORDER BY seq LIMIT $4`, key.CaseID, key.SourceID, after, limit)
	if err != nil {
		return nil, wrap("stored sequences", err)
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, wrap("stored sequences", err)
	}
	return seqs, nil
}

// InsertSampleBatches stores batches in one INSERT … SELECT FROM unnest.
func (t *pgTx) InsertSampleBatches(ctx context.Context, rows []*store.SampleBatchRow) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	var (
		ids      = make([][16]byte, n)
		srcs     = make([]string, n)
		seqs     = make([]int64, n)
		recorded = make([]time.Time, n)
		actors   = make([]string, n)
		lo, hi   = make([]int64, n), make([]int64, n)
		counts   = make([]int32, n)
		blocks   = make([][]byte, n)
	)
	for i, r := range rows {
		ids[i], srcs[i], seqs[i], recorded[i], actors[i] = r.CaseID, r.SourceID, r.Seq, r.RecordedAt, r.Actor
		lo[i], hi[i], counts[i], blocks[i] = r.MinTimeMs, r.MaxTimeMs, int32(r.SampleCount), r.Block
	}
	t.pending.Queue(`INSERT INTO sample_batches (case_id, source_id, seq, recorded_at, actor, min_time_ms, max_time_ms, sample_count, block)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::timestamptz[], $5::text[], $6::bigint[], $7::bigint[], $8::integer[], $9::bytea[])
		ON CONFLICT DO NOTHING`, ids, srcs, seqs, recorded, actors, lo, hi, counts, blocks).Exec(func(tag pgconn.CommandTag) error {
		return insertedAll("insert sample batches", tag.RowsAffected(), n)
	})
	return nil
}

// AppendLinks stores ledger links in one INSERT … SELECT FROM unnest.
func (t *pgTx) AppendLinks(ctx context.Context, links []charting.Link) error {
	if len(links) == 0 {
		return nil
	}
	n := len(links)
	var (
		ids                = make([][16]byte, n)
		seqs               = make([]int64, n)
		kinds, refs        = make([]string, n), make([]string, n)
		actors, reasons    = make([]string, n), make([]string, n)
		recorded           = make([]time.Time, n)
		prevHashes, hashes = make([][]byte, n), make([][]byte, n)
	)
	for i := range links {
		l := &links[i]
		ids[i], seqs[i], kinds[i], refs[i] = l.CaseID, l.Seq, string(l.Kind), l.Ref
		actors[i], reasons[i], recorded[i] = l.Actor, l.Reason, l.RecordedAt
		prevHashes[i], hashes[i] = l.PrevHash[:], l.Hash[:]
	}
	t.pending.Queue(`INSERT INTO ledger (case_id, seq, kind, ref, actor, reason, recorded_at, prev_hash, hash)
		SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::bytea[], $9::bytea[])
		ON CONFLICT DO NOTHING`, ids, seqs, kinds, refs, actors, reasons, recorded, prevHashes, hashes).Exec(func(tag pgconn.CommandTag) error {
		return insertedAll("append ledger links", tag.RowsAffected(), n)
	})
	return nil
}

// SetSourceWatermarks upserts watermarks in one statement.
func (t *pgTx) SetSourceWatermarks(ctx context.Context, marks map[store.SourceKey]int64) error {
	if len(marks) == 0 {
		return nil
	}
	ids, srcs, ws := make([][16]byte, 0, len(marks)), make([]string, 0, len(marks)), make([]int64, 0, len(marks))
	for k, w := range marks {
		ids, srcs, ws = append(ids, k.CaseID), append(srcs, k.SourceID), append(ws, w)
	}
	t.pending.Queue(`INSERT INTO sample_sources (case_id, source_id, watermark)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[])
		ON CONFLICT (case_id, source_id) DO UPDATE SET watermark = EXCLUDED.watermark`, ids, srcs, ws)
	return nil
}

// UpdateCaseStates writes the state of several locked cases in one UPDATE …
// FROM unnest; the guard trigger checks every row as for a single update.
func (t *pgTx) UpdateCaseStates(ctx context.Context, cases []*charting.Case) error {
	if len(cases) == 0 {
		return nil
	}
	n := len(cases)
	var (
		ids               = make([][16]byte, n)
		status, closedBy  = make([]string, n), make([]string, n)
		started, closed   = make([]*time.Time, n), make([]*time.Time, n)
		versions, headSeq = make([]int64, n), make([]int64, n)
		headHash          = make([][]byte, n)
	)
	for i, c := range cases {
		ids[i], status[i], closedBy[i] = c.ID, string(c.Status), c.ClosedBy
		started[i], closed[i] = timePtr(c.StartedAt), timePtr(c.ClosedAt)
		versions[i], headSeq[i], headHash[i] = c.DetailsVersion, c.Head.Seq, c.Head.Hash[:]
	}
	t.pending.Queue(`UPDATE cases AS c SET status = u.status, started_at = u.started_at, closed_at = u.closed_at,
			closed_by = u.closed_by, details_version = u.details_version, head_seq = u.head_seq, head_hash = u.head_hash
		FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::bigint[], $7::bigint[], $8::bytea[])
			AS u(case_id, status, started_at, closed_at, closed_by, details_version, head_seq, head_hash)
		WHERE c.case_id = u.case_id`, ids, status, started, closed, closedBy, versions, headSeq, headHash).Exec(func(tag pgconn.CommandTag) error {
		if tag.RowsAffected() != int64(n) {
			return fmt.Errorf("postgres: update case states: %w", charting.ErrNotFound)
		}
		return nil
	})
	return nil
}

// insertedAll maps the outcome of a bulk INSERT … ON CONFLICT DO NOTHING:
// fewer rows than sent means some key existed.
func insertedAll(op string, rows int64, want int) error {
	if rows != int64(want) {
		return fmt.Errorf("postgres: %s: %w", op, store.ErrDuplicate)
	}
	return nil
}

// uuidArray converts ids for a uuid[] parameter. pgx encodes [16]byte
// elements straight to binary; uuid.UUID it encodes through its
// driver.Valuer, formatting each id as text and parsing it back, which was
// an eighth of the server's CPU time in a group commit of 1,000 streams.
func uuidArray(ids []uuid.UUID) [][16]byte {
	out := make([][16]byte, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

// timePtr stores the zero time (not yet started or closed) as NULL in an
// array.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
