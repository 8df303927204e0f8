package charting

// LTTB picks at most n points of a series for display by
// Largest-Triangle-Three-Buckets (Steinarsson, "Downsampling Time Series for
// Visual Representation", 2013), and returns their indexes in ascending
// order. The first and last points are always kept; the points between are
// split into n-2 buckets of (nearly) equal count, and from each bucket the
// point forming the largest triangle with the point kept before it and the
// mean of the next bucket is kept. Unlike bucket means it keeps real samples,
// so a spike shows at its true height and time.
//
// times must be ascending (equal times are allowed) and as long as values.
// With n at least len(times) every index is returned; with n < 3 only the
// first point (n = 1) or the first and last (n = 2); with n < 1 none.
func LTTB(times []int64, values []float64, n int) []int {
	size := len(times)
	switch {
	case n <= 0 || size == 0:
		return nil
	case n >= size:
		out := make([]int, size)
		for i := range out {
			out[i] = i
		}
		return out
	case n == 1:
		return []int{0}
	case n == 2:
		return []int{0, size - 1}
	}
	out := make([]int, 0, n)
	out = append(out, 0)
	// Times relative to the first keep the float arithmetic exact enough
	// for epoch milliseconds.
	x := func(i int) float64 { return float64(times[i] - times[0]) }
	every := float64(size-2) / float64(n-2)
	a := 0
	for b := 0; b < n-2; b++ {
		// Bucket b spans [lo, hi); the next bucket [hi, nextHi) (or the
		// last point) gives the average the triangle's third corner.
		lo := int(float64(b)*every) + 1
		hi := int(float64(b+1)*every) + 1
		nextHi := min(int(float64(b+2)*every)+1, size)
		if b == n-3 { // float rounding must not lose the last bucket's end
			hi, nextHi = size-1, size
		}
		var avgX, avgY float64
		for j := hi; j < nextHi; j++ {
			avgX += x(j)
			avgY += values[j]
		}
		cnt := float64(nextHi - hi)
		avgX /= cnt
		avgY /= cnt
		ax, ay := x(a), values[a]
		best, bestArea := lo, -1.0
		for j := lo; j < hi; j++ {
			area := (ax-avgX)*(values[j]-ay) - (ax-x(j))*(avgY-ay)
			if area < 0 {
				area = -area
			}
			if area > bestArea {
				best, bestArea = j, area
			}
		}
		out = append(out, best)
		a = best
	}
	return append(out, size-1)
}

// LTTBSeries keeps the samples of sr that LTTB picks among its valid ones
// not marked in exclude (nil: none marked; the store marks samples timed
// outside the case's device window), at most n, in time order: what a
// display draws as a line.
func LTTBSeries(sr *Series, exclude []bool, n int) *Series {
	valid := &Series{Channel: sr.Channel}
	for i, t := range sr.TimesMs {
		if !sr.IsInvalid(i) && (exclude == nil || !exclude[i]) {
			valid.TimesMs = append(valid.TimesMs, t)
			valid.Values = append(valid.Values, sr.Values[i])
		}
	}
	keep := LTTB(valid.TimesMs, valid.Values, n)
	out := &Series{Channel: sr.Channel, TimesMs: make([]int64, len(keep)), Values: make([]float64, len(keep))}
	for k, i := range keep {
		out.TimesMs[k], out.Values[k] = valid.TimesMs[i], valid.Values[i]
	}
	return out
}
