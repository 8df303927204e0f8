package sim

import (
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

// simRecord runs a simulated case and returns what the record would hold
// (readings by source, events, labs, artifact marks), the model's state
// each second, and the model's own phase times. It reads the simulation
// only; it changes nothing in it.
type simRecord struct {
	c       *charting.Case
	entries []charting.Entry
	series  []charting.SourcedSeries
	model   []State
	at      []time.Duration
	events  map[string][]time.Duration
}

func recordSim(cfg Config, start time.Time) simRecord {
	s := New(cfg)
	series := map[string]*charting.Series{}
	r := simRecord{events: map[string][]time.Duration{}}
	for !s.Done() {
		tk := s.Step()
		ms := start.Add(tk.At).UnixMilli()
		for _, x := range append(tk.Numerics, tk.Gases...) {
			sr := series[x.Channel]
			if sr == nil {
				sr = &charting.Series{Channel: x.Channel, Invalid: []bool{}}
				series[x.Channel] = sr
			}
			sr.TimesMs, sr.Values, sr.Invalid = append(sr.TimesMs, ms), append(sr.Values, x.Value), append(sr.Invalid, x.Invalid)
		}
		r.model, r.at = append(r.model, tk.State), append(r.at, tk.At)
		for _, ev := range tk.Events {
			at := start.Add(ev.At)
			add := func(d charting.EntryDetail) {
				r.entries = append(r.entries, charting.Entry{ID: uuid.New(), OccurredAt: at, RecordedAt: at, Detail: d})
			}
			switch ev.Kind {
			case KindEvent:
				add(charting.EntryDetail{Event: &charting.Event{Type: ev.Type}})
				r.events[ev.Type] = append(r.events[ev.Type], ev.At)
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
	for ch, sr := range series {
		r.series = append(r.series, charting.SourcedSeries{SourceID: string(SourceOf[ch]), Series: *sr})
	}
	r.c = &charting.Case{ID: uuid.New(), Kind: charting.KindCPB}
	r.c.Details.Patient = charting.Patient{HeightCm: cfg.HeightCm, WeightKg: cfg.WeightKg}
	return r
}

// modelMin is the model's lowest DO2i in [from, to).
func (r simRecord) modelMin(from, to time.Duration) float64 {
	lo := math.Inf(1)
	for i, st := range r.model {
		if r.at[i] >= from && r.at[i] < to {
			lo = min(lo, st.DO2i)
		}
	}
	return lo
}

// TestDO2iNadirOnFullFlow: the pump is turned up over the first minutes on
// bypass and down to nothing while weaning (model.go), so DO2i reaches 0
// just before bypass_off in every simulated case. The nadir a perfusionist
// recognises is the lowest DO2i on established bypass: between the charted
// full_flow and weaning_start events (docs/domain.md "Quality metrics"). The
// record's nadir must lie there and agree with the model's lowest DO2i over
// that window; with the events left out, the flow rule must find a window
// close to the charted one.
func TestDO2iNadirOnFullFlow(t *testing.T) {
	start := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	r := recordSim(Config{Seed: 1, HeightCm: 165, WeightKg: 68, Duration: 150 * time.Minute}, start)
	on, off := r.events["bypass_on"][0], r.events["bypass_off"][0]
	full, wean := r.events["full_flow"][0], r.events["weaning_start"][0]
	m := charting.ComputeMetrics(r.c, r.entries, r.series, charting.DefaultMetricsConfig())
	nadir, ok := m.Values["nadir_do2i"]
	nadirAt := m.At["nadir_do2i"].Sub(start)
	t.Logf("bypass_on %v, full_flow %v, weaning_start %v, bypass_off %v", on, full, wean, off)
	t.Logf("nadir_do2i %.1f mL/min/m² at bypass_on+%v (bypass_off−%v); minutes below 280: %.2f; full-flow window %.2f min, source %v",
		nadir, nadirAt-on, off-nadirAt, m.Values["minutes_do2i_below"], m.Values["full_flow_minutes"], m.Values["full_flow_window_source"])
	model := r.modelMin(full, wean)
	t.Logf("model: lowest DO2i on full flow %.1f, on the whole bypass %.1f", model, r.modelMin(on, off))
	if !ok || nadirAt < full || nadirAt >= wean {
		t.Fatalf("nadir_do2i %v (present %v) at %v: want it between full_flow %v and weaning_start %v", nadir, ok, nadirAt, full, wean)
	}
	// The record's nadir is the lowest of noisy readings (in-line Hb ±0.1
	// g/dL at about 8 g/dL, flow ±0.02 L/min, model.go), the model's the
	// exact state: up to 6 % below it, never much above.
	if nadir < 0.94*model || nadir > 1.01*model {
		t.Errorf("nadir_do2i %.1f, model's lowest on full flow %.1f", nadir, model)
	}
	if m.Values["full_flow_window_source"] != 1 || math.Abs(m.Values["full_flow_minutes"]-(wean-full).Minutes()) > 1e-9 {
		t.Errorf("window source %v, %v min; want charted (1), %v min", m.Values["full_flow_window_source"], m.Values["full_flow_minutes"], (wean - full).Minutes())
	}

	// Without the full_flow and weaning_start events the flow rule finds
	// the window from the pump flow: flow reaches 80 % of its full level
	// partway up the 2-minute ramp, and falls below it partway into
	// weaning.
	var uncharted []charting.Entry
	for _, e := range r.entries {
		if ev := e.Detail.Event; ev == nil || (ev.Type != "full_flow" && ev.Type != "weaning_start") {
			uncharted = append(uncharted, e)
		}
	}
	mr := charting.ComputeMetrics(r.c, uncharted, r.series, charting.DefaultMetricsConfig())
	if len(mr.Runs) != 1 {
		t.Fatalf("runs %+v, want one", mr.Runs)
	}
	run := mr.Runs[0]
	from, to := run.FullFlowFrom.Sub(start), run.FullFlowTo.Sub(start)
	t.Logf("flow rule: full flow %v → %v (charted %v → %v); nadir_do2i %.1f at bypass_on+%v", from, to, full, wean,
		mr.Values["nadir_do2i"], mr.At["nadir_do2i"].Sub(start)-on)
	if run.FromSource != charting.WindowFlowRule || run.ToSource != charting.WindowFlowRule || mr.Values["full_flow_window_source"] != 2 {
		t.Errorf("sources %s, %s (%v); want the flow rule", run.FromSource, run.ToSource, mr.Values["full_flow_window_source"])
	}
	if from < on || from > full || to < wean || to > wean+(off-wean)/2 {
		t.Errorf("flow-rule window %v → %v; want it to start by full_flow %v and end in the first half of weaning (%v → %v)", from, to, full, wean, off)
	}
	if lo := mr.Values["nadir_do2i"]; lo < 0.75*model {
		t.Errorf("flow-rule nadir_do2i %.1f; want within the flow rule's 80 %% of the full-flow nadir %.1f", lo, model)
	}
}
