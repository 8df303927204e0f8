package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/charting/deid"
	"perfusion/store"
)

// reviewService implements perfusionv1.ReviewService over the stored
// per-case metrics (store/metrics.go).
type reviewService struct {
	pb.UnimplementedReviewServiceServer
	h *handlers
	// pseudo names cases in extracts; nil when the server has no export
	// key, and then ExportCohort is refused.
	pseudo *deid.Pseudonymizer
}

// newReviewService builds the service; a key too short to be safe leaves
// extracts disabled rather than weak (cmd/perfusiond refuses such a key at
// start).
func newReviewService(h *handlers, key []byte) *reviewService {
	s := &reviewService{h: h}
	if len(key) > 0 {
		if p, err := deid.NewPseudonymizer(key); err == nil {
			s.pseudo = p
		} else {
			h.log.Warn("de-identified extracts disabled", "reason", err.Error())
		}
	}
	return s
}

// Page sizes of QueryCases.
const (
	defaultReviewPageSize = 50
	maxReviewPageSize     = 500
	// exportPage is how many cases an export reads and sends at a time.
	exportPage = 200
)

var (
	comparisons = map[pb.Comparison]store.CompareOp{
		pb.Comparison_COMPARISON_LESS: store.OpLess, pb.Comparison_COMPARISON_LESS_OR_EQUAL: store.OpLessEqual,
		pb.Comparison_COMPARISON_GREATER: store.OpGreater, pb.Comparison_COMPARISON_GREATER_OR_EQUAL: store.OpGreaterEqual,
		pb.Comparison_COMPARISON_EQUAL: store.OpEqual, pb.Comparison_COMPARISON_NOT_EQUAL: store.OpNotEqual,
	}
	groupings = map[pb.GroupBy]store.GroupBy{
		pb.GroupBy_GROUP_BY_UNSPECIFIED: store.GroupNone, pb.GroupBy_GROUP_BY_SURGEON: store.GroupSurgeon,
		pb.GroupBy_GROUP_BY_PERFUSIONIST: store.GroupPerfusionist, pb.GroupBy_GROUP_BY_MONTH: store.GroupMonth,
		pb.GroupBy_GROUP_BY_SITE: store.GroupSite,
	}
)

// knownMetrics returns the metric names of the server's definitions.
func (s *reviewService) knownMetrics() map[string]bool {
	known := map[string]bool{}
	for _, d := range charting.MetricDefinitions(s.h.store.MetricsConfig()) {
		known[d.Name] = true
	}
	return known
}

// metricName checks one metric name against the definitions.
func (s *reviewService) metricName(p *parser, known map[string]bool, field, name string) {
	if !known[name] {
		p.v.Add(field, "unknown metric %q; GetCaseMetrics lists the definitions", name)
	}
}

// cohortIn converts a filter. Unspecified status means closed or signed,
// which is every case with metrics.
func (s *reviewService) cohortIn(p *parser, known map[string]bool, f *pb.CohortFilter) store.MetricsQuery {
	q := store.MetricsQuery{
		From: p.time("filter.scheduled_from", f.GetScheduledFrom()), To: p.time("filter.scheduled_to", f.GetScheduledTo()),
		Site: f.GetSite(), Room: f.GetRoom(), Surgeon: f.GetSurgeon(), Perfusionist: f.GetPerfusionist(),
		Kind:   charting.Kind(caseKinds.parse(p, "filter.kind", f.GetKind())),
		Status: charting.Status(caseStatuses.parse(p, "filter.status", f.GetStatus())),
	}
	if q.Status == charting.StatusPlanned || q.Status == charting.StatusInProgress {
		p.v.Add("filter.status", "only closed and signed cases have metrics")
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		p.v.Add("filter.scheduled_to", "must be after scheduled_from")
	}
	if len(f.GetMetricFilters()) > 20 {
		p.v.Add("filter.metric_filters", "at most 20")
	}
	for i, mf := range f.GetMetricFilters() {
		field := fmt.Sprintf("filter.metric_filters[%d]", i)
		s.metricName(p, known, field+".metric", mf.GetMetric())
		op, ok := comparisons[mf.GetComparison()]
		if !ok {
			p.v.Add(field+".comparison", "required: less, less_or_equal, greater, greater_or_equal, equal or not_equal")
		}
		q.Conditions = append(q.Conditions, store.MetricCondition{Metric: mf.GetMetric(), Op: op, Value: mf.GetValue()})
	}
	return q
}

// QueryCases returns one page of matching cases with their metrics.
func (s *reviewService) QueryCases(ctx context.Context, req *pb.QueryCasesRequest) (*pb.QueryCasesResponse, error) {
	var p parser
	known := s.knownMetrics()
	q := s.cohortIn(&p, known, req.GetFilter())
	if req.GetSortBy() != "" {
		s.metricName(&p, known, "sort_by", req.GetSortBy())
	}
	for i, m := range req.GetMetrics() {
		s.metricName(&p, known, fmt.Sprintf("metrics[%d]", i), m)
	}
	q.SortMetric, q.Descending = req.GetSortBy(), req.GetDescending()
	q.Limit = p.pageSize("page_size", req.GetPageSize(), defaultReviewPageSize, maxReviewPageSize)
	fp := queryFingerprint(req)
	q.After, q.Offset = p.reviewPageToken("page_token", req.GetPageToken(), fp, q.SortMetric != "")
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	want := q.Limit
	q.Limit++ // one more tells whether another page follows
	rows, err := s.h.store.QueryCaseMetrics(ctx, q)
	if err != nil {
		return nil, s.h.fail(err)
	}
	out := &pb.QueryCasesResponse{}
	if len(rows) > want {
		rows = rows[:want]
		out.NextPageToken = encodeReviewPageToken(store.CursorOf(&rows[want-1], q), fp, q.SortMetric != "")
	}
	for i := range rows {
		out.Cases = append(out.Cases, summaryOut(&rows[i], req.GetMetrics()))
	}
	return out, nil
}

func summaryOut(r *store.CaseMetricsRow, keep []string) *pb.CaseMetricsSummary {
	out := &pb.CaseMetricsSummary{CaseId: r.CaseID.String(), Kind: caseKinds.enum(string(r.Kind)),
		Status: caseStatuses.enum(string(r.Status)), Site: r.Site, Room: r.Room, ScheduledStart: ts(r.ScheduledStart),
		Surgeon: r.Surgeon, Perfusionist: r.Perfusionist, Metrics: map[string]float64{}}
	for k, v := range r.Metrics.Values {
		if len(keep) == 0 || slices.Contains(keep, k) {
			out.Metrics[k] = v
		}
	}
	return out
}

// Review page tokens are base64url of a version byte, 8 bytes of a hash of
// the request's filter and sort (a token used with another query is
// refused instead of silently skipping rows), and where the page ended:
//
//	v2: kind (0 scheduled start, 1 metric value, 2 no value), 8 bytes
//	    (start in Unix nanoseconds, or the value's IEEE 754 bits), case id
//	v1: the offset of the next page (8 bytes) — still accepted, so a
//	    listing paged across an upgrade goes on
//
// v2 pages by key: a case closed, signed or re-computed while a reviewer
// pages can neither repeat a row nor push one off a page.
const (
	reviewTokenV1 = 1
	reviewTokenV2 = 2
)

const (
	cursorStart   = 0
	cursorValue   = 1
	cursorNoValue = 2
)

func queryFingerprint(req *pb.QueryCasesRequest) []byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.QueryCasesRequest{
		Filter: req.GetFilter(), SortBy: req.GetSortBy(), Descending: req.GetDescending()})
	h := sha256.Sum256(b)
	return h[:8]
}

func encodeReviewPageToken(c *store.MetricsCursor, fp []byte, byMetric bool) string {
	b := append([]byte{reviewTokenV2}, fp...)
	switch {
	case !byMetric:
		b = binary.BigEndian.AppendUint64(append(b, cursorStart), uint64(c.ScheduledStart.UnixNano()))
	case c.HasValue:
		b = binary.BigEndian.AppendUint64(append(b, cursorValue), math.Float64bits(c.Value))
	default:
		b = binary.BigEndian.AppendUint64(append(b, cursorNoValue), 0)
	}
	return base64.RawURLEncoding.EncodeToString(append(b, c.ID[:]...))
}

// reviewPageToken decodes a token from encodeReviewPageToken into a cursor
// (v2) or an offset (v1); "" is the first page. byMetric says whether the
// query sorts by a metric, which the token's kind must match.
func (p *parser) reviewPageToken(field, tok string, fp []byte, byMetric bool) (*store.MetricsCursor, int) {
	if tok == "" {
		return nil, 0
	}
	bad := func() (*store.MetricsCursor, int) {
		p.v.Add(field, "is not a token from a previous response to the same query")
		return nil, 0
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) == 0 {
		return bad()
	}
	switch {
	case b[0] == reviewTokenV1 && len(b) == 17 && bytes.Equal(b[9:], fp):
		off := binary.BigEndian.Uint64(b[1:9])
		if off > 1<<31 {
			return bad()
		}
		return nil, int(off)
	case b[0] == reviewTokenV2 && len(b) == 34 && bytes.Equal(b[1:9], fp):
		kind, key := b[9], binary.BigEndian.Uint64(b[10:18])
		c := &store.MetricsCursor{ID: uuid.UUID(b[18:34])}
		switch {
		case kind == cursorStart && !byMetric:
			c.ScheduledStart = time.Unix(0, int64(key)).UTC()
		case kind == cursorValue && byMetric:
			c.Value, c.HasValue = math.Float64frombits(key), true
			if math.IsNaN(c.Value) || math.IsInf(c.Value, 0) {
				return bad()
			}
		case kind == cursorNoValue && byMetric && key == 0:
		default:
			return bad()
		}
		return c, 0
	}
	return bad()
}

// AggregateMetrics summarises metrics over a cohort.
func (s *reviewService) AggregateMetrics(ctx context.Context, req *pb.AggregateMetricsRequest) (*pb.AggregateMetricsResponse, error) {
	var p parser
	known := s.knownMetrics()
	q := s.cohortIn(&p, known, req.GetFilter())
	by, ok := groupings[req.GetGroupBy()]
	if !ok {
		p.v.Add("group_by", "unknown enum value %d", int32(req.GetGroupBy()))
	}
	if n := len(req.GetMetrics()); n == 0 || n > 100 {
		p.v.Add("metrics", "name 1 to 100 metrics")
	}
	for i, m := range req.GetMetrics() {
		s.metricName(&p, known, fmt.Sprintf("metrics[%d]", i), m)
	}
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	aggs, err := s.h.store.AggregateCaseMetrics(ctx, q, by, req.GetMetrics())
	if err != nil {
		return nil, s.h.fail(err)
	}
	out := &pb.AggregateMetricsResponse{}
	for _, a := range aggs {
		out.Statistics = append(out.Statistics, &pb.MetricStatistics{Group: a.Group, Metric: a.Metric, Count: a.Count,
			Mean: a.Mean, Median: a.Median, P25: a.P25, P75: a.P75, Min: a.Min, Max: a.Max})
	}
	return out, nil
}

// GetCaseMetrics returns one case's metrics with their definitions,
// recomputing them first when they are older than the record.
func (s *reviewService) GetCaseMetrics(ctx context.Context, req *pb.GetCaseMetricsRequest) (*pb.GetCaseMetricsResponse, error) {
	var p parser
	id := p.id("case_id", req.GetCaseId(), true)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	r, err := s.h.store.CaseMetrics(ctx, id)
	if err != nil {
		return nil, s.h.fail(err)
	}
	m := r.Metrics
	out := &pb.GetCaseMetricsResponse{Case: summaryOut(r, nil), DefinitionsVersion: int32(m.Version),
		Thresholds: thresholdsOut(m.Thresholds()), Population: m.Population, NadirTempSite: m.NadirTempSite, BsaFormula: string(m.BSAFormula),
		CoversSequence: r.CoversSeq, ComputedAt: ts(r.ComputedAt)}
	for _, d := range charting.MetricDefinitions(m.Config) {
		out.Definitions = append(out.Definitions, &pb.MetricDefinition{Name: d.Name, Unit: d.Unit, Description: d.Description, Window: string(d.Window)})
	}
	for _, run := range m.Runs {
		out.BypassRuns = append(out.BypassRuns, &pb.BypassRun{On: ts(run.On), Off: ts(run.Off), Charted: run.Charted,
			FullFlowFrom: ts(run.FullFlowFrom), FullFlowTo: ts(run.FullFlowTo),
			FromSource: fullFlowSourceOut(run.FromSource), ToSource: fullFlowSourceOut(run.ToSource), FullFlowMinutes: run.FullFlowMinutes})
	}
	return out, nil
}

// fullFlowSourceOut maps how a full-flow window's end was found.
func fullFlowSourceOut(s charting.WindowSource) pb.FullFlowSource {
	switch s {
	case charting.WindowCharted:
		return pb.FullFlowSource_FULL_FLOW_SOURCE_CHARTED
	case charting.WindowFlowRule:
		return pb.FullFlowSource_FULL_FLOW_SOURCE_FLOW_RULE
	case charting.WindowMinutesRule:
		return pb.FullFlowSource_FULL_FLOW_SOURCE_MINUTES_RULE
	}
	return pb.FullFlowSource_FULL_FLOW_SOURCE_UNSPECIFIED
}

func thresholdsOut(c charting.MetricsConfig) *pb.MetricThresholds {
	return &pb.MetricThresholds{Do2IThreshold: c.DO2iThreshold, MapThresholds: c.MAPThresholds,
		MapEpisodeThreshold: c.MAPEpisodeThreshold, Svo2Threshold: c.SvO2Threshold, EpisodeMinutes: c.EpisodeMinutes,
		ArterialOutletMaxC: c.ArterialOutletMaxC, CoreMaxC: c.CoreMaxC, RewarmingMaxCPerMin: c.RewarmingMaxCPerMin,
		GradientMaxC: c.GradientMaxC, GradientWarmMaxC: c.GradientWarmMaxC, WarmFromC: c.WarmFromC,
		GlucoseMin: c.GlucoseMin, GlucoseMax: c.GlucoseMax, Pco2Min: c.PCO2Min, Pco2Max: c.PCO2Max,
		MaxHoldSeconds: c.MaxHold.Seconds(), FullFlowPct: c.FullFlowPct, FullFlowSustainMinutes: c.FullFlowSustainMinutes,
		FullFlowAfterOnMinutes: c.FullFlowAfterOnMinutes, WeaningBeforeOffMinutes: c.WeaningBeforeOffMinutes}
}

// ExportCohort streams a de-identified extract, one page of cases at a
// time, each page one chunk.
func (s *reviewService) ExportCohort(req *pb.ExportCohortRequest, stream grpc.ServerStreamingServer[pb.ExportCohortResponse]) error {
	ctx := stream.Context()
	var p parser
	known := s.knownMetrics()
	q := s.cohortIn(&p, known, req.GetFilter())
	format := req.GetFormat()
	if format != pb.ExportFormat_EXPORT_FORMAT_CSV && format != pb.ExportFormat_EXPORT_FORMAT_NDJSON {
		p.v.Add("format", "required: CSV or NDJSON")
	}
	cols := req.GetMetrics()
	for i, m := range cols {
		s.metricName(&p, known, fmt.Sprintf("metrics[%d]", i), m)
	}
	if err := p.err(); err != nil {
		return s.h.fail(err)
	}
	if s.pseudo == nil {
		return s.h.fail(charting.Preconditionf("the server has no export key: de-identified extracts are disabled"))
	}
	var keep []string
	if len(cols) > 0 {
		keep = cols
	} else {
		for _, d := range charting.MetricDefinitions(s.h.store.MetricsConfig()) {
			cols = append(cols, d.Name)
		}
	}
	var buf bytes.Buffer
	csvw := deid.NewCSVWriter(&buf, cols)
	q.SortMetric, q.Limit = "", exportPage
	for {
		rows, err := s.h.store.QueryCaseMetrics(ctx, q)
		if err != nil {
			return s.h.fail(err)
		}
		recs, err := s.records(ctx, rows, keep)
		if err != nil {
			return s.h.fail(err)
		}
		for _, rec := range recs {
			if format == pb.ExportFormat_EXPORT_FORMAT_CSV {
				err = csvw.Write(rec)
			} else {
				err = deid.WriteNDJSON(&buf, rec)
			}
			if err != nil {
				return s.h.fail(fmt.Errorf("export: encode: %w", err))
			}
		}
		// The extract's rows are de-identified, so its access record takes
		// the cases from here.
		for i := range rows {
			noteCases(ctx, rows[i].CaseID)
		}
		if len(rows) > 0 {
			if err := stream.Send(&pb.ExportCohortResponse{Data: slices.Clone(buf.Bytes()), Cases: int32(len(rows))}); err != nil {
				return err
			}
			buf.Reset()
		}
		if len(rows) < q.Limit {
			return nil
		}
		// By key, not offset: a case signed while the extract streams can
		// neither repeat a row nor push one off a page.
		q.After = store.CursorOf(&rows[len(rows)-1], q)
	}
}

// exportReaders is how many cases of a page an extract reads at once.
// Each case costs two short reads (the case, its entries) that mostly wait
// on the database, so a few in flight keep it busy; more would only take
// connections from the clinical work sharing the pool.
const exportReaders = 4

// records builds the de-identified records of a page of cases, reading up
// to exportReaders cases at once, in the page's order.
func (s *reviewService) records(ctx context.Context, rows []store.CaseMetricsRow, keep []string) ([]deid.Record, error) {
	recs := make([]deid.Record, len(rows))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(exportReaders)
	for i := range rows {
		g.Go(func() error {
			rec, err := s.record(gctx, &rows[i], keep)
			recs[i] = rec
			return err
		})
	}
	return recs, g.Wait()
}

// record reads what a de-identified record needs beyond the stored
// metrics: the patient fields it keeps (age, sex, size) and event times.
func (s *reviewService) record(ctx context.Context, r *store.CaseMetricsRow, keep []string) (deid.Record, error) {
	c, err := s.h.store.GetCase(ctx, r.CaseID)
	if err != nil {
		return deid.Record{}, err
	}
	entries, err := s.h.store.ListEntries(ctx, r.CaseID, true)
	if err != nil {
		return deid.Record{}, err
	}
	return s.pseudo.Build(c, entries, r.Metrics, keep), nil
}
