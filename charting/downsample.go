package charting

import "math"

// Bucket aggregates the samples of one time bucket. Count, Min, Max and
// Mean cover the usable readings only: neither marked invalid by the device
// nor outside the channel's plausible range. Out-of-range readings are
// counted (OutOfRangeCount) but left out of the statistics, as a single
// implausible reading (a flow of 7000 sent in mL/min) would otherwise make
// the bucket's mean meaningless; the raw query shows them as sent.
type Bucket struct {
	StartMs         int64
	Count           int64
	Min, Max        float64
	Mean            float64
	InvalidCount    int64
	OutOfRangeCount int64
	sum             float64
}

// plausible is a channel's plausible range as buckets use it; the zero
// value flags nothing (see openRange).
type plausible struct{ lo, hi float64 }

var openRange = plausible{math.Inf(-1), math.Inf(1)}

func rangeOf(ch Channel) plausible { return plausible{ch.Min, ch.Max} }

// Downsampler aggregates samples of one channel into n equal buckets over
// [startMs, endMs). Samples may arrive in any order, batch by batch, so a
// query never needs to hold a whole case in memory.
type Downsampler struct {
	startMs, widthMs int64
	buckets          []Bucket
	rng              plausible
}

// NewDownsampler returns a downsampler for n buckets over [startMs, endMs).
// It flags no reading as out of range until given a channel (Flagging).
func NewDownsampler(startMs, endMs int64, n int) *Downsampler {
	return &Downsampler{startMs: startMs, widthMs: BucketWidth(startMs, endMs, n), buckets: make([]Bucket, n), rng: openRange}
}

// BucketWidth is the width of n equal buckets over [startMs, endMs), as a
// Downsampler uses them.
func BucketWidth(startMs, endMs int64, n int) int64 {
	span := max(endMs-startMs, 1)
	return max((span+int64(n)-1)/int64(n), 1)
}

// Flagging makes d count readings outside ch's plausible range as out of
// range instead of folding them into the statistics, and returns d.
func (d *Downsampler) Flagging(ch Channel) *Downsampler {
	d.rng = rangeOf(ch)
	return d
}

// WidthMs is the bucket width.
func (d *Downsampler) WidthMs() int64 { return d.widthMs }

// Add adds the samples of s that fall in the range.
func (d *Downsampler) Add(s Series) {
	for i, t := range s.TimesMs {
		if t < d.startMs {
			continue
		}
		k := (t - d.startMs) / d.widthMs
		if k >= int64(len(d.buckets)) {
			continue
		}
		d.buckets[k].add(s, i, d.rng)
	}
}

// add folds sample i of s into the bucket. Every path that buckets samples
// goes through it, so they agree to the last bit: the same comparisons and
// the same order of additions.
func (b *Bucket) add(s Series, i int, r plausible) {
	v := s.Values[i]
	if b.Admit(v, s.IsInvalid(i), r.lo, r.hi) {
		b.sum += v
	}
}

// Admit counts one sample in the bucket — invalid, out of the plausible
// range [lo, hi] (as Channel.Plausible), or counted with its minimum and
// maximum — and reports whether it is counted, when the caller adds v to
// the bucket's sum. Paths that keep the sum elsewhere (sealed storage's
// rollups) call it so every path compares exactly alike.
func (b *Bucket) Admit(v float64, invalid bool, lo, hi float64) bool {
	if invalid {
		b.InvalidCount++
		return false
	}
	if !(v >= lo && v <= hi) { // as Channel.Plausible
		b.OutOfRangeCount++
		return false
	}
	if b.Count == 0 {
		b.Min, b.Max = v, v
	} else {
		b.Min, b.Max = math.Min(b.Min, v), math.Max(b.Max, v)
	}
	b.Count++
	return true
}

// Buckets returns the buckets that hold any sample, in time order.
func (d *Downsampler) Buckets() []Bucket {
	var out []Bucket
	for k, b := range d.buckets {
		if b.Count == 0 && b.InvalidCount == 0 && b.OutOfRangeCount == 0 {
			continue
		}
		b.StartMs = d.startMs + int64(k)*d.widthMs
		if b.Count > 0 {
			b.Mean = b.sum / float64(b.Count)
		}
		out = append(out, b)
	}
	return out
}
