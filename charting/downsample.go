package charting

import "math"

// Bucket aggregates the valid samples of one time bucket.
type Bucket struct {
	StartMs      int64
	Count        int64
	Min, Max     float64
	Mean         float64
	InvalidCount int64
	sum          float64
}

// Downsampler aggregates samples of one channel into n equal buckets over
// [startMs, endMs). Samples may arrive in any order, batch by batch, so a
// query never needs to hold a whole case in memory.
type Downsampler struct {
	startMs, widthMs int64
	buckets          []Bucket
}

// NewDownsampler returns a downsampler for n buckets over [startMs, endMs).
func NewDownsampler(startMs, endMs int64, n int) *Downsampler {
	span := max(endMs-startMs, 1)
	width := max((span+int64(n)-1)/int64(n), 1)
	return &Downsampler{startMs: startMs, widthMs: width, buckets: make([]Bucket, n)}
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
		d.buckets[k].add(s, i)
	}
}

// add folds sample i of s into the bucket. Every path that buckets samples
// goes through it, so they agree to the last bit: the same comparisons and
// the same order of additions.
func (b *Bucket) add(s Series, i int) {
	if s.IsInvalid(i) {
		b.InvalidCount++
		return
	}
	v := s.Values[i]
	if b.Count == 0 {
		b.Min, b.Max = v, v
	} else {
		b.Min, b.Max = math.Min(b.Min, v), math.Max(b.Max, v)
	}
	b.Count++
	b.sum += v
}

// Buckets returns the buckets that hold any sample, in time order.
func (d *Downsampler) Buckets() []Bucket {
	var out []Bucket
	for k, b := range d.buckets {
		if b.Count == 0 && b.InvalidCount == 0 {
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
