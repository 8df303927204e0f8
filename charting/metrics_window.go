package charting

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Windows of the quality metrics. Metrics "on bypass" mean on established
// bypass (docs/domain.md "Quality metrics"): going on and weaning off are
// deliberate low-flow phases, and a DO2i nadir or minutes below a
// threshold taken there is not what a reviewer means. So each bypass run
// has a full-flow part, from the charted full_flow event to the charted
// weaning_start event, each end found by a site-configured rule when it
// was not charted, and the metrics that depend on the pump carrying the
// whole circulation are measured over it (MetricDefinition.Window).

// MetricWindow names the time a metric is measured over.
type MetricWindow string

// The windows of MetricDefinitions.
const (
	// OverBypass is every bypass run, bypass_on → bypass_off (the span of
	// the device data when no bypass was charted, as on ECMO).
	OverBypass MetricWindow = "bypass"
	// OverFullFlow is the full-flow (established) part of each run, less
	// charted circulatory arrest (BypassRun).
	OverFullFlow MetricWindow = "full_flow"
	// OverEvents is the metric's own pair of events (cross-clamp, arrest).
	OverEvents MetricWindow = "events"
	// OverCase is the whole record (blood management, process).
	OverCase MetricWindow = "case"
)

// WindowSource says how one end of a run's full-flow window was found.
type WindowSource string

// How a full-flow window's ends are found, best first.
const (
	// WindowCharted: the full_flow or weaning_start event of the run.
	WindowCharted WindowSource = "charted"
	// WindowFlowRule: from the pump flow, against the run's own full-flow
	// level (MetricsConfig.FullFlowPct, FullFlowSustainMinutes).
	WindowFlowRule WindowSource = "flow_rule"
	// WindowMinutesRule: a fixed time after bypass_on or before bypass_off
	// (MetricsConfig.FullFlowAfterOnMinutes, WeaningBeforeOffMinutes), when
	// the run has no usable pump flow.
	WindowMinutesRule WindowSource = "minutes_rule"
	// WindowNone: no full-flow window could be found for the run.
	WindowNone WindowSource = "none"
)

// Code is the value of the metric full_flow_window_source for a case
// whose worst end was found this way: 1 charted, 2 flow rule, 3 minutes
// rule, 0 none.
func (s WindowSource) Code() float64 {
	switch s {
	case WindowCharted:
		return 1
	case WindowFlowRule:
		return 2
	case WindowMinutesRule:
		return 3
	}
	return 0
}

// BypassRun is one bypass run and its full-flow part.
type BypassRun struct {
	// On and Off bound the run: a bypass_on and the bypass_off after it,
	// or the first and last device sample when no bypass was charted.
	On  time.Time `json:"on"`
	Off time.Time `json:"off"`
	// Charted is false when the run is the span of the device data.
	Charted bool `json:"charted"`
	// FullFlowFrom and FullFlowTo bound established bypass within the run;
	// both zero when none was found (FromSource or ToSource is none).
	FullFlowFrom time.Time    `json:"full_flow_from,omitzero"`
	FullFlowTo   time.Time    `json:"full_flow_to,omitzero"`
	FromSource   WindowSource `json:"from_source"`
	ToSource     WindowSource `json:"to_source"`
	// FullFlowMinutes is the window's length less charted circulatory
	// arrest within it: the time the full-flow metrics cover.
	FullFlowMinutes float64 `json:"full_flow_minutes"`
}

// fullFlow finds the full-flow part of each run and sets k.established
// and the window metrics.
func (k *metricsCalc) fullFlow(runs []span, charted bool) {
	if len(runs) == 0 {
		return
	}
	arrest := intervals(k.ev, EventCirculatoryArrestStart, EventCirculatoryArrestEnd)
	worst, any := WindowCharted, false
	for _, r := range runs {
		run := BypassRun{On: time.UnixMilli(r.from).UTC(), Off: time.UnixMilli(r.to).UTC(), Charted: charted,
			FromSource: WindowNone, ToSource: WindowNone}
		if parts, fs, ts := k.fullFlowParts(r); len(parts) > 0 {
			var w []span
			for _, p := range parts {
				w = append(w, subtract(p, arrest)...)
			}
			k.established = append(k.established, w...)
			run.FullFlowFrom, run.FullFlowTo = time.UnixMilli(parts[0].from).UTC(), time.UnixMilli(parts[len(parts)-1].to).UTC()
			run.FromSource, run.ToSource = fs, ts
			run.FullFlowMinutes = minutes(totalMs(w))
			any = true
			for _, s := range []WindowSource{fs, ts} {
				if s.Code() > worst.Code() {
					worst = s
				}
			}
		}
		k.m.Runs = append(k.m.Runs, run)
	}
	if !any {
		worst = WindowNone
	}
	k.set("full_flow_window_source", worst.Code())
	k.set("full_flow_minutes", minutes(totalMs(k.established)))
}

// fullFlowParts returns the full-flow parts of run r and how the first
// start and the last end were found. Established bypass runs from full
// flow to the first weaning_start after it; a wean that failed and was
// charted as full_flow again starts another part, so the failed attempt's
// low flow is left out like any other weaning.
func (k *metricsCalc) fullFlowParts(r span) (parts []span, fs, ts WindowSource) {
	from, fs := k.fullFlowFrom(r)
	if fs == WindowNone {
		return nil, fs, WindowNone
	}
	for {
		to, src := k.fullFlowTo(r, from)
		if src == WindowNone || to <= from {
			return parts, fs, ts
		}
		parts, ts = append(parts, span{from, to}), src
		if src != WindowCharted {
			return parts, fs, ts
		}
		again := false
		for _, t := range k.ev[EventFullFlow] {
			if t >= to && t < r.to {
				from, again = t, true
				break
			}
		}
		if !again {
			return parts, fs, ts
		}
	}
}

// fullFlowFrom returns the start of established bypass in run r: its
// first full_flow event, else the first time the pump flow stays at or
// above FullFlowPct of the run's full-flow level for FullFlowSustainMinutes,
// else FullFlowAfterOnMinutes after the run's start.
func (k *metricsCalc) fullFlowFrom(r span) (int64, WindowSource) {
	for _, t := range k.ev[EventFullFlow] {
		if t >= r.from && t < r.to {
			return t, WindowCharted
		}
	}
	end := r.to
	if t, ok := k.chartedWeaning(r, r.from-1); ok {
		end = t
	}
	if thr, ok := k.fullFlowLevel(r); ok {
		flow, hold, sustain := k.tracks["pump_flow"], k.holdMs(), int64(k.cfg.FullFlowSustainMinutes*60000)
		stretch, prev := int64(-1), int64(0)
		for _, p := range flow {
			if p.skip || p.t < r.from {
				continue
			}
			if p.t >= end {
				break
			}
			if stretch >= 0 && p.t-prev > hold {
				stretch = -1 // unmeasured time ends a stretch
			}
			prev = p.t
			switch {
			case p.v < thr:
				stretch = -1
			case stretch < 0:
				stretch = p.t
			}
			if stretch >= 0 && p.t-stretch >= sustain {
				return stretch, WindowFlowRule
			}
		}
	}
	if !k.hasFlow(r) {
		if t := r.from + int64(k.cfg.FullFlowAfterOnMinutes*60000); t < end {
			return t, WindowMinutesRule
		}
	}
	return 0, WindowNone
}

// fullFlowTo returns the end of established bypass in run r, after from:
// the first weaning_start event after it, else the time the pump flow last fell
// below FullFlowPct of the run's full-flow level before the run ended
// (the run's end when it never did), else WeaningBeforeOffMinutes before
// the run's end.
func (k *metricsCalc) fullFlowTo(r span, from int64) (int64, WindowSource) {
	if t, ok := k.chartedWeaning(r, from); ok {
		return t, WindowCharted
	}
	if thr, ok := k.fullFlowLevel(r); ok {
		flow := k.tracks["pump_flow"]
		last := -1
		for i, p := range flow {
			if !p.skip && p.t >= from && p.t < r.to && p.v >= thr {
				last = i
			}
		}
		if last >= 0 {
			for _, p := range flow[last+1:] {
				if p.t >= r.to {
					break
				}
				if !p.skip {
					return p.t, WindowFlowRule
				}
			}
			return r.to, WindowFlowRule
		}
	}
	if !k.hasFlow(r) {
		if t := r.to - int64(k.cfg.WeaningBeforeOffMinutes*60000); t > from {
			return t, WindowMinutesRule
		}
	}
	return 0, WindowNone
}

// chartedWeaning returns the run's first weaning_start after from.
func (k *metricsCalc) chartedWeaning(r span, from int64) (int64, bool) {
	for _, t := range k.ev[EventWeaningStart] {
		if t > from && t <= r.to {
			return t, true
		}
	}
	return 0, false
}

// hasFlow reports whether run r has any usable pump-flow reading: without
// one the minutes rule stands in for the flow rule, and with one that the
// flow rule cannot use (flow never at its full level for long enough) the
// run has no full-flow window rather than a guessed one.
func (k *metricsCalc) hasFlow(r span) bool {
	for _, p := range k.tracks["pump_flow"] {
		if !p.skip && p.t >= r.from && p.t < r.to {
			return true
		}
	}
	return false
}

// fullFlowLevel returns the flow threshold of the flow rule in run r:
// FullFlowPct of the run's full-flow level, the time-weighted median of
// its usable pump-flow readings. The median is the run's own, not a
// target index: flows are prescribed per kg or per m² and lowered while
// cold (docs/domain.md "Continuous channels", "Patients of every age"), so a
// fixed target would find no full flow in a case run low throughout, and
// hide it. ok is false when the rule is off (FullFlowPct 0) or the run has
// no positive flow.
func (k *metricsCalc) fullFlowLevel(r span) (float64, bool) {
	if k.cfg.FullFlowPct <= 0 {
		return 0, false
	}
	segs := k.tracks["pump_flow"].segments([]span{r}, k.holdMs())
	segs = slices.DeleteFunc(segs, func(s segment) bool { return s.skip })
	if len(segs) == 0 {
		return 0, false
	}
	slices.SortFunc(segs, func(a, b segment) int { return cmp.Compare(a.v, b.v) })
	var total, acc int64
	for _, s := range segs {
		total += s.to - s.from
	}
	level := math.NaN()
	for _, s := range segs {
		acc += s.to - s.from
		if 2*acc >= total {
			level = s.v
			break
		}
	}
	if !(level > 0) {
		return 0, false
	}
	return level * k.cfg.FullFlowPct / 100, true
}

// subtract returns w without the spans of cut, in time order.
func subtract(w span, cut []span) []span {
	out := []span{w}
	for _, c := range cut {
		var next []span
		for _, s := range out {
			if c.to <= s.from || c.from >= s.to {
				next = append(next, s)
				continue
			}
			if c.from > s.from {
				next = append(next, span{s.from, c.from})
			}
			if c.to < s.to {
				next = append(next, span{c.to, s.to})
			}
		}
		out = next
	}
	return out
}
