package main

import (
	"fmt"
	"math"
	"math/rand/v2"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
)

// behaviour is how a channel typically reads during bypass: the value it
// hovers around and how far it wanders. The numbers are textbook adult CPB
// at mild hypothermia; what matters for the load is that they are realistic
// enough for the codec to see what it will see in theatre (short decimals
// at the channel's resolution, slowly varying), and inside the catalogue's
// plausible range so the server accepts every batch.
type behaviour struct {
	center, spread float64
	// rate, when set, makes the channel cumulative: it only grows, by this
	// much per second on average (urine output).
	rate float64
}

var behaviours = map[string]behaviour{
	"pump_flow":                {center: 4.5, spread: 0.3},
	"pump_speed":               {center: 2600, spread: 120},
	"cardioplegia_flow":        {center: 250, spread: 40},
	"cardioplegia_pressure":    {center: 150, spread: 20},
	"arterial_line_pressure":   {center: 200, spread: 15},
	"venous_line_pressure":     {center: -30, spread: 10},
	"reservoir_level":          {center: 1500, spread: 200},
	"sweep_flow":               {center: 3, spread: 0.3},
	"sweep_o2_flow":            {center: 2, spread: 0.2},
	"sweep_air_flow":           {center: 1, spread: 0.2},
	"sweep_co2_flow":           {center: 0.1, spread: 0.05},
	"fio2":                     {center: 60, spread: 5},
	"volatile_agent":           {center: 1, spread: 0.2},
	"temp_arterial_outlet":     {center: 34, spread: 1},
	"temp_venous_inlet":        {center: 33, spread: 1},
	"temp_nasopharyngeal":      {center: 34, spread: 1},
	"temp_bladder":             {center: 34.5, spread: 0.8},
	"temp_rectal":              {center: 34.5, spread: 0.8},
	"temp_cardioplegia":        {center: 8, spread: 2},
	"temp_heater_cooler_water": {center: 30, spread: 2},
	"map":                      {center: 60, spread: 8},
	"sbp":                      {center: 70, spread: 8},
	"dbp":                      {center: 52, spread: 6},
	"cvp":                      {center: 5, spread: 3},
	"pap":                      {center: 15, spread: 4},
	"heart_rate":               {center: 80, spread: 10},
	"spo2":                     {center: 98, spread: 1.5},
	"nirs_left":                {center: 65, spread: 6},
	"nirs_right":               {center: 65, spread: 6},
	"nirs_site3":               {center: 70, spread: 6},
	"nirs_site4":               {center: 70, spread: 6},
	"inline_ph":                {center: 7.4, spread: 0.04},
	"inline_pco2":              {center: 40, spread: 4},
	"inline_po2":               {center: 250, spread: 40},
	"inline_k":                 {center: 4.5, spread: 0.4},
	"inline_hco3":              {center: 24, spread: 2},
	"inline_be":                {center: 0, spread: 2},
	"inline_sao2":              {center: 99, spread: 1},
	"inline_svo2":              {center: 75, spread: 5},
	"inline_hct":               {center: 27, spread: 3},
	"inline_hb":                {center: 9, spread: 1},
	"urine_output":             {rate: 0.03},
}

// persistence is the AR(1) coefficient per second: readings wander slowly
// rather than jumping, as physiological and pump values do.
const persistence = 0.98

// channelGen produces one channel's readings, one per call.
type channelGen struct {
	key      string
	lo, hi   float64 // plausible range of the catalogue
	grid     grid
	b        behaviour
	x        float64
	rng      *rand.Rand
	sigma    float64
	waveform bool    // pulsatile, sampled at waveformHz
	phase    float64 // waveform phase, radians
}

// newChannelGen returns a generator for catalogue channel ch.
func newChannelGen(ch charting.Channel, rng *rand.Rand) *channelGen {
	b, ok := behaviours[ch.Key]
	if !ok { // a channel added to the catalogue later: mid-range, or near the open end
		b = behaviour{center: midRange(ch.Min, ch.Max), spread: 1}
	}
	g := &channelGen{key: ch.Key, lo: ch.Min, hi: ch.Max, grid: newGrid(ch.Resolution), b: b, rng: rng,
		sigma: b.spread * math.Sqrt(1-persistence*persistence)}
	g.x = b.center + b.spread*rng.NormFloat64()
	return g
}

func midRange(lo, hi float64) float64 {
	switch {
	case !math.IsInf(lo, 0) && !math.IsInf(hi, 0):
		return (lo + hi) / 2
	case !math.IsInf(lo, 0):
		return lo + 10
	case !math.IsInf(hi, 0):
		return hi - 10
	}
	return 0
}

// next returns the channel's next 1 Hz reading.
func (g *channelGen) next() float64 {
	if g.b.rate > 0 {
		g.x += g.b.rate * 2 * g.rng.Float64()
	} else {
		g.x = g.b.center + persistence*(g.x-g.b.center) + g.sigma*g.rng.NormFloat64()
	}
	return g.grid.snap(g.x, g.lo, g.hi)
}

// nextWave returns the next waveform reading: the roller pump's pulsation
// (about 1.2 Hz) on the line pressure, with a little noise.
func (g *channelGen) nextWave() float64 {
	g.phase += 2 * math.Pi * 1.2 / waveformHz
	if g.phase > 2*math.Pi {
		g.phase -= 2 * math.Pi
		g.x = g.b.center + persistence*(g.x-g.b.center) + g.sigma*g.rng.NormFloat64()
	}
	return g.grid.snap(g.x+12*math.Sin(g.phase)+g.rng.NormFloat64(), g.lo, g.hi)
}

// grid is a channel's resolution as an exact decimal: values are k·unit/10^d
// for integer k, computed as float64(k·unit)/10^d, which is how the sample
// codec recognises a reading at the channel's resolution. Values built as
// k·resolution in floating point (4.390000000000001) would be off the grid
// and force the codec's 8-byte fallback, making the stored size unrealistic.
type grid struct {
	unit int64   // resolution in steps of 10^-d
	pow  float64 // 10^d
}

func newGrid(resolution float64) grid {
	if !(resolution > 0) {
		return grid{unit: 1, pow: 100} // unknown resolution: hundredths, as a device display would
	}
	p := 1.0
	for d := 0; d < 10; d++ {
		if x := resolution * p; math.Abs(x-math.Round(x)) < 1e-9 && math.Round(x) >= 1 {
			return grid{unit: int64(math.Round(x)), pow: p}
		}
		p *= 10
	}
	return grid{unit: 1, pow: 1e9}
}

// snap returns the grid value nearest x within [lo, hi].
func (g grid) snap(x, lo, hi float64) float64 {
	x = math.Max(lo, math.Min(hi, x))
	k := int64(math.Round(x*g.pow/float64(g.unit))) * g.unit
	v := float64(k) / g.pow
	for v > hi {
		k -= g.unit
		v = float64(k) / g.pow
	}
	for v < lo {
		k += g.unit
		v = float64(k) / g.pow
	}
	return v
}

// source is one device source of a simulated case: what a gateway would
// number as one sequence of batches.
type source struct {
	id      string
	gens    []*channelGen
	waveHz  int   // 0 for 1 Hz numerics
	nextSeq int64 // next sequence to send
}

// caseSources deals the first n catalogue channels out to the case's
// sources (channel i to source i mod sources), and adds the waveform
// source when asked. The random streams depend only on seed and case, so
// the baseline can replay exactly what a case sent.
func caseSources(c *config, caseIdx int, withWave bool) []*source {
	cat := charting.DefaultCatalogue()
	chans := cat.Channels()[:c.channels]
	srcs := make([]*source, c.sourcesPerCase)
	for i := range srcs {
		rng := rand.New(rand.NewPCG(c.seed, uint64(caseIdx)<<16|uint64(i)))
		srcs[i] = &source{id: fmt.Sprintf("loadgen-%d", i+1)}
		for j := i; j < len(chans); j += c.sourcesPerCase {
			srcs[i].gens = append(srcs[i].gens, newChannelGen(chans[j], rng))
		}
	}
	if withWave {
		ch, _ := cat.Lookup(waveformChannel)
		rng := rand.New(rand.NewPCG(c.seed, uint64(caseIdx)<<16|0xffff))
		g := newChannelGen(ch, rng)
		g.waveform = true
		srcs = append(srcs, &source{id: "loadgen-wave", gens: []*channelGen{g}, waveHz: waveformHz})
	}
	return srcs
}

// batch returns the source's samples with device times in [fromMs, toMs),
// where the source's sample grid starts at originMs, or nil when the window
// holds none (a window shorter than a second between two 1 Hz samples).
func (s *source) batch(originMs, fromMs, toMs int64) *pb.SampleBatch {
	stepMs := int64(1000)
	if s.waveHz > 0 {
		stepMs = 1000 / int64(s.waveHz)
	}
	first := ceilDiv(fromMs-originMs, stepMs)
	end := ceilDiv(toMs-originMs, stepMs)
	if end <= first {
		return nil
	}
	n := int(end - first)
	b := &pb.SampleBatch{SourceId: s.id, Series: make([]*pb.SampleSeries, 0, len(s.gens))}
	for _, g := range s.gens {
		ser := &pb.SampleSeries{Channel: g.key, OccurredAtUnixMs: make([]int64, n), Values: make([]float64, n)}
		for i := range n {
			ser.OccurredAtUnixMs[i] = originMs + (first+int64(i))*stepMs
			if g.waveform {
				ser.Values[i] = g.nextWave()
			} else {
				ser.Values[i] = g.next()
			}
		}
		b.Series = append(b.Series, ser)
	}
	return b
}

// ceilDiv is ⌈a/b⌉ for b > 0 and any a.
func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a > 0 {
		q++
	}
	return q
}

// batchSamples counts the samples of b.
func batchSamples(b *pb.SampleBatch) int64 {
	var n int64
	for _, s := range b.Series {
		n += int64(len(s.OccurredAtUnixMs))
	}
	return n
}
