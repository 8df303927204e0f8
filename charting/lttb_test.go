package charting

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"
)

func TestLTTB(t *testing.T) {
	ramp := func(n int) ([]int64, []float64) {
		ts, vs := make([]int64, n), make([]float64, n)
		for i := range n {
			ts[i], vs[i] = 1_764_000_000_000+int64(i)*1000, float64(i)
		}
		return ts, vs
	}
	spikeT, spikeV := ramp(100)
	for i := range spikeV {
		spikeV[i] = 4.5 // a steady pump flow…
	}
	spikeV[37] = 0.2 // …with one drop that a display must show
	for _, tc := range []struct {
		name   string
		times  []int64
		values []float64
		n      int
		want   []int
	}{
		{"empty", nil, nil, 5, nil},
		{"none requested", []int64{1, 2}, []float64{1, 2}, 0, nil},
		{"one", []int64{1, 2, 3}, []float64{1, 2, 3}, 1, []int{0}},
		{"two", []int64{1, 2, 3}, []float64{1, 2, 3}, 2, []int{0, 2}},
		{"enough already", []int64{1, 2, 3}, []float64{5, 1, 5}, 3, []int{0, 1, 2}},
		{"more than enough", []int64{1, 2, 3}, []float64{5, 1, 5}, 10, []int{0, 1, 2}},
		// Three buckets of one between the ends: every point is its
		// bucket's only candidate.
		{"one per bucket", []int64{0, 1, 2, 3, 4}, []float64{0, 9, 0, 9, 0}, 5, []int{0, 1, 2, 3, 4}},
		// One bucket [1,4): the peak at index 2 makes the largest
		// triangle with the first and last points.
		{"peak", []int64{0, 10, 20, 30, 40}, []float64{0, 1, 8, 1, 0}, 3, []int{0, 2, 4}},
		{"trough", []int64{0, 10, 20, 30, 40}, []float64{5, 5, 5, -3, 5}, 3, []int{0, 3, 4}},
		{"spike kept", spikeT, spikeV, 10, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := LTTB(tc.times, tc.values, tc.n)
			if tc.name == "spike kept" {
				if !slices.Contains(got, 37) || len(got) != 10 {
					t.Fatalf("got %v: want 10 points including the drop at 37", got)
				}
				return
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	// A straight line gives every candidate of a bucket the same area but
	// the selection still spreads evenly: one per bucket, in order.
	ts, vs := ramp(1000)
	got := LTTB(ts, vs, 50)
	if len(got) != 50 || got[0] != 0 || got[49] != 999 {
		t.Fatalf("ramp: %d points from %d to %d", len(got), got[0], got[len(got)-1])
	}
	for k := 1; k < 49; k++ {
		lo, hi := int(float64(k-1)*998/48)+1, int(float64(k)*998/48)+1
		if got[k] < lo || got[k] >= hi {
			t.Fatalf("ramp: point %d is index %d, outside its bucket [%d,%d)", k, got[k], lo, hi)
		}
	}
}

// FuzzLTTB checks the properties every answer must have: at most n points
// (exactly min(n, len) for n >= 2), the first and last kept, strictly
// ascending indexes (a subset in time order).
func FuzzLTTB(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}, 3)
	f.Add(make([]byte, 200), 7)
	f.Add([]byte{0xff, 0xf0, 0, 0, 0, 0, 0, 0, 1}, 2)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		n %= 1000
		var times []int64
		var values []float64
		at := int64(1_764_000_000_000)
		for len(data) >= 9 {
			at += int64(data[0]) // ascending, with repeats
			times = append(times, at)
			values = append(values, math.Float64frombits(binary.LittleEndian.Uint64(data[1:9])))
			data = data[9:]
		}
		got := LTTB(times, values, n)
		size := len(times)
		if n <= 0 || size == 0 {
			if len(got) != 0 {
				t.Fatalf("n=%d size=%d: got %v, want nothing", n, size, got)
			}
			return
		}
		if len(got) > n {
			t.Fatalf("n=%d: got %d points", n, len(got))
		}
		if want := min(n, size); n >= 2 && len(got) != want {
			t.Fatalf("n=%d size=%d: got %d points, want %d", n, size, len(got), want)
		}
		if got[0] != 0 || (n >= 2 && got[len(got)-1] != size-1) {
			t.Fatalf("n=%d size=%d: %v does not keep the first and last", n, size, got)
		}
		for i := 1; i < len(got); i++ {
			if got[i] <= got[i-1] || got[i] >= size {
				t.Fatalf("n=%d size=%d: indexes %v not strictly ascending within the series", n, size, got)
			}
		}
	})
}

// TestLTTBSeriesLeavesOutInvalidAndExcluded: invalid readings and samples
// marked excluded are never picked; the first and last kept ones are.
func TestLTTBSeriesLeavesOutInvalidAndExcluded(t *testing.T) {
	sr := &Series{Channel: "pump_flow", Invalid: make([]bool, 100)}
	sr.Invalid[0], sr.Invalid[5] = true, true
	exclude := make([]bool, 100)
	for i := range 100 {
		sr.TimesMs = append(sr.TimesMs, int64(i)*1000)
		sr.Values = append(sr.Values, 4+float64(i%3)/10)
	}
	exclude[1], exclude[99] = true, true
	out := LTTBSeries(sr, exclude, 10)
	if len(out.TimesMs) != 10 || out.TimesMs[0] != 2000 || out.TimesMs[9] != 98000 {
		t.Fatalf("kept %v", out.TimesMs)
	}
	for _, ms := range out.TimesMs {
		if ms == 0 || ms == 1000 || ms == 5000 || ms == 99000 {
			t.Fatalf("kept an invalid or excluded sample at %d ms: %v", ms, out.TimesMs)
		}
	}
}
