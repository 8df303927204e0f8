package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

var _ store.MetricsBackend = (*Backend)(nil)

// PutCaseMetrics replaces a case's metrics in one transaction on the writer
// connection, unless the stored ones were computed from a later ledger head.
func (b *Backend) PutCaseMetrics(ctx context.Context, r *store.CaseMetricsRow) error {
	doc, err := json.Marshal(r.Metrics)
	if err != nil {
		return fmt.Errorf("sqlite: put case metrics: encode: %w", err)
	}
	tx, err := b.w.BeginTx(ctx, nil)
	if err != nil {
		return wrap("put case metrics", err)
	}
	defer tx.Rollback()
	id := r.CaseID.String()
	res, err := tx.ExecContext(ctx, `INSERT INTO case_metrics
		(case_id, kind, status, site, room, scheduled_start, month, surgeon, perfusionist,
		 covers_seq, definitions_version, computed_at, doc)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (case_id) DO UPDATE SET
		 kind = excluded.kind, status = excluded.status, site = excluded.site, room = excluded.room,
		 scheduled_start = excluded.scheduled_start, month = excluded.month, surgeon = excluded.surgeon,
		 perfusionist = excluded.perfusionist, covers_seq = excluded.covers_seq,
		 definitions_version = excluded.definitions_version, computed_at = excluded.computed_at, doc = excluded.doc
		WHERE case_metrics.covers_seq <= excluded.covers_seq`,
		id, string(r.Kind), string(r.Status), r.Site, r.Room, micros(r.ScheduledStart), r.Month(), r.Surgeon,
		r.Perfusionist, r.CoversSeq, r.Metrics.Version, micros(r.ComputedAt), string(doc))
	if err != nil {
		return wrap("put case metrics", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return wrap("put case metrics", err) // a newer computation is stored: keep it
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM case_metric_values WHERE case_id = ?`, id); err != nil {
		return wrap("put case metrics", err)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO case_metric_values (case_id, metric, value) VALUES (?, ?, ?)`)
	if err != nil {
		return wrap("put case metrics", err)
	}
	defer stmt.Close()
	for k, v := range r.Metrics.Values {
		if _, err := stmt.ExecContext(ctx, id, k, v); err != nil {
			return wrap("put case metrics", err)
		}
	}
	return wrap("put case metrics", tx.Commit())
}

const metricsCols = `m.case_id, m.kind, m.status, m.site, m.room, m.scheduled_start, m.surgeon, m.perfusionist,
	m.covers_seq, m.computed_at, m.doc`

func scanMetricsRow(row scanner) (*store.CaseMetricsRow, error) {
	var (
		r                 store.CaseMetricsRow
		id                sql.NullString
		kind, status, doc string
		start, computed   sql.NullInt64
	)
	if err := row.Scan(&id, &kind, &status, &r.Site, &r.Room, &start, &r.Surgeon, &r.Perfusionist,
		&r.CoversSeq, &computed, &doc); err != nil {
		return nil, err
	}
	var err error
	if r.CaseID, err = parseUUID(id, "case id"); err != nil {
		return nil, err
	}
	r.Kind, r.Status = charting.Kind(kind), charting.Status(status)
	r.ScheduledStart, r.ComputedAt = fromMicros(start), fromMicros(computed)
	if err := json.Unmarshal([]byte(doc), &r.Metrics); err != nil {
		return nil, fmt.Errorf("decode metrics: %w", err)
	}
	return &r, nil
}

// GetCaseMetrics reads one case's stored metrics.
func (b *Backend) GetCaseMetrics(ctx context.Context, caseID uuid.UUID) (*store.CaseMetricsRow, error) {
	r, err := scanMetricsRow(b.r.QueryRowContext(ctx, `SELECT `+metricsCols+` FROM case_metrics m WHERE m.case_id = ?`, caseID.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("get case metrics")
	}
	if err != nil {
		return nil, wrap("get case metrics", err)
	}
	return r, nil
}

func metricsWhere(q store.MetricsQuery, args *[]any) string {
	conds := []string{"1"}
	add := func(cond string, vs ...any) {
		conds = append(conds, cond)
		*args = append(*args, vs...)
	}
	if !q.From.IsZero() {
		add("m.scheduled_start >= ?", micros(q.From))
	}
	if !q.To.IsZero() {
		add("m.scheduled_start < ?", micros(q.To))
	}
	for _, f := range [][2]string{{"m.site", q.Site}, {"m.room", q.Room}, {"m.surgeon", q.Surgeon},
		{"m.perfusionist", q.Perfusionist}, {"m.kind", string(q.Kind)}, {"m.status", string(q.Status)}} {
		if f[1] != "" {
			add(f[0]+" = ?", f[1])
		}
	}
	if q.After != nil {
		var bound []any
		cond := q.AfterSQL(func(v any) string { bound = append(bound, v); return "?" }, micros(q.After.ScheduledStart), q.After.ID.String(), "")
		add(cond, bound...)
	}
	for _, c := range q.Conditions {
		// c.Op was checked by MetricsQuery.Validate: one of six literals.
		add("EXISTS (SELECT 1 FROM case_metric_values v WHERE v.case_id = m.case_id AND v.metric = ? AND v.value "+
			string(c.Op)+" ?)", c.Metric, c.Value)
	}
	return strings.Join(conds, " AND ")
}

// QueryCaseMetrics returns the matching cases, sorted and paged.
func (b *Backend) QueryCaseMetrics(ctx context.Context, q store.MetricsQuery) ([]store.CaseMetricsRow, error) {
	var args []any
	from, order := "case_metrics m", "m.scheduled_start %[1]s, m.case_id %[1]s"
	if q.SortMetric != "" {
		from = "case_metrics m LEFT JOIN case_metric_values s ON s.case_id = m.case_id AND s.metric = ?"
		args = append(args, q.SortMetric)
		order = "s.value %[1]s NULLS LAST, m.case_id %[1]s"
	}
	where := metricsWhere(q, &args)
	dir := "ASC"
	if q.Descending {
		dir = "DESC"
	}
	args = append(args, q.Limit, q.Offset)
	rows, err := b.r.QueryContext(ctx, `SELECT `+metricsCols+` FROM `+from+` WHERE `+where+
		` ORDER BY `+fmt.Sprintf(order, dir)+` LIMIT ? OFFSET ?`, args...)
	if err != nil {
		return nil, wrap("query case metrics", err)
	}
	defer rows.Close()
	var out []store.CaseMetricsRow
	for rows.Next() {
		r, err := scanMetricsRow(rows)
		if err != nil {
			return nil, wrap("query case metrics", err)
		}
		out = append(out, *r)
	}
	return out, wrap("query case metrics", rows.Err())
}

var groupExpr = map[store.GroupBy]string{
	store.GroupNone: "''", store.GroupSurgeon: "m.surgeon", store.GroupPerfusionist: "m.perfusionist",
	store.GroupMonth: "m.month", store.GroupSite: "m.site",
}

// AggregateCaseMetrics reads the matching values in group, metric and value
// order and summarises each run in Go: SQLite has no percentile_cont, and
// store.Summarize computes it the same way.
func (b *Backend) AggregateCaseMetrics(ctx context.Context, q store.MetricsQuery, by store.GroupBy, metrics []string) ([]store.MetricAggregate, error) {
	g, ok := groupExpr[by]
	if !ok {
		return nil, fmt.Errorf("sqlite: aggregate case metrics: unknown grouping")
	}
	var args []any
	for _, m := range metrics {
		args = append(args, m)
	}
	in := strings.TrimSuffix(strings.Repeat("?, ", len(metrics)), ", ")
	where := metricsWhere(q, &args)
	rows, err := b.r.QueryContext(ctx, `SELECT `+g+` AS grp, v.metric, v.value
		FROM case_metrics m JOIN case_metric_values v ON v.case_id = m.case_id AND v.metric IN (`+in+`)
		WHERE `+where+` ORDER BY grp, v.metric, v.value`, args...)
	if err != nil {
		return nil, wrap("aggregate case metrics", err)
	}
	defer rows.Close()
	var (
		out       []store.MetricAggregate
		grp, name string
		vals      []float64
	)
	flush := func() {
		if len(vals) > 0 {
			out = append(out, store.Summarize(grp, name, vals))
		}
	}
	for rows.Next() {
		var gr, m string
		var v float64
		if err := rows.Scan(&gr, &m, &v); err != nil {
			return nil, wrap("aggregate case metrics", err)
		}
		if gr != grp || m != name {
			flush()
			grp, name, vals = gr, m, nil
		}
		vals = append(vals, v)
	}
	flush()
	return out, wrap("aggregate case metrics", rows.Err())
}

// StaleMetrics lists closed or signed cases without current metrics.
func (b *Backend) StaleMetrics(ctx context.Context, version int, config []byte, limit int) ([]uuid.UUID, error) {
	// json() minifies both sides the same way, so the comparison is of
	// JSON values written by the same encoder, not of formatting.
	rows, err := b.r.QueryContext(ctx, `SELECT c.case_id FROM cases c LEFT JOIN case_metrics m ON m.case_id = c.case_id
		WHERE c.status IN ('closed', 'signed')
		  AND (m.case_id IS NULL OR m.covers_seq < c.head_seq OR m.definitions_version <> ?
		       OR json(json_extract(m.doc, '$.config')) IS NOT json(?))
		ORDER BY c.case_id LIMIT ?`, version, string(config), limit)
	if err != nil {
		return nil, wrap("stale metrics", err)
	}
	defer rows.Close()
	var out []uuid.UUID
	for rows.Next() {
		var id sql.NullString
		if err := rows.Scan(&id); err != nil {
			return nil, wrap("stale metrics", err)
		}
		u, err := parseUUID(id, "case id")
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, wrap("stale metrics", rows.Err())
}
