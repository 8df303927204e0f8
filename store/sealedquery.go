package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"math"
	"slices"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
)

// Trends of a sealed case read its columns.
//
// A sealed case's batches can be rebuilt (SealedBatches), but a trend needs
// only the channels it shows: it reads those channels' value columns and
// their sources' time columns, segment by segment, and folds them like
// chunk runs. A column holds its channel's samples in exactly the order the
// batches gave them (batch scan order), so it is folded as the batches
// would be, and the answer is the same. A source with a batch timed outside
// its device window (its time columns say so) is read batch by batch
// instead, rebuilt from the sealed form, so that its far-off samples are
// left out as the batch path leaves them out.

// sealedTrend reports whether a bucketed query of c reads a sealed form.
func (s *Store) sealedTrend(ctx context.Context, c *charting.Case) (bool, error) {
	if s.ignoreRuns || (c.Status != charting.StatusClosed && c.Status != charting.StatusSigned) {
		return false, nil
	}
	hdr, err := s.b.SealedCase(ctx, c.ID)
	return hdr != nil, err
}

// scanSealed is scanRunsThenBatches for a sealed case: the value columns of
// sc's channels overlapping [from, to) go to onRun as rows standing for
// runs (their samples read from the columns); the batches of sources read
// batch by batch go to onBatch.
func (s *Store) scanSealed(ctx context.Context, sc *bucketScan, from, to int64, onRun func(*SampleChunkRow) error, onBatch func(*SampleBatchRow) error) error {
	var channels []string
	if !sc.all {
		channels = sc.want
	}
	type timesKey struct {
		seg    int
		source string
	}
	times := make(map[timesKey][]byte)
	var values []*SealedPart
	offClock := make(map[string]bool)
	err := s.b.ScanSealedParts(ctx, sc.q.CaseID, SealedFilter{WithoutManifests: true, SourceID: sc.q.SourceID, Channels: channels, FromMs: from, ToMs: to},
		func(p *SealedPart) error {
			if p.Channel != "" {
				values = append(values, p)
				return nil
			}
			times[timesKey{p.Seg, p.SourceID}] = p.Data
			if len(p.Data) == 0 || p.Data[0]&timesPlausible == 0 {
				offClock[p.SourceID] = true
			}
			return nil
		})
	if err != nil {
		return err
	}
	slices.SortFunc(values, func(a, b *SealedPart) int {
		return cmp.Or(cmp.Compare(a.Seg, b.Seg), cmp.Compare(a.SourceID, b.SourceID), cmp.Compare(a.Channel, b.Channel))
	})
	var cols []*sealedCol
	for _, p := range values {
		if offClock[p.SourceID] {
			continue
		}
		col, err := newSealedCol(p, times[timesKey{p.Seg, p.SourceID}])
		if err != nil {
			return err
		}
		cols = append(cols, col)
		if !col.integers {
			k := SeriesKey{p.Channel, p.SourceID}
			sc.mixed[k] = append(sc.mixed[k], [2]int64{p.MinTimeMs, p.MaxTimeMs})
		}
	}
	for _, col := range cols {
		row := &SampleChunkRow{CaseID: sc.q.CaseID, SourceID: col.source, Channel: col.channel,
			MinTimeMs: col.minT, MaxTimeMs: col.maxT, SampleCount: col.n, col: col}
		if err := onRun(row); err != nil {
			return err
		}
	}
	for _, src := range slices.Sorted(mapKeys(offClock)) {
		if _, err := SealedBatches(ctx, s.b, sc.q.CaseID, SampleFilter{SourceID: src, FromMs: from, ToMs: to}, onBatch); err != nil {
			return err
		}
	}
	return nil
}

// sealedCol is one value column of a sealed case with its time column.
type sealedCol struct {
	seg             int
	source, channel string
	minT, maxT      int64
	n               int
	times, values   []byte // the columns' bytes
	integers        bool   // every value is an integer (samplecodec.IntegerValues)
}

func newSealedCol(p *SealedPart, timesRow []byte) (*sealedCol, error) {
	bad := func(what string) error {
		return sealedCorrupt("segment %d, source %q, channel %q: %s", p.Seg, p.SourceID, p.Channel, what)
	}
	if len(p.Data) < 2 || p.Data[0] != sealValueVersion {
		return nil, bad("a value column of an unknown version")
	}
	tc, k := binary.Uvarint(p.Data[1:])
	if k <= 0 {
		return nil, bad("a truncated value column")
	}
	if len(timesRow) == 0 {
		return nil, bad("its time columns are missing")
	}
	r := &mreader{b: timesRow[1:]}
	n := r.count()
	if tc >= uint64(n) {
		return nil, bad("no such time column")
	}
	var times []byte
	for i := 0; i <= int(tc); i++ {
		times = r.bytes(r.count())
	}
	if r.err != nil {
		return nil, bad("its time columns are truncated")
	}
	values := p.Data[1+k:]
	return &sealedCol{seg: p.Seg, source: p.SourceID, channel: p.Channel, minT: p.MinTimeMs, maxT: p.MaxTimeMs, n: p.SampleCount,
		times: times, values: values, integers: samplecodec.IntegerValues(values)}, nil
}

// decode returns the column's samples.
func (col *sealedCol) decode() (charting.Series, error) {
	ts, frames, err := samplecodec.DecodeTimeColumn(col.times, make([]int64, 0, col.n))
	if err != nil {
		return charting.Series{}, sealedCorrupt("segment %d, source %q: %v", col.seg, col.source, err)
	}
	vs, inv, err := samplecodec.DecodeValueColumn(col.values, frames, make([]float64, 0, col.n))
	if err != nil {
		return charting.Series{}, sealedCorrupt("segment %d, channel %q: %v", col.seg, col.channel, err)
	}
	return charting.Series{Channel: col.channel, TimesMs: ts, Values: vs, Invalid: inv}, nil
}

// foldColumn folds the samples of col in [lo, hi) into bs, frame by
// frame: a frame that lies inside one bucket is added as its rollup when
// that is exactly what adding its samples would give, otherwise sample by
// sample, as the batches would add them.
//
// A rollup's count, least, greatest and invalid count are exact however
// the samples are grouped, but a sum of float64 values depends on the
// order of the additions unless every partial sum is exact. So a rollup is
// used only in a bucket where every value of the series is an integer
// (every column overlapping it is an integer column: pressures, speeds,
// saturations …) of magnitude below 2^31, and the bucket holds fewer than
// 2^22 samples, so every partial sum is an integer below 2^53: then the
// answer is bit for bit the reference path's. Channels of finer
// resolution (flows in 0.01 L/min, temperatures in 0.1 °C) are added
// sample by sample.
//
// run: the column is a chunk run's (chunks.go), whose first sample must
// come strictly after those added before it (see bucketSeries.add); a
// sealed column holds its batches in scan order and needs no more than
// order.
func (sc *bucketScan) foldColumn(bs *bucketSeries, col *sealedCol, lo, hi int64, run bool) error {
	tc, err := samplecodec.NewTimeColumn(col.times)
	if err != nil {
		return err
	}
	vc, err := samplecodec.NewValueColumn(col.values)
	if err != nil {
		return err
	}
	mixed := sc.mixed[SeriesKey{col.channel, col.source}]
	a := bs.acc
	var ts []int64
	var vs []float64
	var inv []bool
	for {
		f, ok, err := tc.Next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		r, ok, err := vc.Next(f.Count)
		if err != nil {
			return err
		}
		if !ok {
			return sealedCorrupt("segment %d, channel %q: fewer value frames than time frames", col.seg, col.channel)
		}
		if f.Last < lo || f.First >= hi {
			continue
		}
		k, inside := a.within(f.First, f.Last)
		inside = inside && f.First >= lo && f.Last < hi
		if inside && bs.any && (f.First < bs.last || f.First == bs.last && (run || bs.afterRun)) {
			return errUnordered
		}
		if inside && col.integers && a.exact(k, r, mixed) {
			a.addRollup(k, r)
			bs.any, bs.last, bs.afterRun = true, f.Last, run
			if sc.rollups != nil {
				sc.rollups.Add(1)
			}
			continue
		}
		inv = inv[:0]
		var invp *[]bool
		if vc.HasInvalid() {
			invp = &inv
		}
		if vs, err = vc.Decode(vs[:0], invp); err != nil {
			return err
		}
		var flags []bool
		if invp != nil {
			flags = inv
		}
		if inside {
			// The whole frame falls in bucket k: its times are not needed.
			// The frame's times never decrease, so its samples are added
			// in time order, as the reference adds them.
			a.addFrame(k, vs, flags)
			bs.any, bs.last, bs.afterRun = true, f.Last, run
			continue
		}
		if ts, err = tc.Decode(ts[:0]); err != nil {
			return err
		}
		if err := bs.add(charting.Series{TimesMs: ts, Values: vs, Invalid: flags}, lo, hi, run); err != nil {
			return err
		}
	}
	return nil
}

// rollAcc is a series' buckets over [start, start + n·width), as
// charting.Downsampler keeps them — the same comparisons and additions in
// the same order for each sample — which can also take a frame's rollup
// (foldColumn says when that gives the same answer).
type rollAcc struct {
	start, width int64
	b            []charting.Bucket
	sum          []float64
	rolled       []bool // a rollup went into the bucket
	nonInt       []bool // a sample that is not a small integer went into the bucket
	// conflict: a bucket took both, so its sum may not be the reference's
	// (the query then takes the reference path).
	conflict bool
	lo, hi   float64
}

func newRollAcc(start, end int64, n int, ch charting.Channel) *rollAcc {
	return &rollAcc{start: start, width: charting.BucketWidth(start, end, n), b: make([]charting.Bucket, n), sum: make([]float64, n),
		rolled: make([]bool, n), nonInt: make([]bool, n), lo: ch.Min, hi: ch.Max}
}

// smallInt reports whether v is an integer of magnitude below 2^31, so that
// sums of fewer than 2^22 of them are exact in any order.
func smallInt(v float64) bool { return v == math.Trunc(v) && math.Abs(v) < 1<<31 }

// summed notes a sample that went into bucket k's sum.
func (a *rollAcc) summed(k int64, v float64) {
	if !a.nonInt[k] && !smallInt(v) {
		a.nonInt[k] = true
		a.conflict = a.conflict || a.rolled[k]
	}
}

// add adds the samples of s that fall in the range (charting.Downsampler.Add).
func (a *rollAcc) add(s charting.Series) {
	n := int64(len(a.b))
	for i, t := range s.TimesMs {
		if t < a.start {
			continue
		}
		k := (t - a.start) / a.width
		if k >= n {
			continue
		}
		v := s.Values[i]
		if a.b[k].Admit(v, s.IsInvalid(i), a.lo, a.hi) {
			a.sum[k] += v
			a.summed(k, v)
		}
	}
}

// addFrame adds the samples of a frame that lies in bucket k, in order:
// add's comparisons and additions without finding each one's bucket.
func (a *rollAcc) addFrame(k int, vs []float64, inv []bool) {
	b := &a.b[k]
	sum := a.sum[k]
	for i, v := range vs {
		if b.Admit(v, inv != nil && inv[i], a.lo, a.hi) {
			sum += v
			a.summed(int64(k), v)
		}
	}
	a.sum[k] = sum
}

// within returns the bucket holding all of [first, last], if one does.
func (a *rollAcc) within(first, last int64) (int, bool) {
	if first < a.start {
		return 0, false
	}
	k := (first - a.start) / a.width
	if k >= int64(len(a.b)) || (last-a.start)/a.width != k {
		return 0, false
	}
	return int(k), true
}

// exact reports whether adding r to bucket k gives what adding its samples
// would: its valid samples are all plausible (none is counted out of
// range), small integers, and no column of the series with other than
// integers overlaps the bucket.
func (a *rollAcc) exact(k int, r samplecodec.Rollup, mixed [][2]int64) bool {
	if a.nonInt[k] {
		return false
	}
	if r.Count > r.Invalid {
		if !(r.Min >= a.lo && r.Max <= a.hi) || math.Abs(r.Min) > 1<<31 || math.Abs(r.Max) > 1<<31 {
			return false
		}
	}
	from := a.start + int64(k)*a.width
	to := from + a.width
	for _, m := range mixed {
		if m[0] < to && m[1] >= from {
			return false
		}
	}
	return true
}

// addRollup adds a frame's rollup to bucket k.
func (a *rollAcc) addRollup(k int, r samplecodec.Rollup) {
	b := &a.b[k]
	b.InvalidCount += int64(r.Invalid)
	if valid := int64(r.Count - r.Invalid); valid > 0 {
		if b.Count == 0 {
			b.Min, b.Max = r.Min, r.Max
		} else {
			b.Min, b.Max = math.Min(b.Min, r.Min), math.Max(b.Max, r.Max)
		}
		b.Count += valid
		a.sum[k] += r.Sum
	}
	a.rolled[k] = true
}

// tooLarge reports a bucket that took a rollup and holds so many samples,
// or samples of other than small integers, that its sum may not be exact.
func (a *rollAcc) tooLarge() bool {
	if a.conflict {
		return true
	}
	for k, b := range a.b {
		if a.rolled[k] && b.Count > 1<<22 {
			return true
		}
	}
	return false
}

// buckets returns the buckets that hold any sample (charting.Downsampler.Buckets).
func (a *rollAcc) buckets() []charting.Bucket {
	var out []charting.Bucket
	for k, b := range a.b {
		if b.Count == 0 && b.InvalidCount == 0 && b.OutOfRangeCount == 0 {
			continue
		}
		b.StartMs = a.start + int64(k)*a.width
		if b.Count > 0 {
			b.Mean = a.sum[k] / float64(b.Count)
		}
		out = append(out, b)
	}
	return out
}

// buckets returns a series' buckets.
func (bs *bucketSeries) buckets() []charting.Bucket { return bs.acc.buckets() }
