package samplecodec

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// columnCase is one channel's samples as a sealed case stores them.
type columnCase struct {
	name       string
	ts         []int64
	vs         []float64
	inv        []bool
	resolution float64
}

func columnCases() []columnCase {
	rng := rand.New(rand.NewPCG(3, 5))
	var cs []columnCase
	// 1 Hz for 90 minutes, random walk at 0.01: the common case.
	{
		c := columnCase{name: "1Hz walk", resolution: 0.01}
		v := 4.5
		for i := range 5400 {
			c.ts = append(c.ts, 1_700_000_000_000+int64(i)*1000)
			v = math.Round((v+float64(rng.IntN(5)-2)*0.01)*100) / 100
			c.vs = append(c.vs, v)
		}
		cs = append(cs, c)
	}
	// Jittered times, some invalid, integer values.
	{
		c := columnCase{name: "jitter invalid", resolution: 1}
		t := int64(1_700_000_012_345)
		for i := range 3000 {
			t += 1000 + int64(rng.IntN(21)-10)
			c.ts = append(c.ts, t)
			c.vs = append(c.vs, float64(60+rng.IntN(40)))
			c.inv = append(c.inv, i%97 == 0 || (i > 600 && i < 700))
		}
		for i, bad := range c.inv {
			if bad {
				c.vs[i] = 0
			}
		}
		cs = append(cs, c)
	}
	// Full-precision floats: XOR, with invalid flags all false but present.
	{
		c := columnCase{name: "xor", resolution: 0.1}
		for i := range 700 {
			c.ts = append(c.ts, int64(i)*2)
			c.vs = append(c.vs, math.Sin(float64(i)/10)*37.123456789)
			c.inv = append(c.inv, false)
		}
		cs = append(cs, c)
	}
	// Times that go back (a re-sent range), waveform rate, all invalid,
	// odd values (-0, large), unknown resolution.
	cs = append(cs,
		columnCase{name: "back", resolution: 0.5, ts: []int64{10, 20, 30, 5, 6, 60_000, 59_999, 59_999}, vs: []float64{1, 1.5, 2, 2.5, -3, 0, 0, 1e6}},
		columnCase{name: "all invalid", resolution: 1, ts: []int64{1, 2, 3}, vs: []float64{0, 0, 0}, inv: []bool{true, true, true}},
		columnCase{name: "odd", resolution: 0.01, ts: []int64{-5, 0, 1}, vs: []float64{math.Copysign(0, -1), 1e300, 4.37}},
		columnCase{name: "unknown resolution", resolution: 0, ts: []int64{1}, vs: []float64{42}},
		columnCase{name: "one", resolution: 0.01, ts: []int64{7}, vs: []float64{36.6}},
	)
	{
		c := columnCase{name: "500Hz", resolution: 0.001}
		for i := range 10_000 {
			c.ts = append(c.ts, int64(i)*2)
			c.vs = append(c.vs, float64(rng.IntN(2000)-1000)/1000)
		}
		cs = append(cs, c)
	}
	return cs
}

func TestColumnsRoundTrip(t *testing.T) {
	for _, c := range columnCases() {
		t.Run(c.name, func(t *testing.T) {
			tb := AppendTimeColumn(nil, c.ts)
			ts, frames, err := DecodeTimeColumn(tb, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ts, c.ts) {
				t.Fatalf("times differ")
			}
			if !slices.Equal(frames, Frames(c.ts)) {
				t.Fatalf("frames differ: %v", frames)
			}
			vb := AppendValueColumn(nil, frames, c.vs, c.inv, c.resolution)
			vs, inv, err := DecodeValueColumn(vb, frames, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range vs {
				if math.Float64bits(vs[i]) != math.Float64bits(c.vs[i]) {
					t.Fatalf("value %d: %v, want %v", i, vs[i], c.vs[i])
				}
			}
			wantInv := slices.Contains(c.inv, true)
			if (inv != nil) != wantInv || (wantInv && !slices.Equal(inv, c.inv)) {
				t.Fatalf("invalid flags differ")
			}
			// Rollups agree with the samples.
			vc, err := NewValueColumn(vb)
			if err != nil {
				t.Fatal(err)
			}
			i := 0
			for _, f := range frames {
				r, ok, err := vc.Next(f.Count)
				if err != nil || !ok {
					t.Fatal(err, ok)
				}
				n, mn, mx, sum, exact := 0, math.Inf(1), math.Inf(-1), 0.0, 0.0
				for j := i; j < i+f.Count; j++ {
					if c.inv != nil && c.inv[j] {
						continue
					}
					if n == 0 {
						mn, mx = c.vs[j], c.vs[j]
					}
					mn, mx = math.Min(mn, c.vs[j]), math.Max(mx, c.vs[j])
					sum += c.vs[j]
					exact += c.vs[j]
					n++
				}
				i += f.Count
				if r.Count != f.Count || r.Count-r.Invalid != n {
					t.Fatalf("rollup counts %d/%d, want %d valid of %d", r.Count, r.Invalid, n, f.Count)
				}
				if n > 0 && (math.Float64bits(r.Min) != math.Float64bits(mn) || math.Float64bits(r.Max) != math.Float64bits(mx) ||
					math.Abs(r.Sum-sum) > 1e-9*math.Max(1, math.Abs(sum))) {
					t.Fatalf("rollup %+v, want min %v max %v sum %v", r, mn, mx, sum)
				}
			}
			t.Logf("%d samples: times %d B, values %d B (%.2f B/sample)", len(c.ts), len(tb), len(vb), float64(len(vb))/float64(len(c.ts)))
		})
	}
}

func TestPacked(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for w := 0; w <= 64; w++ {
		for _, n := range []int{0, 1, 2, 7, 8, 9, 63, 64, 65, 200} {
			vs := make([]uint64, n)
			for i := range vs {
				if w > 0 {
					vs[i] = rng.Uint64() >> (64 - w)
				}
			}
			b := appendPacked(nil, vs)
			body, gw, rest, err := readPacked(b, n)
			if err != nil || len(rest) != 0 {
				t.Fatalf("w=%d n=%d: %v, %d left", w, n, err, len(rest))
			}
			u := unpacker{b: body, w: gw}
			for i, v := range vs {
				if got := u.next(); got != v {
					t.Fatalf("w=%d n=%d: value %d is %x, want %x", w, n, i, got, v)
				}
			}
		}
	}
}

// FuzzColumns decodes arbitrary bytes as columns: never a panic, and a
// column that decodes re-encodes to a column that decodes the same.
func FuzzColumns(f *testing.F) {
	for _, c := range columnCases()[3:] {
		tb := AppendTimeColumn(nil, c.ts)
		f.Add(tb, AppendValueColumn(nil, Frames(c.ts), c.vs, c.inv, c.resolution))
	}
	f.Fuzz(func(t *testing.T, tb, vb []byte) {
		ts, frames, err := DecodeTimeColumn(tb, nil)
		if err != nil {
			return
		}
		vs, inv, err := DecodeValueColumn(vb, frames, nil)
		if err != nil {
			return
		}
		if len(vs) != len(ts) || (inv != nil && len(inv) != len(ts)) {
			t.Fatalf("%d values and %d flags for %d times", len(vs), len(inv), len(ts))
		}
		vs2, inv2, err := DecodeValueColumn(AppendValueColumn(nil, Frames(ts), vs, inv, 0.01), Frames(ts), nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range vs {
			if math.Float64bits(vs[i]) != math.Float64bits(vs2[i]) {
				t.Fatalf("value %d changed", i)
			}
		}
		if !slices.Equal(inv, inv2) && slices.Contains(inv, true) {
			t.Fatal("flags changed")
		}
	})
}

func BenchmarkValueColumnDecode(b *testing.B) {
	c := columnCases()[0]
	frames := Frames(c.ts)
	vb := AppendValueColumn(nil, frames, c.vs, nil, c.resolution)
	tb := AppendTimeColumn(nil, c.ts)
	b.SetBytes(int64(len(c.ts)))
	vs := make([]float64, 0, len(c.ts))
	ts := make([]int64, 0, len(c.ts))
	for b.Loop() {
		var err error
		if ts, _, err = DecodeTimeColumn(tb, ts[:0]); err != nil {
			b.Fatal(err)
		}
		if vs, _, err = DecodeValueColumn(vb, frames, vs[:0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(vb))/float64(len(c.ts)), "B/sample")
}
