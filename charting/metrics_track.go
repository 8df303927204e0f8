package charting

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// point is one sample of a channel merged over its sources. skip marks a
// sample the device reported invalid or an operator marked as artifact:
// time-based metrics leave it out and report its time as skipped
// (docs/domain.md "Quality metrics").
type point struct {
	t    int64
	v    float64
	skip bool
}

// track is one channel's samples in time order.
type track []point

// tracks holds the tracks by channel key.
type tracks map[string]track

// buildTracks merges each channel's samples over sources, marking invalid
// readings, readings outside the channel's plausible range in cat and those
// inside a current artifact mark as skipped. Samples whose device time lies
// outside the case's device window for their batch are left out: their
// time is wrong, so they may stand for no time of the case (docs/domain.md
// "Continuous channels"). Two sources sampling the same instant keep the
// first valid reading.
func buildTracks(series []SourcedSeries, cur []Entry, c *Case, cat *Catalogue) tracks {
	var marks []*ArtifactMark
	for _, e := range cur {
		if e.Detail.ArtifactMark != nil {
			marks = append(marks, e.Detail.ArtifactMark)
		}
	}
	out := tracks{}
	for _, ss := range series {
		s := ss.Series
		lo, hi := deviceBounds(c, ss.RecordedAt)
		ch, known := cat.Lookup(s.Channel)
		tr := out[s.Channel]
		for i, t := range s.TimesMs {
			if t < lo || t > hi {
				continue
			}
			v := s.Values[i]
			implausible := known && !ch.Plausible(v)
			skip := s.IsInvalid(i) || implausible || marked(marks, s.Channel, ss.SourceID, t)
			tr = append(tr, point{t: t, v: v, skip: skip})
		}
		out[s.Channel] = tr
	}
	for ch, tr := range out {
		slices.SortStableFunc(tr, func(a, b point) int {
			if a.t != b.t {
				return cmp.Compare(a.t, b.t)
			}
			return cmpBool(a.skip, b.skip)
		})
		out[ch] = slices.CompactFunc(tr, func(a, b point) bool { return a.t == b.t })
	}
	return out
}

// deviceBounds returns the plausible device times, in Unix ms, of a batch
// of case c received at recordedAt ((*Case).DeviceWindow); a zero
// recordedAt (a batch whose receipt is unknown) bounds only the start.
func deviceBounds(c *Case, recordedAt time.Time) (lo, hi int64) {
	lo, hi = math.MinInt64, math.MaxInt64
	if c == nil {
		return lo, hi
	}
	w := c.DeviceWindow(recordedAt)
	lo = w.From.UnixMilli()
	if !recordedAt.IsZero() {
		hi = w.To.UnixMilli()
	}
	return lo, hi
}

func cmpBool(a, b bool) int { return cmp.Compare(int64(b2f(a)), int64(b2f(b))) }

func marked(marks []*ArtifactMark, channel, source string, t int64) bool {
	for _, m := range marks {
		if m.Channel == channel && (m.SourceID == "" || m.SourceID == source) &&
			t >= m.Start.UnixMilli() && t < m.End.UnixMilli() {
			return true
		}
	}
	return false
}

// extent returns the span from the first to the last sample of any channel.
func (ts tracks) extent() []span {
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, tr := range ts {
		if len(tr) > 0 {
			lo, hi = min(lo, tr[0].t), max(hi, tr[len(tr)-1].t)
		}
	}
	if lo >= hi {
		return nil
	}
	return []span{{lo, hi}}
}

// segment is the time a sample stands for, clipped to a window.
type segment struct {
	from, to int64
	v        float64
	skip     bool
}

type segments []segment

// segments returns, for each sample, the time it stands for: until the next
// sample of the channel, at most hold, clipped to the windows.
func (tr track) segments(window []span, hold int64) segments {
	var out segments
	for i := range tr {
		for _, w := range window {
			if s, ok := tr.segmentIn(i, hold, w); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func (tr track) segmentIn(i int, hold int64, w span) (segment, bool) {
	p := tr[i]
	end := p.t + hold
	if i+1 < len(tr) {
		end = min(end, tr[i+1].t)
	}
	from, to := max(p.t, w.from), min(end, w.to)
	return segment{from, to, p.v, p.skip}, to > from
}

// holdOf returns how long sample i stands for within the windows, in ms.
func (tr track) holdOf(i int, hold int64, window []span) int64 {
	var ms int64
	for _, w := range window {
		if s, ok := tr.segmentIn(i, hold, w); ok {
			ms += s.to - s.from
		}
	}
	return ms
}

// valueAt returns the valid value in force at t: the latest sample at or
// before t, if valid and less than hold old.
func (tr track) valueAt(t, hold int64) (float64, bool) {
	i, found := slices.BinarySearchFunc(tr, t, func(p point, t int64) int { return cmp.Compare(p.t, t) })
	if !found {
		i--
	}
	if i < 0 || tr[i].skip || t-tr[i].t >= hold {
		return 0, false
	}
	return tr[i].v, true
}

func (ss segments) minValue() float64 {
	lo, _ := ss.minAt()
	return lo
}

func (ss segments) maxValue() float64 {
	hi, _ := ss.maxAt()
	return hi
}

// minAt returns the lowest valid value and when it first stood (the start
// of its segment, in Unix ms); +Inf when there is none.
func (ss segments) minAt() (float64, int64) {
	lo, at := math.Inf(1), int64(0)
	for _, s := range ss {
		if !s.skip && s.v < lo {
			lo, at = s.v, s.from
		}
	}
	return lo, at
}

// maxAt is minAt for the highest value; -Inf when there is none.
func (ss segments) maxAt() (float64, int64) {
	hi, at := math.Inf(-1), int64(0)
	for _, s := range ss {
		if !s.skip && s.v > hi {
			hi, at = s.v, s.from
		}
	}
	return hi, at
}

// minutesWhere returns the valid minutes whose value satisfies pred.
func (ss segments) minutesWhere(pred func(float64) bool) float64 {
	var ms int64
	for _, s := range ss {
		if !s.skip && pred(s.v) {
			ms += s.to - s.from
		}
	}
	return minutes(ms)
}

// skippedMinutes returns the minutes of artifact or invalid samples.
func (ss segments) skippedMinutes() float64 {
	var ms int64
	for _, s := range ss {
		if s.skip {
			ms += s.to - s.from
		}
	}
	return minutes(ms)
}

// episodes counts runs of contiguous valid segments satisfying pred that
// last longer than minMs, and returns their total length in ms. A skipped
// sample or a gap in the data ends a run: an excursion is only counted
// over time that was actually measured.
func (ss segments) episodes(pred func(float64) bool, minMs int64) (n int, totalMs int64) {
	var runFrom, runTo int64
	in := false
	flush := func() {
		if in && runTo-runFrom > minMs {
			n++
			totalMs += runTo - runFrom
		}
		in = false
	}
	for _, s := range ss {
		if s.skip || !pred(s.v) {
			flush()
			continue
		}
		if in && s.from != runTo {
			flush()
		}
		if !in {
			runFrom, in = s.from, true
		}
		runTo = s.to
	}
	flush()
	return n, totalMs
}

// do2i computes the DO2i series (docs/domain.md "Oxygen delivery") at each
// pump-flow sample, measured over full-flow bypass (k.established), from the Hb, SaO2 and PaO2 in force at that time:
// in-line values while fresh (within MaxHold), otherwise the latest arterial
// lab result, which stands until the next one (labs are drawn every 20–30
// minutes; inferred). A flow sample that is skipped, or whose inputs are
// missing, makes a skipped DO2i sample.
func (k *metricsCalc) do2i() {
	flow := k.tracks["pump_flow"]
	if len(flow) == 0 || k.bsaM2 <= 0 {
		return
	}
	hold := k.holdMs()
	hb := k.input("inline_hb", "hb", false)
	sa := k.input("inline_sao2", "sao2", true)
	po := k.input("inline_po2", "po2", true)
	series := make(track, len(flow))
	for i, p := range flow {
		h, ok1 := hb(p.t, hold)
		s, ok2 := sa(p.t, hold)
		o, ok3 := po(p.t, hold)
		d := point{t: p.t, skip: p.skip || !ok1 || !ok2 || !ok3}
		if !d.skip {
			d.v = DO2i(p.v, k.bsaM2, CaO2(h, s/100, o))
		}
		series[i] = d
	}
	if len(k.established) == 0 {
		return
	}
	segs := series.segments(k.established, hold)
	if lo, at := segs.minAt(); !math.IsInf(lo, 1) {
		k.setAt("nadir_do2i", at)
		th := k.cfg.DO2iThreshold
		var area, sum float64
		var valid int64
		for _, s := range segs {
			if s.skip {
				continue
			}
			d := s.to - s.from
			valid += d
			sum += s.v * float64(d)
			if s.v < th {
				area += (th - s.v) * minutes(d)
			}
		}
		k.set("nadir_do2i", round6(lo))
		k.set("mean_do2i", round6(sum/float64(valid)))
		k.set("minutes_do2i_below", segs.minutesWhere(func(v float64) bool { return v < th }))
		k.set("area_do2i_below", round6(area))
	}
	k.set("minutes_do2i_skipped", segs.skippedMinutes())
}

func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }

// input returns a lookup of one CaO2 input: the in-line channel's fresh
// value, else the latest current lab result of the analyte (arterial site
// only when arterial is set).
func (k *metricsCalc) input(channel, analyte string, arterial bool) func(t, hold int64) (float64, bool) {
	tr := k.tracks[channel]
	var labs track
	for _, e := range k.cur {
		l := e.Detail.LabResult
		if l == nil || l.Analyte != analyte || (arterial && l.Site != "" && l.Site != "arterial") {
			continue
		}
		labs = append(labs, point{t: e.OccurredAt.UnixMilli(), v: l.Value})
	}
	return func(t, hold int64) (float64, bool) {
		if v, ok := tr.valueAt(t, hold); ok {
			return v, true
		}
		return labs.valueAt(t, math.MaxInt64)
	}
}
