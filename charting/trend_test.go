package charting

import (
	"math"
	"testing"
)

func TestTrendAlignsAndAggregates(t *testing.T) {
	tr := NewTrend(1000)
	// Samples at -1500 (before the epoch) through 2500; one invalid.
	tr.Add(Series{Channel: "pump_flow", TimesMs: []int64{-1500, -200, 0, 999, 1000, 2500},
		Values: []float64{1, 3, 5, 7, 0, 9}, Invalid: []bool{false, false, false, false, true, false}})
	got := tr.Buckets()
	want := []Bucket{
		{StartMs: -2000, Count: 1, Min: 1, Max: 1, Mean: 1},
		{StartMs: -1000, Count: 1, Min: 3, Max: 3, Mean: 3},
		{StartMs: 0, Count: 2, Min: 5, Max: 7, Mean: 6},
		{StartMs: 1000, InvalidCount: 1},
		{StartMs: 2000, Count: 1, Min: 9, Max: 9, Mean: 9},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d buckets %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g := got[i]
		g.sum = 0
		if g != want[i] {
			t.Errorf("bucket %d: got %+v, want %+v", i, g, want[i])
		}
	}
}

func TestMergeBucketEqualsOneTrend(t *testing.T) {
	s := Series{TimesMs: []int64{0, 100, 200, 300, 400}, Values: []float64{4, -1, 7, 2.5, 3}}
	whole := NewTrend(1000)
	whole.Add(s)
	a, b := NewTrend(1000), NewTrend(1000)
	a.Add(Series{TimesMs: s.TimesMs[:2], Values: s.Values[:2]})
	b.Add(Series{TimesMs: s.TimesMs[2:], Values: s.Values[2:]})
	m := MergeBucket(a.Buckets()[0], b.Buckets()[0])
	w := whole.Buckets()[0]
	if m.Count != w.Count || m.Min != w.Min || m.Max != w.Max || math.Abs(m.Mean-w.Mean) > 1e-12 {
		t.Fatalf("merged %+v, want %+v", m, w)
	}
	if got := MergeBucket(Bucket{InvalidCount: 2}, a.Buckets()[0]); got.Count != 2 || got.Min != -1 || got.InvalidCount != 2 {
		t.Fatalf("merging into an all-invalid bucket: %+v", got)
	}
}
