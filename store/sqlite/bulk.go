package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

// The bulk primitives of store.Tx. SQLite runs in this process, so a
// statement costs no network round trip: each primitive prepares its
// statement once and executes it per row, which is as fast as a multi-row
// statement here and keeps the SQL (and the append-only triggers' per-row
// checks) identical to the single-row methods.

// each prepares query once in the transaction and calls fn with it.
func (t *tx) each(ctx context.Context, op, query string, fn func(st *sql.Stmt) error) error {
	st, err := t.tx.PrepareContext(ctx, query)
	if err != nil {
		return wrap(op, err)
	}
	defer st.Close()
	return fn(st)
}

// LockCases reads the existing cases among ids. The IMMEDIATE transaction
// already holds the database's write lock, so reading them is locking them;
// the order does not matter here but follows ids.
func (t *tx) LockCases(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]*charting.Case, error) {
	out := make(map[uuid.UUID]*charting.Case, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	err := t.each(ctx, "lock cases", `SELECT `+caseColumns+` FROM cases WHERE case_id = ?`, func(st *sql.Stmt) error {
		for _, id := range ids {
			c, err := scanCase(st.QueryRowContext(ctx, id.String()))
			if errors.Is(err, sql.ErrNoRows) {
				continue
			} else if err != nil {
				return wrap("lock cases", err)
			}
			out[id] = c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SampleBlocks reads the stored blocks of the keys that exist.
func (t *tx) SampleBlocks(ctx context.Context, keys []store.SampleKey) (map[store.SampleKey][]byte, error) {
	out := make(map[store.SampleKey][]byte)
	if len(keys) == 0 {
		return out, nil
	}
	err := t.each(ctx, "sample blocks", `SELECT block FROM sample_batches WHERE case_id = ? AND source_id = ? AND seq = ?`, func(st *sql.Stmt) error {
		for _, k := range keys {
			var block []byte
			err := st.QueryRowContext(ctx, k.CaseID.String(), k.SourceID, k.Seq).Scan(&block)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			} else if err != nil {
				return wrap("sample blocks", err)
			}
			out[k] = block
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return withSealedBlocks(ctx, t, keys, out)
}

// SourceStates reads each source's watermark and the lowest sequence
// stored above it.
func (t *tx) SourceStates(ctx context.Context, keys []store.SourceKey) (map[store.SourceKey]store.SourceState, error) {
	out := make(map[store.SourceKey]store.SourceState, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	err := t.each(ctx, "source states", `SELECT w.watermark,
			coalesce((SELECT min(b.seq) FROM sample_batches b
				WHERE b.case_id = ?1 AND b.source_id = ?2 AND b.seq > w.watermark), 0)
		FROM (SELECT coalesce((SELECT watermark FROM sample_sources WHERE case_id = ?1 AND source_id = ?2), 0) AS watermark) w`,
		func(st *sql.Stmt) error {
			for _, k := range keys {
				var s store.SourceState
				if err := st.QueryRowContext(ctx, k.CaseID.String(), k.SourceID).Scan(&s.Watermark, &s.NextStored); err != nil {
					return wrap("source states", err)
				}
				out[k] = s
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// StoredSeqs lists stored sequences of a source above after.
func (t *tx) StoredSeqs(ctx context.Context, key store.SourceKey, after int64, limit int) ([]int64, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT seq FROM sample_batches WHERE case_id = ? AND source_id = ? AND seq > ?
		ORDER BY seq LIMIT ?`, key.CaseID.String(), key.SourceID, after, limit)
	if err != nil {
		return nil, wrap("stored sequences", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var q int64
		if err := rows.Scan(&q); err != nil {
			return nil, wrap("stored sequences", err)
		}
		out = append(out, q)
	}
	return out, wrap("stored sequences", rows.Err())
}

// InsertSampleBatches stores batches.
func (t *tx) InsertSampleBatches(ctx context.Context, rows []*store.SampleBatchRow) error {
	if len(rows) == 0 {
		return nil
	}
	return t.each(ctx, "insert sample batches", `INSERT INTO sample_batches
		(case_id, source_id, seq, recorded_at, actor, min_time_ms, max_time_ms, sample_count, block)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, func(st *sql.Stmt) error {
		for _, r := range rows {
			if _, err := st.ExecContext(ctx, r.CaseID.String(), r.SourceID, r.Seq, micros(r.RecordedAt), r.Actor,
				r.MinTimeMs, r.MaxTimeMs, r.SampleCount, r.Block); err != nil {
				return wrap("insert sample batches", err)
			}
		}
		return nil
	})
}

// AppendLinks stores ledger links.
func (t *tx) AppendLinks(ctx context.Context, links []charting.Link) error {
	if len(links) == 0 {
		return nil
	}
	return t.each(ctx, "append links", `INSERT INTO ledger
		(case_id, seq, kind, ref, actor, reason, recorded_at, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, func(st *sql.Stmt) error {
		for i := range links {
			l := &links[i]
			if _, err := st.ExecContext(ctx, l.CaseID.String(), l.Seq, string(l.Kind), l.Ref, l.Actor, l.Reason,
				micros(l.RecordedAt), l.PrevHash[:], l.Hash[:]); err != nil {
				return wrap("append links", err)
			}
		}
		return nil
	})
}

// SetSourceWatermarks records new watermarks.
func (t *tx) SetSourceWatermarks(ctx context.Context, marks map[store.SourceKey]int64) error {
	if len(marks) == 0 {
		return nil
	}
	return t.each(ctx, "set source watermarks", `INSERT INTO sample_sources (case_id, source_id, watermark)
		VALUES (?, ?, ?)
		ON CONFLICT (case_id, source_id) DO UPDATE SET watermark = excluded.watermark`, func(st *sql.Stmt) error {
		for k, w := range marks {
			if _, err := st.ExecContext(ctx, k.CaseID.String(), k.SourceID, w); err != nil {
				return wrap("set source watermarks", err)
			}
		}
		return nil
	})
}

// UpdateCaseStates writes the state of several locked cases.
func (t *tx) UpdateCaseStates(ctx context.Context, cases []*charting.Case) error {
	if len(cases) == 0 {
		return nil
	}
	return t.each(ctx, "update case states", `UPDATE cases SET
		status = ?, started_at = ?, closed_at = ?, closed_by = ?, details_version = ?, head_seq = ?, head_hash = ?
		WHERE case_id = ?`, func(st *sql.Stmt) error {
		for _, c := range cases {
			res, err := st.ExecContext(ctx, string(c.Status), micros(c.StartedAt), micros(c.ClosedAt), nullText(c.ClosedBy),
				c.DetailsVersion, c.Head.Seq, c.Head.Hash[:], c.ID.String())
			if err != nil {
				return wrap("update case states", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return wrap("update case states", err)
			} else if n == 0 {
				return fmt.Errorf("sqlite: update case states: %w", charting.ErrNotFound)
			}
		}
		return nil
	})
}
