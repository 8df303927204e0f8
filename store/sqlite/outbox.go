package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/google/uuid"

	"perfusion/store"
)

var (
	_ store.OutboxBackend = (*Backend)(nil)
	_ store.OutboxTx      = (*tx)(nil)
)

// EnqueueDeliveries inserts pending deliveries; existing ids are kept.
func (t *tx) EnqueueDeliveries(ctx context.Context, ds []store.Delivery) error {
	for i := range ds {
		d := &ds[i]
		if _, err := t.exec(ctx, "enqueue delivery", `INSERT INTO outbox_deliveries
			(delivery_id, case_id, version, destination, message_id, state, attempts, next_attempt_at, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT DO NOTHING`,
			d.ID.String(), d.CaseID.String(), d.Version, string(d.Destination), d.MessageID,
			micros(d.NextAttemptAt), micros(d.CreatedAt), micros(d.CreatedAt)); err != nil {
			return err
		}
	}
	return nil
}

const deliveryCols = `delivery_id, case_id, version, destination, message_id, state, attempts, next_attempt_at,
	lease_until, last_error, ack_code, ack_text, created_at, updated_at, delivered_at, superseded_by, supersede_reason`

type rowScanner interface{ Scan(dest ...any) error }

func scanDelivery(row rowScanner) (*store.Delivery, error) {
	var d store.Delivery
	var id, caseID sql.NullString
	var dest, state string
	var next, lease, created, updated, delivered sql.NullInt64
	if err := row.Scan(&id, &caseID, &d.Version, &dest, &d.MessageID, &state, &d.Attempts, &next,
		&lease, &d.LastError, &d.AckCode, &d.AckText, &created, &updated, &delivered, &d.SupersededBy, &d.SupersedeReason); err != nil {
		return nil, err
	}
	var err error
	if d.ID, err = parseUUID(id, "delivery id"); err != nil {
		return nil, err
	}
	if d.CaseID, err = parseUUID(caseID, "case id"); err != nil {
		return nil, err
	}
	d.Destination, d.State = store.Destination(dest), store.DeliveryState(state)
	d.NextAttemptAt, d.LeaseUntil = fromMicros(next), fromMicros(lease)
	d.CreatedAt, d.UpdatedAt, d.DeliveredAt = fromMicros(created), fromMicros(updated), fromMicros(delivered)
	return &d, nil
}

func collectDeliveries(rows *sql.Rows) ([]store.Delivery, error) {
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

// ClaimDeliveries claims due deliveries. SQLite has one writer, so the
// UPDATE itself is the claim: no two statements interleave, and the order
// check sees the earlier versions as they are.
func (b *Backend) ClaimDeliveries(ctx context.Context, dest store.Destination, now time.Time, lease time.Duration, limit int) ([]store.Delivery, error) {
	rows, err := b.w.QueryContext(ctx, `UPDATE outbox_deliveries
		SET state = 'delivering', attempts = attempts + 1, lease_until = ?2, updated_at = ?1
		WHERE delivery_id IN (
			SELECT c.delivery_id FROM outbox_deliveries c
			WHERE ((c.state = 'pending' AND c.next_attempt_at <= ?1) OR (c.state = 'delivering' AND c.lease_until <= ?1))
			  AND (?4 = '' OR c.destination = ?4)
			  AND NOT EXISTS (SELECT 1 FROM outbox_deliveries e
				WHERE e.case_id = c.case_id AND e.destination = c.destination AND e.version < c.version
				  AND e.state NOT IN ('delivered', 'superseded'))
			ORDER BY c.next_attempt_at, c.delivery_id
			LIMIT ?3)
		RETURNING `+deliveryCols, micros(now), micros(now.Add(lease)), limit, string(dest))
	if err != nil {
		return nil, wrap("claim deliveries", err)
	}
	ds, err := collectDeliveries(rows)
	return ds, wrap("claim deliveries", err)
}

// FinishDelivery records a claim's outcome if the claim is still current.
func (b *Backend) FinishDelivery(ctx context.Context, d *store.Delivery, attempts int) (bool, error) {
	res, err := b.w.ExecContext(ctx, `UPDATE outbox_deliveries
		SET state = ?, next_attempt_at = ?, lease_until = NULL, last_error = ?, ack_code = ?, ack_text = ?,
			updated_at = ?, delivered_at = ?
		WHERE delivery_id = ? AND state = 'delivering' AND attempts = ?`,
		string(d.State), micros(d.NextAttemptAt), d.LastError, d.AckCode, d.AckText, micros(d.UpdatedAt),
		micros(d.DeliveredAt), d.ID.String(), attempts)
	if err != nil {
		return false, wrap("finish delivery", err)
	}
	n, err := res.RowsAffected()
	return n == 1, wrap("finish delivery", err)
}

// GetDelivery reads one delivery.
func (b *Backend) GetDelivery(ctx context.Context, id uuid.UUID) (*store.Delivery, error) {
	d, err := scanDelivery(b.r.QueryRowContext(ctx, `SELECT `+deliveryCols+` FROM outbox_deliveries WHERE delivery_id = ?`, id.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("get delivery")
	}
	return d, wrap("get delivery", err)
}

// ListDeliveries lists deliveries newest first.
func (b *Backend) ListDeliveries(ctx context.Context, f store.DeliveryFilter) ([]store.Delivery, error) {
	q := `SELECT ` + deliveryCols + ` FROM outbox_deliveries WHERE 1`
	var args []any
	if f.CaseID != uuid.Nil {
		q += ` AND case_id = ?`
		args = append(args, f.CaseID.String())
	}
	if f.State != "" {
		q += ` AND state = ?`
		args = append(args, string(f.State))
	}
	if f.Site != "" {
		q += ` AND case_id IN (SELECT case_id FROM cases WHERE site = ?)`
		args = append(args, f.Site)
	}
	if f.After != nil {
		q += ` AND (created_at < ? OR (created_at = ? AND delivery_id < ?))`
		at := micros(f.After.CreatedAt)
		args = append(args, at, at, f.After.ID.String())
	}
	q += ` ORDER BY created_at DESC, delivery_id DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := b.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap("list deliveries", err)
	}
	ds, err := collectDeliveries(rows)
	return ds, wrap("list deliveries", err)
}

// RequeueDelivery makes a pending or failed delivery due now.
func (b *Backend) RequeueDelivery(ctx context.Context, id uuid.UUID, now time.Time) (*store.Delivery, error) {
	d, err := scanDelivery(b.w.QueryRowContext(ctx, `UPDATE outbox_deliveries
		SET state = 'pending', next_attempt_at = ?1, updated_at = ?1
		WHERE delivery_id = ?2 AND state IN ('pending', 'failed')
		RETURNING `+deliveryCols, micros(now), id.String()))
	if err == nil {
		return d, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, wrap("requeue delivery", err)
	}
	// The read pool may lag the writer by nothing here: the UPDATE above
	// committed (or matched nothing) before this read starts.
	cur, err := b.GetDelivery(ctx, id)
	if err != nil {
		return nil, err
	}
	return nil, store.RequeueRefused(cur.State)
}

// SupersedeDelivery marks a pending or failed delivery superseded when a
// later version of its case to its destination exists.
func (b *Backend) SupersedeDelivery(ctx context.Context, id uuid.UUID, actor, reason string, now time.Time) (*store.Delivery, error) {
	d, err := scanDelivery(b.w.QueryRowContext(ctx, `UPDATE outbox_deliveries
		SET state = 'superseded', lease_until = NULL, superseded_by = ?2, supersede_reason = ?3, updated_at = ?4
		WHERE delivery_id = ?1 AND state IN ('pending', 'failed')
		  AND EXISTS (SELECT 1 FROM outbox_deliveries l
			WHERE l.case_id = outbox_deliveries.case_id AND l.destination = outbox_deliveries.destination
			  AND l.version > outbox_deliveries.version)
		RETURNING `+deliveryCols, id.String(), actor, reason, micros(now)))
	if err == nil {
		return d, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
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
	if err := b.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM outbox_deliveries
		WHERE case_id = ? AND destination = ? AND version > ?)`, cur.CaseID.String(), string(cur.Destination), cur.Version).Scan(&later); err != nil {
		return nil, wrap("supersede delivery", err)
	}
	return nil, store.SupersedeRefused(cur, later)
}

// DeliveryBacklog counts unsettled deliveries by destination and state.
func (b *Backend) DeliveryBacklog(ctx context.Context) ([]store.BacklogRow, error) {
	rows, err := b.r.QueryContext(ctx, `SELECT destination, state, count(*), min(created_at) FROM outbox_deliveries
		WHERE state IN `+store.BacklogStatesSQL+` GROUP BY destination, state ORDER BY destination, state`)
	if err != nil {
		return nil, wrap("delivery backlog", err)
	}
	defer rows.Close()
	var out []store.BacklogRow
	for rows.Next() {
		var row store.BacklogRow
		var dest, state string
		var oldest sql.NullInt64
		if err := rows.Scan(&dest, &state, &row.Count, &oldest); err != nil {
			return nil, wrap("delivery backlog", err)
		}
		row.Destination, row.State, row.Oldest = store.Destination(dest), store.DeliveryState(state), fromMicros(oldest)
		out = append(out, row)
	}
	return out, wrap("delivery backlog", rows.Err())
}
