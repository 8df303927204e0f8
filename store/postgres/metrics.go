package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"perfusion/charting"
	"perfusion/store"
)

var _ store.MetricsBackend = (*Backend)(nil)

// PutCaseMetrics replaces a case's metrics in one transaction, unless the
// stored ones were computed from a later ledger head.
func (b *Backend) PutCaseMetrics(ctx context.Context, r *store.CaseMetricsRow) error {
	doc, err := json.Marshal(r.Metrics)
	if err != nil {
		return fmt.Errorf("postgres: put case metrics: encode: %w", err)
	}
	names := make([]string, 0, len(r.Metrics.Values))
	values := make([]float64, 0, len(r.Metrics.Values))
	for k, v := range r.Metrics.Values {
		names, values = append(names, k), append(values, v)
	}
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO case_metrics
			(case_id, kind, status, site, room, scheduled_start, month, surgeon, perfusionist,
			 covers_seq, definitions_version, computed_at, doc)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			ON CONFLICT (case_id) DO UPDATE SET
			 kind = EXCLUDED.kind, status = EXCLUDED.status, site = EXCLUDED.site, room = EXCLUDED.room,
			 scheduled_start = EXCLUDED.scheduled_start, month = EXCLUDED.month, surgeon = EXCLUDED.surgeon,
			 perfusionist = EXCLUDED.perfusionist, covers_seq = EXCLUDED.covers_seq,
			 definitions_version = EXCLUDED.definitions_version, computed_at = EXCLUDED.computed_at, doc = EXCLUDED.doc
			WHERE case_metrics.covers_seq <= EXCLUDED.covers_seq`,
			r.CaseID, string(r.Kind), string(r.Status), r.Site, r.Room, r.ScheduledStart, r.Month(), r.Surgeon,
			r.Perfusionist, r.CoversSeq, r.Metrics.Version, r.ComputedAt, doc)
		if err != nil || tag.RowsAffected() == 0 {
			return err // a newer computation is stored: keep it
		}
		if _, err := tx.Exec(ctx, `DELETE FROM case_metric_values WHERE case_id = $1`, r.CaseID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO case_metric_values (case_id, metric, value)
			SELECT $1, unnest($2::text[]), unnest($3::float8[])`, r.CaseID, names, values)
		return err
	})
	return wrap("put case metrics", err)
}

const metricsCols = `m.case_id, m.kind, m.status, m.site, m.room, m.scheduled_start, m.surgeon, m.perfusionist,
	m.covers_seq, m.computed_at, m.doc`

func scanMetricsRow(row pgx.Row) (*store.CaseMetricsRow, error) {
	var (
		r            store.CaseMetricsRow
		kind, status string
		doc          []byte
	)
	if err := row.Scan(&r.CaseID, &kind, &status, &r.Site, &r.Room, &r.ScheduledStart, &r.Surgeon, &r.Perfusionist,
		&r.CoversSeq, &r.ComputedAt, &doc); err != nil {
		return nil, err
	}
	r.Kind, r.Status = charting.Kind(kind), charting.Status(status)
	r.ScheduledStart, r.ComputedAt = r.ScheduledStart.UTC(), r.ComputedAt.UTC()
	if err := json.Unmarshal(doc, &r.Metrics); err != nil {
		return nil, fmt.Errorf("decode metrics: %w", err)
	}
	return &r, nil
}

// GetCaseMetrics reads one case's stored metrics.
func (b *Backend) GetCaseMetrics(ctx context.Context, caseID uuid.UUID) (*store.CaseMetricsRow, error) {
	r, err := scanMetricsRow(b.pool.QueryRow(ctx, `SELECT `+metricsCols+` FROM case_metrics m WHERE m.case_id = $1`, caseID))
	if err != nil {
		return nil, wrap("get case metrics", err)
	}
	return r, nil
}

// metricsWhere builds the WHERE clause of q with PostgreSQL placeholders.
// Metric filters are EXISTS probes on case_metric_values' primary key.
func metricsWhere(q store.MetricsQuery, args *[]any) string {
	arg := func(v any) string {
		*args = append(*args, v)
		return "$" + strconv.Itoa(len(*args))
	}
	conds := []string{"TRUE"}
	add := func(cond string) { conds = append(conds, cond) }
	if !q.From.IsZero() {
		add("m.scheduled_start >= " + arg(q.From))
	}
	if !q.To.IsZero() {
		add("m.scheduled_start < " + arg(q.To))
	}
	for _, f := range [][2]string{{"m.site", q.Site}, {"m.room", q.Room}, {"m.surgeon", q.Surgeon},
		{"m.perfusionist", q.Perfusionist}, {"m.kind", string(q.Kind)}, {"m.status", string(q.Status)}} {
		if f[1] != "" {
			add(f[0] + " = " + arg(f[1]))
		}
	}
	if q.After != nil {
		add(q.AfterSQL(arg, q.After.ScheduledStart, q.After.ID, "::uuid"))
	}
	for _, c := range q.Conditions {
		// c.Op was checked by MetricsQuery.Validate: one of six literals.
		add("EXISTS (SELECT 1 FROM case_metric_values v WHERE v.case_id = m.case_id AND v.metric = " +
			arg(c.Metric) + " AND v.value " + string(c.Op) + " " + arg(c.Value) + ")")
	}
	return strings.Join(conds, " AND ")
}

// QueryCaseMetrics returns the matching cases, sorted and paged.
func (b *Backend) QueryCaseMetrics(ctx context.Context, q store.MetricsQuery) ([]store.CaseMetricsRow, error) {
	var args []any
	where := metricsWhere(q, &args)
	dir := "ASC"
	if q.Descending {
		dir = "DESC"
	}
	from, order := "case_metrics m", "m.scheduled_start "+dir+", m.case_id "+dir
	if q.SortMetric != "" {
		args = append(args, q.SortMetric)
		from = "case_metrics m LEFT JOIN case_metric_values s ON s.case_id = m.case_id AND s.metric = $" + strconv.Itoa(len(args))
		order = "s.value " + dir + " NULLS LAST, m.case_id " + dir
	}
	args = append(args, q.Limit, q.Offset)
	sql := `SELECT ` + metricsCols + ` FROM ` + from + ` WHERE ` + where + ` ORDER BY ` + order +
		` LIMIT $` + strconv.Itoa(len(args)-1) + ` OFFSET $` + strconv.Itoa(len(args))
	rows, err := b.pool.Query(ctx, sql, args...)
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

// AggregateCaseMetrics computes the statistics in the database, one pass
// over the matching cases' values of the requested metrics.
func (b *Backend) AggregateCaseMetrics(ctx context.Context, q store.MetricsQuery, by store.GroupBy, metrics []string) ([]store.MetricAggregate, error) {
	g, ok := groupExpr[by]
	if !ok {
		return nil, fmt.Errorf("postgres: aggregate case metrics: unknown grouping")
	}
	args := []any{metrics}
	where := metricsWhere(q, &args)
	// One ordered-set aggregate gives all three quartiles from one sort per
	// group, and grouping under the "C" collation sorts by bytes (the
	// order SQLite and Go use) instead of by locale, which is slower.
	rows, err := b.pool.Query(ctx, `SELECT (`+g+`) COLLATE "C" AS grp, v.metric COLLATE "C" AS metric, count(*), avg(v.value),
		percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY v.value), min(v.value), max(v.value)
		FROM case_metrics m JOIN case_metric_values v ON v.case_id = m.case_id AND v.metric = ANY($1)
		WHERE `+where+`
		GROUP BY 1, 2 ORDER BY 1, 2`, args...)
	if err != nil {
		return nil, wrap("aggregate case metrics", err)
	}
	defer rows.Close()
	var out []store.MetricAggregate
	for rows.Next() {
		var a store.MetricAggregate
		var q []float64
		if err := rows.Scan(&a.Group, &a.Metric, &a.Count, &a.Mean, &q, &a.Min, &a.Max); err != nil {
			return nil, wrap("aggregate case metrics", err)
		}
		if len(q) != 3 {
			return nil, fmt.Errorf("postgres: aggregate case metrics: %d quartiles", len(q))
		}
		a.P25, a.Median, a.P75 = q[0], q[1], q[2]
		out = append(out, a)
	}
	return out, wrap("aggregate case metrics", rows.Err())
}

// StaleMetrics lists closed or signed cases without current metrics.
func (b *Backend) StaleMetrics(ctx context.Context, version int, config []byte, limit int) ([]uuid.UUID, error) {
	rows, err := b.pool.Query(ctx, `SELECT c.case_id FROM cases c LEFT JOIN case_metrics m ON m.case_id = c.case_id
		WHERE c.status IN ('closed', 'signed')
		  AND (m.case_id IS NULL OR m.covers_seq < c.head_seq OR m.definitions_version <> $1
		       OR m.doc->'config' IS DISTINCT FROM $2::jsonb)
		ORDER BY c.case_id LIMIT $3`, version, string(config), limit)
	if err != nil {
		return nil, wrap("stale metrics", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	return ids, wrap("stale metrics", err)
}
