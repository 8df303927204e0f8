package charting

import (
	"cmp"
	"math"
	"slices"
)

// Trend aggregates samples of one channel into buckets of a fixed width
// aligned to multiples of the width since the Unix epoch. Alignment makes
// the buckets of separate deliveries line up, so a watcher that receives a
// bucket's samples in parts can merge the parts by their start.
type Trend struct {
	widthMs int64
	buckets map[int64]*Bucket
	rng     plausible
}

// NewTrend returns a trend with buckets widthMs wide (at least 1). It
// flags no reading as out of range until given a channel (Flagging).
func NewTrend(widthMs int64) *Trend {
	return &Trend{widthMs: max(widthMs, 1), buckets: make(map[int64]*Bucket), rng: openRange}
}

// Flagging makes t count readings outside ch's plausible range as out of
// range instead of folding them into the statistics, and returns t.
func (t *Trend) Flagging(ch Channel) *Trend {
	t.rng = rangeOf(ch)
	return t
}

// Add adds every sample of s.
func (t *Trend) Add(s Series) {
	for i, at := range s.TimesMs {
		start := at - mod(at, t.widthMs)
		b := t.buckets[start]
		if b == nil {
			b = &Bucket{StartMs: start}
			t.buckets[start] = b
		}
		b.add(s, i, t.rng)
	}
}

// Buckets returns the buckets holding any sample, in time order.
func (t *Trend) Buckets() []Bucket {
	out := make([]Bucket, 0, len(t.buckets))
	for _, b := range t.buckets {
		c := *b
		if c.Count > 0 {
			c.Mean = c.sum / float64(c.Count)
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Bucket) int { return cmp.Compare(a.StartMs, b.StartMs) })
	return out
}

// MergeBucket combines two parts of the same bucket (same start), as a
// watcher does when a bucket's samples arrive in separate messages.
func MergeBucket(a, b Bucket) Bucket {
	out := Bucket{StartMs: a.StartMs, Count: a.Count + b.Count, InvalidCount: a.InvalidCount + b.InvalidCount,
		OutOfRangeCount: a.OutOfRangeCount + b.OutOfRangeCount}
	switch {
	case a.Count == 0:
		out.Min, out.Max, out.Mean = b.Min, b.Max, b.Mean
	case b.Count == 0:
		out.Min, out.Max, out.Mean = a.Min, a.Max, a.Mean
	default:
		out.Min, out.Max = math.Min(a.Min, b.Min), math.Max(a.Max, b.Max)
		out.Mean = (a.Mean*float64(a.Count) + b.Mean*float64(b.Count)) / float64(out.Count)
	}
	return out
}

// mod is the non-negative remainder, so times before the epoch align too.
func mod(a, m int64) int64 {
	r := a % m
	if r < 0 {
		r += m
	}
	return r
}
