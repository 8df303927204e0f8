package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"perfusion/charting"
	"perfusion/store"
)

// ReadSampleBlocks reads the committed blocks of the keys that exist, outside
// any transaction: one statement probing the primary key once per key. A
// watcher calls it for batches whose ledger links it has read, and a link is
// committed with its batch, so every such key exists.
func (b *Backend) ReadSampleBlocks(ctx context.Context, keys []store.SampleKey) (map[store.SampleKey][]byte, error) {
	out, err := sampleBlocks(ctx, b.pool.Query, keys)
	if err != nil {
		return nil, err
	}
	return withSealedBlocks(ctx, reader{q: b.pool}, keys, out)
}

// commitChannel is the NOTIFY channel of commit wakes; payloads are case
// ids, nothing else (a notification is visible to every session).
const commitChannel = "perfusion_commits"

var _ store.CommitRelay = (*Backend)(nil)

// NotifyCommitted sends one notification per case, in one statement.
func (b *Backend) NotifyCommitted(ctx context.Context, caseIDs []uuid.UUID) error {
	if len(caseIDs) == 0 {
		return nil
	}
	_, err := b.pool.Exec(ctx, `SELECT pg_notify('`+commitChannel+`', id::text) FROM unnest($1::uuid[]) AS id`, uuidArray(caseIDs))
	return wrap("notify commits", err)
}

// ListenCommitted listens on a connection of its own, outside the pool (a
// pooled connection would carry the LISTEN to whoever used it next), and
// reconnects a second after losing it, until ctx ends.
func (b *Backend) ListenCommitted(ctx context.Context, fn func(caseID uuid.UUID)) {
	for ctx.Err() == nil {
		_ = b.listenOnce(ctx, fn) // a lost listener only delays watchers to their poll
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (b *Backend) listenOnce(ctx context.Context, fn func(caseID uuid.UUID)) error {
	conn, err := pgx.ConnectConfig(ctx, b.pool.Config().ConnConfig.Copy())
	if err != nil {
		return wrap("listen for commits", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+commitChannel); err != nil {
		return wrap("listen for commits", err)
	}
	fn(uuid.Nil) // listening from now on: whatever came before, read again
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return wrap("listen for commits", err)
		}
		if id, err := uuid.Parse(n.Payload); err == nil {
			fn(id)
		}
	}
}

// ReadEntries reads the entries of a case among ids, one index probe each.
func (b *Backend) ReadEntries(ctx context.Context, caseID uuid.UUID, ids []uuid.UUID) (map[uuid.UUID]*charting.Entry, error) {
	out := make(map[uuid.UUID]*charting.Entry, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := b.pool.Query(ctx, `SELECT `+entryColumns+` FROM entries WHERE case_id = $1 AND entry_id = ANY($2)`, caseID, uuidArray(ids))
	if err != nil {
		return nil, wrap("read entries", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, wrap("read entries", err)
		}
		out[e.ID] = e
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("read entries", err)
	}
	return out, nil
}
