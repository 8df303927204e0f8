package postgres

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"perfusion/store"
)

// ReadSampleBlocks reads the committed blocks of the keys that exist, outside
// any transaction: one statement probing the primary key once per key. A
// watcher calls it for batches whose ledger links it has read, and a link is
// committed with its batch, so every such key exists.
func (b *Backend) ReadSampleBlocks(ctx context.Context, keys []store.SampleKey) (map[store.SampleKey][]byte, error) {
	out := make(map[store.SampleKey][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	ids, srcs, seqs := make([]uuid.UUID, len(keys)), make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		ids[i], srcs[i], seqs[i] = k.CaseID, k.SourceID, k.Seq
	}
	rows, err := b.pool.Query(ctx, `SELECT b.case_id, b.source_id, b.seq, b.block
		FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS k(case_id, source_id, seq)
		JOIN sample_batches b ON b.case_id = k.case_id AND b.source_id = k.source_id AND b.seq = k.seq`, ids, srcs, seqs)
	if err != nil {
		return nil, wrap("read sample blocks", err)
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
		return nil, wrap("read sample blocks", err)
	}
	return out, nil
}
