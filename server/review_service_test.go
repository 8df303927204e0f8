package server_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/charting/deid"
	"perfusion/server"
	"perfusion/store"
)

// exportKey is the test deployment's secret; it must never reach a log.
var exportKey = []byte("review-test-export-key-0123456789abcdef")

// identifiers of one synthetic patient, every one of which must stay out
// of a de-identified extract.
type identifiers struct {
	mrn, family, given, dob, encounter, serial, lot, udi, note, comment, surgeonName, site, room, start string
}

// seedReviewCases charts n cases through the store, each with its own
// identifiers, events and a lab, then closes and signs them. Case i has
// bypass 60+i minutes, lab Hct 18+i%10, surgeon S<i%3>, and starts in
// January or February 2026.
func seedReviewCases(t *testing.T, s *store.Store, n int) ([]uuid.UUID, []identifiers) {
	t.Helper()
	ctx := context.Background()
	base := time.Now().UTC().Add(-6 * time.Hour).Truncate(time.Second)
	var ids []uuid.UUID
	var idents []identifiers
	for i := range n {
		id := identifiers{
			mrn: fmt.Sprintf("MRN%07d", 4400000+i), family: fmt.Sprintf("Familyq%03d", i), given: fmt.Sprintf("Givenx%03d", i),
			dob: fmt.Sprintf("19%02d-%02d-%02d", 20+i%70, 1+i%12, 1+i%28), encounter: fmt.Sprintf("ENCOUNTER-%05d", i),
			serial: fmt.Sprintf("SN-OXY-%06d", 700000+i), lot: fmt.Sprintf("LOTZ%05d", i), udi: fmt.Sprintf("(01)0899%08d", i),
			note: fmt.Sprintf("Notetext%03d patient anxious", i), comment: fmt.Sprintf("Commentw%03d", i),
			surgeonName: fmt.Sprintf("Drname%03d", i), site: fmt.Sprintf("Sitek%03d", i), room: fmt.Sprintf("Roomj%03d", i),
		}
		start := time.Date(2026, time.Month(1+i%2), 1+i%27, 7, 30, 0, 0, time.UTC)
		id.start = start.Format("2006-01-02")
		d := charting.Details{
			Patient: charting.Patient{MRN: id.mrn, MRNAssigningAuthority: "HOSP", FamilyName: id.family, GivenName: id.given,
				BirthDate: id.dob, Sex: "male", HeightCm: 175, WeightKg: 80, Allergies: []string{"Allergyp" + id.family}},
			Team: charting.Team{Surgeon: charting.StaffMember{StaffID: fmt.Sprintf("S%d", i%3), DisplayName: id.surgeonName},
				Perfusionists: []charting.StaffMember{{StaffID: "P1", DisplayName: "Perfname" + id.family}}},
			Procedure: charting.Procedure{Description: "CABG for " + id.family, EncounterID: id.encounter},
			Circuit: charting.Circuit{Oxygenator: charting.Component{Model: id.serial, Lot: id.lot, UDI: id.udi},
				ArterialFilter: charting.Component{Model: "Filtermodel" + id.lot}},
			Prime: charting.Prime{Components: []charting.PrimeComponent{{Name: "Plasma-Lyte A", VolumeML: 1400}}, RAPVolumeML: 300},
		}
		c, err := s.CreateCase(ctx, perfusionist, store.NewCase{Kind: charting.KindCPB, Site: id.site, Room: id.room, ScheduledStart: start, Details: d})
		if err != nil {
			t.Fatalf("create case %d: %v", i, err)
		}
		rec := func(at time.Time, det charting.EntryDetail) {
			if _, _, err := s.RecordEntry(ctx, perfusionist, charting.Entry{ID: uuid.New(), CaseID: c.ID, OccurredAt: at, Detail: det}); err != nil {
				t.Fatalf("record: %v", err)
			}
		}
		rec(base, charting.EntryDetail{Event: &charting.Event{Type: "bypass_on", Comment: id.comment}})
		rec(base.Add(time.Duration(60+i)*time.Minute), charting.EntryDetail{Event: &charting.Event{Type: "bypass_off"}})
		rec(base.Add(10*time.Minute), charting.EntryDetail{LabResult: &charting.LabResult{Analyte: "hct", Value: float64(18 + i%10), Unit: "%", Device: id.serial}})
		rec(base.Add(11*time.Minute), charting.EntryDetail{Note: &charting.Note{Text: id.note}})
		if _, err := s.CloseCase(ctx, perfusionist, c.ID); err != nil {
			t.Fatalf("close: %v", err)
		}
		if _, _, _, err := s.SignCase(ctx, perfusionist, c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: id.surgeonName}); err != nil {
			t.Fatalf("sign: %v", err)
		}
		if _, _, err := s.AddAddendum(ctx, perfusionist, c.ID, uuid.New(), "Addendumtext "+id.family, "late "+id.given); err != nil {
			t.Fatalf("addendum: %v", err)
		}
		ids, idents = append(ids, c.ID), append(idents, id)
	}
	return ids, idents
}

func withExportKey(c *server.Config) { c.ExportKey = exportKey }

func TestReviewQueryAndAggregate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b, withExportKey)
		review := pb.NewReviewServiceClient(e.conn)
		ids, _ := seedReviewCases(t, e.store, 12)
		ctx := as(reviewer)
		// Hct 18+i%10 < 21 → i = 0, 1, 2, 10, 11; CPB 60+i ≥ 61 drops i = 0;
		// nothing was transfused; January (even i) keeps 2 and 10.
		filter := &pb.CohortFilter{
			ScheduledFrom: timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
			ScheduledTo:   timestamppb.New(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)),
			MetricFilters: []*pb.MetricFilter{
				{Metric: "nadir_hct_pct", Comparison: pb.Comparison_COMPARISON_LESS, Value: 21},
				{Metric: "cpb_minutes", Comparison: pb.Comparison_COMPARISON_GREATER_OR_EQUAL, Value: 61},
				{Metric: "transfused", Comparison: pb.Comparison_COMPARISON_EQUAL, Value: 0},
			},
		}
		var got []string
		tok := ""
		for page := 0; ; page++ {
			resp, err := review.QueryCases(ctx, &pb.QueryCasesRequest{Filter: filter, SortBy: "cpb_minutes", Descending: true, PageSize: 1, PageToken: tok})
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			for _, c := range resp.GetCases() {
				got = append(got, c.GetCaseId())
				if len(c.GetMetrics()) < 10 {
					t.Fatalf("case has %d metrics", len(c.GetMetrics()))
				}
			}
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
			if page > 5 {
				t.Fatal("pages do not end")
			}
		}
		want := []string{ids[10].String(), ids[2].String()} // CPB 70 then 62
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("query: got %v, want %v", got, want)
		}
		// A token only works with its own query.
		first, _ := review.QueryCases(ctx, &pb.QueryCasesRequest{Filter: filter, PageSize: 1})
		_, err := review.QueryCases(ctx, &pb.QueryCasesRequest{PageSize: 1, PageToken: first.GetNextPageToken()})
		wantFieldViolation(t, "token of another query", err, "page_token")

		agg, err := review.AggregateMetrics(ctx, &pb.AggregateMetricsRequest{GroupBy: pb.GroupBy_GROUP_BY_MONTH, Metrics: []string{"cpb_minutes"}})
		if err != nil || len(agg.GetStatistics()) != 2 {
			t.Fatalf("aggregate: %v %v", err, agg)
		}
		// January: i = 0,2,…,10 → CPB 60,62,…,70: mean 65, median 65, p25 62.5, p75 67.5.
		jan := agg.GetStatistics()[0]
		if jan.GetGroup() != "2026-01" || jan.GetCount() != 6 || jan.GetMean() != 65 || jan.GetMedian() != 65 ||
			jan.GetP25() != 62.5 || jan.GetP75() != 67.5 || jan.GetMin() != 60 || jan.GetMax() != 70 {
			t.Fatalf("January: %v", jan)
		}

		m, err := review.GetCaseMetrics(ctx, &pb.GetCaseMetricsRequest{CaseId: ids[3].String()})
		if err != nil || m.GetCase().GetMetrics()["cpb_minutes"] != 63 || m.GetDefinitionsVersion() != charting.MetricDefinitionsVersion ||
			m.GetThresholds().GetDo2IThreshold() != 280 || len(m.GetDefinitions()) < 30 || m.GetBsaFormula() != "mosteller" {
			t.Fatalf("get case metrics: %v %v", err, m)
		}
		// Bypass 63 minutes without pump flow: full flow by the minutes
		// rule, 5 minutes after bypass on to 10 before off.
		runs := m.GetBypassRuns()
		if len(runs) != 1 || !runs[0].GetCharted() || runs[0].GetFromSource() != pb.FullFlowSource_FULL_FLOW_SOURCE_MINUTES_RULE ||
			runs[0].GetToSource() != pb.FullFlowSource_FULL_FLOW_SOURCE_MINUTES_RULE || runs[0].GetFullFlowMinutes() != 48 ||
			runs[0].GetFullFlowTo().AsTime().Sub(runs[0].GetFullFlowFrom().AsTime()) != 48*time.Minute ||
			m.GetCase().GetMetrics()["full_flow_minutes"] != 48 || m.GetCase().GetMetrics()["full_flow_window_source"] != 3 ||
			m.GetThresholds().GetFullFlowPct() != 80 || m.GetThresholds().GetWeaningBeforeOffMinutes() != 10 {
			t.Fatalf("full-flow window: %v %v %v", runs, m.GetCase().GetMetrics(), m.GetThresholds())
		}
		windows := map[string]string{}
		for _, d := range m.GetDefinitions() {
			windows[d.GetName()] = d.GetWindow()
		}
		if windows["nadir_do2i"] != "full_flow" || windows["minutes_map_below_40"] != "full_flow" || windows["nadir_hct_pct"] != "bypass" ||
			windows["cpb_minutes"] != "bypass" || windows["transfused"] != "case" {
			t.Fatalf("definition windows: %v", windows)
		}
		e.assertNoPHI()
	})
}

func TestReviewBadInput(t *testing.T) {
	e := start(t, sqliteBackend(t), withExportKey)
	review := pb.NewReviewServiceClient(e.conn)
	ctx := as(reviewer)
	mf := func(metric string, cmp pb.Comparison) *pb.QueryCasesRequest {
		return &pb.QueryCasesRequest{Filter: &pb.CohortFilter{MetricFilters: []*pb.MetricFilter{{Metric: metric, Comparison: cmp, Value: 1}}}}
	}
	_, err := review.QueryCases(ctx, mf("nadir_hct", pb.Comparison_COMPARISON_LESS))
	wantFieldViolation(t, "unknown metric", err, "filter.metric_filters[0].metric")
	_, err = review.QueryCases(ctx, mf("nadir_hct_pct", pb.Comparison_COMPARISON_UNSPECIFIED))
	wantFieldViolation(t, "no comparison", err, "filter.metric_filters[0].comparison")
	_, err = review.QueryCases(ctx, mf("nadir_hct_pct", pb.Comparison(99)))
	wantFieldViolation(t, "unknown comparison", err, "filter.metric_filters[0].comparison")
	_, err = review.QueryCases(ctx, &pb.QueryCasesRequest{Filter: &pb.CohortFilter{
		ScheduledFrom: timestamppb.New(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)), ScheduledTo: timestamppb.New(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))}})
	wantFieldViolation(t, "range backwards", err, "filter.scheduled_to")
	_, err = review.QueryCases(ctx, &pb.QueryCasesRequest{SortBy: "drop table"})
	wantFieldViolation(t, "sort by unknown", err, "sort_by")
	_, err = review.QueryCases(ctx, &pb.QueryCasesRequest{PageToken: "garbage"})
	wantFieldViolation(t, "bad token", err, "page_token")
	_, err = review.AggregateMetrics(ctx, &pb.AggregateMetricsRequest{})
	wantFieldViolation(t, "no metrics", err, "metrics")
	_, err = review.AggregateMetrics(ctx, &pb.AggregateMetricsRequest{Metrics: []string{"cpb_minutes"}, GroupBy: pb.GroupBy(42)})
	wantFieldViolation(t, "unknown grouping", err, "group_by")
	_, err = review.GetCaseMetrics(ctx, &pb.GetCaseMetricsRequest{CaseId: "nope"})
	wantFieldViolation(t, "bad id", err, "case_id")
	_, err = review.GetCaseMetrics(ctx, &pb.GetCaseMetricsRequest{CaseId: uuid.NewString()})
	wantCode(t, "unknown case", err, codes.NotFound)
	open := e.createCase("OR-1")
	_, err = review.GetCaseMetrics(ctx, &pb.GetCaseMetricsRequest{CaseId: open.GetCaseId()})
	wantCode(t, "metrics of a planned case", err, codes.FailedPrecondition)
	stream, err := review.ExportCohort(ctx, &pb.ExportCohortRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	wantFieldViolation(t, "export without format", err, "format")

	// Without a key, no extract.
	nokey := pb.NewReviewServiceClient(start(t, sqliteBackend(t)).conn)
	stream, err = nokey.ExportCohort(ctx, &pb.ExportCohortRequest{Format: pb.ExportFormat_EXPORT_FORMAT_CSV})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, "export without a key", err, codes.FailedPrecondition)
}

func exportAll(t *testing.T, review pb.ReviewServiceClient, format pb.ExportFormat) []byte {
	t.Helper()
	stream, err := review.ExportCohort(as(reviewer), &pb.ExportCohortRequest{Format: format})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	var out bytes.Buffer
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return out.Bytes()
		}
		if err != nil {
			t.Fatalf("export: %v", err)
		}
		out.Write(chunk.GetData())
	}
}

// TestExportCohortDeidentified seeds cases with known identifiers, exports
// them as CSV and NDJSON (more cases than one export page), and scans the
// whole extract for every identifier: none may appear. Pseudonyms are
// stable across extracts, and the export key never reaches the log.
func TestExportCohortDeidentified(t *testing.T) {
	e := start(t, sqliteBackend(t), withExportKey)
	review := pb.NewReviewServiceClient(e.conn)
	const n = 230 // more than one export page of 200
	ids, idents := seedReviewCases(t, e.store, n)
	csvOut := exportAll(t, review, pb.ExportFormat_EXPORT_FORMAT_CSV)
	ndjson := exportAll(t, review, pb.ExportFormat_EXPORT_FORMAT_NDJSON)
	both := string(csvOut) + string(ndjson)
	for i, id := range idents {
		for _, s := range []string{id.mrn, id.family, id.given, id.dob, id.encounter, id.serial, id.lot, id.udi, id.note,
			id.comment, id.surgeonName, id.site, id.room, id.start, ids[i].String()} {
			if strings.Contains(both, s) {
				t.Fatalf("extract contains identifier %q of case %d", s, i)
			}
		}
	}
	for _, s := range []string{"Notetext", "Commentw", "Addendumtext", "Allergyp", "Filtermodel", "Perfname", "CABG", "T07:30"} {
		if strings.Contains(both, s) {
			t.Fatalf("extract contains %q", s)
		}
	}
	rows, err := csv.NewReader(bytes.NewReader(csvOut)).ReadAll()
	if err != nil || len(rows) != n+1 {
		t.Fatalf("CSV: %v, %d rows, want %d", err, len(rows), n+1)
	}
	lines := strings.Split(strings.TrimSpace(string(ndjson)), "\n")
	if len(lines) != n {
		t.Fatalf("NDJSON: %d lines, want %d", len(lines), n)
	}
	type record struct {
		Case    string             `json:"case"`
		Year    int                `json:"year"`
		Age     string             `json:"age"`
		Metrics map[string]float64 `json:"metrics"`
		Events  []struct {
			Type   string  `json:"type"`
			Minute float64 `json:"minute"`
		} `json:"events"`
	}
	byPseudonym := map[string]record{}
	for _, l := range lines {
		var r record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		byPseudonym[r.Case] = r
	}
	// Only the key holder can link a record to its case.
	p, _ := deid.NewPseudonymizer(exportKey)
	rec, ok := byPseudonym[p.Pseudonym(&charting.Case{ID: ids[5]})]
	// Case 5: bypass 65 minutes; events as minutes from bypass start; born
	// 1925-06-06, so 100 at the case: 90+.
	if !ok || rec.Year != 2026 || rec.Age != "90+" || rec.Metrics["cpb_minutes"] != 65 || len(rec.Events) != 2 ||
		rec.Events[0].Minute != 0 || rec.Events[1].Minute != 65 {
		t.Fatalf("record of case 5: %v %+v", ok, rec)
	}
	// Case 60 was born 1980-01-05 and operated on 2026-01-07: 46.
	if r := byPseudonym[p.Pseudonym(&charting.Case{ID: ids[60]})]; r.Age != "46" {
		t.Fatalf("age of case 60 = %q, want 46", r.Age)
	}
	again := exportAll(t, review, pb.ExportFormat_EXPORT_FORMAT_NDJSON)
	if !bytes.Equal(again, ndjson) {
		t.Fatal("a repeated extract differs: pseudonyms are not stable")
	}
	if strings.Contains(e.logs.String(), string(exportKey)) {
		t.Fatal("the export key reached the log")
	}
	e.assertNoPHI()
}

// TestCaseMetricsPopulation: with a neonate population configured, a
// 3.2 kg patient's metrics come back over the API naming the population
// and its thresholds, and its MAP threshold is a queryable metric.
func TestCaseMetricsPopulation(t *testing.T) {
	cfg := charting.DefaultMetricsConfig()
	neonate := cfg
	neonate.DO2iThreshold, neonate.MAPThresholds = 340, []float64{25}
	cfg.Populations = []charting.MetricsPopulation{{Name: "neonate", MaxWeightKg: 5, Config: neonate}}
	b := sqliteBackend(t)
	st := store.New(b, store.Config{Metrics: &cfg})
	e := start(t, b, func(c *server.Config) { c.Store = st })
	ctx := context.Background()
	d := charting.Details{Patient: charting.Patient{MRN: "N1", MRNAssigningAuthority: "HOSP", FamilyName: "Baby", GivenName: "A",
		BirthDate: "2026-11-20", Sex: "female", HeightCm: 49, WeightKg: 3.2}}
	c, err := st.CreateCase(ctx, perfusionist, store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: "OR-N", ScheduledStart: time.Now(), Details: d})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	for i, typ := range []string{"bypass_on", "bypass_off"} {
		if _, _, err := st.RecordEntry(ctx, perfusionist, charting.Entry{ID: uuid.New(), CaseID: c.ID, OccurredAt: base.Add(time.Duration(i) * time.Hour),
			Detail: charting.EntryDetail{Event: &charting.Event{Type: typ}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CloseCase(ctx, perfusionist, c.ID); err != nil {
		t.Fatal(err)
	}
	review := pb.NewReviewServiceClient(e.conn)
	m, err := review.GetCaseMetrics(as(reviewer), &pb.GetCaseMetricsRequest{CaseId: c.ID.String()})
	if err != nil || m.GetPopulation() != "neonate" || m.GetThresholds().GetDo2IThreshold() != 340 || !slices.Equal(m.GetThresholds().GetMapThresholds(), []float64{25}) {
		t.Fatalf("metrics of a 3.2 kg patient: %v %v", err, m)
	}
	_, err = review.QueryCases(as(reviewer), &pb.QueryCasesRequest{SortBy: "minutes_map_below_25"})
	if err != nil {
		t.Fatalf("a population's MAP metric is not queryable: %v", err)
	}
}
