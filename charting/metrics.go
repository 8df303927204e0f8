package charting

import (
	"math"
	"slices"
	"strconv"
	"time"
)

// MetricDefinitionsVersion identifies the definitions below. It is stored
// with every computed set of metrics, so a reviewer can tell which rules
// produced a stored value; any change to a definition, a default threshold
// or the sample-hold rule must bump it so stale rows can be recomputed.
//
// Version 2: the DO2i, MAP and SvO2 metrics are measured over full-flow
// (established) bypass instead of the whole of bypass (OverFullFlow), the
// full-flow window is reported (Runs, full_flow_minutes,
// full_flow_window_source), and device readings outside their channel's
// plausible range or outside the case's device time window are left out.
const MetricDefinitionsVersion = 2

// MetricsConfig holds the thresholds of the quality metrics. Thresholds are
// per-site or per-population settings, not adult constants
// (docs/domain.md "Patients of every age"); DefaultMetricsConfig gives the
// values named in docs/domain.md "Quality metrics".
type MetricsConfig struct {
	// DO2iThreshold in mL/min/m² for minutes and area below
	// (280, GIFT trial; 272, 262 and 300 are also used).
	DO2iThreshold float64 `json:"do2i_threshold"`
	// MAPThresholds in mmHg: minutes below each are reported as
	// minutes_map_below_<n>.
	MAPThresholds []float64 `json:"map_thresholds"`
	// MAPEpisodeThreshold in mmHg: episodes below it lasting longer than
	// EpisodeMinutes are counted (registry benchmark: MAP < 40 for > 5 min).
	MAPEpisodeThreshold float64 `json:"map_episode_threshold"`
	// SvO2Threshold in %: episodes below it for longer than EpisodeMinutes.
	SvO2Threshold float64 `json:"svo2_threshold"`
	// EpisodeMinutes is the duration an excursion must exceed to count.
	EpisodeMinutes float64 `json:"episode_minutes"`
	// ArterialOutletMaxC: arterial outlet should stay at or below it (37).
	ArterialOutletMaxC float64 `json:"arterial_outlet_max_c"`
	// CoreMaxC: core above it for more than EpisodeMinutes is a breach (37.5).
	CoreMaxC float64 `json:"core_max_c"`
	// RewarmingMaxCPerMin is the highest acceptable rewarming rate (0.5).
	RewarmingMaxCPerMin float64 `json:"rewarming_max_c_per_min"`
	// GradientMaxC is the arterial–venous gradient limit while cooling or
	// rewarming (10); GradientWarmMaxC applies from WarmFromC up (4 from 30).
	GradientMaxC     float64 `json:"gradient_max_c"`
	GradientWarmMaxC float64 `json:"gradient_warm_max_c"`
	WarmFromC        float64 `json:"warm_from_c"`
	// Glucose and pCO2 target ranges (4–10 mmol/L, 35–45 mmHg).
	GlucoseMin float64 `json:"glucose_min"`
	GlucoseMax float64 `json:"glucose_max"`
	PCO2Min    float64 `json:"pco2_min"`
	PCO2Max    float64 `json:"pco2_max"`
	// MaxHold is how long a sample stands for the channel's value when the
	// next sample is late: device numerics come every 1 s to 1 min
	// (docs/domain.md "Continuous channels"), so a gap longer than this is
	// missing data, not a constant value (inferred).
	MaxHold time.Duration `json:"max_hold_ns"`
	// The full-flow rule finds the ends of established bypass in a run
	// whose full_flow or weaning_start event was not charted (see
	// BypassRun; the data dictionary asks for "a documented flow-based rule
	// the site can configure" and gives no numbers, so the defaults are
	// inferred). Full flow starts when the pump flow first stays at or
	// above FullFlowPct % of the run's full-flow level (the time-weighted
	// median of its flow) for FullFlowSustainMinutes, and ends when it
	// last falls below that before bypass_off. FullFlowPct 0 turns the
	// flow rule off.
	FullFlowPct            float64 `json:"full_flow_pct"`
	FullFlowSustainMinutes float64 `json:"full_flow_sustain_minutes"`
	// Without usable pump flow in a run, full flow is taken to start
	// FullFlowAfterOnMinutes after bypass_on and to end
	// WeaningBeforeOffMinutes before bypass_off (inferred).
	FullFlowAfterOnMinutes  float64 `json:"full_flow_after_on_minutes"`
	WeaningBeforeOffMinutes float64 `json:"weaning_before_off_minutes"`
	// Populations give patient populations their own thresholds: a case
	// whose patient weighs at most a population's MaxWeightKg is measured
	// with that population's config (the lightest such population; cases
	// of unknown weight use the site's). Neonates and infants are not small
	// adults (docs/domain.md "Patients of every age").
	Populations []MetricsPopulation `json:"populations,omitempty"`
}

// MetricsPopulation is a patient population with its own thresholds.
type MetricsPopulation struct {
	Name        string  `json:"name"`
	MaxWeightKg float64 `json:"max_weight_kg"`
	// Config holds the population's thresholds; its own Populations are
	// ignored.
	Config MetricsConfig `json:"config"`
}

// For returns the thresholds of a patient of weightKg (0: unknown) and the
// population's name, "" for the site's own.
func (c MetricsConfig) For(weightKg float64) (MetricsConfig, string) {
	best := -1
	for i, p := range c.Populations {
		if weightKg > 0 && weightKg <= p.MaxWeightKg && (best < 0 || p.MaxWeightKg < c.Populations[best].MaxWeightKg) {
			best = i
		}
	}
	if best < 0 {
		return c.own(), ""
	}
	return c.Populations[best].Config.own(), c.Populations[best].Name
}

// own is c without its populations: the thresholds one case is measured
// with.
func (c MetricsConfig) own() MetricsConfig {
	c.Populations = nil
	return c
}

// DefaultMetricsConfig returns the thresholds of docs/domain.md "Quality
// metrics".
func DefaultMetricsConfig() MetricsConfig {
	return MetricsConfig{
		DO2iThreshold: 280, MAPThresholds: []float64{40, 50}, MAPEpisodeThreshold: 40,
		SvO2Threshold: 60, EpisodeMinutes: 5, ArterialOutletMaxC: 37, CoreMaxC: 37.5,
		RewarmingMaxCPerMin: 0.5, GradientMaxC: 10, GradientWarmMaxC: 4, WarmFromC: 30,
		GlucoseMin: 4, GlucoseMax: 10, PCO2Min: 35, PCO2Max: 45, MaxHold: time.Minute,
		// Inferred: 80 % sits above hypothermic flows' share of the
		// normothermic level (1.8 of 2.4 L/min/m², 75 %) only when the run
		// goes on bypass warm, which is when full flow is first reached;
		// one minute keeps a momentary peak of the ramp from counting.
		FullFlowPct: 80, FullFlowSustainMinutes: 1, FullFlowAfterOnMinutes: 5, WeaningBeforeOffMinutes: 10,
	}
}

// SourcedSeries is a series with the device source it came from, so that
// artifact marks naming a source apply to that source only, and the time
// the server received its batch, which bounds its plausible device times
// ((*Case).DeviceWindow; zero: unknown, no upper bound).
type SourcedSeries struct {
	SourceID   string
	Series     Series
	RecordedAt time.Time
}

// Metrics is the quality-metric set of one case.
type Metrics struct {
	// Version is MetricDefinitionsVersion at computation.
	Version int `json:"version"`
	// Config holds the site's thresholds, populations included; Population
	// names the population whose thresholds were used ("" for the site's):
	// Thresholds gives them.
	Config     MetricsConfig `json:"config"`
	Population string        `json:"population,omitempty"`
	// Values holds every metric that could be computed, by name (see
	// MetricDefinitions). A metric whose inputs are missing is absent,
	// never 0.
	Values map[string]float64 `json:"values"`
	// NadirTempSite is the site of nadir_temp_c (a catalogue channel key).
	NadirTempSite string `json:"nadir_temp_site,omitempty"`
	// At holds when a nadir or peak first occurred (nadir_temp_c and each
	// nadir_temp_<site>, max_arterial_outlet_c, nadir_hct_pct, nadir_do2i):
	// the device time of the sample, or the lab's clinical time. Exports
	// send it (HL7 OBX-14, FHIR effectiveDateTime); the de-identified
	// extract does not.
	At map[string]time.Time `json:"at,omitempty"`
	// BSAFormula is the formula behind bsa_m2 (docs/domain.md "The case").
	BSAFormula BSAFormula `json:"bsa_formula,omitempty"`
	// BypassStart is the first bypass_on, zero when none was charted; the
	// de-identified extract counts times from it.
	BypassStart time.Time `json:"bypass_start,omitzero"`
	// Runs are the bypass runs with their full-flow windows, the time the
	// OverFullFlow metrics cover and how each end was found.
	Runs []BypassRun `json:"runs,omitempty"`
}

// MetricDefinition documents one named metric.
type MetricDefinition struct {
	Name        string `json:"name"`
	Unit        string `json:"unit"`
	Description string `json:"description"`
	// Window is the time the metric is measured over.
	Window MetricWindow `json:"window"`
}

func populationConfigs(cfg MetricsConfig) []MetricsConfig {
	var out []MetricsConfig
	for _, p := range cfg.Populations {
		out = append(out, p.Config)
	}
	return out
}

// MetricDefinitions lists the named metrics for cfg (the MAP thresholds
// make names), in a fixed order, each with the window it is measured over.
//
// Which window (docs/domain.md "Quality metrics"): metrics that depend on the
// pump carrying the whole circulation — DO2i (pump flow), and MAP and SvO2,
// which while going on and weaning off reflect the heart taking over or
// handing back and the venous line filling or emptying — are measured on
// full-flow bypass (OverFullFlow), less charted circulatory arrest, whose
// zero flow is deliberate and has its own metric (inferred). Temperatures,
// haematocrit and lab benchmarks describe the patient, not the pump's
// output, and registries take them "on bypass" (the lowest Hct on bypass,
// the median last Hct on bypass): they use every bypass run (OverBypass).
// Device readings outside their channel's plausible range are left out of
// every metric and counted as skipped; samples whose device time lies
// outside the case's device time window ((*Case).DeviceWindow) are left out
// altogether.
func MetricDefinitions(cfg MetricsConfig) []MetricDefinition {
	def := func(w MetricWindow) func(name, unit, desc string) MetricDefinition {
		return func(name, unit, desc string) MetricDefinition { return MetricDefinition{name, unit, desc, w} }
	}
	bp, ff, evd, cs := def(OverBypass), def(OverFullFlow), def(OverEvents), def(OverCase)
	d := []MetricDefinition{
		bp("cpb_minutes", "min", "CPB time: sum of bypass_on → bypass_off intervals"),
		evd("cross_clamp_minutes", "min", "cross-clamp time: sum of cross_clamp_on → cross_clamp_off intervals"),
		evd("cpb_minus_clamp_minutes", "min", "CPB time minus cross-clamp time (> 30 min is associated with stroke and reoperation)"),
		evd("circulatory_arrest_minutes", "min", "circulatory arrest time: sum of circulatory_arrest_start → end intervals"),
		ff("full_flow_minutes", "min", "full-flow (established) bypass: per run, charted full_flow → weaning_start, else the site's flow or minutes rule, less charted circulatory arrest; the window of the DO2i, MAP and SvO2 metrics"),
		ff("full_flow_window_source", "1", "how the full-flow window's ends were found, the worst over all runs: 1 charted events, 2 flow rule, 3 minutes rule (no usable flow), 0 no full-flow window (its metrics are then absent)"),
		bp("nadir_temp_c", "Cel", "lowest core temperature (nasopharyngeal, bladder or rectal) on bypass; site in nadir_temp_site. In every device metric, readings outside the channel's plausible range are left out (counted as skipped) and samples timed outside the case's device time window are ignored"),
	}
	for _, site := range tempSites {
		d = append(d, bp("nadir_"+site, "Cel", "lowest "+site+" on bypass"))
	}
	d = append(d, []MetricDefinition{
		bp("nadir_hct_pct", "%", "lowest haematocrit on bypass, in-line or lab (as registries take it, going on and weaning included)"),
		cs("bsa_m2", "m2", "body surface area with the recorded formula"),
		ff("nadir_do2i", "mL/min/m2", "lowest DO2i on full-flow bypass; DO2i = flow/BSA × CaO2 × 10, CaO2 = 1.34 × Hb × SaO2 + 0.003 × PaO2"),
		ff("mean_do2i", "mL/min/m2", "time-weighted mean DO2i on full-flow bypass"),
		ff("minutes_do2i_below", "min", "minutes on full-flow bypass with DO2i below the configured threshold"),
		ff("area_do2i_below", "mL/m2", "area below the DO2i threshold on full-flow bypass: Σ (threshold − DO2i) × minutes"),
		ff("minutes_do2i_skipped", "min", "minutes on full-flow bypass without a usable DO2i (artifact, invalid or implausible reading, missing input)"),
	}...)
	// Every population's MAP thresholds name metrics, so a cohort of mixed
	// populations can be queried for any of them.
	seen := map[string]bool{}
	for _, c := range append([]MetricsConfig{cfg}, populationConfigs(cfg)...) {
		for _, th := range c.MAPThresholds {
			n := fmtThreshold(th)
			if !seen[n] {
				seen[n] = true
				d = append(d, ff("minutes_map_below_"+n, "min", "minutes on full-flow bypass with MAP below "+n+" mmHg"))
			}
		}
	}
	d = append(d, []MetricDefinition{
		ff("minutes_map_skipped", "min", "minutes of MAP data on full-flow bypass skipped as artifact, invalid or implausible"),
		ff("map_low_episodes", "1", "episodes on full-flow bypass of MAP below the episode threshold for longer than the episode minutes"),
		ff("svo2_low_episodes", "1", "episodes on full-flow bypass of SvO2 below the threshold (60 %) for longer than the episode minutes (5)"),
		ff("svo2_low_episode_minutes", "min", "minutes within those SvO2 episodes"),
		ff("minutes_svo2_skipped", "min", "minutes of SvO2 data on full-flow bypass skipped as artifact, invalid or implausible"),
		bp("max_arterial_outlet_c", "Cel", "highest arterial outlet temperature on bypass"),
		bp("minutes_arterial_outlet_above_max", "min", "minutes on bypass with arterial outlet above the limit (37 °C)"),
		bp("core_high_episodes", "1", "episodes on bypass of core temperature above 37.5 °C for longer than the episode minutes"),
		bp("max_rewarming_rate_c_per_min", "Cel/min", "highest core warming rate over one minute on bypass"),
		bp("minutes_rewarming_rate_breach", "min", "minutes on bypass with the core warming faster than the limit (0.5 °C/min)"),
		bp("minutes_gradient_breach", "min", "minutes on bypass with |arterial outlet − venous inlet| above 10 °C, or 4 °C from 30 °C up"),
		bp("max_gradient_c", "Cel", "largest |arterial outlet − venous inlet| on bypass"),
		bp("glucose_results", "1", "glucose lab results on bypass"),
		bp("glucose_in_range_pct", "%", "share of glucose results on bypass within 4–10 mmol/L"),
		bp("pco2_results", "1", "pCO2 lab results on bypass"),
		bp("pco2_in_range_pct", "%", "share of pCO2 lab results on bypass within 35–45 mmHg"),
		bp("minutes_inline_pco2_out_of_range", "min", "minutes of in-line pCO2 outside 35–45 mmHg on bypass"),
		cs("transfused", "1", "1 when any blood product was given, else 0"),
		cs("transfusion_units", "1", "blood product units given"),
		cs("prbc_units", "1", "red cell (PRBC) units given"),
		cs("net_prime_volume_index", "mL/m2", "(total prime − RAP volume) / BSA"),
		cs("ultrafiltration_ml", "mL", "ultrafiltration volume removed"),
		cs("fluid_balance_ml", "mL", "net prime + crystalloid + colloid + cell saver + blood products + cardioplegia − ultrafiltration − urine"),
		cs("checklist_completed", "1", "1 when pre-bypass checklist items were signed before bypass_on (or at all when none), else 0"),
		cs("suckers_stopped_before_protamine", "1", "1 when suckers_stopped precedes protamine_given, 0 when after or missing; absent without protamine"),
	}...)
	return d
}

// tempSites are the patient and circuit temperatures whose nadirs are kept;
// cardioplegia and heater-cooler water are not patient temperatures.
var tempSites = []string{"temp_arterial_outlet", "temp_venous_inlet", "temp_nasopharyngeal", "temp_bladder", "temp_rectal"}

// coreSites are the core temperature probes, in order of preference for the
// rewarming rate and core-high episodes (nasopharyngeal first: it tracks
// brain temperature; inferred).
var coreSites = []string{"temp_nasopharyngeal", "temp_bladder", "temp_rectal"}

func fmtThreshold(x float64) string {
	return strconv.FormatFloat(x, 'f', -1, 64)
}

// CaO2 returns arterial oxygen content in mL/dL (docs/domain.md "Oxygen
// delivery"): Hb g/dL, SaO2 as a fraction, PaO2 mmHg.
func CaO2(hbGdl, sao2Frac, pao2 float64) float64 {
	return 1.34*hbGdl*sao2Frac + 0.003*pao2
}

// DO2i returns indexed oxygen delivery in mL/min/m² (docs/domain.md "Oxygen
// delivery"): flow L/min, BSA m², CaO2 mL/dL.
func DO2i(flowLmin, bsaM2, cao2 float64) float64 {
	if bsaM2 <= 0 {
		return math.NaN()
	}
	return flowLmin / bsaM2 * cao2 * 10
}

// Thresholds returns the thresholds the metrics were computed with.
func (m Metrics) Thresholds() MetricsConfig {
	for _, p := range m.Config.Populations {
		if p.Name == m.Population && m.Population != "" {
			return p.Config.own()
		}
	}
	return m.Config.own()
}

// ComputeMetrics is ComputeMetricsWith the default channel catalogue.
func ComputeMetrics(c *Case, entries []Entry, series []SourcedSeries, cfg MetricsConfig) Metrics {
	return ComputeMetricsWith(c, entries, series, cfg, nil)
}

// ComputeMetricsWith computes the quality metrics of a case (docs/domain.md
// "Quality metrics") from its details, its entries (all of them: corrections
// and voids are applied here) and its samples, with the plausible ranges of
// cat (nil: DefaultCatalogue). It is pure: the same input always gives the
// same output.
func ComputeMetricsWith(c *Case, entries []Entry, series []SourcedSeries, cfg MetricsConfig, cat *Catalogue) Metrics {
	if cat == nil {
		cat = DefaultCatalogue()
	}
	cur := CurrentView(entries, false)
	var weight float64
	if c != nil {
		weight = c.Details.Patient.WeightKg
	}
	eff, pop := cfg.For(weight)
	m := Metrics{Version: MetricDefinitionsVersion, Config: cfg, Population: pop, Values: map[string]float64{}, At: map[string]time.Time{}}
	ev := eventTimes(cur)
	k := &metricsCalc{cfg: eff, m: &m, cur: cur, ev: ev}
	k.times()
	k.window = intervals(ev, EventBypassOn, EventBypassOff)
	charted := len(k.window) > 0
	if charted {
		m.BypassStart = time.UnixMilli(k.window[0].from).UTC()
	}
	k.tracks = buildTracks(series, cur, c, cat)
	if !charted {
		k.window = k.tracks.extent() // ECMO or uncharted bypass: all data
	}
	k.fullFlow(k.window, charted)
	k.bsa(c)
	k.temperatures()
	k.hct()
	k.do2i()
	k.pressuresAndSaturation()
	k.labs()
	k.blood(c)
	k.process()
	return m
}

type metricsCalc struct {
	cfg    MetricsConfig
	m      *Metrics
	cur    []Entry
	ev     map[string][]int64
	window []span
	// established is the full-flow part of the runs, less charted
	// circulatory arrest (OverFullFlow).
	established []span
	tracks      tracks
	bsaM2       float64
}

func (k *metricsCalc) set(name string, v float64) {
	if !math.IsNaN(v) && !math.IsInf(v, 0) {
		k.m.Values[name] = v
	}
}

// setAt records when the metric name's value occurred.
func (k *metricsCalc) setAt(name string, ms int64) { k.m.At[name] = time.UnixMilli(ms).UTC() }

// span is a half-open time interval [from, to) in Unix milliseconds.
type span struct{ from, to int64 }

func minutes(ms int64) float64 { return float64(ms) / 60000 }

// eventTimes returns the occurred-at times of current events by type, in
// order.
func eventTimes(cur []Entry) map[string][]int64 {
	ev := map[string][]int64{}
	for _, e := range cur {
		if e.Detail.Event != nil {
			ev[e.Detail.Event.Type] = append(ev[e.Detail.Event.Type], e.OccurredAt.UnixMilli())
		}
	}
	return ev
}

// intervals pairs each start event with the first end event after it; a
// start without an end, or an end without a start, makes no interval
// because its length is unknown.
func intervals(ev map[string][]int64, start, end string) []span {
	var out []span
	ends := ev[end]
	j := 0
	for i, s := range ev[start] {
		if i+1 < len(ev[start]) && ev[start][i+1] < firstAfter(ends, s) {
			continue // a repeated start before the end: the later one counts
		}
		for j < len(ends) && ends[j] <= s {
			j++
		}
		if j < len(ends) {
			out = append(out, span{s, ends[j]})
			j++
		}
	}
	return out
}

func firstAfter(ts []int64, t int64) int64 {
	for _, x := range ts {
		if x > t {
			return x
		}
	}
	return math.MaxInt64
}

func totalMs(sp []span) int64 {
	var t int64
	for _, s := range sp {
		t += s.to - s.from
	}
	return t
}

func (k *metricsCalc) inWindow(t int64) bool {
	for _, w := range k.window {
		if t >= w.from && t < w.to {
			return true
		}
	}
	return false
}

// times sets the interval metrics (docs/domain.md "Quality metrics", Times).
func (k *metricsCalc) times() {
	cpb := intervals(k.ev, EventBypassOn, EventBypassOff)
	xc := intervals(k.ev, EventCrossClampOn, EventCrossClampOff)
	if len(cpb) > 0 {
		k.set("cpb_minutes", minutes(totalMs(cpb)))
	}
	if len(xc) > 0 {
		k.set("cross_clamp_minutes", minutes(totalMs(xc)))
	}
	if len(cpb) > 0 && len(xc) > 0 {
		k.set("cpb_minus_clamp_minutes", minutes(totalMs(cpb)-totalMs(xc)))
	}
	if len(k.ev[EventCirculatoryArrestStart]) > 0 {
		k.set("circulatory_arrest_minutes", minutes(totalMs(intervals(k.ev, EventCirculatoryArrestStart, EventCirculatoryArrestEnd))))
	}
}

// bsa takes the stored BSA and formula (docs/domain.md "The case"), computing
// it with the recorded formula when it was not stored.
func (k *metricsCalc) bsa(c *Case) {
	if c == nil {
		return
	}
	p := c.Details.Patient
	f := p.BSAFormula
	if f == "" {
		f = BSAMosteller
	}
	v := p.BSAM2
	if v <= 0 {
		v = BSA(f, p.HeightCm, p.WeightKg)
	}
	if v > 0 {
		k.bsaM2 = v
		k.set("bsa_m2", v)
		k.m.BSAFormula = f
	}
}

func (k *metricsCalc) temperatures() {
	nadir, site, nadirAt := math.Inf(1), "", int64(0)
	for _, s := range tempSites {
		lo, at := k.tracks[s].segments(k.window, k.holdMs()).minAt()
		if math.IsInf(lo, 1) {
			continue
		}
		k.set("nadir_"+s, lo)
		k.setAt("nadir_"+s, at)
		if slices.Contains(coreSites, s) && lo < nadir {
			nadir, site, nadirAt = lo, s, at
		}
	}
	if site != "" {
		k.set("nadir_temp_c", nadir)
		k.setAt("nadir_temp_c", nadirAt)
		k.m.NadirTempSite = site
	}
	hold := k.holdMs()
	art := k.tracks["temp_arterial_outlet"].segments(k.window, hold)
	if hi, at := art.maxAt(); !math.IsInf(hi, -1) {
		k.set("max_arterial_outlet_c", hi)
		k.setAt("max_arterial_outlet_c", at)
		k.set("minutes_arterial_outlet_above_max", art.minutesWhere(func(v float64) bool { return v > k.cfg.ArterialOutletMaxC }))
	}
	for _, s := range coreSites {
		core := k.tracks[s]
		if len(core) == 0 {
			continue
		}
		segs := core.segments(k.window, hold)
		n, _ := segs.episodes(func(v float64) bool { return v > k.cfg.CoreMaxC }, k.episodeMs())
		k.set("core_high_episodes", float64(n))
		k.rewarming(core)
		break
	}
	k.gradient(art, k.tracks["temp_venous_inlet"])
}

// rewarming measures the core warming rate: for each valid sample, the rise
// since the latest valid sample at least one minute earlier (and at most a
// minute plus MaxHold earlier), per minute. A breach lasts as long as the
// later sample holds.
func (k *metricsCalc) rewarming(core track) {
	hold := k.holdMs()
	maxRate, breach, any := math.Inf(-1), 0.0, false
	for j, p := range core {
		if p.skip || !k.inWindow(p.t) {
			continue
		}
		i := -1
		for x := j - 1; x >= 0; x-- {
			if !core[x].skip && p.t-core[x].t >= 60000 {
				i = x
				break
			}
		}
		if i < 0 || p.t-core[i].t > 60000+hold {
			continue
		}
		rate := (p.v - core[i].v) / minutes(p.t-core[i].t)
		any = true
		maxRate = max(maxRate, rate)
		if rate > k.cfg.RewarmingMaxCPerMin {
			breach += minutes(core.holdOf(j, hold, k.window))
		}
	}
	if any {
		k.set("max_rewarming_rate_c_per_min", math.Round(maxRate*1e6)/1e6)
		k.set("minutes_rewarming_rate_breach", breach)
	}
}

// gradient measures |arterial outlet − venous inlet| on each arterial
// segment against the venous value in force at its start.
func (k *metricsCalc) gradient(art segments, ven track) {
	if len(art) == 0 || len(ven) == 0 {
		return
	}
	hold := k.holdMs()
	maxG, breach, any := 0.0, 0.0, false
	for _, s := range art {
		if s.skip {
			continue
		}
		vv, ok := ven.valueAt(s.from, hold)
		if !ok {
			continue
		}
		any = true
		g := math.Abs(s.v - vv)
		maxG = max(maxG, g)
		limit := k.cfg.GradientMaxC
		if s.v >= k.cfg.WarmFromC {
			limit = k.cfg.GradientWarmMaxC
		}
		if g > limit {
			breach += minutes(s.to - s.from)
		}
	}
	if any {
		k.set("max_gradient_c", math.Round(maxG*1e6)/1e6)
		k.set("minutes_gradient_breach", breach)
	}
}

func (k *metricsCalc) holdMs() int64    { return k.cfg.MaxHold.Milliseconds() }
func (k *metricsCalc) episodeMs() int64 { return int64(k.cfg.EpisodeMinutes * 60000) }

// labsOn returns the current lab results of an analyte within the bypass
// window, in time order.
func (k *metricsCalc) labsOn(analyte string) []*LabResult {
	var out []*LabResult
	for _, e := range k.cur {
		if l := e.Detail.LabResult; l != nil && l.Analyte == analyte && k.inWindow(e.OccurredAt.UnixMilli()) {
			out = append(out, l)
		}
	}
	return out
}

func (k *metricsCalc) hct() {
	lo, at := k.tracks["inline_hct"].segments(k.window, k.holdMs()).minAt()
	for _, e := range k.cur {
		l := e.Detail.LabResult
		t := e.OccurredAt.UnixMilli()
		if l != nil && l.Analyte == "hct" && k.inWindow(t) && (l.Value < lo || l.Value == lo && t < at) {
			lo, at = l.Value, t
		}
	}
	if !math.IsInf(lo, 1) {
		k.set("nadir_hct_pct", lo)
		k.setAt("nadir_hct_pct", at)
	}
}

// pressuresAndSaturation sets the MAP and SvO2 metrics over full-flow
// bypass and the in-line pCO2 minutes over the whole of bypass.
func (k *metricsCalc) pressuresAndSaturation() {
	hold, ep := k.holdMs(), k.episodeMs()
	if mp := k.tracks["map"]; len(mp) > 0 && len(k.established) > 0 {
		segs := mp.segments(k.established, hold)
		for _, th := range k.cfg.MAPThresholds {
			k.set("minutes_map_below_"+fmtThreshold(th), segs.minutesWhere(func(v float64) bool { return v < th }))
		}
		k.set("minutes_map_skipped", segs.skippedMinutes())
		n, _ := segs.episodes(func(v float64) bool { return v < k.cfg.MAPEpisodeThreshold }, ep)
		k.set("map_low_episodes", float64(n))
	}
	if sv := k.tracks["inline_svo2"]; len(sv) > 0 && len(k.established) > 0 {
		segs := sv.segments(k.established, hold)
		n, ms := segs.episodes(func(v float64) bool { return v < k.cfg.SvO2Threshold }, ep)
		k.set("svo2_low_episodes", float64(n))
		k.set("svo2_low_episode_minutes", minutes(ms))
		k.set("minutes_svo2_skipped", segs.skippedMinutes())
	}
	if pc := k.tracks["inline_pco2"]; len(pc) > 0 {
		segs := pc.segments(k.window, hold)
		k.set("minutes_inline_pco2_out_of_range", segs.minutesWhere(func(v float64) bool { return v < k.cfg.PCO2Min || v > k.cfg.PCO2Max }))
	}
}

// labs sets the glucose and pCO2 benchmarks over lab results on bypass.
func (k *metricsCalc) labs() {
	inRange := func(analyte, count, pct string, lo, hi float64) {
		ls := k.labsOn(analyte)
		if len(ls) == 0 {
			return
		}
		n := 0
		for _, l := range ls {
			if l.Value >= lo && l.Value <= hi {
				n++
			}
		}
		k.set(count, float64(len(ls)))
		k.set(pct, 100*float64(n)/float64(len(ls)))
	}
	inRange("glucose", "glucose_results", "glucose_in_range_pct", k.cfg.GlucoseMin, k.cfg.GlucoseMax)
	inRange("pco2", "pco2_results", "pco2_in_range_pct", k.cfg.PCO2Min, k.cfg.PCO2Max)
}

// blood sets the blood-management metrics (docs/domain.md "Quality metrics",
// Blood management). Fluid balance is not defined by the dictionary; the
// definition here (in: net prime, crystalloid, colloid, cell saver, blood
// products, cardioplegia; out: ultrafiltration, urine) is inferred.
func (k *metricsCalc) blood(c *Case) {
	var units, prbc int32
	var in, out, uf float64
	for _, e := range k.cur {
		d := e.Detail
		switch {
		case d.BloodProduct != nil:
			units += d.BloodProduct.Units
			if d.BloodProduct.Type == "prbc" {
				prbc += d.BloodProduct.Units
			}
			in += d.BloodProduct.VolumeML
		case d.Fluid != nil:
			switch d.Fluid.Kind {
			case "ultrafiltration_removed":
				uf += d.Fluid.VolumeML
				out += d.Fluid.VolumeML
			case "urine_output":
				out += d.Fluid.VolumeML
			default:
				in += d.Fluid.VolumeML
			}
		case d.Cardioplegia != nil:
			in += d.Cardioplegia.VolumeML
		}
	}
	k.set("transfusion_units", float64(units))
	k.set("prbc_units", float64(prbc))
	k.set("transfused", b2f(units > 0))
	k.set("ultrafiltration_ml", uf)
	if c != nil {
		net := c.Details.Prime.TotalVolumeML() - c.Details.Prime.RAPVolumeML
		in += net
		if k.bsaM2 > 0 && c.Details.Prime.TotalVolumeML() > 0 {
			k.set("net_prime_volume_index", math.Round(net/k.bsaM2*1000)/1000)
		}
	}
	k.set("fluid_balance_ml", in-out)
}

// process sets the checklist and protamine metrics.
func (k *metricsCalc) process() {
	onAt := int64(math.MaxInt64)
	if on := k.ev[EventBypassOn]; len(on) > 0 {
		onAt = on[0]
	}
	done := false
	for _, e := range k.cur {
		if e.Detail.ChecklistItem != nil && e.OccurredAt.UnixMilli() <= onAt {
			done = true
		}
	}
	k.set("checklist_completed", b2f(done))
	if p := k.ev[EventProtamineGiven]; len(p) > 0 {
		s := k.ev[EventSuckersStopped]
		k.set("suckers_stopped_before_protamine", b2f(len(s) > 0 && s[0] <= p[0]))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
