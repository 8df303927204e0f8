package sim

import (
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

// TestMetricsAgreeWithModel computes a simulated case's quality metrics
// from what the devices and the perfusionist would record (readings,
// events, labs, artifact marks) and checks them against the model's own
// state, which the metrics never see: CPB time, minutes of DO2i below 280
// on full-flow bypass (charted full_flow → weaning_start) and the nadir
// haematocrit.
func TestMetricsAgreeWithModel(t *testing.T) {
	s := New(Config{Seed: 1, HeightCm: 165, WeightKg: 68, Duration: 150 * time.Minute})
	start := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	series := map[string]*charting.Series{}
	var entries []charting.Entry
	var on, off, full, wean time.Duration = -1, -1, -1, -1
	type truth struct {
		at   time.Duration
		do2i float64
		hct  float64
	}
	var model []truth
	for !s.Done() {
		tk := s.Step()
		ms := start.Add(tk.At).UnixMilli()
		for _, r := range append(tk.Numerics, tk.Gases...) {
			sr := series[r.Channel]
			if sr == nil {
				sr = &charting.Series{Channel: r.Channel, Invalid: []bool{}}
				series[r.Channel] = sr
			}
			sr.TimesMs, sr.Values, sr.Invalid = append(sr.TimesMs, ms), append(sr.Values, r.Value), append(sr.Invalid, r.Invalid)
		}
		model = append(model, truth{tk.At, tk.State.DO2i, tk.State.HctPct})
		for _, ev := range tk.Events {
			at := start.Add(ev.At)
			add := func(d charting.EntryDetail) {
				entries = append(entries, charting.Entry{ID: uuid.New(), OccurredAt: at, RecordedAt: at, Detail: d})
			}
			switch ev.Kind {
			case KindEvent:
				add(charting.EntryDetail{Event: &charting.Event{Type: ev.Type}})
				if ev.Type == "bypass_on" && on < 0 {
					on = ev.At
				}
				if ev.Type == "bypass_off" {
					off = ev.At
				}
				if ev.Type == "full_flow" {
					full = ev.At
				}
				if ev.Type == "weaning_start" {
					wean = ev.At
				}
			case KindLab:
				for _, l := range ev.Labs {
					add(charting.EntryDetail{LabResult: &charting.LabResult{Analyte: l.Analyte, Value: l.Value, Unit: l.Unit, Site: "arterial"}})
				}
			case KindArtifact:
				for _, ch := range ev.Artifact.Channels {
					add(charting.EntryDetail{ArtifactMark: &charting.ArtifactMark{Channel: ch, SourceID: string(ev.Artifact.Source),
						Start: start.Add(ev.Artifact.Start), End: start.Add(ev.Artifact.End)}})
				}
			}
		}
	}
	var ss []charting.SourcedSeries
	for ch, sr := range series {
		ss = append(ss, charting.SourcedSeries{SourceID: string(SourceOf[ch]), Series: *sr})
	}
	c := &charting.Case{ID: uuid.New(), Kind: charting.KindCPB}
	c.Details.Patient = charting.Patient{HeightCm: 165, WeightKg: 68}
	m := charting.ComputeMetrics(c, entries, ss, charting.DefaultMetricsConfig())

	var belowS int
	hctMin := math.Inf(1)
	for _, x := range model {
		if x.at >= full && x.at < wean && x.do2i < 280 {
			belowS++
		}
		if x.at >= on && x.at < off {
			hctMin = min(hctMin, x.hct)
		}
	}
	if on < 0 || off < 0 || full < 0 || wean < 0 {
		t.Fatal("the simulated case has no bypass, full flow or weaning")
	}
	check := func(name string, want, tol float64) {
		t.Helper()
		got, ok := m.Values[name]
		if !ok || math.Abs(got-want) > tol {
			t.Errorf("%s = %v (present %v), model says %v ± %v", name, got, ok, want, tol)
		}
	}
	check("cpb_minutes", (off - on).Minutes(), 1e-9)
	// The model's DO2i is exact each second; the record's uses flow to
	// 0.01 L/min and in-line Hb to 0.1 g/dL every 6 s, and skips artifact:
	// within 2 minutes over a two-hour run.
	check("minutes_do2i_below", float64(belowS)/60, 2)
	// In-line Hct has 1 % resolution and the device's Gaussian noise
	// (model.go), and the nadir is the lowest reading: up to 1.5 below.
	check("nadir_hct_pct", hctMin-0.75, 0.75)
	t.Logf("CPB %.1f min; DO2i < 280: record %.2f min, model %.2f min; nadir Hct record %.1f, model %.2f",
		m.Values["cpb_minutes"], m.Values["minutes_do2i_below"], float64(belowS)/60, m.Values["nadir_hct_pct"], hctMin)
}
