package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"perfusion/store"
)

// The access audit and break-glass grants (store/access.go).

const accessCols = `event_id, at, principal, roles, via, method, coalesce(case_id::text, ''), code, reason, client_addr,
	site, chain_seq, prev_hash, hash, case_ids, case_count, case_set_digest, query, break_glass`

// resolveSites sets the site of every event that names an existing case to
// that case's site. A case's site never changes, so this may read outside
// the appending transaction.
func (b *Backend) resolveSites(ctx context.Context, es []store.AccessEvent) error {
	var ids []uuid.UUID
	for _, e := range es {
		if e.CaseID != uuid.Nil {
			ids = append(ids, e.CaseID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := b.pool.Query(ctx, `SELECT case_id, site FROM cases WHERE case_id = ANY($1)`, ids)
	if err != nil {
		return err
	}
	sites := map[uuid.UUID]string{}
	for rows.Next() {
		var id uuid.UUID
		var site string
		if err := rows.Scan(&id, &site); err != nil {
			rows.Close()
			return err
		}
		sites[id] = site
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i := range es {
		if site, ok := sites[es[i].CaseID]; ok {
			es[i].Site = site
		}
	}
	return nil
}

// AppendAccessEvents appends events as links of their sites' chains in one
// transaction: each site's head row is created if new and locked (sites in
// sorted order, so two appenders never wait on each other crosswise), the
// links computed from the heads, the events inserted and the heads moved.
// Only appenders of the same site wait for each other.
func (b *Backend) AppendAccessEvents(ctx context.Context, in []store.AccessEvent) error {
	if len(in) == 0 {
		return nil
	}
	es := slices.Clone(in)
	if err := b.resolveSites(ctx, es); err != nil {
		return wrap("append access events: sites", err)
	}
	var sites []string
	for _, e := range es {
		sites = append(sites, e.Site)
	}
	slices.Sort(sites)
	sites = slices.Compact(sites)
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		lock := &pgx.Batch{}
		for _, site := range sites {
			g := store.AccessGenesis(site)
			lock.Queue(`INSERT INTO access_chain_heads (site, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (site) DO NOTHING`, site, g[:])
			lock.Queue(`SELECT seq, hash FROM access_chain_heads WHERE site = $1 FOR UPDATE`, site)
		}
		br := tx.SendBatch(ctx, lock)
		heads := map[string]store.AccessChainHead{}
		for _, site := range sites {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return err
			}
			h := store.AccessChainHead{Site: site}
			var hash []byte
			if err := br.QueryRow().Scan(&h.Seq, &hash); err != nil {
				br.Close()
				return err
			}
			copy(h.Hash[:], hash)
			heads[site] = h
		}
		if err := br.Close(); err != nil {
			return err
		}
		store.ChainAccessEvents(es, heads)
		batch := &pgx.Batch{}
		for _, e := range es {
			var caseID any
			if e.CaseID != uuid.Nil {
				caseID = e.CaseID
			}
			batch.Queue(`INSERT INTO access_events (event_id, at, principal, roles, via, method, case_id, code, reason, client_addr,
					site, chain_seq, prev_hash, hash, case_ids, case_count, case_set_digest, query)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
				e.ID, e.At, e.Principal, e.Roles, e.Via, e.Method, caseID, e.Code, e.Reason, e.ClientAddr,
				e.Site, e.Seq, e.PrevHash[:], e.Hash[:], store.JoinCaseIDs(e.CaseIDs), e.CaseCount, e.CaseSetDigest, e.Query)
		}
		for _, site := range sites {
			h := heads[site]
			batch.Queue(`UPDATE access_chain_heads SET seq = $2, hash = $3 WHERE site = $1`, site, h.Seq, h.Hash[:])
		}
		return tx.SendBatch(ctx, batch).Close()
	})
	return wrap("append access events", err)
}

// accessOrder is the ORDER BY key of each sort.
var accessOrder = map[store.AccessSort]string{
	store.SortAccessAt:         "",
	store.SortAccessPrincipal:  "principal",
	store.SortAccessMethod:     "method",
	store.SortAccessCase:       "coalesce(case_id::text, '')",
	store.SortAccessSite:       "site",
	store.SortAccessCode:       "code",
	store.SortAccessBreakGlass: "break_glass",
}

// ListAccessEvents lists events in f's order.
func (b *Backend) ListAccessEvents(ctx context.Context, f store.AccessFilter) ([]store.AccessEvent, error) {
	key, ok := accessOrder[f.Sort]
	if !ok {
		return nil, fmt.Errorf("postgres: list access events: unknown sort %d", f.Sort)
	}
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
		// A list names its cases in case_ids rather than case_id.
		id := arg(f.CaseID.String())
		q += ` AND (case_id::text = ` + id + ` OR strpos(case_ids, ` + id + `) > 0)`
	}
	if f.Method != "" {
		q += ` AND method = ` + arg(f.Method)
	}
	switch f.Site {
	case "":
	case store.NoSite:
		q += ` AND site = ''`
	default:
		q += ` AND site = ` + arg(f.Site)
	}
	if f.Code != "" {
		q += ` AND code = ` + arg(f.Code)
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
			q += ` AND (at, event_id) ` + cmp + ` (` + arg(f.After.At) + `, ` + arg(f.After.ID) + `)`
		} else {
			var k any = f.After.Key
			if f.Sort == store.SortAccessBreakGlass {
				k = f.After.Key == "true"
			}
			q += ` AND (` + key + `, at, event_id) ` + cmp + ` (` + arg(k) + `, ` + arg(f.After.At) + `, ` + arg(f.After.ID) + `)`
		}
	}
	q += ` ORDER BY `
	if key != "" {
		// COLLATE "C": byte order, the same on every server and in SQLite.
		if f.Sort == store.SortAccessBreakGlass {
			q += key + ` ` + dir + `, `
		} else {
			q += key + ` COLLATE "C" ` + dir + `, `
		}
	}
	q += `at ` + dir + `, event_id ` + dir + ` LIMIT ` + arg(f.Limit)
	rows, err := b.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap("list access events", err)
	}
	es, err := scanAccessEvents(rows)
	return es, wrap("list access events", err)
}

func scanAccessEvents(rows pgx.Rows) ([]store.AccessEvent, error) {
	defer rows.Close()
	var out []store.AccessEvent
	for rows.Next() {
		var e store.AccessEvent
		var caseID, caseIDs string
		var seq *int64
		var prev, hash []byte
		if err := rows.Scan(&e.ID, &e.At, &e.Principal, &e.Roles, &e.Via, &e.Method, &caseID, &e.Code, &e.Reason, &e.ClientAddr,
			&e.Site, &seq, &prev, &hash, &caseIDs, &e.CaseCount, &e.CaseSetDigest, &e.Query, &e.BreakGlass); err != nil {
			return nil, err
		}
		e.At = e.At.UTC()
		if caseID != "" {
			e.CaseID, _ = uuid.Parse(caseID)
		}
		e.CaseIDs = store.SplitCaseIDs(caseIDs)
		if seq != nil {
			e.Seq = *seq
		}
		copy(e.PrevHash[:], prev)
		copy(e.Hash[:], hash)
		out = append(out, e)
	}
	return out, rows.Err()
}

// AccessChainHeads returns every recorded head.
func (b *Backend) AccessChainHeads(ctx context.Context) ([]store.AccessChainHead, error) {
	rows, err := b.pool.Query(ctx, `SELECT site, seq, hash FROM access_chain_heads ORDER BY site`)
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
	rows, err := b.pool.Query(ctx, `SELECT `+accessCols+` FROM access_events
		WHERE site = $1 AND chain_seq > $2 ORDER BY chain_seq, event_id LIMIT $3`, site, after, limit)
	if err != nil {
		return nil, wrap("access chain links", err)
	}
	es, err := scanAccessEvents(rows)
	return es, wrap("access chain links", err)
}

// AccessChainSites returns the sites that have chained events.
func (b *Backend) AccessChainSites(ctx context.Context) ([]string, error) {
	rows, err := b.pool.Query(ctx, `SELECT DISTINCT site FROM access_events WHERE chain_seq IS NOT NULL ORDER BY site`)
	if err != nil {
		return nil, wrap("access chain sites", err)
	}
	sites, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return sites, wrap("access chain sites", err)
}

// UnchainedAccessEvents counts events from before the chain.
func (b *Backend) UnchainedAccessEvents(ctx context.Context) (int64, error) {
	var n int64
	err := b.pool.QueryRow(ctx, `SELECT count(*) FROM access_events WHERE chain_seq IS NULL`).Scan(&n)
	return n, wrap("unchained access events", err)
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
