package samplecodec

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"perfusion/charting"
)

// vitals1Hz builds a realistic batch: nch channels of the default catalogue,
// n samples each at 1 Hz, one in four channels with ±3 ms of clock jitter,
// values around a plausible level with noise of a few resolution steps,
// formatted and parsed as decimals the way a device gateway produces them.
func vitals1Hz(nch, n int) ([]charting.Series, int) {
	rng := rand.New(rand.NewPCG(1, 2))
	chs := charting.DefaultCatalogue().Channels()
	out := make([]charting.Series, 0, nch)
	for c := range nch {
		ch := chs[c%len(chs)]
		d := max(0, decimalExponent(ch.Resolution))
		lo, hi := ch.Min, ch.Max
		if math.IsInf(lo, 0) {
			lo = -10
		}
		if math.IsInf(hi, 0) {
			hi = lo + 200
		}
		level := lo + (hi-lo)*(0.3+0.4*rng.Float64())
		if ch.Key == "pump_flow" {
			level = 4.37
		}
		if ch.Unit == "Cel" {
			level = 36.6
		}
		noise := 2 * ch.Resolution // a couple of steps
		if ch.Unit == "Cel" {
			noise = ch.Resolution / 2
		}
		if ch.Unit == "mm[Hg]" {
			noise = 1.5
		}
		s := charting.Series{Channel: ch.Key, TimesMs: make([]int64, n), Values: make([]float64, n)}
		t0 := int64(1_750_000_000_000) + int64(rng.IntN(1000))
		for i := range n {
			s.TimesMs[i] = t0 + int64(i)*1000
			if c%4 == 3 {
				s.TimesMs[i] += int64(rng.IntN(7)) - 3
			}
			v := level + rng.NormFloat64()*noise
			s.Values[i], _ = strconv.ParseFloat(strconv.FormatFloat(v, 'f', d, 64), 64)
		}
		out = append(out, s)
	}
	return out, nch * n
}

// waveform125Hz is an arterial pressure waveform, 125 Hz for 10 s, with full
// float precision (a filtered signal), stored with XOR floats.
func waveform125Hz() ([]charting.Series, int) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 1250
	s := charting.Series{Channel: "art_waveform", TimesMs: make([]int64, n), Values: make([]float64, n)}
	for i := range n {
		s.TimesMs[i] = 1_750_000_000_000 + int64(i)*8
		ph := 2 * math.Pi * 1.2 * float64(i) / 125
		s.Values[i] = 80 + 25*math.Sin(ph) + 8*math.Sin(2*ph+0.5) + rng.NormFloat64()*0.3
	}
	return []charting.Series{s}, n
}

type workload struct {
	name   string
	build  func() ([]charting.Series, int)
	resolv func(string) float64
}

var workloads = []workload{
	{"1Hz-40ch-60s", func() ([]charting.Series, int) { return vitals1Hz(40, 60) }, charting.DefaultCatalogue().Resolution},
	{"125Hz-waveform-XOR", waveform125Hz, nil},
}

func report(b *testing.B, iters, samples, size int, elapsed time.Duration) {
	b.ReportMetric(float64(size)/float64(samples), "B/sample")
	b.ReportMetric(float64(iters)*float64(samples)/elapsed.Seconds(), "samples/s")
}

func BenchmarkEncode(b *testing.B) {
	for _, w := range workloads {
		b.Run(w.name, func(b *testing.B) {
			series, samples := w.build()
			size := len(EncodeBlock(series, w.resolv))
			b.ReportAllocs()
			iters := 0
			start := time.Now()
			for b.Loop() {
				EncodeBlock(series, w.resolv)
				iters++
			}
			report(b, iters, samples, size, time.Since(start))
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, w := range workloads {
		b.Run(w.name, func(b *testing.B) {
			series, samples := w.build()
			block := EncodeBlock(series, w.resolv)
			b.ReportAllocs()
			iters := 0
			start := time.Now()
			for b.Loop() {
				if _, err := DecodeBlock(block); err != nil {
					b.Fatal(err)
				}
				iters++
			}
			report(b, iters, samples, len(block), time.Since(start))
		})
	}
}
