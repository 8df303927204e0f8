package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/clients/pumpsim/sim"
	"perfusion/server"
	"perfusion/store"
	"perfusion/store/postgres"
	"perfusion/store/postgres/pgtest"
)

// Review benchmark cohort size: the 10,000 signed cases, of which
// reviewSimulated go through the real path (pumpsim samples and entries,
// close, sign, metrics computed from the record) and the rest are bulk
// loaded with metrics varied from those.
const (
	reviewCohort    = 10000
	reviewSimulated = 3
)

// BenchmarkReviewCohort measures QueryCases with three metric filters and
// AggregateMetrics grouped by month over 10,000 signed cases on PostgreSQL,
// through a real gRPC connection, and reports p50 and p99 latency per call
// (target: p99 ≤ 200 ms each). Run:
//
//	PERFUSION_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -run '^$' -bench BenchmarkReviewCohort -benchtime 300x ./server/
func BenchmarkReviewCohort(b *testing.B) {
	backend := pgtest.Open(b)
	s := store.New(backend, store.Config{})
	setup := time.Now()
	var templates []charting.Metrics
	for i := range reviewSimulated {
		templates = append(templates, simulateSignedCase(b, s, uint64(i+1)))
	}
	simulated := time.Since(setup)
	bulkLoadCohort(b, backend, templates, reviewCohort-reviewSimulated)
	b.Logf("setup: %d simulated cases through the record in %s; %d bulk-loaded; total %s",
		reviewSimulated, simulated.Round(time.Millisecond), reviewCohort-reviewSimulated, time.Since(setup).Round(time.Millisecond))
	review := startReviewServer(b, s)
	rctx := as("reviewer-bench")

	query := &pb.QueryCasesRequest{Filter: &pb.CohortFilter{MetricFilters: []*pb.MetricFilter{
		{Metric: "nadir_hct_pct", Comparison: pb.Comparison_COMPARISON_LESS, Value: 24},
		{Metric: "minutes_do2i_below", Comparison: pb.Comparison_COMPARISON_GREATER, Value: 5},
		{Metric: "cpb_minutes", Comparison: pb.Comparison_COMPARISON_GREATER, Value: 90},
	}}, PageSize: 50}
	first, err := review.QueryCases(rctx, query)
	if err != nil || len(first.GetCases()) == 0 {
		b.Fatalf("query: %v (%d cases): the filters select nothing", err, len(first.GetCases()))
	}
	agg := &pb.AggregateMetricsRequest{GroupBy: pb.GroupBy_GROUP_BY_MONTH,
		Metrics: []string{"cpb_minutes", "nadir_hct_pct", "nadir_do2i", "minutes_do2i_below"}}
	if resp, err := review.AggregateMetrics(rctx, agg); err != nil || len(resp.GetStatistics()) < 4*12 {
		b.Fatalf("aggregate: %v (%d rows)", err, len(resp.GetStatistics()))
	}
	b.Run("QueryCases3Filters", func(b *testing.B) {
		timeCalls(b, func() error { _, err := review.QueryCases(rctx, query); return err })
	})
	// Paging through the whole cohort sorted by a metric, 50 cases a page,
	// starting over after the last: by key (the v2 tokens the server
	// gives), and in the same run by offset (version 1 tokens, still
	// accepted), whose deep pages make the database skip every row before.
	byMetric := &pb.QueryCasesRequest{SortBy: "cpb_minutes", Descending: true, PageSize: 50}
	b.Run("QueryCasesPagesByKey", func(b *testing.B) {
		tok := ""
		timeCalls(b, func() error {
			q := proto.Clone(byMetric).(*pb.QueryCasesRequest)
			q.PageToken = tok
			resp, err := review.QueryCases(rctx, q)
			tok = resp.GetNextPageToken()
			return err
		})
	})
	b.Run("QueryCasesPagesByOffset", func(b *testing.B) {
		off := 0
		timeCalls(b, func() error {
			q := proto.Clone(byMetric).(*pb.QueryCasesRequest)
			if off > 0 {
				q.PageToken = offsetPageToken(byMetric, off)
			}
			resp, err := review.QueryCases(rctx, q)
			off += 50
			if resp.GetNextPageToken() == "" {
				off = 0
			}
			return err
		})
	})
	b.Run("AggregateByMonth", func(b *testing.B) {
		timeCalls(b, func() error { _, err := review.AggregateMetrics(rctx, agg); return err })
	})
	// The whole cohort as a de-identified CSV, streamed: a handful of
	// exports whatever -benchtime says, since one reads every case.
	b.Run("ExportCohortCSV", func(b *testing.B) {
		const exports = 3
		var size, rows int
		start := time.Now()
		for range exports {
			size, rows = exportCohort(b, review, rctx)
		}
		per := time.Since(start) / exports
		b.ReportMetric(float64(per.Milliseconds()), "ms/export")
		b.ReportMetric(float64(rows)/per.Seconds(), "cases/s")
		b.ReportMetric(float64(size), "bytes")
		b.ReportMetric(0, "ns/op")
		if rows != reviewCohort {
			b.Fatalf("extract has %d cases, want %d", rows, reviewCohort)
		}
	})

}

// offsetPageToken makes the version 1 (offset) page token of req: version
// byte, offset, and the first 8 bytes of the SHA-256 of the request's
// filter and sort, as the server fingerprints a query.
func offsetPageToken(req *pb.QueryCasesRequest, offset int) string {
	m, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.QueryCasesRequest{
		Filter: req.GetFilter(), SortBy: req.GetSortBy(), Descending: req.GetDescending()})
	h := sha256.Sum256(m)
	tok := binary.BigEndian.AppendUint64([]byte{1}, uint64(offset))
	return base64.RawURLEncoding.EncodeToString(append(tok, h[:8]...))
}

// timeCalls runs call b.N times and reports the latency percentiles.
func timeCalls(b *testing.B, call func() error) {
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t := time.Now()
		if err := call(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

func startReviewServer(b *testing.B, s *store.Store) pb.ReviewServiceClient {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := server.New(server.Config{Store: s, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ReadinessInterval: 20 * time.Millisecond,
		ExportKey: []byte("benchmark export key, 32 bytes or more")})
	go srv.Serve(lis)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return pb.NewReviewServiceClient(conn)
}

// simulateSignedCase runs one pumpsim case through the record as a device
// gateway and a perfusionist would (sample batches of a minute per device,
// every charted entry), closes and signs it, and returns the metrics the
// store computed from the record.
func simulateSignedCase(b *testing.B, s *store.Store, seed uint64) charting.Metrics {
	ctx := context.Background()
	sm := sim.New(sim.Config{Seed: seed, HeightCm: 160 + float64(seed)*5, WeightKg: 60 + float64(seed)*8, Duration: 150 * time.Minute})
	cfg := sm.Config()
	start := time.Now().Add(-cfg.Duration - 10*time.Minute).UTC().Truncate(time.Second)
	d := charting.Details{
		Patient: charting.Patient{HeightCm: cfg.HeightCm, WeightKg: cfg.WeightKg, BSAFormula: charting.BSAMosteller},
		Team:    charting.Team{Surgeon: charting.StaffMember{StaffID: "S0"}, Perfusionists: []charting.StaffMember{{StaffID: "P0"}}},
		Prime:   charting.Prime{Components: []charting.PrimeComponent{{Name: "balanced crystalloid", VolumeML: cfg.PrimeML}}},
	}
	c, err := s.CreateCase(ctx, "perfusionist-bench", store.NewCase{Kind: charting.KindCPB, Site: "SIM", Room: "OR-1", ScheduledStart: start, Details: d})
	if err != nil {
		b.Fatal(err)
	}
	seq := map[sim.Source]int64{}
	pending := map[sim.Source]map[string]*charting.Series{}
	flush := func() {
		var batches []*charting.SampleBatch
		for src, chans := range pending {
			seq[src]++
			sb := &charting.SampleBatch{CaseID: c.ID, SourceID: string(src), Seq: seq[src]}
			for _, ser := range chans {
				sb.Series = append(sb.Series, *ser)
			}
			batches = append(batches, sb)
		}
		for _, r := range s.AppendSamples(ctx, "gateway-bench", batches) {
			if r.Err != nil {
				b.Fatalf("samples: %v", r.Err)
			}
		}
		pending = map[sim.Source]map[string]*charting.Series{}
	}
	add := func(ms int64, r sim.Reading) {
		src := sim.SourceOf[r.Channel]
		if pending[src] == nil {
			pending[src] = map[string]*charting.Series{}
		}
		ser := pending[src][r.Channel]
		if ser == nil {
			ser = &charting.Series{Channel: r.Channel, Invalid: []bool{}}
			pending[src][r.Channel] = ser
		}
		ser.TimesMs, ser.Values, ser.Invalid = append(ser.TimesMs, ms), append(ser.Values, r.Value), append(ser.Invalid, r.Invalid)
	}
	for n := 0; !sm.Done(); n++ {
		tk := sm.Step()
		ms := start.Add(tk.At).UnixMilli()
		for _, r := range tk.Numerics {
			add(ms, r)
		}
		for _, r := range tk.Gases {
			add(ms, r)
		}
		for _, ev := range tk.Events {
			for _, e := range simEntries(c.ID, start, ev) {
				if _, _, err := s.RecordEntry(ctx, "perfusionist-bench", e); err != nil {
					b.Fatalf("entry %+v: %v", e.Detail, err)
				}
			}
		}
		if n%60 == 59 {
			flush()
		}
	}
	flush()
	if _, err := s.CloseCase(ctx, "perfusionist-bench", c.ID); err != nil {
		b.Fatal(err)
	}
	if _, _, _, err := s.SignCase(ctx, "perfusionist-bench", c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "Bench"}); err != nil {
		b.Fatal(err)
	}
	row, err := s.CaseMetrics(ctx, c.ID)
	if err != nil {
		b.Fatal(err)
	}
	m := row.Metrics.Values
	b.Logf("simulated case %d: CPB %.0f min, clamp %.0f, nadir Hct %.1f %%, nadir DO2i %.0f, %.1f min DO2i < 280, nadir %s %.1f °C",
		seed, m["cpb_minutes"], m["cross_clamp_minutes"], m["nadir_hct_pct"], m["nadir_do2i"], m["minutes_do2i_below"],
		row.Metrics.NadirTempSite, m["nadir_temp_c"])
	return row.Metrics
}

// simEntries converts one simulated event into the entries it charts.
func simEntries(caseID uuid.UUID, start time.Time, ev sim.Event) []charting.Entry {
	at := start.Add(ev.At)
	mk := func(d charting.EntryDetail) charting.Entry {
		return charting.Entry{ID: uuid.New(), CaseID: caseID, OccurredAt: at, Detail: d}
	}
	var out []charting.Entry
	switch ev.Kind {
	case sim.KindEvent:
		out = append(out, mk(charting.EntryDetail{Event: &charting.Event{Type: ev.Type}}))
	case sim.KindDrug:
		out = append(out, mk(charting.EntryDetail{Drug: &charting.DrugDose{Drug: ev.Drug.Name, Dose: ev.Drug.Dose, Unit: ev.Drug.Unit, Route: ev.Drug.Route}}))
	case sim.KindCardioplegia:
		out = append(out, mk(charting.EntryDetail{Cardioplegia: &charting.CardioplegiaDose{Solution: ev.CPG.Solution, VolumeML: ev.CPG.VolumeML, TemperatureC: ev.CPG.TempC, Phase: ev.CPG.Phase}}))
	case sim.KindLab:
		for _, l := range ev.Labs {
			out = append(out, mk(charting.EntryDetail{LabResult: &charting.LabResult{Analyte: l.Analyte, Value: l.Value, Unit: l.Unit, Site: "arterial"}}))
		}
	case sim.KindBloodProduct:
		out = append(out, mk(charting.EntryDetail{BloodProduct: &charting.BloodProduct{Type: "prbc", Units: ev.Blood.Units, VolumeML: ev.Blood.VolumeML}}))
	case sim.KindFluid:
		out = append(out, mk(charting.EntryDetail{Fluid: &charting.Fluid{Kind: ev.Fluid.Kind, Name: ev.Fluid.Name, VolumeML: ev.Fluid.VolumeML}}))
	case sim.KindChecklist:
		out = append(out, mk(charting.EntryDetail{ChecklistItem: &charting.ChecklistItem{Section: ev.Check.Section, Item: ev.Check.Item, State: ev.Check.State}}))
	case sim.KindArtifact:
		for _, ch := range ev.Artifact.Channels {
			out = append(out, mk(charting.EntryDetail{ArtifactMark: &charting.ArtifactMark{Channel: ch, SourceID: string(ev.Artifact.Source),
				Start: start.Add(ev.Artifact.Start), End: start.Add(ev.Artifact.End), Reason: ev.Artifact.Reason}}))
		}
	}
	return out
}

// bulkLoadCohort copies n signed cases with metrics into the database: each
// takes a simulated case's metrics, every continuous value scaled by its own
// factor in [0.6, 1.4], spread over 24 months, 3 sites, 20 surgeons and 30
// perfusionists. Flags and counts are kept as simulated.
func bulkLoadCohort(b *testing.B, db *postgres.Backend, templates []charting.Metrics, n int) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	flags := map[string]bool{"transfused": true, "checklist_completed": true, "suckers_stopped_before_protamine": true,
		"transfusion_units": true, "prbc_units": true, "glucose_results": true, "pco2_results": true}
	base := time.Date(2025, 1, 1, 7, 0, 0, 0, time.UTC)
	var cases, headers, values [][]any
	hash := make([]byte, 32)
	for i := range n {
		id := uuid.New()
		start := base.Add(time.Duration(rng.IntN(730*24)) * time.Hour)
		site := fmt.Sprintf("SITE-%d", i%3)
		cases = append(cases, []any{id, "cpb", site, "OR-1", start, start, "bulk", "signed", start, start.Add(4 * time.Hour), "bulk", int64(1), int64(10), hash})
		m := templates[i%len(templates)]
		m.Values = make(map[string]float64, len(m.Values))
		for k, v := range templates[i%len(templates)].Values {
			if !flags[k] {
				v *= 0.6 + 0.8*rng.Float64()
			}
			m.Values[k] = v
			values = append(values, []any{id, k, v})
		}
		doc, err := json.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		headers = append(headers, []any{id, "cpb", "signed", site, "OR-1", start, start.UTC().Format("2006-01"),
			fmt.Sprintf("S%d", i%20), fmt.Sprintf("P%d", i%30), int64(10), int32(m.Version), time.Now(), string(doc)})
	}
	copyRows := func(table string, cols []string, rows [][]any) {
		if _, err := db.Pool().CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows)); err != nil {
			b.Fatalf("copy %s: %v", table, err)
		}
	}
	copyRows("cases", []string{"case_id", "kind", "site", "room", "scheduled_start", "created_at", "created_by", "status",
		"started_at", "closed_at", "closed_by", "details_version", "head_seq", "head_hash"}, cases)
	copyRows("case_metrics", []string{"case_id", "kind", "status", "site", "room", "scheduled_start", "month", "surgeon",
		"perfusionist", "covers_seq", "definitions_version", "computed_at", "doc"}, headers)
	copyRows("case_metric_values", []string{"case_id", "metric", "value"}, values)
	// Autovacuum does this for a table loaded once; doing it now measures
	// the steady state (index-only scans need the visibility map).
	if _, err := db.Pool().Exec(ctx, `VACUUM ANALYZE cases, case_metrics, case_metric_values`); err != nil {
		b.Fatal(err)
	}
}

// exportCohort streams every case as CSV and returns its size and rows.
func exportCohort(b *testing.B, review pb.ReviewServiceClient, ctx context.Context) (size, rows int) {
	st, err := review.ExportCohort(ctx, &pb.ExportCohortRequest{Format: pb.ExportFormat_EXPORT_FORMAT_CSV})
	if err != nil {
		b.Fatal(err)
	}
	for {
		resp, err := st.Recv()
		if err == io.EOF {
			return size, rows - 1 // the header
		}
		if err != nil {
			b.Fatal(err)
		}
		size += len(resp.GetData())
		rows += bytes.Count(resp.GetData(), []byte{'\n'})
	}
}
