package main

import (
	"math"
	"testing"
	"time"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
)

// Every simulated batch must be one the server accepts (known channels,
// plausible values, increasing times), or a run measures rejections
// instead of ingest; and every value must sit exactly on its channel's
// resolution grid, or the stored size measures the codec's fallback.
func TestSimulatedBatchesAreValidAndOnGrid(t *testing.T) {
	cat := charting.DefaultCatalogue()
	c := &config{channels: len(cat.Channels()), sourcesPerCase: 3, seed: 7}
	srcs := caseSources(c, 5, true)
	origin := time.Now().Add(-time.Hour).UnixMilli()
	seen := map[string]bool{}
	for k := int64(0); k < 600; k++ { // ten minutes of 1 s batches
		from := origin + k*1000
		for _, src := range srcs {
			b := src.batch(origin, from, from+1000)
			if b == nil {
				t.Fatalf("%s: no batch for a whole second", src.id)
			}
			b.Sequence = k + 1
			if err := charting.ValidateBatch(cat, toDomain(b), time.Now()); err != nil {
				t.Fatalf("%s batch %d refused: %v", src.id, k, err)
			}
			for _, s := range b.Series {
				seen[s.Channel] = true
				g := newGrid(cat.Resolution(s.Channel))
				for _, v := range s.Values {
					k := math.Round(v * g.pow)
					if math.Float64bits(k/g.pow) != math.Float64bits(v) {
						t.Fatalf("%s: %v is not an exact decimal at resolution %v", s.Channel, v, cat.Resolution(s.Channel))
					}
				}
				for i, ts := range s.OccurredAtUnixMs {
					if ts < from || ts >= from+1000 {
						t.Fatalf("%s: time %d outside its window [%d, %d)", s.Channel, ts, from, from+1000)
					}
					if i > 0 && ts-s.OccurredAtUnixMs[i-1] != 1000/int64(max(src.waveHz, 1)) {
						t.Fatalf("%s: uneven cadence", s.Channel)
					}
				}
			}
		}
	}
	if len(seen) != len(cat.Channels()) {
		t.Errorf("%d channels sent, want all %d", len(seen), len(cat.Channels()))
	}
}

// The waveform sends waveformHz samples a second; numerics one.
func TestBatchWindows(t *testing.T) {
	c := &config{channels: 2, sourcesPerCase: 1, seed: 1}
	srcs := caseSources(c, 0, true)
	num, wave := srcs[0], srcs[1]
	if b := wave.batch(0, 0, 1000); batchSamples(b) != waveformHz {
		t.Errorf("waveform: %d samples a second, want %d", batchSamples(b), waveformHz)
	}
	if b := num.batch(0, 0, 5000); batchSamples(b) != 2*5 {
		t.Errorf("numerics: %d samples in 5 s of 2 channels, want 10", batchSamples(b))
	}
	// Windows shorter than a second: only those holding a whole second's
	// tick carry numerics, and consecutive windows never repeat a sample.
	var n int64
	for from := int64(0); from < 3000; from += 250 {
		if b := num.batch(0, from, from+250); b != nil {
			n += batchSamples(b)
		}
	}
	if n != 2*3 {
		t.Errorf("250 ms windows over 3 s: %d samples, want 6", n)
	}
}

func TestGridSnap(t *testing.T) {
	for _, tc := range []struct {
		res, x, lo, hi, want float64
	}{
		{0.01, 4.387, 0, 7, 4.39},
		{0.01, 9, 0, 7, 7},
		{0.1, 36.96, 4, 42, 37},
		{1, -30.4, -150, 50, -30},
		{0.01, 7.355, 6.8, 7.8, 7.36},
		{1, 3.2, 15, 95, 15},
	} {
		if got := newGrid(tc.res).snap(tc.x, tc.lo, tc.hi); got != tc.want {
			t.Errorf("snap(%v) at %v in [%v, %v] = %v, want %v", tc.x, tc.res, tc.lo, tc.hi, got, tc.want)
		}
	}
}

func toDomain(b *pb.SampleBatch) *charting.SampleBatch {
	d := &charting.SampleBatch{SourceID: b.SourceId, Seq: b.Sequence}
	for _, s := range b.Series {
		d.Series = append(d.Series, charting.Series{Channel: s.Channel, TimesMs: s.OccurredAtUnixMs, Values: s.Values})
	}
	return d
}
