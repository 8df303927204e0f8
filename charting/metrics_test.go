package charting

import (
	"math"
	"testing"
	"time"

	"github.com/google/uuid"
)

var t0 = time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)

func at(min float64) time.Time { return t0.Add(time.Duration(min * float64(time.Minute))) }

// minuteSeries samples a channel once a minute for minutes [from, to].
// f returns the value and whether the device reported it invalid.
func minuteSeries(ch string, from, to int, f func(m int) (float64, bool)) Series {
	s := Series{Channel: ch, Invalid: make([]bool, 0)}
	for m := from; m <= to; m++ {
		v, bad := f(m)
		s.TimesMs = append(s.TimesMs, at(float64(m)).UnixMilli())
		s.Values = append(s.Values, v)
		s.Invalid = append(s.Invalid, bad)
	}
	return s
}

func steps(def float64, over map[[2]int]float64) func(int) (float64, bool) {
	return func(m int) (float64, bool) {
		for r, v := range over {
			if m >= r[0] && m <= r[1] {
				return v, false
			}
		}
		return def, false
	}
}

type entryBuilder struct {
	caseID uuid.UUID
	all    []Entry
}

func (b *entryBuilder) add(min float64, d EntryDetail) uuid.UUID {
	id := uuid.New()
	b.all = append(b.all, Entry{ID: id, CaseID: b.caseID, Kind: d.Kinds()[0], OccurredAt: at(min), RecordedAt: at(min), Detail: d})
	return id
}

func (b *entryBuilder) event(min float64, typ string) uuid.UUID {
	return b.add(min, EntryDetail{Event: &Event{Type: typ}})
}

func (b *entryBuilder) lab(min float64, analyte string, v float64) {
	b.add(min, EntryDetail{LabResult: &LabResult{Analyte: analyte, Value: v, Site: "arterial"}})
}

func (b *entryBuilder) mark(ch, source string, from, to float64) {
	b.add(from, EntryDetail{ArtifactMark: &ArtifactMark{Channel: ch, SourceID: source, Start: at(from), End: at(to), Reason: "test"}})
}

func (b *entryBuilder) correct(old uuid.UUID, min float64, d *EntryDetail) {
	e := Entry{ID: uuid.New(), CaseID: b.caseID, Supersedes: old, Reason: "wrong", OccurredAt: at(min), RecordedAt: at(200)}
	if d == nil {
		e.Void = true
	} else {
		e.Detail = *d
		e.Kind = d.Kinds()[0]
	}
	b.all = append(b.all, e)
}

// fullCase is one CPB case whose every metric is worked out by hand in
// TestComputeMetricsFullCase. Minutes are from t0; device samples come once a
// minute, so each stands for exactly one minute (hold = 60 s = the interval).
func fullCase() (*Case, []Entry, []SourcedSeries) {
	c := &Case{ID: uuid.New(), Kind: KindCPB}
	c.Details.Patient = Patient{BSAM2: 2.0, BSAFormula: BSADuBois}
	c.Details.Prime = Prime{Components: []PrimeComponent{{Name: "crystalloid", VolumeML: 1500}}, RAPVolumeML: 300}
	b := &entryBuilder{caseID: c.ID}
	b.add(5, EntryDetail{ChecklistItem: &ChecklistItem{Section: "pump", Item: "occlusion", State: "checked"}})
	b.event(10, "bypass_on")
	b.event(12, "full_flow")
	b.event(95, "weaning_start")
	b.event(100, "bypass_off")
	b.event(20, "cross_clamp_on")
	wrongOff := b.event(70, "cross_clamp_off")
	b.correct(wrongOff, 80, &EntryDetail{Event: &Event{Type: "cross_clamp_off"}})
	b.event(40, "circulatory_arrest_start")
	b.event(52, "circulatory_arrest_end")
	b.event(105, "suckers_stopped")
	b.event(110, "protamine_given")
	// CaO2 inputs from arterial labs, standing until the next result.
	b.lab(9, "hb", 10)
	b.lab(9, "sao2", 100)
	b.lab(9, "po2", 200)
	b.mark("pump_flow", "", 70, 72)
	b.mark("inline_hct", "", 50, 51)
	b.mark("inline_svo2", "other-device", 20, 23) // another source: does not apply
	b.lab(55, "hct", 21)
	b.lab(20, "glucose", 5)
	b.lab(50, "glucose", 11)
	b.lab(80, "glucose", 8)
	b.lab(105, "glucose", 12) // after bypass: not counted
	b.lab(20, "pco2", 40)
	b.lab(50, "pco2", 50)
	b.add(30, EntryDetail{BloodProduct: &BloodProduct{Type: "prbc", Units: 2, VolumeML: 600}})
	ffp := b.add(31, EntryDetail{BloodProduct: &BloodProduct{Type: "ffp", Units: 2, VolumeML: 500}})
	b.correct(ffp, 31, nil) // voided: not counted
	b.add(90, EntryDetail{BloodProduct: &BloodProduct{Type: "platelets", Units: 1, VolumeML: 250}})
	b.add(15, EntryDetail{Fluid: &Fluid{Kind: "crystalloid", VolumeML: 500}})
	b.add(85, EntryDetail{Fluid: &Fluid{Kind: "ultrafiltration_removed", VolumeML: 800}})
	b.add(95, EntryDetail{Fluid: &Fluid{Kind: "urine_output", VolumeML: 300}})
	b.add(21, EntryDetail{Cardioplegia: &CardioplegiaDose{Solution: "del Nido", VolumeML: 1000}})

	flow := minuteSeries("pump_flow", 10, 99, func(m int) (float64, bool) {
		switch {
		case m == 60:
			return 0, true
		case m >= 30 && m <= 34:
			return 3.0, false
		case m < 12:
			return 2.0, false // going on
		case m >= 95:
			return 1.0, false // weaning
		}
		return 4.2, false
	})
	mapS := minuteSeries("map", 10, 99, func(m int) (float64, bool) {
		switch {
		case m == 90:
			return 0, true
		case m >= 40 && m <= 45:
			return 20, false // circulatory arrest
		case m >= 53 && m <= 58:
			return 35, false
		case m >= 96:
			return 30, false // weaning
		case m >= 80 && m <= 82:
			return 45, false
		}
		return 60, false
	})
	hlm := []Series{
		flow,
		minuteSeries("temp_arterial_outlet", 10, 99, steps(36, map[[2]int]float64{{10, 29}: 28, {30, 69}: 34, {70, 71}: 37.5})),
		minuteSeries("temp_venous_inlet", 10, 99, steps(35, map[[2]int]float64{{10, 29}: 20, {30, 69}: 29})),
	}
	mon := []Series{
		mapS,
		minuteSeries("temp_nasopharyngeal", 10, 99, steps(32.6, map[[2]int]float64{{10, 59}: 30, {60, 60}: 31, {61, 61}: 31.4, {62, 62}: 31.8})),
		minuteSeries("temp_bladder", 10, 99, steps(31, map[[2]int]float64{{45, 45}: 29.5})),
	}
	cdi := []Series{
		minuteSeries("inline_svo2", 10, 99, steps(70, map[[2]int]float64{{50, 54}: 55, {60, 65}: 58})),
		minuteSeries("inline_hct", 5, 99, steps(25, map[[2]int]float64{{5, 5}: 15, {50, 50}: 19})),
	}
	var ss []SourcedSeries
	for _, s := range hlm {
		ss = append(ss, SourcedSeries{SourceID: "hlm", Series: s})
	}
	for _, s := range mon {
		ss = append(ss, SourcedSeries{SourceID: "monitor", Series: s})
	}
	for _, s := range cdi {
		ss = append(ss, SourcedSeries{SourceID: "cdi", Series: s})
	}
	return c, b.all, ss
}

func TestComputeMetricsFullCase(t *testing.T) {
	c, entries, series := fullCase()
	m := ComputeMetrics(c, entries, series, DefaultMetricsConfig())
	want := map[string]float64{
		// bypass 10 → 100.
		"cpb_minutes": 90,
		// clamp 20 → 80: the off at 70 was corrected to 80.
		"cross_clamp_minutes":        60,
		"cpb_minus_clamp_minutes":    30, // 90 − 60
		"circulatory_arrest_minutes": 12, // 40 → 52
		// Temperatures, each sample standing one minute within 10 → 100.
		"nadir_temp_arterial_outlet": 28,
		"nadir_temp_venous_inlet":    20,
		"nadir_temp_nasopharyngeal":  30,
		"nadir_temp_bladder":         29.5, // minute 45
		"nadir_temp_c":               29.5, // bladder is the lowest core site
		"max_arterial_outlet_c":      37.5,
		// Arterial outlet 37.5 at minutes 70 and 71: 2 minutes above 37.
		"minutes_arterial_outlet_above_max": 2,
		"core_high_episodes":                0,
		// Nasopharyngeal 30 → 31 at minute 60 (1.0 °C/min, breach), 31.4 and
		// 31.8 (0.4 °C/min each), 32.6 at minute 63 (0.8, breach): 2 minutes.
		"max_rewarming_rate_c_per_min":  1.0,
		"minutes_rewarming_rate_breach": 2,
		// Gradients: minutes 10–29 28−20 = 8 (limit 10, arterial < 30);
		// 30–69 34−29 = 5 (> 4 with arterial ≥ 30: 40 minutes); 70–71 2.5;
		// 72–99 1.
		"max_gradient_c":          8,
		"minutes_gradient_breach": 40,
		// In-line Hct 19 at minute 50 is in an artifact mark, 15 at minute 5
		// is before bypass; the lab Hct 21 at minute 55 is the nadir.
		"nadir_hct_pct": 21,
		"bsa_m2":        2,
		// Full flow is charted 12 → 95; arrest 40 → 52 is left out: 71 min.
		"full_flow_minutes":       71,
		"full_flow_window_source": 1,
		// CaO2 = 1.34·10·1.00 + 0.003·200 = 14.0 mL/dL. DO2i = flow/2·14·10:
		// 4.2 → 294, 3.0 (minutes 30–34) → 210; going on (2.0 → 140) and
		// weaning (1.0 → 70) are outside full flow.
		"nadir_do2i": 210,
		// Skipped: minute 60 invalid + minutes 70, 71 marked = 3 minutes.
		// Valid 71 − 3 = 68 minutes: 63·294 + 5·210 = 19572; /68 = 287.823529.
		"mean_do2i":            287.823529,
		"minutes_do2i_below":   5,
		"area_do2i_below":      350, // (280 − 210)·5
		"minutes_do2i_skipped": 3,
		// MAP 35 at minutes 53–58 (6 min), 45 at 80–82 (3 min), invalid at
		// 90; the 20 during arrest (40–45) and the 30 while weaning (96–99)
		// are outside full flow.
		"minutes_map_below_40": 6,
		"minutes_map_below_50": 9, // 6 + 3
		"minutes_map_skipped":  1,
		"map_low_episodes":     1, // 6 min > 5 min
		// SvO2 55 at 50–54, of which 52–54 after the arrest: 3 min; 58 at
		// 60–65 is 6 min. The mark names another source, so nothing of
		// "cdi" is skipped.
		"svo2_low_episodes":        1,
		"svo2_low_episode_minutes": 6,
		"minutes_svo2_skipped":     0,
		// Glucose on bypass 5, 11, 8: 2 of 3 in 4–10; the 12 at 105 is after.
		"glucose_results":      3,
		"glucose_in_range_pct": 200.0 / 3,
		"pco2_results":         2,
		"pco2_in_range_pct":    50, // 40 in, 50 out
		// PRBC 2 + platelets 1; the FFP was voided.
		"transfusion_units": 3,
		"prbc_units":        2,
		"transfused":        1,
		// (1500 − 300) / 2.0 = 600 mL/m².
		"net_prime_volume_index": 600,
		"ultrafiltration_ml":     800,
		// In: net prime 1200 + crystalloid 500 + PRBC 600 + platelets 250 +
		// cardioplegia 1000 = 3550; out: UF 800 + urine 300 = 1100.
		"fluid_balance_ml":                 2450,
		"checklist_completed":              1, // item at 5, before bypass at 10
		"suckers_stopped_before_protamine": 1, // 105 before 110
	}
	checkValues(t, m, want)
	wantRun := BypassRun{On: at(10), Off: at(100), Charted: true, FullFlowFrom: at(12), FullFlowTo: at(95),
		FromSource: WindowCharted, ToSource: WindowCharted, FullFlowMinutes: 71}
	if len(m.Runs) != 1 || m.Runs[0] != wantRun {
		t.Errorf("runs %+v, want %+v", m.Runs, wantRun)
	}
	if m.NadirTempSite != "temp_bladder" || m.BSAFormula != BSADuBois || !m.BypassStart.Equal(at(10)) || m.Version != MetricDefinitionsVersion {
		t.Errorf("site %q formula %q bypass start %v version %d", m.NadirTempSite, m.BSAFormula, m.BypassStart, m.Version)
	}
	// When the nadirs and the peak occurred: bladder 29.5 at minute 45;
	// outlet 37.5 first at minute 70; the lab Hct 21 at minute 55; DO2i
	// 210 from minute 30.
	for name, min := range map[string]float64{"nadir_temp_c": 45, "nadir_temp_bladder": 45, "max_arterial_outlet_c": 70,
		"nadir_hct_pct": 55, "nadir_do2i": 30, "nadir_temp_arterial_outlet": 10} {
		if got := m.At[name]; !got.Equal(at(min)) {
			t.Errorf("%s at %v, want minute %v (%v)", name, got, min, at(min))
		}
	}
	defs := map[string]bool{}
	for _, d := range MetricDefinitions(m.Config) {
		defs[d.Name] = true
	}
	for name := range m.Values {
		if !defs[name] {
			t.Errorf("metric %s has no definition", name)
		}
	}
}

func checkValues(t *testing.T, m Metrics, want map[string]float64) {
	t.Helper()
	for name, w := range want {
		got, ok := m.Values[name]
		if !ok {
			t.Errorf("%s: missing, want %v", name, w)
			continue
		}
		if math.Abs(got-w) > 1e-6 {
			t.Errorf("%s = %v, want %v", name, got, w)
		}
	}
	for name, v := range m.Values {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected metric %s = %v", name, v)
		}
	}
}

func TestComputeMetricsSmallCases(t *testing.T) {
	id := uuid.New()
	neonate := &Case{ID: id, Kind: KindCPB}
	neonate.Details.Patient = Patient{HeightCm: 50, WeightKg: 3.6} // Mosteller √(50·3.6/3600) = 0.2236 → 0.224
	tests := []struct {
		name    string
		c       *Case
		entries func(b *entryBuilder)
		series  []SourcedSeries
		cfg     func(*MetricsConfig)
		want    map[string]float64
	}{{
		name: "nothing charted: only the counts that are truly zero",
		c:    &Case{ID: id},
		want: map[string]float64{"transfusion_units": 0, "prbc_units": 0, "transfused": 0, "ultrafiltration_ml": 0,
			"fluid_balance_ml": 0, "checklist_completed": 0},
	}, {
		name: "two bypass runs add up; protamine before suckers",
		c:    &Case{ID: id},
		entries: func(b *entryBuilder) {
			b.event(0, "bypass_on")
			b.event(30, "bypass_off")
			b.event(40, "bypass_on")
			b.event(50, "bypass_off")
			b.event(60, "protamine_given")
			b.event(61, "suckers_stopped")
			b.event(20, "circulatory_arrest_start") // no end: length unknown
		},
		// No pump flow: the minutes rule, 5 after on to 10 before off, gives
		// 5 → 20 (15 min) in the first run and nothing in the 10-minute second.
		want: map[string]float64{"cpb_minutes": 40, "circulatory_arrest_minutes": 0, "full_flow_minutes": 15, "full_flow_window_source": 3,
			"transfusion_units": 0, "prbc_units": 0,
			"transfused": 0, "ultrafiltration_ml": 0, "fluid_balance_ml": 0, "checklist_completed": 0,
			"suckers_stopped_before_protamine": 0},
	}, {
		name: "neonate on ECMO without events: window is the data, in-line CaO2, threshold 300",
		c:    neonate,
		series: []SourcedSeries{
			// Flow 0.5 L/min at minutes 0–9; the last sample closes the window.
			{SourceID: "hlm", Series: minuteSeries("pump_flow", 0, 10, steps(0.5, nil))},
			{SourceID: "cdi", Series: minuteSeries("inline_hb", 0, 10, steps(12, nil))},
			{SourceID: "cdi", Series: minuteSeries("inline_sao2", 0, 10, steps(100, nil))},
			{SourceID: "cdi", Series: minuteSeries("inline_po2", 0, 10, steps(300, map[[2]int]float64{{5, 10}: 100}))},
		},
		cfg: func(c *MetricsConfig) { c.DO2iThreshold = 400 },
		// CaO2 = 1.34·12 + 0.003·300 = 16.98, DO2i = 0.5/0.224·16.98·10 = 379.0179 (minutes 0–4);
		// with PaO2 100: 16.08 + 0.3 = 16.38 → 365.625 (minutes 5–9). All 10 minutes below 400.
		// Area = 5·(400 − 379.017857) + 5·(400 − 365.625) = 104.910714 + 171.875 = 276.785714.
		// Mean = (379.017857 + 365.625)/2 = 372.321429.
		want: map[string]float64{"bsa_m2": 0.224, "nadir_do2i": 365.625, "mean_do2i": 372.321429,
			"minutes_do2i_below": 10, "area_do2i_below": 276.785714, "minutes_do2i_skipped": 0,
			"full_flow_minutes": 10, "full_flow_window_source": 2, // steady flow: full from first to last sample
			"transfusion_units": 0, "prbc_units": 0, "transfused": 0, "ultrafiltration_ml": 0,
			"fluid_balance_ml": 0, "checklist_completed": 0},
	}, {
		name: "a gap longer than MaxHold is neither measured nor skipped, and ends an episode",
		c:    &Case{ID: id},
		entries: func(b *entryBuilder) {
			b.event(0, "bypass_on")
			b.event(20, "bypass_off")
		},
		// MAP 30 at minutes 0–3 and 6–9 with nothing at 4–5; 60 from 10 on.
		series: []SourcedSeries{{SourceID: "mon", Series: func() Series {
			s := minuteSeries("map", 0, 19, steps(60, map[[2]int]float64{{0, 9}: 30}))
			s.TimesMs = append(s.TimesMs[:4], s.TimesMs[6:]...)
			s.Values = append(s.Values[:4], s.Values[6:]...)
			s.Invalid = append(s.Invalid[:4], s.Invalid[6:]...)
			return s
		}()}},
		// A zero full-flow rule: the whole run is full flow (minutes rule).
		cfg: func(c *MetricsConfig) {
			c.FullFlowPct, c.FullFlowAfterOnMinutes, c.WeaningBeforeOffMinutes = 0, 0, 0
		},
		// Below 40: minutes 0–3 and 6–9 = 8; the 3→6 gap holds one minute
		// (MaxHold), so minute 3 covers 3–4 and 4–6 is unmeasured. Two runs of
		// 4 minutes: no episode longer than 5.
		want: map[string]float64{"cpb_minutes": 20, "full_flow_minutes": 20, "full_flow_window_source": 3, "minutes_map_below_40": 8, "minutes_map_below_50": 8,
			"minutes_map_skipped": 0, "map_low_episodes": 0, "transfusion_units": 0, "prbc_units": 0, "transfused": 0,
			"ultrafiltration_ml": 0, "fluid_balance_ml": 0, "checklist_completed": 0},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &entryBuilder{caseID: id}
			if tc.entries != nil {
				tc.entries(b)
			}
			cfg := DefaultMetricsConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			checkValues(t, ComputeMetrics(tc.c, b.all, tc.series, cfg), tc.want)
		})
	}
}

func TestComputeMetricsIgnoresEntryOrder(t *testing.T) {
	c, entries, series := fullCase()
	a := ComputeMetrics(c, entries, series, DefaultMetricsConfig())
	rev := make([]Entry, len(entries))
	for i, e := range entries {
		rev[len(entries)-1-i] = e
	}
	srev := make([]SourcedSeries, len(series))
	for i, s := range series {
		srev[len(series)-1-i] = s
	}
	b := ComputeMetrics(c, rev, srev, DefaultMetricsConfig())
	checkValues(t, b, a.Values)
}

// TestMetricsPopulations: a case is measured with the thresholds of the
// lightest population its patient's weight fits, else with the site's; the
// stored config stays the site's (populations included) and names the
// population, so Thresholds gives back what was used.
func TestMetricsPopulations(t *testing.T) {
	site := DefaultMetricsConfig()
	neonate, child := site, site
	neonate.DO2iThreshold, neonate.MAPThresholds = 1000, []float64{25}
	child.DO2iThreshold = 500
	cfg := site
	cfg.Populations = []MetricsPopulation{{Name: "child", MaxWeightKg: 30, Config: child}, {Name: "neonate", MaxWeightKg: 5, Config: neonate}}

	c, entries, series := fullCase()
	adult := ComputeMetrics(c, entries, series, site)
	for _, tc := range []struct {
		weight float64
		pop    string
		do2i   float64
	}{{3.2, "neonate", 1000}, {5, "neonate", 1000}, {18, "child", 500}, {80, "", 280}, {0, "", 280}} {
		c.Details.Patient.WeightKg = tc.weight
		m := ComputeMetrics(c, entries, series, cfg)
		if m.Population != tc.pop || m.Thresholds().DO2iThreshold != tc.do2i || len(m.Config.Populations) != 2 {
			t.Errorf("%g kg: population %q, DO2i threshold %g; want %q, %g", tc.weight, m.Population, m.Thresholds().DO2iThreshold, tc.pop, tc.do2i)
		}
		switch tc.pop {
		case "":
			if m.Values["minutes_do2i_below"] != adult.Values["minutes_do2i_below"] {
				t.Errorf("%g kg: minutes below DO2i %g, the site's thresholds give %g", tc.weight, m.Values["minutes_do2i_below"], adult.Values["minutes_do2i_below"])
			}
		case "neonate":
			if _, ok := m.Values["minutes_map_below_25"]; !ok || m.Values["minutes_do2i_below"] <= adult.Values["minutes_do2i_below"] {
				t.Errorf("neonate: %v; want minutes below MAP 25 and more minutes below the higher DO2i threshold", m.Values)
			}
			if _, ok := m.Values["minutes_map_below_40"]; ok {
				t.Errorf("neonate measured against the site's MAP 40")
			}
		}
	}
	names := map[string]bool{}
	for _, d := range MetricDefinitions(cfg) {
		names[d.Name] = true
	}
	if !names["minutes_map_below_25"] || !names["minutes_map_below_40"] || !names["minutes_map_below_50"] {
		t.Errorf("definitions lack a population's or the site's MAP metrics: %v", names)
	}
}

// TestFullFlowWindows: the DO2i metrics are measured over full-flow
// bypass, found per run from the charted events, else the flow rule, else
// the minutes rule. BSA 2 m² and CaO2 14 mL/dL (Hb 10, SaO2 100 %, PaO2
// 200) make DO2i = 70 × flow; flow 4.0 (DO2i 280) is full flow, 2.0 (140)
// going on, 1.0 (70) weaning.
func TestFullFlowWindows(t *testing.T) {
	flow := func(from, to int, f func(m int) float64) SourcedSeries {
		return SourcedSeries{SourceID: "hlm", Series: minuteSeries("pump_flow", from, to, func(m int) (float64, bool) { return f(m), false })}
	}
	// On at 0, full at 5, weaning from 50, off at 60.
	ramp := func(m int) float64 {
		switch {
		case m < 5:
			return 2
		case m >= 50:
			return 1
		}
		return 4
	}
	run := func(on, off, from, to float64, fs, ts WindowSource, mins float64) BypassRun {
		r := BypassRun{On: at(on), Off: at(off), Charted: true, FromSource: fs, ToSource: ts, FullFlowMinutes: mins}
		if fs != WindowNone {
			r.FullFlowFrom, r.FullFlowTo = at(from), at(to)
		}
		return r
	}
	tests := []struct {
		name    string
		events  map[string][]float64
		series  []SourcedSeries
		runs    []BypassRun
		want    map[string]float64 // checked; others may be present
		absent  []string
		nadirAt float64
	}{{
		name:   "charted full flow and weaning",
		events: map[string][]float64{"bypass_on": {0}, "full_flow": {5}, "weaning_start": {50}, "bypass_off": {60}},
		series: []SourcedSeries{flow(0, 59, ramp)},
		runs:   []BypassRun{run(0, 60, 5, 50, WindowCharted, WindowCharted, 45)},
		want: map[string]float64{"full_flow_minutes": 45, "full_flow_window_source": 1, "nadir_do2i": 280, "minutes_do2i_below": 0,
			"minutes_do2i_skipped": 0, "cpb_minutes": 60},
		nadirAt: 5,
	}, {
		name:   "no full_flow or weaning_start charted: the flow rule",
		events: map[string][]float64{"bypass_on": {0}, "bypass_off": {60}},
		// Median flow 4.0, threshold 3.2: first held a minute from minute 5;
		// last met at minute 49, below from minute 50.
		series:  []SourcedSeries{flow(0, 59, ramp)},
		runs:    []BypassRun{run(0, 60, 5, 50, WindowFlowRule, WindowFlowRule, 45)},
		want:    map[string]float64{"full_flow_minutes": 45, "full_flow_window_source": 2, "nadir_do2i": 280, "minutes_do2i_below": 0},
		nadirAt: 5,
	}, {
		name:   "full flow charted early, weaning by the flow rule",
		events: map[string][]float64{"bypass_on": {0}, "full_flow": {3}, "bypass_off": {60}},
		series: []SourcedSeries{flow(0, 59, ramp)},
		runs:   []BypassRun{run(0, 60, 3, 50, WindowCharted, WindowFlowRule, 47)},
		// Minutes 3 and 4 at 2.0 L/min are inside the charted window.
		want:    map[string]float64{"full_flow_minutes": 47, "full_flow_window_source": 2, "nadir_do2i": 140, "minutes_do2i_below": 2, "area_do2i_below": 280},
		nadirAt: 3,
	}, {
		name:   "a failed wean charted as full flow again is left out",
		events: map[string][]float64{"bypass_on": {0}, "full_flow": {5, 34}, "weaning_start": {30, 50}, "bypass_off": {60}},
		series: []SourcedSeries{flow(0, 59, func(m int) float64 {
			if m >= 30 && m < 34 {
				return 2
			}
			return ramp(m)
		})},
		runs:    []BypassRun{run(0, 60, 5, 50, WindowCharted, WindowCharted, 41)},
		want:    map[string]float64{"full_flow_minutes": 41, "nadir_do2i": 280, "minutes_do2i_below": 0},
		nadirAt: 5,
	}, {
		name:   "no pump flow recorded: the minutes rule, 5 after on to 10 before off",
		events: map[string][]float64{"bypass_on": {0}, "bypass_off": {60}},
		// MAP 30 while going on (0–4) and weaning (50–59) is outside.
		series: []SourcedSeries{{SourceID: "mon", Series: minuteSeries("map", 0, 59, steps(60, map[[2]int]float64{{0, 4}: 30, {50, 59}: 30}))}},
		runs:   []BypassRun{run(0, 60, 5, 50, WindowMinutesRule, WindowMinutesRule, 45)},
		want:   map[string]float64{"full_flow_minutes": 45, "full_flow_window_source": 3, "minutes_map_below_40": 0, "map_low_episodes": 0},
		absent: []string{"nadir_do2i"},
	}, {
		name:   "two runs, each with its own full-flow part",
		events: map[string][]float64{"bypass_on": {0, 70}, "full_flow": {5, 72}, "weaning_start": {50}, "bypass_off": {60, 90}},
		// Back on bypass at 70: full flow charted at 72, weaning found by
		// the flow rule at 85.
		series: []SourcedSeries{flow(0, 59, ramp), flow(70, 89, func(m int) float64 {
			switch {
			case m < 72:
				return 2
			case m >= 85:
				return 1
			}
			return 4
		})},
		runs:    []BypassRun{run(0, 60, 5, 50, WindowCharted, WindowCharted, 45), run(70, 90, 72, 85, WindowCharted, WindowFlowRule, 13)},
		want:    map[string]float64{"full_flow_minutes": 58, "full_flow_window_source": 2, "nadir_do2i": 280, "cpb_minutes": 80},
		nadirAt: 5,
	}, {
		name:   "flow never held at its level: no full-flow window, no DO2i metrics",
		events: map[string][]float64{"bypass_on": {0}, "bypass_off": {60}},
		// Alternating 4.0 and 0: the median is 0, so there is no level.
		series: []SourcedSeries{flow(0, 59, func(m int) float64 { return float64(4 * (m % 2)) })},
		runs:   []BypassRun{run(0, 60, 0, 0, WindowNone, WindowNone, 0)},
		want:   map[string]float64{"full_flow_minutes": 0, "full_flow_window_source": 0},
		absent: []string{"nadir_do2i", "mean_do2i", "minutes_do2i_below", "area_do2i_below", "minutes_do2i_skipped"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Case{ID: uuid.New(), Kind: KindCPB}
			c.Details.Patient = Patient{BSAM2: 2, BSAFormula: BSADuBois}
			b := &entryBuilder{caseID: c.ID}
			for typ, mins := range tc.events {
				for _, m := range mins {
					b.event(m, typ)
				}
			}
			b.lab(-1, "hb", 10)
			b.lab(-1, "sao2", 100)
			b.lab(-1, "po2", 200)
			m := ComputeMetrics(c, b.all, tc.series, DefaultMetricsConfig())
			for name, w := range tc.want {
				if got, ok := m.Values[name]; !ok || math.Abs(got-w) > 1e-6 {
					t.Errorf("%s = %v (present %v), want %v", name, got, ok, w)
				}
			}
			for _, name := range tc.absent {
				if v, ok := m.Values[name]; ok {
					t.Errorf("%s = %v, want absent", name, v)
				}
			}
			if len(m.Runs) != len(tc.runs) {
				t.Fatalf("runs %+v, want %+v", m.Runs, tc.runs)
			}
			for i := range m.Runs {
				if m.Runs[i] != tc.runs[i] {
					t.Errorf("run %d: %+v, want %+v", i, m.Runs[i], tc.runs[i])
				}
			}
			if _, ok := m.Values["nadir_do2i"]; ok && !m.At["nadir_do2i"].Equal(at(tc.nadirAt)) {
				t.Errorf("nadir_do2i at %v, want minute %v", m.At["nadir_do2i"], tc.nadirAt)
			}
		})
	}
}

// TestMetricsLeaveOutImplausibleReadings: a reading outside its channel's
// plausible range is skipped (and counted as skipped), and a sample whose
// device time lies outside the case's device window is left out: neither
// may drive a nadir, nor stretch an ECMO run's window.
func TestMetricsLeaveOutImplausibleReadings(t *testing.T) {
	c := &Case{ID: uuid.New(), Kind: KindECMO, CreatedAt: at(0)}
	c.Details.Patient = Patient{BSAM2: 2, BSAFormula: BSADuBois}
	b := &entryBuilder{caseID: c.ID}
	b.lab(0, "hb", 10)
	b.lab(0, "sao2", 100)
	b.lab(0, "po2", 200)
	received := at(61)
	good := minuteSeries("pump_flow", 0, 59, func(m int) (float64, bool) {
		if m == 30 {
			return 60, false // 60 L/min: no pump delivers it
		}
		return 4, false
	})
	// A console whose clock was reset: one reading two days before the
	// case, one five hours ahead of its own receipt.
	bad := Series{Channel: "pump_flow", TimesMs: []int64{at(-48 * 60).UnixMilli(), at(300).UnixMilli()}, Values: []float64{0.5, 0.5}, Invalid: []bool{false, false}}
	temp := Series{Channel: "temp_nasopharyngeal", TimesMs: []int64{at(10).UnixMilli(), at(20).UnixMilli()}, Values: []float64{36, 1}, Invalid: []bool{false, false}}
	m := ComputeMetrics(c, b.all, []SourcedSeries{
		{SourceID: "ecmo", Series: good, RecordedAt: received},
		{SourceID: "ecmo-reset", Series: bad, RecordedAt: received},
		{SourceID: "mon", Series: temp, RecordedAt: received},
	}, DefaultMetricsConfig())
	// The run is the data, minutes 0 → 59; minute 30 is skipped.
	want := map[string]float64{"nadir_do2i": 280, "minutes_do2i_skipped": 1, "full_flow_minutes": 59, "nadir_temp_nasopharyngeal": 36}
	for name, w := range want {
		if got, ok := m.Values[name]; !ok || got != w {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, w)
		}
	}
	if len(m.Runs) != 1 || !m.Runs[0].On.Equal(at(0)) || !m.Runs[0].Off.Equal(at(59)) || m.Runs[0].Charted {
		t.Errorf("runs %+v, want the data's span, minutes 0 → 59", m.Runs)
	}
}
