package storetest

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

// metricsCohort is three cases charted through the Store, closed and
// signed, whose metrics the tests below know by hand:
//
//	case  month    surgeon perfusionist bypass   lab Hct                 MAP < 40
//	A     2026-01  S1      P1           90 min   20                      6 min (samples)
//	B     2026-01  S2      P1           120 min  24                      —
//	C     2026-02  S1      P2           60 min   18, corrected to 22     —
type metricsCohort struct {
	s       *store.Store
	a, b, c uuid.UUID
	hctC    uuid.UUID // the entry corrected after closing
	base    time.Time // when the cohort's bypass runs began
}

func newMetricsCohort(t *testing.T, h *Harness) *metricsCohort {
	s, _, clk := newStore(t, h)
	base := clk.now().Add(-3 * time.Hour)
	co := &metricsCohort{s: s, base: base}
	co.a, _ = metricsCase(t, s, base, time.Date(2026, 1, 10, 8, 0, 0, 0, time.UTC), "S1", "P1", 90, 20, true)
	co.b, _ = metricsCase(t, s, base, time.Date(2026, 1, 20, 8, 0, 0, 0, time.UTC), "S2", "P1", 120, 24, false)
	co.c, co.hctC = metricsCase(t, s, base, time.Date(2026, 2, 3, 8, 0, 0, 0, time.UTC), "S1", "P2", 60, 18, false)
	return co
}

// metricsCase stores a closed case scheduled at start whose bypass began at
// base and lasted cpb minutes, with one haematocrit and, with mapLow, an
// hour of MAP dipping to 35 mmHg; it returns the case and lab entry ids.
func metricsCase(t *testing.T, s *store.Store, base, start time.Time, surgeon, perf string, cpb int, hct float64, mapLow bool) (uuid.UUID, uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	d := sampleDetails()
	d.Team.Surgeon.StaffID = surgeon
	d.Team.Perfusionists = []charting.StaffMember{{StaffID: perf}}
	c, err := s.CreateCase(ctx, actor, store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: "OR-1", ScheduledStart: start, Details: d})
	if err != nil {
		t.Fatalf("create case: %v", err)
	}
	record(t, s, eventEntry(c.ID, base, charting.EventBypassOn))
	record(t, s, eventEntry(c.ID, base.Add(time.Duration(cpb)*time.Minute), charting.EventBypassOff))
	lab := record(t, s, charting.Entry{ID: uuid.New(), CaseID: c.ID, OccurredAt: base.Add(10 * time.Minute),
		Detail: charting.EntryDetail{LabResult: &charting.LabResult{Analyte: "hct", Value: hct, Unit: "%"}}})
	if mapLow {
		// MAP once a minute for the first hour: 35 at minutes 20–25, else 65.
		m := charting.Series{Channel: "map"}
		for i := range 60 {
			m.TimesMs = append(m.TimesMs, base.Add(time.Duration(i)*time.Minute).UnixMilli())
			v := 65.0
			if i >= 20 && i <= 25 {
				v = 35
			}
			m.Values = append(m.Values, v)
		}
		appendOne(t, s, &charting.SampleBatch{CaseID: c.ID, SourceID: "monitor", Seq: 1, Series: []charting.Series{m}})
	}
	if _, err := s.CloseCase(ctx, actor, c.ID); err != nil {
		t.Fatalf("close: %v", err)
	}
	return c.ID, lab.ID
}

func metricValue(t *testing.T, r *store.CaseMetricsRow, name string) float64 {
	t.Helper()
	v, ok := r.Metrics.Values[name]
	if !ok {
		t.Fatalf("case metrics lack %s", name)
	}
	return v
}

// testMetricsLifecycle: metrics appear on close, follow corrections,
// signatures and addenda, and carry the definitions version.
func testMetricsLifecycle(t *testing.T, h *Harness) {
	co := newMetricsCohort(t, h)
	s, ctx := co.s, context.Background()
	mb, err := store.MetricsOf(s.Backend())
	if err != nil {
		t.Fatal(err)
	}
	row, err := mb.GetCaseMetrics(ctx, co.c)
	if err != nil {
		t.Fatalf("metrics after close: %v", err)
	}
	if got := metricValue(t, row, "nadir_hct_pct"); got != 18 {
		t.Fatalf("nadir Hct after close = %v, want 18", got)
	}
	if row.Metrics.Version != charting.MetricDefinitionsVersion || row.Month() != "2026-02" || row.Surgeon != "S1" || row.Perfusionist != "P2" {
		t.Fatalf("row %+v", row)
	}
	fix := charting.Entry{OccurredAt: row.Metrics.BypassStart.Add(10 * time.Minute),
		Detail: charting.EntryDetail{LabResult: &charting.LabResult{Analyte: "hct", Value: 22, Unit: "%"}}}
	if _, _, err := s.CorrectEntry(ctx, reviewer, store.Correction{CaseID: co.c, EntryID: uuid.New(), Supersedes: co.hctC,
		Reason: "transcription", Replacement: &fix}); err != nil {
		t.Fatalf("correct: %v", err)
	}
	row, _ = mb.GetCaseMetrics(ctx, co.c)
	if got := metricValue(t, row, "nadir_hct_pct"); got != 22 {
		t.Fatalf("nadir Hct after correction = %v, want 22", got)
	}
	if _, _, _, err := s.SignCase(ctx, actor, co.c, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "P P"}); err != nil {
		t.Fatalf("sign: %v", err)
	}
	if _, _, err := s.AddAddendum(ctx, actor, co.c, uuid.New(), "late note", "forgot"); err != nil {
		t.Fatalf("addendum: %v", err)
	}
	c, _ := s.GetCase(ctx, co.c)
	row, _ = mb.GetCaseMetrics(ctx, co.c)
	if row.Status != charting.StatusSigned || row.CoversSeq != c.Head.Seq {
		t.Fatalf("after sign and addendum: status %s covers %d, head %d", row.Status, row.CoversSeq, c.Head.Seq)
	}
	// A row from an older record state never replaces a newer one.
	old := *row
	old.CoversSeq--
	old.Metrics.Values = map[string]float64{"nadir_hct_pct": 1}
	if err := mb.PutCaseMetrics(ctx, &old); err != nil {
		t.Fatalf("put older: %v", err)
	}
	if got, _ := s.CaseMetrics(ctx, co.c); metricValue(t, got, "nadir_hct_pct") != 22 {
		t.Fatal("an older computation replaced a newer one")
	}
	// From samples: MAP 35 for minutes 20–25 = 6 minutes below 40.
	a, err := s.CaseMetrics(ctx, co.a)
	if err != nil || metricValue(t, a, "minutes_map_below_40") != 6 || metricValue(t, a, "cpb_minutes") != 90 {
		t.Fatalf("case A: %v %+v", err, a)
	}
	// A case being charted has no metrics yet.
	open := createCase(t, s, "OR-9")
	if _, err := s.CaseMetrics(ctx, open.ID); !errorsIsPrecondition(err) {
		t.Fatalf("metrics of a planned case: %v, want failed precondition", err)
	}
}

func errorsIsPrecondition(err error) bool {
	var pe *charting.PreconditionError
	return errors.As(err, &pe)
}

func ids(rows []store.CaseMetricsRow) []uuid.UUID {
	out := make([]uuid.UUID, len(rows))
	for i, r := range rows {
		out[i] = r.CaseID
	}
	return out
}

// testMetricsQuery: attribute and metric filters, sort and pages.
func testMetricsQuery(t *testing.T, h *Harness) {
	co := newMetricsCohort(t, h)
	s, ctx := co.s, context.Background()
	byID := func(x ...uuid.UUID) []uuid.UUID {
		return slices.SortedFunc(slices.Values(x), func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	}
	tests := []struct {
		name string
		q    store.MetricsQuery
		want []uuid.UUID
	}{
		{"Hct below 21", store.MetricsQuery{Conditions: []store.MetricCondition{cond("nadir_hct_pct", store.OpLess, 21)}}, []uuid.UUID{co.a, co.c}},
		{"three metric filters", store.MetricsQuery{Conditions: []store.MetricCondition{
			cond("cpb_minutes", store.OpGreaterEqual, 90), cond("nadir_hct_pct", store.OpLess, 25), cond("transfused", store.OpEqual, 0)},
			SortMetric: "cpb_minutes"}, []uuid.UUID{co.a, co.b}},
		{"surgeon, newest first", store.MetricsQuery{Surgeon: "S1", Descending: true}, []uuid.UUID{co.c, co.a}},
		{"February", store.MetricsQuery{From: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}, []uuid.UUID{co.c}},
		{"perfusionist and a metric", store.MetricsQuery{Perfusionist: "P1", Conditions: []store.MetricCondition{cond("cpb_minutes", store.OpGreater, 100)}}, []uuid.UUID{co.b}},
		{"sort by CPB time descending, second page", store.MetricsQuery{SortMetric: "cpb_minutes", Descending: true, Offset: 1, Limit: 2}, []uuid.UUID{co.a, co.c}},
		{"missing metric sorts last", store.MetricsQuery{SortMetric: "minutes_map_below_40"}, append([]uuid.UUID{co.a}, byID(co.b, co.c)...)},
		{"missing metric never matches", store.MetricsQuery{Conditions: []store.MetricCondition{cond("minutes_map_below_40", store.OpGreaterEqual, 0)}}, []uuid.UUID{co.a}},
		{"site and room and kind", store.MetricsQuery{Site: "MAIN", Room: "OR-1", Kind: charting.KindECMO}, []uuid.UUID{}},
	}
	for _, tc := range tests {
		rows, err := s.QueryCaseMetrics(ctx, tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := ids(rows); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	bad := []store.MetricsQuery{
		{Conditions: []store.MetricCondition{cond("nadir_hct_pct", "like", 1)}},
		{Conditions: []store.MetricCondition{cond("x; DROP TABLE cases", store.OpLess, 1)}},
		{Conditions: []store.MetricCondition{cond("nadir_hct_pct", store.OpLess, math.NaN())}},
		{From: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)},
	}
	for i, q := range bad {
		var inv *charting.InvalidError
		if _, err := s.QueryCaseMetrics(ctx, q); !errors.As(err, &inv) {
			t.Errorf("bad query %d: %v, want invalid argument", i, err)
		}
	}
}

// testMetricsAggregate: statistics per group, worked by hand.
func testMetricsAggregate(t *testing.T, h *Harness) {
	co := newMetricsCohort(t, h)
	s, ctx := co.s, context.Background()
	got, err := s.AggregateCaseMetrics(ctx, store.MetricsQuery{}, store.GroupMonth, []string{"cpb_minutes", "nadir_hct_pct"})
	if err != nil {
		t.Fatalf("aggregate: %v", err)
	}
	want := []store.MetricAggregate{
		// January CPB 90, 120: mean 105; quartiles 90 + 0.25·30 = 97.5 and 90 + 0.75·30 = 112.5.
		{Group: "2026-01", Metric: "cpb_minutes", Count: 2, Mean: 105, Median: 105, P25: 97.5, P75: 112.5, Min: 90, Max: 120},
		// January Hct 20, 24: mean 22, p25 21, p75 23.
		{Group: "2026-01", Metric: "nadir_hct_pct", Count: 2, Mean: 22, Median: 22, P25: 21, P75: 23, Min: 20, Max: 24},
		{Group: "2026-02", Metric: "cpb_minutes", Count: 1, Mean: 60, Median: 60, P25: 60, P75: 60, Min: 60, Max: 60},
		{Group: "2026-02", Metric: "nadir_hct_pct", Count: 1, Mean: 18, Median: 18, P25: 18, P75: 18, Min: 18, Max: 18},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("by month:\n got %+v\nwant %+v", got, want)
	}
	// Surgeon S1 (A 90, C 60) with a filter leaving A and C: CPB 60, 90.
	got, err = s.AggregateCaseMetrics(ctx, store.MetricsQuery{Conditions: []store.MetricCondition{cond("nadir_hct_pct", store.OpLess, 21)}},
		store.GroupSurgeon, []string{"cpb_minutes"})
	want = []store.MetricAggregate{{Group: "S1", Metric: "cpb_minutes", Count: 2, Mean: 75, Median: 75, P25: 67.5, P75: 82.5, Min: 60, Max: 90}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("by surgeon: %v\n got %+v\nwant %+v", err, got, want)
	}
	var inv *charting.InvalidError
	if _, err := s.AggregateCaseMetrics(ctx, store.MetricsQuery{}, "weekday", []string{"cpb_minutes"}); !errors.As(err, &inv) {
		t.Fatalf("unknown grouping: %v", err)
	}
}

func cond(metric string, op store.CompareOp, v float64) store.MetricCondition {
	return store.MetricCondition{Metric: metric, Op: op, Value: v}
}

// testMetricsRepair: cases whose metrics are missing (an archive import, a
// refresh that failed after its write) are found and recomputed.
func testMetricsRepair(t *testing.T, h *Harness) {
	co := newMetricsCohort(t, h)
	s, ctx := co.s, context.Background()
	if n, err := s.RefreshStaleMetrics(ctx); err != nil || n != 0 {
		t.Fatalf("nothing stale: refreshed %d, %v", n, err)
	}
	for _, id := range []uuid.UUID{co.a, co.c} {
		if err := h.Exec(t, s.Backend(), `DELETE FROM case_metrics WHERE case_id = $1`, idArg(s.Backend(), id)); err != nil {
			t.Fatalf("delete metrics: %v", err)
		}
	}
	createCase(t, s, "OR-9") // planned: never stale
	if n, err := s.RefreshStaleMetrics(ctx); err != nil || n != 2 {
		t.Fatalf("refreshed %d, %v; want 2", n, err)
	}
	rows, err := s.QueryCaseMetrics(ctx, store.MetricsQuery{Conditions: []store.MetricCondition{cond("cpb_minutes", store.OpGreater, 0)}})
	if err != nil || len(rows) != 3 {
		t.Fatalf("after repair: %v, %d cases with metrics, want 3", err, len(rows))
	}
	// New thresholds make every row stale: case A's MAP (35 for 6 minutes,
	// else 65) is below 70 for all of its 60 minutes that lie in full-flow
	// bypass: without pump flow, the minutes rule starts it 5 minutes after
	// bypass_on, so 55.
	cfg := charting.DefaultMetricsConfig()
	cfg.MAPThresholds = []float64{40, 70}
	s2 := store.New(s.Backend(), store.Config{Metrics: &cfg})
	if n, err := s2.RefreshStaleMetrics(ctx); err != nil || n != 3 {
		t.Fatalf("after a threshold change: refreshed %d, %v; want 3", n, err)
	}
	a, err := s2.CaseMetrics(ctx, co.a)
	if err != nil || metricValue(t, a, "minutes_map_below_70") != 55 || a.Metrics.Config.MAPThresholds[1] != 70 {
		t.Fatalf("case A with new thresholds: %v %+v", err, a)
	}
	if n, err := s2.RefreshStaleMetrics(ctx); err != nil || n != 0 {
		t.Fatalf("second run: refreshed %d, %v; want 0", n, err)
	}
}

// testMetricsUpgrade: metrics stored under an older definitions version
// (here version 1, which measured MAP over the whole of bypass and had no
// full-flow window) are stale after an upgrade, found by
// RefreshStaleMetrics (which perfusiond runs in the background at start)
// and recomputed with the current definitions; CaseMetrics recomputes them
// on read as well.
func testMetricsUpgrade(t *testing.T, h *Harness) {
	co := newMetricsCohort(t, h)
	s, ctx := co.s, context.Background()
	mb, err := store.MetricsOf(s.Backend())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []uuid.UUID{co.a, co.b} {
		row, err := mb.GetCaseMetrics(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		old := *row
		old.Metrics.Version = 1
		old.Metrics.Runs = nil
		old.Metrics.Values = map[string]float64{"cpb_minutes": row.Metrics.Values["cpb_minutes"], "minutes_map_below_40": 99}
		if err := mb.PutCaseMetrics(ctx, &old); err != nil {
			t.Fatalf("store version-1 metrics: %v", err)
		}
	}
	if n, err := s.RefreshStaleMetrics(ctx); err != nil || n != 2 {
		t.Fatalf("after an upgrade: refreshed %d, %v; want 2", n, err)
	}
	a, err := mb.GetCaseMetrics(ctx, co.a)
	if err != nil {
		t.Fatal(err)
	}
	// Case A: bypass 90 minutes without pump flow, so the minutes rule
	// gives full flow from 5 to 80 (75 minutes); its MAP dip (minutes
	// 20–25) lies inside.
	if a.Metrics.Version != charting.MetricDefinitionsVersion || metricValue(t, a, "minutes_map_below_40") != 6 ||
		metricValue(t, a, "full_flow_minutes") != 75 || metricValue(t, a, "full_flow_window_source") != 3 ||
		len(a.Metrics.Runs) != 1 || a.Metrics.Runs[0].FromSource != charting.WindowMinutesRule {
		t.Fatalf("case A after the upgrade: %+v", a.Metrics)
	}
	if n, err := s.RefreshStaleMetrics(ctx); err != nil || n != 0 {
		t.Fatalf("second run: refreshed %d, %v; want 0", n, err)
	}
	// A row of an older version is recomputed on read, too.
	row, _ := mb.GetCaseMetrics(ctx, co.c)
	row.Metrics.Version = 1
	if err := mb.PutCaseMetrics(ctx, row); err != nil {
		t.Fatal(err)
	}
	if c, err := s.CaseMetrics(ctx, co.c); err != nil || c.Metrics.Version != charting.MetricDefinitionsVersion {
		t.Fatalf("read of version-1 metrics: %v, %+v", err, c)
	}
}

// idArg passes a case id as each backend stores it.
func idArg(b store.Backend, id uuid.UUID) any {
	if b.Name() == "sqlite" {
		return id.String()
	}
	return id
}

// testMetricsKeyset pages through a cohort with ties and missing values by
// key, in every order and several page sizes, and must meet every case
// exactly once, in the order of the unpaged query.
func testMetricsKeyset(t *testing.T, h *Harness) {
	co := newMetricsCohort(t, h)
	s, ctx := co.s, context.Background()
	base := time.Date(2026, 2, 10, 8, 0, 0, 0, time.UTC)
	// Ties on cpb_minutes (90 ×2 more, 60 once more) and on scheduled
	// start; MAP data (hence minutes_map_below_40) in some cases only.
	for i, cpb := range []int{90, 60, 90, 30, 120} {
		start := base.Add(time.Duration(i/2) * 24 * time.Hour)
		metricsCase(t, s, co.base, start, "S3", "P3", cpb, 22, i%2 == 0)
	}
	for _, sort := range []string{"", "cpb_minutes", "minutes_map_below_40"} {
		for _, desc := range []bool{false, true} {
			all, err := s.QueryCaseMetrics(ctx, store.MetricsQuery{SortMetric: sort, Descending: desc, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 8 {
				t.Fatalf("%d cases, want 8", len(all))
			}
			want := ids(all)
			for _, size := range []int{1, 2, 3} {
				q := store.MetricsQuery{SortMetric: sort, Descending: desc, Limit: size}
				var got []uuid.UUID
				for range 10 {
					rows, err := s.QueryCaseMetrics(ctx, q)
					if err != nil {
						t.Fatalf("sort %q desc %v: page after %+v: %v", sort, desc, q.After, err)
					}
					got = append(got, ids(rows)...)
					if len(rows) < size {
						break
					}
					q.After = store.CursorOf(&rows[len(rows)-1], q)
				}
				if !slices.Equal(got, want) {
					t.Errorf("sort %q desc %v, pages of %d: got %v, want %v", sort, desc, size, got, want)
				}
			}
		}
	}
}
