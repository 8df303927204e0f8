package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

// ReadSampleBlocks reads the committed blocks of the keys that exist from the
// read pool, so watchers never queue for the writer connection. One read
// transaction covers every key.
func (b *Backend) ReadSampleBlocks(ctx context.Context, keys []store.SampleKey) (map[store.SampleKey][]byte, error) {
	out := make(map[store.SampleKey][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	q, err := b.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, wrap("read sample blocks", err)
	}
	defer q.Rollback()
	st, err := q.PrepareContext(ctx, `SELECT block FROM sample_batches WHERE case_id = ? AND source_id = ? AND seq = ?`)
	if err != nil {
		return nil, wrap("read sample blocks", err)
	}
	defer st.Close()
	for _, k := range keys {
		var block []byte
		err := st.QueryRowContext(ctx, k.CaseID.String(), k.SourceID, k.Seq).Scan(&block)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		} else if err != nil {
			return nil, wrap("read sample blocks", err)
		}
		out[k] = block
	}
	return withSealedBlocks(ctx, reader{q: q}, keys, out)
}

// ReadEntries reads the entries of a case among ids from the read pool, one
// primary-key probe each in one read transaction.
func (b *Backend) ReadEntries(ctx context.Context, caseID uuid.UUID, ids []uuid.UUID) (map[uuid.UUID]*charting.Entry, error) {
	out := make(map[uuid.UUID]*charting.Entry, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	q, err := b.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, wrap("read entries", err)
	}
	defer q.Rollback()
	st, err := q.PrepareContext(ctx, `SELECT `+entryColumns+` FROM entries WHERE case_id = ? AND entry_id = ?`)
	if err != nil {
		return nil, wrap("read entries", err)
	}
	defer st.Close()
	for _, id := range ids {
		e, err := scanEntry(st.QueryRowContext(ctx, caseID.String(), id.String()))
		if errors.Is(err, sql.ErrNoRows) || errors.Is(err, charting.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, wrap("read entries", err)
		}
		out[e.ID] = e
	}
	return out, nil
}
