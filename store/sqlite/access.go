package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"perfusion/store"
)

// The access audit and break-glass grants (store/access.go).

const accessCols = `event_id, at, principal, roles, via, method, coalesce(case_id, ''), code, reason, client_addr,
	site, chain_seq, prev_hash, hash, case_ids, case_count, case_set_digest, query, break_glass`

// AppendAccessEvents appends events as links of their sites' chains in one
// transaction (SQLite has one writer, so the heads need no row lock): each
// event naming an existing case takes that case's site, the links are
// computed from the heads, the events inserted and the heads moved.
func (b *Backend) AppendAccessEvents(ctx context.Context, in []store.AccessEvent) error {
	if len(in) == 0 {
		return nil
	}
	es := slices.Clone(in)
	tx, err := b.w.BeginTx(ctx, nil)
	if err != nil {
		return wrap("append access events", err)
	}
	defer tx.Rollback()
	heads := map[string]store.AccessChainHead{}
	for i := range es {
		e := &es[i]
		if e.CaseID != uuid.Nil {
			var site string
			err := tx.QueryRowContext(ctx, `SELECT site FROM cases WHERE case_id = ?`, e.CaseID.String()).Scan(&site)
			if err == nil {
				e.Site = site
			} else if !errors.Is(err, sql.ErrNoRows) {
				return wrap("append access events: site", err)
			}
		}
		if _, ok := heads[e.Site]; ok {
			continue
		}
		h := store.AccessChainHead{Site: e.Site}
		var hash []byte
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM access_chain_heads WHERE site = ?`, e.Site).Scan(&h.Seq, &hash)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			g := store.AccessGenesis(e.Site)
			if _, err := tx.ExecContext(ctx, `INSERT INTO access_chain_heads (site, seq, hash) VALUES (?, 0, ?)`, e.Site, g[:]); err != nil {
				return wrap("append access events: new chain", err)
			}
			h.Hash = g
		case err != nil:
			return wrap("append access events: head", err)
		default:
			copy(h.Hash[:], hash)
		}
		heads[e.Site] = h
	}
	store.ChainAccessEvents(es, heads)
	for _, e := range es {
		var caseID any
		if e.CaseID != uuid.Nil {
			caseID = e.CaseID.String()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO access_events (event_id, at, principal, roles, via, method, case_id, code, reason, client_addr,
				site, chain_seq, prev_hash, hash, case_ids, case_count, case_set_digest, query)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.ID.String(), micros(e.At), e.Principal, e.Roles, e.Via, e.Method, caseID, e.Code, e.Reason, e.ClientAddr,
			e.Site, e.Seq, e.PrevHash[:], e.Hash[:], store.JoinCaseIDs(e.CaseIDs), e.CaseCount, e.CaseSetDigest, e.Query); err != nil {
			return wrap("append access events", err)
		}
	}
	for site, h := range heads {
		if _, err := tx.ExecContext(ctx, `UPDATE access_chain_heads SET seq = ?, hash = ? WHERE site = ?`, h.Seq, h.Hash[:], site); err != nil {
			return wrap("append access events: head", err)
		}
	}
	return wrap("append access events", tx.Commit())
}

// accessOrder is the ORDER BY key of each sort.
var accessOrder = map[store.AccessSort]string{
	store.SortAccessAt:         "",
	store.SortAccessPrincipal:  "principal",
	store.SortAccessMethod:     "method",
	store.SortAccessCase:       "coalesce(case_id, '')",
	store.SortAccessSite:       "site",
	store.SortAccessCode:       "code",
	store.SortAccessBreakGlass: "break_glass",
}

// ListAccessEvents lists events in f's order.
func (b *Backend) ListAccessEvents(ctx context.Context, f store.AccessFilter) ([]store.AccessEvent, error) {
	key, ok := accessOrder[f.Sort]
	if !ok {
		return nil, fmt.Errorf("sqlite: list access events: unknown sort %d", f.Sort)
	}
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
		// A list names its cases in case_ids rather than case_id.
		q += ` AND (case_id = ? OR instr(case_ids, ?) > 0)`
		args = append(args, f.CaseID.String(), f.CaseID.String())
	}
	if f.Method != "" {
		q += ` AND method = ?`
		args = append(args, f.Method)
	}
	switch f.Site {
	case "":
	case store.NoSite:
		q += ` AND site = ''`
	default:
		q += ` AND site = ?`
		args = append(args, f.Site)
	}
	if f.Code != "" {
		q += ` AND code = ?`
		args = append(args, f.Code)
	}
	if f.DeniedOnly {
		q += ` AND code IN ('PermissionDenied', 'Unauthenticated')`
	}
	if f.BreakGlass {
		q += ` AND break_glass`
	}
	dir, cmp := "ASC", ">"
	if f.Desc {
		dir, cmp = "DESC", "<"
	}
	if f.After != nil {
		if key == "" {
			q += ` AND (at, event_id) ` + cmp + ` (?, ?)`
			args = append(args, micros(f.After.At), f.After.ID.String())
		} else {
			var k any = f.After.Key
			if f.Sort == store.SortAccessBreakGlass {
				k = 0
				if f.After.Key == "true" {
					k = 1
				}
			}
			q += ` AND (` + key + `, at, event_id) ` + cmp + ` (?, ?, ?)`
			args = append(args, k, micros(f.After.At), f.After.ID.String())
		}
	}
	q += ` ORDER BY `
	if key != "" {
		q += key + ` ` + dir + `, `
	}
	q += `at ` + dir + `, event_id ` + dir + ` LIMIT ?`
	args = append(args, f.Limit)
	rows, err := b.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap("list access events", err)
	}
	es, err := scanAccessEvents(rows)
	return es, wrap("list access events", err)
}

func scanAccessEvents(rows *sql.Rows) ([]store.AccessEvent, error) {
	defer rows.Close()
	var out []store.AccessEvent
	for rows.Next() {
		var e store.AccessEvent
		var id, caseID, caseIDs string
		var at, seq sql.NullInt64
		var prev, hash []byte
		if err := rows.Scan(&id, &at, &e.Principal, &e.Roles, &e.Via, &e.Method, &caseID, &e.Code, &e.Reason, &e.ClientAddr,
			&e.Site, &seq, &prev, &hash, &caseIDs, &e.CaseCount, &e.CaseSetDigest, &e.Query, &e.BreakGlass); err != nil {
			return nil, err
		}
		e.ID, _ = uuid.Parse(id)
		e.At = fromMicros(at)
		if caseID != "" {
			e.CaseID, _ = uuid.Parse(caseID)
		}
		e.CaseIDs = store.SplitCaseIDs(caseIDs)
		e.Seq = seq.Int64
		copy(e.PrevHash[:], prev)
		copy(e.Hash[:], hash)
		out = append(out, e)
	}
	return out, rows.Err()
}

// AccessChainHeads returns every recorded head.
func (b *Backend) AccessChainHeads(ctx context.Context) ([]store.AccessChainHead, error) {
	rows, err := b.r.QueryContext(ctx, `SELECT site, seq, hash FROM access_chain_heads ORDER BY site`)
	if err != nil {
		return nil, wrap("access chain heads", err)
	}
	defer rows.Close()
	var out []store.AccessChainHead
	for rows.Next() {
		var h store.AccessChainHead
		var hash []byte
		if err := rows.Scan(&h.Site, &h.Seq, &hash); err != nil {
			return nil, wrap("access chain heads", err)
		}
		copy(h.Hash[:], hash)
		out = append(out, h)
	}
	return out, wrap("access chain heads", rows.Err())
}

// AccessChainLinks returns a page of site's chain in order.
func (b *Backend) AccessChainLinks(ctx context.Context, site string, after int64, limit int) ([]store.AccessEvent, error) {
	rows, err := b.r.QueryContext(ctx, `SELECT `+accessCols+` FROM access_events
		WHERE site = ? AND chain_seq > ? ORDER BY chain_seq, event_id LIMIT ?`, site, after, limit)
	if err != nil {
		return nil, wrap("access chain links", err)
	}
	es, err := scanAccessEvents(rows)
	return es, wrap("access chain links", err)
}

// AccessChainSites returns the sites that have chained events.
func (b *Backend) AccessChainSites(ctx context.Context) ([]string, error) {
	rows, err := b.r.QueryContext(ctx, `SELECT DISTINCT site FROM access_events WHERE chain_seq IS NOT NULL ORDER BY site`)
	if err != nil {
		return nil, wrap("access chain sites", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, wrap("access chain sites", err)
		}
		out = append(out, s)
	}
	return out, wrap("access chain sites", rows.Err())
}

// UnchainedAccessEvents counts events from before the chain.
func (b *Backend) UnchainedAccessEvents(ctx context.Context) (int64, error) {
	var n int64
	err := b.r.QueryRowContext(ctx, `SELECT count(*) FROM access_events WHERE chain_seq IS NULL`).Scan(&n)
	return n, wrap("unchained access events", err)
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
