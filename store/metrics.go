package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
)

// MetricsBackend keeps the computed quality metrics of each case, so review
// queries filter and aggregate stored values and never rescan samples.
// These rows are derived data, not part of the record: they are replaced
// whenever the record changes and can always be recomputed from it, so the
// tables are not append-only. Both store/postgres and store/sqlite
// implement it; Store finds it on its Backend by type assertion.
type MetricsBackend interface {
	// PutCaseMetrics stores a case's metrics, replacing older ones. A row
	// computed at a lower ledger sequence than the stored one is ignored, so
	// two racing recomputations leave the newer result.
	PutCaseMetrics(ctx context.Context, r *CaseMetricsRow) error
	// GetCaseMetrics returns a case's stored metrics; charting.ErrNotFound
	// when none are stored.
	GetCaseMetrics(ctx context.Context, caseID uuid.UUID) (*CaseMetricsRow, error)
	// QueryCaseMetrics returns the cases matching q, sorted and paged as q
	// says. q has been checked by MetricsQuery.Validate.
	QueryCaseMetrics(ctx context.Context, q MetricsQuery) ([]CaseMetricsRow, error)
	// AggregateCaseMetrics summarises each named metric over the cases
	// matching q (q's sort and page are ignored), per group, ordered by
	// group then metric. Cases without a value for a metric do not count
	// for it. Quartiles interpolate linearly between order statistics
	// (PostgreSQL's percentile_cont).
	AggregateCaseMetrics(ctx context.Context, q MetricsQuery, by GroupBy, metrics []string) ([]MetricAggregate, error)
	// StaleMetrics returns up to limit closed or signed cases whose metrics
	// are missing, older than the case's ledger head, of another
	// definitions version than version, or computed with other thresholds
	// than config (the JSON of a charting.MetricsConfig, compared as JSON):
	// cases imported from an archive, a refresh that failed after its write
	// committed, an upgrade that changed the definitions, or a site that
	// changed its thresholds.
	StaleMetrics(ctx context.Context, version int, config []byte, limit int) ([]uuid.UUID, error)
}

// CaseMetricsRow is one case's stored metrics with the case attributes
// reviewers filter and group on.
type CaseMetricsRow struct {
	CaseID         uuid.UUID
	Kind           charting.Kind
	Status         charting.Status
	Site, Room     string
	ScheduledStart time.Time
	// Surgeon and Perfusionist are staff ids; Perfusionist is the first
	// (primary) perfusionist of the team.
	Surgeon, Perfusionist string
	// CoversSeq is the ledger sequence of the record the metrics were
	// computed from: older than the case head means stale.
	CoversSeq  int64
	ComputedAt time.Time
	Metrics    charting.Metrics
}

// Month returns the UTC year-month of the scheduled start, the month group.
func (r *CaseMetricsRow) Month() string { return r.ScheduledStart.UTC().Format("2006-01") }

// CompareOp is a comparison of a metric filter.
type CompareOp string

// Comparisons a metric filter may use.
const (
	OpLess         CompareOp = "<"
	OpLessEqual    CompareOp = "<="
	OpGreater      CompareOp = ">"
	OpGreaterEqual CompareOp = ">="
	OpEqual        CompareOp = "="
	OpNotEqual     CompareOp = "<>"
)

// Valid reports whether op is one of the comparisons; backends put it into
// SQL text only after this check.
func (op CompareOp) Valid() bool {
	switch op {
	case OpLess, OpLessEqual, OpGreater, OpGreaterEqual, OpEqual, OpNotEqual:
		return true
	}
	return false
}

// MetricCondition is one filter on a stored metric. A case without the
// metric never matches.
type MetricCondition struct {
	Metric string
	Op     CompareOp
	Value  float64
}

// GroupBy names the grouping of an aggregate.
type GroupBy string

// Groupings; GroupNone puts every case in one group named "".
const (
	GroupNone         GroupBy = ""
	GroupSurgeon      GroupBy = "surgeon"
	GroupPerfusionist GroupBy = "perfusionist"
	GroupMonth        GroupBy = "month"
	GroupSite         GroupBy = "site"
)

// MetricsQuery selects cases by attributes and stored metrics. Zero values
// match anything.
type MetricsQuery struct {
	From, To     time.Time // scheduled start in [From, To)
	Site, Room   string
	Surgeon      string
	Perfusionist string
	Kind         charting.Kind
	Status       charting.Status
	Conditions   []MetricCondition
	// SortMetric orders by that metric (cases without it last); empty
	// orders by scheduled start. Ties break on case id.
	SortMetric string
	Descending bool
	// After pages by key: only cases after this one in the query's order
	// (CursorOf gives it from a page's last row). Unlike Offset, a case
	// added or re-computed between pages can neither repeat a row nor push
	// one off a page.
	After  *MetricsCursor
	Offset int
	Limit  int
}

// MetricsCursor is the sort key of the last row of a page: its scheduled
// start (scheduled-start order) or its value of the sort metric, and its
// case id, which breaks ties.
type MetricsCursor struct {
	ScheduledStart time.Time
	// Value is the row's sort metric value; HasValue is false when it
	// lacked the metric (such rows sort last, by id).
	Value    float64
	HasValue bool
	ID       uuid.UUID
}

// CursorOf is the cursor of row in q's order, to page after it.
func CursorOf(row *CaseMetricsRow, q MetricsQuery) *MetricsCursor {
	c := &MetricsCursor{ScheduledStart: row.ScheduledStart, ID: row.CaseID}
	if q.SortMetric != "" {
		c.Value, c.HasValue = row.Metrics.Values[q.SortMetric]
	}
	return c
}

// AfterSQL is the WHERE condition of q.After for a backend: rows strictly
// after the cursor in q's order, where that order is (m.scheduled_start,
// m.case_id) or, with a sort metric, (s.value NULLS LAST, m.case_id), both
// ascending or both descending. arg binds a value and returns its
// placeholder (called once per occurrence); start and id are the cursor's
// scheduled start and id as the backend binds them, idCast what makes the
// id placeholder comparable with m.case_id.
func (q *MetricsQuery) AfterSQL(arg func(any) string, start, id any, idCast string) string {
	beyond := " > "
	if q.Descending {
		beyond = " < "
	}
	idAfter := func() string { return "m.case_id" + beyond + arg(id) + idCast }
	switch {
	case q.SortMetric == "":
		return "(m.scheduled_start, m.case_id)" + beyond + "(" + arg(start) + ", " + arg(id) + idCast + ")"
	case !q.After.HasValue:
		// Past every value: only rows without one remain, by id.
		return "(s.value IS NULL AND " + idAfter() + ")"
	default:
		return "(s.value IS NULL OR s.value" + beyond + arg(q.After.Value) +
			" OR (s.value = " + arg(q.After.Value) + " AND " + idAfter() + "))"
	}
}

var metricName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// Validate checks the query's shape: known comparisons, well-formed metric
// names, finite values, a sane range and page. Field names are those of the
// review API.
func (q *MetricsQuery) Validate() error {
	var v charting.Violations
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		v.Add("scheduled_from", "must be before scheduled_to")
	}
	for i, c := range q.Conditions {
		f := fmt.Sprintf("metric_filters[%d]", i)
		if !metricName.MatchString(c.Metric) {
			v.Add(f+".metric", "must be a metric name")
		}
		if !c.Op.Valid() {
			v.Add(f+".comparison", "must be one of <, <=, >, >=, =, <>")
		}
		if math.IsNaN(c.Value) || math.IsInf(c.Value, 0) {
			v.Add(f+".value", "must be finite")
		}
	}
	if q.SortMetric != "" && !metricName.MatchString(q.SortMetric) {
		v.Add("sort_by", "must be a metric name")
	}
	if q.Offset < 0 || q.Limit < 0 || q.Limit > 1000 {
		v.Add("page_size", "must be 0 to 1000")
	}
	return v.Err()
}

// MetricAggregate summarises one metric over one group of cases.
type MetricAggregate struct {
	Group                  string
	Metric                 string
	Count                  int64
	Mean, Median, P25, P75 float64
	Min, Max               float64
}

// Summarize computes a MetricAggregate's statistics from values sorted
// ascending (at least one), with quartiles interpolated as percentile_cont
// does, so both backends agree to the last bit that float arithmetic allows.
func Summarize(group, metric string, sorted []float64) MetricAggregate {
	var sum float64
	for _, x := range sorted {
		sum += x
	}
	n := len(sorted)
	return MetricAggregate{Group: group, Metric: metric, Count: int64(n), Mean: sum / float64(n),
		Median: Quantile(sorted, 0.5), P25: Quantile(sorted, 0.25), P75: Quantile(sorted, 0.75),
		Min: sorted[0], Max: sorted[n-1]}
}

// Quantile is percentile_cont(p) over sorted values.
func Quantile(sorted []float64, p float64) float64 {
	pos := p * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	if lo+1 >= len(sorted) {
		return sorted[lo]
	}
	return sorted[lo] + (pos-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// ErrNoMetricsBackend is returned when the backend cannot store metrics.
var ErrNoMetricsBackend = errors.New("store: backend does not store metrics")

func (s *Store) metricsBackend() (MetricsBackend, error) { return MetricsOf(s.b) }

// MetricsOf returns b's metrics storage.
func MetricsOf(b Backend) (MetricsBackend, error) {
	mb, ok := capability[MetricsBackend](b)
	if !ok {
		return nil, ErrNoMetricsBackend
	}
	return mb, nil
}

// MetricsConfig returns the metric thresholds in force.
func (s *Store) MetricsConfig() charting.MetricsConfig {
	if s.metricsCfg != nil {
		return *s.metricsCfg
	}
	return charting.DefaultMetricsConfig()
}

// RefreshMetrics computes a closed or signed case's metrics from its record
// as it is now and stores them. Cases still being charted have none.
func (s *Store) RefreshMetrics(ctx context.Context, caseID uuid.UUID) (*CaseMetricsRow, error) {
	mb, err := s.metricsBackend()
	if err != nil {
		return nil, err
	}
	var row *CaseMetricsRow
	err = s.b.Snapshot(ctx, func(ctx context.Context, r Reader) error {
		row, err = s.computeMetrics(ctx, r, caseID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("refresh metrics: %w", err)
	}
	if err := mb.PutCaseMetrics(ctx, row); err != nil {
		return nil, fmt.Errorf("refresh metrics: %w", err)
	}
	return row, nil
}

func (s *Store) computeMetrics(ctx context.Context, r Reader, caseID uuid.UUID) (*CaseMetricsRow, error) {
	c, err := r.GetCase(ctx, caseID)
	if err != nil {
		return nil, err
	}
	if c.Status != charting.StatusClosed && c.Status != charting.StatusSigned {
		return nil, charting.Preconditionf("case is %s: metrics are computed once it is closed", c.Status)
	}
	entries, err := r.Entries(ctx, caseID)
	if err != nil {
		return nil, err
	}
	var series []charting.SourcedSeries
	err = r.ScanSampleBatches(ctx, caseID, SampleFilter{}, func(b *SampleBatchRow) error {
		ss, err := samplecodec.DecodeBlock(b.Block)
		if err != nil {
			return fmt.Errorf("decode samples: %w", err)
		}
		for _, x := range ss {
			series = append(series, charting.SourcedSeries{SourceID: b.SourceID, Series: x, RecordedAt: b.RecordedAt})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return MetricsRow(c, charting.ComputeMetricsWith(c, entries, series, s.MetricsConfig(), s.cat), s.clock()), nil
}

// MetricsRow builds the stored row of a case's metrics.
func MetricsRow(c *charting.Case, m charting.Metrics, now time.Time) *CaseMetricsRow {
	row := &CaseMetricsRow{CaseID: c.ID, Kind: c.Kind, Status: c.Status, Site: c.Site, Room: c.Room,
		ScheduledStart: c.ScheduledStart, Surgeon: c.Details.Team.Surgeon.StaffID,
		CoversSeq: c.Head.Seq, ComputedAt: now, Metrics: m}
	if p := c.Details.Team.Perfusionists; len(p) > 0 {
		row.Perfusionist = p[0].StaffID
	}
	return row
}

// afterRecordChange recomputes the metrics of a closed or signed case after
// a write. The write has committed: a failure here must not undo or hide
// it, so it is logged (without patient data) and left for the next read,
// which sees the metrics are stale (CaseMetrics) and recomputes them.
func (s *Store) afterRecordChange(ctx context.Context, c *charting.Case) {
	if c == nil || (c.Status != charting.StatusClosed && c.Status != charting.StatusSigned) {
		return
	}
	s.anchorHead(ctx, c)
	if _, err := s.RefreshMetrics(ctx, c.ID); err != nil && !errors.Is(err, ErrNoMetricsBackend) {
		s.log.WarnContext(ctx, "metrics not refreshed; they will be recomputed on read", "case_id", c.ID, "err", err)
	}
}

// CaseMetrics returns a case's metrics, recomputing them first when they
// are missing or older than the record (a refresh after a write failed, or
// the definitions changed).
func (s *Store) CaseMetrics(ctx context.Context, caseID uuid.UUID) (*CaseMetricsRow, error) {
	mb, err := s.metricsBackend()
	if err != nil {
		return nil, err
	}
	c, err := s.b.GetCase(ctx, caseID)
	if err != nil {
		return nil, fmt.Errorf("case metrics: %w", err)
	}
	row, err := mb.GetCaseMetrics(ctx, caseID)
	switch {
	case err == nil && row.CoversSeq >= c.Head.Seq && row.Metrics.Version == charting.MetricDefinitionsVersion &&
		sameConfig(row.Metrics.Config, s.MetricsConfig()):
		return row, nil
	case err != nil && !errors.Is(err, charting.ErrNotFound):
		return nil, fmt.Errorf("case metrics: %w", err)
	}
	return s.RefreshMetrics(ctx, caseID)
}

// QueryCaseMetrics returns the stored metrics of the cases matching q.
func (s *Store) QueryCaseMetrics(ctx context.Context, q MetricsQuery) ([]CaseMetricsRow, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	mb, err := s.metricsBackend()
	if err != nil {
		return nil, err
	}
	if q.Limit == 0 {
		q.Limit = 50
	}
	rows, err := mb.QueryCaseMetrics(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query case metrics: %w", err)
	}
	return rows, nil
}

// AggregateCaseMetrics summarises metrics over the cases matching q.
func (s *Store) AggregateCaseMetrics(ctx context.Context, q MetricsQuery, by GroupBy, metrics []string) ([]MetricAggregate, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	var v charting.Violations
	switch by {
	case GroupNone, GroupSurgeon, GroupPerfusionist, GroupMonth, GroupSite:
	default:
		v.Add("group_by", "must be surgeon, perfusionist, month or site")
	}
	if len(metrics) == 0 || len(metrics) > 100 {
		v.Add("metrics", "name 1 to 100 metrics")
	}
	for i, m := range metrics {
		if !metricName.MatchString(m) {
			v.Add(fmt.Sprintf("metrics[%d]", i), "must be a metric name")
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	mb, err := s.metricsBackend()
	if err != nil {
		return nil, err
	}
	out, err := mb.AggregateCaseMetrics(ctx, q, by, slices.Compact(slices.Sorted(slices.Values(metrics))))
	if err != nil {
		return nil, fmt.Errorf("aggregate case metrics: %w", err)
	}
	return out, nil
}

// RefreshStaleMetrics recomputes every closed or signed case whose stored
// metrics are missing or stale (see MetricsBackend.StaleMetrics), a batch
// at a time, and returns how many it refreshed. A case that fails is
// reported in the error and not retried in this run.
func (s *Store) RefreshStaleMetrics(ctx context.Context) (int, error) {
	mb, err := s.metricsBackend()
	if err != nil {
		return 0, err
	}
	const batch = 100
	cfg, err := json.Marshal(s.MetricsConfig())
	if err != nil {
		return 0, fmt.Errorf("refresh stale metrics: %w", err)
	}
	failed := map[uuid.UUID]bool{}
	var errs []error
	n := 0
	for {
		ids, err := mb.StaleMetrics(ctx, charting.MetricDefinitionsVersion, cfg, batch+len(failed))
		if err != nil {
			return n, fmt.Errorf("refresh stale metrics: %w", err)
		}
		progress := false
		for _, id := range ids {
			if failed[id] {
				continue
			}
			if _, err := s.RefreshMetrics(ctx, id); err != nil {
				failed[id] = true
				errs = append(errs, fmt.Errorf("case %s: %w", id, err))
				continue
			}
			n, progress = n+1, true
		}
		if !progress {
			return n, errors.Join(errs...)
		}
	}
}

// sameConfig reports whether two threshold sets are equal, compared as
// their JSON as stored.
func sameConfig(a, b charting.MetricsConfig) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}
