package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/google/uuid"

	"perfusion/store"
)

// The access audit and break-glass grants (store/access.go).

const accessCols = `event_id, at, principal, roles, via, method, coalesce(case_id, ''), code, reason, client_addr`

// AppendAccessEvents inserts events in one transaction.
func (b *Backend) AppendAccessEvents(ctx context.Context, es []store.AccessEvent) error {
	tx, err := b.w.BeginTx(ctx, nil)
	if err != nil {
		return wrap("append access events", err)
	}
	defer tx.Rollback()
	for _, e := range es {
		var caseID any
		if e.CaseID != uuid.Nil {
			caseID = e.CaseID.String()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO access_events (event_id, at, principal, roles, via, method, case_id, code, reason, client_addr)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.ID.String(), micros(e.At), e.Principal, e.Roles, e.Via, e.Method, caseID, e.Code, e.Reason, e.ClientAddr); err != nil {
			return wrap("append access events", err)
		}
	}
	return wrap("append access events", tx.Commit())
}

// ListAccessEvents lists events newest first.
func (b *Backend) ListAccessEvents(ctx context.Context, f store.AccessFilter) ([]store.AccessEvent, error) {
	q := `SELECT ` + accessCols + ` FROM access_events WHERE 1`
	var args []any
	if !f.From.IsZero() {
		q += ` AND at >= ?`
		args = append(args, micros(f.From))
	}
	if !f.To.IsZero() {
		q += ` AND at < ?`
		args = append(args, micros(f.To))
	}
	if f.Principal != "" {
		q += ` AND principal = ?`
		args = append(args, f.Principal)
	}
	if f.CaseID != uuid.Nil {
		q += ` AND case_id = ?`
		args = append(args, f.CaseID.String())
	}
	if f.DeniedOnly {
		q += ` AND code IN ('PermissionDenied', 'Unauthenticated')`
	}
	if f.After != nil {
		q += ` AND (at < ? OR (at = ? AND event_id < ?))`
		args = append(args, micros(f.After.At), micros(f.After.At), f.After.ID.String())
	}
	q += ` ORDER BY at DESC, event_id DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := b.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap("list access events", err)
	}
	defer rows.Close()
	var out []store.AccessEvent
	for rows.Next() {
		var e store.AccessEvent
		var id, caseID string
		var at sql.NullInt64
		if err := rows.Scan(&id, &at, &e.Principal, &e.Roles, &e.Via, &e.Method, &caseID, &e.Code, &e.Reason, &e.ClientAddr); err != nil {
			return nil, wrap("list access events", err)
		}
		e.ID, _ = uuid.Parse(id)
		e.At = fromMicros(at)
		if caseID != "" {
			e.CaseID, _ = uuid.Parse(caseID)
		}
		out = append(out, e)
	}
	return out, wrap("list access events", rows.Err())
}

const grantCols = `grant_id, principal, case_id, site, reason, started_at, expires_at, ended_at, end_reason`

func scanGrants(rows *sql.Rows) ([]store.BreakGlassGrant, error) {
	defer rows.Close()
	var out []store.BreakGlassGrant
	for rows.Next() {
		var g store.BreakGlassGrant
		var id, caseID string
		var started, expires, ended sql.NullInt64
		if err := rows.Scan(&id, &g.Principal, &caseID, &g.Site, &g.Reason, &started, &expires, &ended, &g.EndReason); err != nil {
			return nil, err
		}
		g.ID, _ = uuid.Parse(id)
		g.CaseID, _ = uuid.Parse(caseID)
		g.StartedAt, g.ExpiresAt, g.EndedAt = fromMicros(started), fromMicros(expires), fromMicros(ended)
		out = append(out, g)
	}
	return out, rows.Err()
}

// InsertBreakGlass stores a grant.
func (b *Backend) InsertBreakGlass(ctx context.Context, g store.BreakGlassGrant) error {
	_, err := b.w.ExecContext(ctx, `INSERT INTO break_glass_grants (grant_id, principal, case_id, site, reason, started_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, g.ID.String(), g.Principal, g.CaseID.String(), g.Site, g.Reason, micros(g.StartedAt), micros(g.ExpiresAt))
	return wrap("insert break-glass grant", err)
}

// ActiveBreakGlass finds a running grant.
func (b *Backend) ActiveBreakGlass(ctx context.Context, principal string, caseID uuid.UUID, now time.Time) (*store.BreakGlassGrant, error) {
	rows, err := b.r.QueryContext(ctx, `SELECT `+grantCols+` FROM break_glass_grants
		WHERE principal = ? AND case_id = ? AND ended_at IS NULL AND expires_at > ?
		ORDER BY expires_at DESC LIMIT 1`, principal, caseID.String(), micros(now))
	if err != nil {
		return nil, wrap("active break-glass grant", err)
	}
	gs, err := scanGrants(rows)
	if err != nil {
		return nil, wrap("active break-glass grant", err)
	}
	if len(gs) == 0 {
		return nil, notFound("active break-glass grant")
	}
	return &gs[0], nil
}

// EndBreakGlass marks the grant id ended (if its principal's and running)
// and every expired grant expired.
func (b *Backend) EndBreakGlass(ctx context.Context, id uuid.UUID, principal string, now time.Time) ([]store.BreakGlassGrant, error) {
	n := micros(now)
	rows, err := b.w.QueryContext(ctx, `UPDATE break_glass_grants
		SET ended_at = CASE WHEN grant_id = ?1 AND expires_at > ?3 THEN ?3 ELSE expires_at END,
		    end_reason = CASE WHEN grant_id = ?1 AND expires_at > ?3 THEN 'ended' ELSE 'expired' END
		WHERE ended_at IS NULL AND ((grant_id = ?1 AND principal = ?2) OR expires_at <= ?3)
		RETURNING `+grantCols, id.String(), principal, n)
	if err != nil {
		return nil, wrap("end break-glass grants", err)
	}
	gs, err := scanGrants(rows)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return gs, wrap("end break-glass grants", err)
}

// ListBreakGlass lists grants newest first.
func (b *Backend) ListBreakGlass(ctx context.Context, f store.BreakGlassFilter) ([]store.BreakGlassGrant, error) {
	q := `SELECT ` + grantCols + ` FROM break_glass_grants WHERE 1`
	var args []any
	if !f.From.IsZero() {
		q += ` AND started_at >= ?`
		args = append(args, micros(f.From))
	}
	if !f.To.IsZero() {
		q += ` AND started_at < ?`
		args = append(args, micros(f.To))
	}
	if f.Principal != "" {
		q += ` AND principal = ?`
		args = append(args, f.Principal)
	}
	if f.CaseID != uuid.Nil {
		q += ` AND case_id = ?`
		args = append(args, f.CaseID.String())
	}
	q += ` ORDER BY started_at DESC, grant_id DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := b.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap("list break-glass grants", err)
	}
	gs, err := scanGrants(rows)
	return gs, wrap("list break-glass grants", err)
}
