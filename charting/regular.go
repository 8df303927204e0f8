package charting

import (
	"cmp"
	"slices"
)

// RegularTrends resamples a case's device data onto a regular grid for
// export: for each channel, the mean of its usable samples in each slot of
// periodMs, slots aligned to multiples of periodMs since the Unix epoch. A
// sample is usable unless the device reported it invalid or a current
// artifact mark covers it (the rule of the time-below metrics); a slot with
// none is marked Invalid, so a receiver sees a gap, never a made-up value.
// The grid runs from the channel's first slot with a sample (usable or not)
// to its last.
//
// A channel sent by several sources (a temperature from the heart-lung
// machine and the patient monitor) is exported from one: the source with
// the most usable samples, ties to the smaller source ID. Averaging two
// probes would blur sites the clinician reads separately, and a receiver
// takes one series per channel.
//
// cur is the current view of the entries (CurrentView). Results are sorted
// by channel key; the output is a pure function of the input.
func RegularTrends(series []SourcedSeries, cur []Entry, periodMs int64) []SourcedSeries {
	if periodMs <= 0 {
		return nil
	}
	var marks []*ArtifactMark
	for _, e := range cur {
		if e.Detail.ArtifactMark != nil {
			marks = append(marks, e.Detail.ArtifactMark)
		}
	}
	type key struct{ source, channel string }
	type slot struct {
		sum   float64
		count int
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
	out := make([]SourcedSeries, 0, len(chosen))
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
		for i := range n {
			t := lo + int64(i)*periodMs
			s.TimesMs[i] = t
			if sl := slots[t]; sl != nil && sl.count > 0 {
				s.Values[i] = sl.sum / float64(sl.count)
			} else {
				s.Invalid[i] = true
			}
		}
		if !slices.Contains(s.Invalid, true) {
			s.Invalid = nil
		}
		out = append(out, SourcedSeries{SourceID: k.source, Series: s})
	}
	slices.SortFunc(out, func(a, b SourcedSeries) int { return cmp.Compare(a.Series.Channel, b.Series.Channel) })
	return out
}
