package export_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/export"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
)

// longCase charts a signed case of hours on bypass with every numeric
// channel of the catalogue (up to 40) at 1 Hz from one source, in
// one-minute batches, and returns its id and version.
func longCase(tb testing.TB, s *store.Store, clk *clock, hours int) (uuid.UUID, int64) {
	tb.Helper()
	ctx := context.Background()
	start := clk.now().Add(-time.Duration(hours+1) * time.Hour).Truncate(time.Minute)
	c, err := s.CreateCase(ctx, "perf.one", store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: "OR-2", ScheduledStart: start,
		Details: charting.Details{
			Patient: charting.Patient{MRN: "MRN-0043", MRNAssigningAuthority: "HOSP", FamilyName: "Bench", GivenName: "Mark",
				BirthDate: "1960-01-01", Sex: "female", HeightCm: 165, WeightKg: 70},
			Team:      charting.Team{Perfusionists: []charting.StaffMember{{StaffID: "perf.one", DisplayName: "P One"}}},
			Procedure: charting.Procedure{Description: "AVR", EncounterID: "V-78"},
		}})
	if err != nil {
		tb.Fatalf("create: %v", err)
	}
	for i, typ := range []string{"bypass_on", "bypass_off"} {
		at := start.Add(time.Duration(i*hours) * time.Hour)
		if _, _, err := s.RecordEntry(ctx, "perf.one", charting.Entry{ID: uuid.New(), CaseID: c.ID, OccurredAt: at,
			Detail: charting.EntryDetail{Event: &charting.Event{Type: typ}}}); err != nil {
			tb.Fatalf("event: %v", err)
		}
	}
	var chans []charting.Channel
	for _, ch := range charting.DefaultCatalogue().Channels() {
		if len(chans) < 40 && !math.IsInf(ch.Min, 0) && !math.IsInf(ch.Max, 0) && ch.Resolution > 0 {
			chans = append(chans, ch)
		}
	}
	for minute := 0; minute < hours*60; minute++ {
		b := &charting.SampleBatch{CaseID: c.ID, SourceID: "hlm-1", Seq: int64(minute + 1)}
		for k, ch := range chans {
			sr := charting.Series{Channel: ch.Key}
			for sec := 0; sec < 60; sec++ {
				sr.TimesMs = append(sr.TimesMs, start.Add(time.Duration(minute*60+sec)*time.Second).UnixMilli())
				mid := ch.Min + (ch.Max-ch.Min)*(0.4+0.2*math.Sin(float64(minute*60+sec+k)/300))
				sr.Values = append(sr.Values, math.Round(mid/ch.Resolution)*ch.Resolution)
			}
			b.Series = append(b.Series, sr)
		}
		if r := s.AppendSamples(ctx, "gateway-1", []*charting.SampleBatch{b})[0]; r.Err != nil {
			tb.Fatalf("samples: %v", r.Err)
		}
	}
	if _, err := s.CloseCase(ctx, "perf.one", c.ID); err != nil {
		tb.Fatalf("close: %v", err)
	}
	_, sig, _, err := s.SignCase(ctx, "perf.one", c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "P One"})
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return c.ID, sig.Number
}

// BenchmarkRenderFourHourCase renders a 4-hour case with 40 channels at
// 1 Hz (576,000 samples) as each message: the load (reading and decoding
// every block) and the build, as the delivery worker does per attempt.
func BenchmarkRenderFourHourCase(b *testing.B) {
	e := newEnv(b, pgtest.Open(b), startClock())
	caseID, version := longCase(b, e.s, e.clk, 4)
	ctx := context.Background()
	for _, m := range []struct {
		name   string
		render func(v *export.Version) (*export.Rendered, error)
	}{{"summary", e.r.HL7}, {"fhir", e.r.FHIR}, {"pcd01", e.r.DeviceReport}} {
		b.Run(m.name, func(b *testing.B) {
			var size int
			for b.Loop() {
				v, err := e.r.Load(ctx, caseID, version)
				if err != nil {
					b.Fatal(err)
				}
				out, err := m.render(v)
				if err != nil {
					b.Fatal(err)
				}
				size = len(out.Payload)
			}
			b.ReportMetric(float64(size), "bytes")
		})
	}
}
