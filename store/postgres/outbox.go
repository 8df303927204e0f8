package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"perfusion/store"
)

var (
	_ store.OutboxBackend = (*Backend)(nil)
	_ store.OutboxTx      = (*pgTx)(nil)
)

// EnqueueDeliveries inserts pending deliveries; existing ids are kept.
func (t *pgTx) EnqueueDeliveries(ctx context.Context, ds []store.Delivery) error {
	for i := range ds {
		d := &ds[i]
		if _, err := t.exec(ctx, `INSERT INTO outbox_deliveries
			(delivery_id, case_id, version, destination, message_id, state, attempts, next_attempt_at, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $7) ON CONFLICT DO NOTHING`,
			d.ID, d.CaseID, d.Version, string(d.Destination), d.MessageID, d.NextAttemptAt, d.CreatedAt); err != nil {
			return wrap("enqueue delivery", err)
		}
	}
	return nil
}

const deliveryCols = `delivery_id, case_id, version, destination, message_id, state, attempts, next_attempt_at,
	lease_until, last_error, ack_code, ack_text, created_at, updated_at, delivered_at, superseded_by, supersede_reason`

func scanDelivery(row pgx.Row) (*store.Delivery, error) {
	var d store.Delivery
	var dest, state string
	var lease, delivered *time.Time
	if err := row.Scan(&d.ID, &d.CaseID, &d.Version, &dest, &d.MessageID, &state, &d.Attempts, &d.NextAttemptAt,
		&lease, &d.LastError, &d.AckCode, &d.AckText, &d.CreatedAt, &d.UpdatedAt, &delivered, &d.SupersededBy, &d.SupersedeReason); err != nil {
		return nil, err
	}
	d.Destination, d.State = store.Destination(dest), store.DeliveryState(state)
	if lease != nil {
		d.LeaseUntil = lease.UTC()
	}
	if delivered != nil {
		d.DeliveredAt = delivered.UTC()
	}
	d.NextAttemptAt, d.CreatedAt, d.UpdatedAt = d.NextAttemptAt.UTC(), d.CreatedAt.UTC(), d.UpdatedAt.UTC()
	return &d, nil
}

func collectDeliveries(rows pgx.Rows) ([]store.Delivery, error) {
	defer rows.Close()
	var out []store.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *d)
	}
	return out, rows.Err()
}

// ClaimDeliveries claims due deliveries. SKIP LOCKED lets several servers
// claim at once: each takes rows no other transaction holds, and the
// state change commits before any of them sends anything. The order check
// reads the earlier versions' committed states: a state only moves towards
// delivered or superseded (or back to pending, which still blocks), so a
// version that sees its predecessor settled is never sent too early.
func (b *Backend) ClaimDeliveries(ctx context.Context, dest store.Destination, now time.Time, lease time.Duration, limit int) ([]store.Delivery, error) {
	rows, err := b.pool.Query(ctx, `UPDATE outbox_deliveries o
		SET state = 'delivering', attempts = o.attempts + 1, lease_until = $2, updated_at = $1
		WHERE o.delivery_id IN (
			SELECT c.delivery_id FROM outbox_deliveries c
			WHERE ((c.state = 'pending' AND c.next_attempt_at <= $1) OR (c.state = 'delivering' AND c.lease_until <= $1))
			  AND ($4 = '' OR c.destination = $4)
			  AND NOT EXISTS (SELECT 1 FROM outbox_deliveries e
				WHERE e.case_id = c.case_id AND e.destination = c.destination AND e.version < c.version
				  AND e.state NOT IN ('delivered', 'superseded'))
			ORDER BY c.next_attempt_at, c.delivery_id
			LIMIT $3
			FOR UPDATE OF c SKIP LOCKED)
		RETURNING `+deliveryCols, now, now.Add(lease), limit, string(dest))
	if err != nil {
		return nil, wrap("claim deliveries", err)
	}
	ds, err := collectDeliveries(rows)
	return ds, wrap("claim deliveries", err)
}

// FinishDelivery records a claim's outcome if the claim is still current.
func (b *Backend) FinishDelivery(ctx context.Context, d *store.Delivery, attempts int) (bool, error) {
	tag, err := b.pool.Exec(ctx, `UPDATE outbox_deliveries
		SET state = $3, next_attempt_at = $4, lease_until = NULL, last_error = $5, ack_code = $6, ack_text = $7,
			updated_at = $8, delivered_at = $9
		WHERE delivery_id = $1 AND state = 'delivering' AND attempts = $2`,
		d.ID, attempts, string(d.State), d.NextAttemptAt, d.LastError, d.AckCode, d.AckText, d.UpdatedAt, nullTime(d.DeliveredAt))
	if err != nil {
		return false, wrap("finish delivery", err)
	}
	return tag.RowsAffected() == 1, nil
}

// GetDelivery reads one delivery.
func (b *Backend) GetDelivery(ctx context.Context, id uuid.UUID) (*store.Delivery, error) {
	d, err := scanDelivery(b.pool.QueryRow(ctx, `SELECT `+deliveryCols+` FROM outbox_deliveries WHERE delivery_id = $1`, id))
	return d, wrap("get delivery", err)
}

// ListDeliveries lists deliveries newest first.
func (b *Backend) ListDeliveries(ctx context.Context, f store.DeliveryFilter) ([]store.Delivery, error) {
	q := `SELECT ` + deliveryCols + ` FROM outbox_deliveries WHERE true`
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if f.CaseID != uuid.Nil {
		q += ` AND case_id = ` + arg(f.CaseID)
	}
	if f.State != "" {
		q += ` AND state = ` + arg(string(f.State))
	}
	if f.Site != "" {
		q += ` AND case_id IN (SELECT case_id FROM cases WHERE site = ` + arg(f.Site) + `)`
	}
	if f.After != nil {
		q += ` AND (created_at, delivery_id) < (` + arg(f.After.CreatedAt) + `, ` + arg(f.After.ID) + `)`
	}
	q += ` ORDER BY created_at DESC, delivery_id DESC LIMIT ` + arg(f.Limit)
	rows, err := b.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap("list deliveries", err)
	}
	ds, err := collectDeliveries(rows)
	return ds, wrap("list deliveries", err)
}

// RequeueDelivery makes a pending or failed delivery due now.
func (b *Backend) RequeueDelivery(ctx context.Context, id uuid.UUID, now time.Time) (*store.Delivery, error) {
	d, err := scanDelivery(b.pool.QueryRow(ctx, `UPDATE outbox_deliveries
		SET state = 'pending', next_attempt_at = $2, updated_at = $2
		WHERE delivery_id = $1 AND state IN ('pending', 'failed')
		RETURNING `+deliveryCols, id, now))
	if err == nil {
		return d, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, wrap("requeue delivery", err)
	}
	cur, err := b.GetDelivery(ctx, id)
	if err != nil {
		return nil, err
	}
	return nil, store.RequeueRefused(cur.State)
}

// SupersedeDelivery marks a pending or failed delivery superseded when a
// later version of its case to its destination exists.
func (b *Backend) SupersedeDelivery(ctx context.Context, id uuid.UUID, actor, reason string, now time.Time) (*store.Delivery, error) {
	d, err := scanDelivery(b.pool.QueryRow(ctx, `UPDATE outbox_deliveries o
		SET state = 'superseded', lease_until = NULL, superseded_by = $2, supersede_reason = $3, updated_at = $4
		WHERE o.delivery_id = $1 AND o.state IN ('pending', 'failed')
		  AND EXISTS (SELECT 1 FROM outbox_deliveries l
			WHERE l.case_id = o.case_id AND l.destination = o.destination AND l.version > o.version)
		RETURNING `+deliveryCols, id, actor, reason, now))
	if err == nil {
		return d, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, wrap("supersede delivery", err)
	}
	cur, err := b.GetDelivery(ctx, id)
	if err != nil {
		return nil, err
	}
	if cur.State == store.DeliverySuperseded {
		return cur, nil
	}
	var later bool
	if err := b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM outbox_deliveries
		WHERE case_id = $1 AND destination = $2 AND version > $3)`, cur.CaseID, string(cur.Destination), cur.Version).Scan(&later); err != nil {
		return nil, wrap("supersede delivery", err)
	}
	return nil, store.SupersedeRefused(cur, later)
}

// DeliveryBacklog counts unsettled deliveries by destination and state.
func (b *Backend) DeliveryBacklog(ctx context.Context) ([]store.BacklogRow, error) {
	rows, err := b.pool.Query(ctx, `SELECT destination, state, count(*), min(created_at) FROM outbox_deliveries
		WHERE state IN `+store.BacklogStatesSQL+` GROUP BY destination, state ORDER BY destination, state`)
	if err != nil {
		return nil, wrap("delivery backlog", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.BacklogRow, error) {
		var row store.BacklogRow
		var dest, state string
		err := r.Scan(&dest, &state, &row.Count, &row.Oldest)
		row.Destination, row.State = store.Destination(dest), store.DeliveryState(state)
		return row, err
	})
	return out, wrap("delivery backlog", err)
}
