package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"perfusion/store"
)

// The access audit and break-glass grants (store/access.go).

const accessCols = `event_id, at, principal, roles, via, method, coalesce(case_id::text, ''), code, reason, client_addr`

// AppendAccessEvents inserts events in one statement batch.
func (b *Backend) AppendAccessEvents(ctx context.Context, es []store.AccessEvent) error {
	batch := &pgx.Batch{}
	for _, e := range es {
		var caseID any
		if e.CaseID != uuid.Nil {
			caseID = e.CaseID
		}
		batch.Queue(`INSERT INTO access_events (event_id, at, principal, roles, via, method, case_id, code, reason, client_addr)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			e.ID, e.At, e.Principal, e.Roles, e.Via, e.Method, caseID, e.Code, e.Reason, e.ClientAddr)
	}
	return wrap("append access events", b.pool.SendBatch(ctx, batch).Close())
}

// ListAccessEvents lists events newest first.
func (b *Backend) ListAccessEvents(ctx context.Context, f store.AccessFilter) ([]store.AccessEvent, error) {
	q := `SELECT ` + accessCols + ` FROM access_events WHERE true`
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if !f.From.IsZero() {
		q += ` AND at >= ` + arg(f.From)
	}
	if !f.To.IsZero() {
		q += ` AND at < ` + arg(f.To)
	}
	if f.Principal != "" {
		q += ` AND principal = ` + arg(f.Principal)
	}
	if f.CaseID != uuid.Nil {
		q += ` AND case_id = ` + arg(f.CaseID)
	}
	if f.DeniedOnly {
		q += ` AND code IN ('PermissionDenied', 'Unauthenticated')`
	}
	if f.After != nil {
		q += ` AND (at, event_id) < (` + arg(f.After.At) + `, ` + arg(f.After.ID) + `)`
	}
	q += ` ORDER BY at DESC, event_id DESC LIMIT ` + arg(f.Limit)
	rows, err := b.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap("list access events", err)
	}
	defer rows.Close()
	var out []store.AccessEvent
	for rows.Next() {
		var e store.AccessEvent
		var caseID string
		if err := rows.Scan(&e.ID, &e.At, &e.Principal, &e.Roles, &e.Via, &e.Method, &caseID, &e.Code, &e.Reason, &e.ClientAddr); err != nil {
			return nil, wrap("list access events", err)
		}
		e.At = e.At.UTC()
		if caseID != "" {
			e.CaseID, _ = uuid.Parse(caseID)
		}
		out = append(out, e)
	}
	return out, wrap("list access events", rows.Err())
}

const grantCols = `grant_id, principal, case_id, site, reason, started_at, expires_at, ended_at, end_reason`

func scanGrants(rows pgx.Rows) ([]store.BreakGlassGrant, error) {
	defer rows.Close()
	var out []store.BreakGlassGrant
	for rows.Next() {
		var g store.BreakGlassGrant
		var ended *time.Time
		if err := rows.Scan(&g.ID, &g.Principal, &g.CaseID, &g.Site, &g.Reason, &g.StartedAt, &g.ExpiresAt, &ended, &g.EndReason); err != nil {
			return nil, err
		}
		g.StartedAt, g.ExpiresAt = g.StartedAt.UTC(), g.ExpiresAt.UTC()
		if ended != nil {
			g.EndedAt = ended.UTC()
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// InsertBreakGlass stores a grant.
func (b *Backend) InsertBreakGlass(ctx context.Context, g store.BreakGlassGrant) error {
	_, err := b.pool.Exec(ctx, `INSERT INTO break_glass_grants (grant_id, principal, case_id, site, reason, started_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, g.ID, g.Principal, g.CaseID, g.Site, g.Reason, g.StartedAt, g.ExpiresAt)
	return wrap("insert break-glass grant", err)
}

// ActiveBreakGlass finds a running grant.
func (b *Backend) ActiveBreakGlass(ctx context.Context, principal string, caseID uuid.UUID, now time.Time) (*store.BreakGlassGrant, error) {
	rows, err := b.pool.Query(ctx, `SELECT `+grantCols+` FROM break_glass_grants
		WHERE principal = $1 AND case_id = $2 AND ended_at IS NULL AND expires_at > $3
		ORDER BY expires_at DESC LIMIT 1`, principal, caseID, now)
	if err != nil {
		return nil, wrap("active break-glass grant", err)
	}
	gs, err := scanGrants(rows)
	if err != nil {
		return nil, wrap("active break-glass grant", err)
	}
	if len(gs) == 0 {
		return nil, wrap("active break-glass grant", pgx.ErrNoRows)
	}
	return &gs[0], nil
}

// EndBreakGlass marks the grant id ended (if its principal's and running)
// and every expired grant expired.
func (b *Backend) EndBreakGlass(ctx context.Context, id uuid.UUID, principal string, now time.Time) ([]store.BreakGlassGrant, error) {
	rows, err := b.pool.Query(ctx, `UPDATE break_glass_grants
		SET ended_at = CASE WHEN grant_id = $1 AND expires_at > $3 THEN $3 ELSE expires_at END,
		    end_reason = CASE WHEN grant_id = $1 AND expires_at > $3 THEN 'ended' ELSE 'expired' END
		WHERE ended_at IS NULL AND ((grant_id = $1 AND principal = $2) OR expires_at <= $3)
		RETURNING `+grantCols, id, principal, now)
	if err != nil {
		return nil, wrap("end break-glass grants", err)
	}
	gs, err := scanGrants(rows)
	return gs, wrap("end break-glass grants", err)
}

// ListBreakGlass lists grants newest first.
func (b *Backend) ListBreakGlass(ctx context.Context, f store.BreakGlassFilter) ([]store.BreakGlassGrant, error) {
	q := `SELECT ` + grantCols + ` FROM break_glass_grants WHERE true`
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if !f.From.IsZero() {
		q += ` AND started_at >= ` + arg(f.From)
	}
	if !f.To.IsZero() {
		q += ` AND started_at < ` + arg(f.To)
	}
	if f.Principal != "" {
		q += ` AND principal = ` + arg(f.Principal)
	}
	if f.CaseID != uuid.Nil {
		q += ` AND case_id = ` + arg(f.CaseID)
	}
	q += ` ORDER BY started_at DESC, grant_id DESC LIMIT ` + arg(f.Limit)
	rows, err := b.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap("list break-glass grants", err)
	}
	gs, err := scanGrants(rows)
	return gs, wrap("list break-glass grants", err)
}
