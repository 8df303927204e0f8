package charting

import (
	"cmp"
	"slices"
)

// RegularTrends resamples a case's device data onto a regular grid for
// export: for each channel, the mean of its usable samples in each slot of
// periodMs, slots aligned to multiples of periodMs since the Unix epoch. A
// sample is usable unless the device reported it invalid, its value lies
// outside the channel's plausible range in cat (Channel.Plausible; nil cat:
// DefaultCatalogue), or a current artifact mark covers it (the rule of the
// time-below metrics); a slot with none is marked Invalid, so a receiver
// sees a gap, never a made-up value, and a slot whose only readings besides
// invalid or marked ones were out of range says so in OutOfRange. The grid
// runs from the channel's first slot with a sample (usable or not) to its
// last. The series must already be restricted to plausibly timed samples
// (Series.Within): a reading timed in 1970 would stretch the grid over
// decades.
//
// A channel sent by several sources (a temperature from the heart-lung
// machine and the patient monitor) is exported from one: the source with
// the most usable samples, ties to the smaller source ID. Averaging two
// probes would blur sites the clinician reads separately, and a receiver
// takes one series per channel.
//
// cur is the current view of the entries (CurrentView). Results are sorted
// by channel key; the output is a pure function of the input.
func RegularTrends(series []SourcedSeries, cur []Entry, periodMs int64, cat *Catalogue) []RegularSeries {
	if periodMs <= 0 {
		return nil
	}
	if cat == nil {
		cat = DefaultCatalogue()
	}
	var marks []*ArtifactMark
	for _, e := range cur {
		if e.Detail.ArtifactMark != nil {
			marks = append(marks, e.Detail.ArtifactMark)
		}
	}
	type key struct{ source, channel string }
	type slot struct {
		sum          float64
		count        int
		below, above bool // an out-of-range reading below / above the range
	}
	acc := map[key]map[int64]*slot{}
	usable := map[key]int{}
	for _, ss := range series {
		k := key{ss.SourceID, ss.Series.Channel}
		slots := acc[k]
		if slots == nil {
			slots = map[int64]*slot{}
			acc[k] = slots
		}
		s := ss.Series
		ch := cat.Flagging(s.Channel)
		for i, t := range s.TimesMs {
			start := t - mod(t, periodMs)
			sl := slots[start]
			if sl == nil {
				sl = &slot{}
				slots[start] = sl
			}
			if s.IsInvalid(i) || marked(marks, s.Channel, ss.SourceID, t) {
				continue
			}
			if x := s.Values[i]; !ch.Plausible(x) {
				sl.below, sl.above = sl.below || x < ch.Min, sl.above || x > ch.Max
				continue
			}
			sl.sum += s.Values[i]
			sl.count++
			usable[k]++
		}
	}
	chosen := map[string]key{}
	for k := range acc {
		best, ok := chosen[k.channel]
		if !ok || usable[k] > usable[best] || usable[k] == usable[best] && k.source < best.source {
			chosen[k.channel] = k
		}
	}
	out := make([]RegularSeries, 0, len(chosen))
	for ch, k := range chosen {
		slots := acc[k]
		starts := make([]int64, 0, len(slots))
		for st := range slots {
			starts = append(starts, st)
		}
		if len(starts) == 0 {
			continue
		}
		lo, hi := slices.Min(starts), slices.Max(starts)
		n := int((hi-lo)/periodMs) + 1
		s := Series{Channel: ch, TimesMs: make([]int64, n), Values: make([]float64, n), Invalid: make([]bool, n)}
		var oor []int8
		for i := range n {
			t := lo + int64(i)*periodMs
			s.TimesMs[i] = t
			sl := slots[t]
			switch {
			case sl != nil && sl.count > 0:
				s.Values[i] = sl.sum / float64(sl.count)
				continue
			case sl != nil && sl.below != sl.above:
				if oor == nil {
					oor = make([]int8, n)
				}
				oor[i] = 1
				if sl.below {
					oor[i] = -1
				}
			}
			s.Invalid[i] = true
		}
		if !slices.Contains(s.Invalid, true) {
			s.Invalid = nil
		}
		out = append(out, RegularSeries{SourcedSeries: SourcedSeries{SourceID: k.source, Series: s}, OutOfRange: oor})
	}
	slices.SortFunc(out, func(a, b RegularSeries) int { return cmp.Compare(a.Series.Channel, b.Series.Channel) })
	return out
}

// RegularSeries is one channel's regular grid for export.
type RegularSeries struct {
	SourcedSeries
	// OutOfRange is nil, or as long as the series: -1 (or +1) at a slot
	// without a usable reading in which the device's readings were all
	// below (or all above) the channel's plausible range — the slot is
	// also Invalid; 0 elsewhere. A slot with readings on both sides of the
	// range is a plain gap.
	OutOfRange []int8
}
