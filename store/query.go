package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
)

// errUnordered stops the streaming bucket path when a series' samples do
// not arrive in time order (a device re-sent an older range, or its clock
// stepped back); the query then takes the reference path.
var errUnordered = errors.New("samples out of time order")

// queryBuckets answers a bucketed query by folding each block's samples
// straight into per-series bucket accumulators as the blocks stream from
// the backend: nothing is materialised, and blocks are decoded into reused
// buffers. The answer is exactly that of querySamplesNaive: the buckets'
// sums are added in the same order, because the fast path only runs while
// every series' samples arrive in time order, which is the order the
// reference path sorts them into (stably, so equal times keep the scan
// order). Otherwise it falls back to the reference path.
//
// An open-ended range ("the whole case") takes its open ends from the
// data, as the reference path does: the first and last sample of the
// series asked for. A first pass finds them (from chunk runs' bounds where
// a run lies inside the range, else from sample times), then the range is
// fixed and streamed like any other.
func (s *Store) queryBuckets(ctx context.Context, c *charting.Case, q SampleQuery) (*SampleQueryResult, error) {
	skip, err := s.clockSkips(ctx, c, q)
	if err != nil {
		return nil, fmt.Errorf("query samples: %w", err)
	}
	plan := &queryPlan{skip: skip, rollups: &s.rollupsUsed}
	if plan.sealed, err = s.sealedTrend(ctx, c); err != nil {
		return nil, fmt.Errorf("query samples: %w", err)
	}
	fixed := q
	if q.FromMs == 0 || q.ToMs == 0 {
		lo, hi, ok, err := s.extent(ctx, c, plan, q)
		if err != nil {
			return nil, fmt.Errorf("query samples: %w", err)
		}
		if !ok {
			return s.naive(ctx, c, q) // no sample: the reference's empty answer
		}
		if fixed.FromMs == 0 {
			fixed.FromMs = lo
		}
		if fixed.ToMs == 0 {
			fixed.ToMs = hi + 1
		}
	}
	res, err := s.streamBuckets(ctx, c, plan, fixed)
	if errors.Is(err, errUnordered) {
		return s.naive(ctx, c, q)
	}
	return res, err
}

// clockSkips returns the sources of q whose chunk runs must not be used,
// because a run may hold a batch timed outside the case's device window
// (a clock reset or far ahead): a run keeps no receipt times, so its
// samples cannot be judged one by one. For these sources a bucketed query
// reads the batches instead and leaves the implausibly timed samples out
// batch by batch, exactly as the reference path does.
//
// The compactor never builds a run over an implausibly timed batch
// (compactRun), so only runs built before it knew that rule can hold one;
// and before it, ingest refused device times more than five minutes ahead,
// so such a run can only hold a batch from before the case, which its
// marker's earliest time shows. Reading the markers (one row a run) is all
// this costs.
func (s *Store) clockSkips(ctx context.Context, c *charting.Case, q SampleQuery) (map[string]bool, error) {
	if s.ignoreRuns {
		return nil, nil
	}
	var skip map[string]bool
	begins := c.Begins().UnixMilli()
	markersOnly := ChunkFilter{SourceID: q.SourceID, Channels: []string{}}
	err := s.b.ScanSampleChunks(ctx, q.CaseID, markersOnly, func(row *SampleChunkRow) error {
		if row.Channel == "" && row.MinTimeMs < begins {
			if skip == nil {
				skip = make(map[string]bool)
			}
			skip[row.SourceID] = true
		}
		return nil
	})
	return skip, err
}

// queryPlan is how a bucketed query reads a case.
type queryPlan struct {
	// skip: sources whose chunk runs are not used (clockSkips).
	skip map[string]bool
	// sealed: the case is sealed (sealedquery.go).
	sealed bool
	// rollups counts the rollups used.
	rollups *atomic.Int64
}

// deviceWindowFilter is c's device window as a batch filter.
func deviceWindowFilter(c *charting.Case) *DeviceWindowFilter {
	return &DeviceWindowFilter{BeginsMs: c.Begins().UnixMilli(), AheadMs: charting.MaxDeviceClockAhead.Milliseconds()}
}

// extent returns the first and last plausibly timed sample time of the
// query's series within its bounds (an unset bound is open); ok is false
// when there is no such sample.
func (s *Store) extent(ctx context.Context, c *charting.Case, plan *queryPlan, q SampleQuery) (lo, hi int64, ok bool, err error) {
	to := q.ToMs
	if to == 0 {
		to = math.MaxInt64
	}
	in := func(t int64) bool { return t >= q.FromMs && t < to }
	see := func(ts ...int64) {
		for _, t := range ts {
			if in(t) {
				if !ok || t < lo {
					lo = t
				}
				if !ok || t > hi {
					hi = t
				}
				ok = true
			}
		}
	}
	sc := newBucketScan(s.cat, c, plan, q)
	var w samplecodec.Walker
	times := func(_ []byte, sr charting.Series) error { see(sr.TimesMs...); return nil }
	err = s.scanRunsThenBatches(ctx, sc, q.FromMs, q.ToMs, func(row *SampleChunkRow) error {
		if in(row.MinTimeMs) && in(row.MaxTimeMs) {
			see(row.MinTimeMs, row.MaxTimeMs) // the run lies inside: its bounds are its samples'
			return nil
		}
		return row.walk(&w, times)
	}, func(row *SampleBatchRow) error {
		fn := times
		if !c.PlausiblyTimed(row.RecordedAt, row.MinTimeMs, row.MaxTimeMs) {
			win := c.DeviceWindow(row.RecordedAt)
			fn = func(_ []byte, sr charting.Series) error { see(sr.Within(win).TimesMs...); return nil }
		}
		return w.Walk(row.Block, func(name []byte) bool { return sc.wants(string(name)) }, fn)
	})
	return lo, hi, ok, err
}

// bucketSeries accumulates one (channel, source) series.
type bucketSeries struct {
	// acc holds the buckets as charting.Downsampler would, and takes
	// column frames' rollups where they are exact (sealedquery.go).
	acc  *rollAcc
	last int64 // time of the last sample added
	any  bool  // a sample has been added
	// afterRun: the last samples added came from a chunk run.
	afterRun bool
}

// streamBuckets splits the range at a bucket boundary into one part per
// processor and scans the parts concurrently (each on its own connection),
// then joins their buckets. The parts' buckets are disjoint, so every
// bucket's samples are added by one part, in the order the reference path
// adds them: the join is exact.
func (s *Store) streamBuckets(ctx context.Context, c *charting.Case, plan *queryPlan, q SampleQuery) (*SampleQueryResult, error) {
	width := charting.BucketWidth(q.FromMs, q.ToMs, q.Buckets)
	parts := s.queryParts
	if parts <= 0 {
		parts = min(runtime.GOMAXPROCS(0), maxQueryParts)
	}
	parts = min(parts, q.Buckets)
	var bounds []int64 // part i covers [bounds[i], bounds[i+1])
	for i := range parts {
		b := q.FromMs + int64(q.Buckets*i/parts)*width
		if b == 0 || b >= q.ToMs || (i > 0 && b == bounds[i-1]) {
			// 0 means "unbounded" to a SampleFilter; an empty part is
			// pointless. Fewer parts then.
			break
		}
		bounds = append(bounds, b)
	}
	if len(bounds) == 0 {
		bounds = []int64{q.FromMs}
	}
	bounds = append(bounds, q.ToMs)
	results := make([]map[SeriesKey]*bucketSeries, len(bounds)-1)
	g, gctx := errgroup.WithContext(ctx)
	for i := range results {
		g.Go(func() error {
			var err error
			results[i], err = s.scanBuckets(gctx, c, plan, q, bounds[i], bounds[i+1])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	res := &SampleQueryResult{Downsampled: make(map[SeriesKey][]charting.Bucket), WidthMs: width}
	for _, part := range results {
		for k, bs := range part {
			res.Downsampled[k] = append(res.Downsampled[k], bs.buckets()...)
		}
	}
	// A series with no sample in the range is left out, as the reference
	// path leaves it out: whether a scan met it at all depends on how its
	// samples were batched or chunked.
	for k, b := range res.Downsampled {
		if len(b) == 0 {
			delete(res.Downsampled, k)
		}
	}
	return res, nil
}

// maxQueryParts bounds the connections one query takes from the pool.
const maxQueryParts = 4

// sourceSlots are one source's accumulators by wanted channel, with the
// channel names seen at each position of the source's last block: a
// source's blocks list the same channels in the same order, so most
// lookups are one string comparison instead of a map lookup.
type sourceSlots struct {
	slots []*bucketSeries
	names []string
	pick  []int // index into the wanted channels; -1: not wanted; -2: found in keys
}

// scanBuckets folds the samples in [lo, hi) into per-series buckets over
// the whole query range: first the chunk runs (chunks.go) of the wanted
// channels, then the batches past each source's last run.
func (s *Store) scanBuckets(ctx context.Context, c *charting.Case, plan *queryPlan, q SampleQuery, lo, hi int64) (map[SeriesKey]*bucketSeries, error) {
	sc := newBucketScan(s.cat, c, plan, q)
	err := s.scanRunsThenBatches(ctx, sc, lo, hi, func(row *SampleChunkRow) error {
		return sc.run(row, lo, hi)
	}, func(row *SampleBatchRow) error {
		return sc.batch(row, lo, hi)
	})
	if err != nil {
		if errors.Is(err, errUnordered) {
			return nil, err
		}
		return nil, fmt.Errorf("query samples: %w", err)
	}
	for _, bs := range sc.keys {
		if bs.acc.tooLarge() {
			return nil, errUnordered // a rollup's sum may not be exact here
		}
	}
	return sc.keys, nil
}

// bucketScan finds the accumulator of each (channel, source) a scan meets.
type bucketScan struct {
	q   SampleQuery
	cat *charting.Catalogue
	c   *charting.Case
	// skipRuns: sources whose chunk runs are not used (clockSkips).
	skipRuns map[string]bool
	// sealed: the case is sealed; its columns stand for chunk runs.
	sealed bool
	// mixed: the time ranges of each series' sealed columns that hold
	// other than integers (sealedquery.go).
	mixed map[SeriesKey][][2]int64
	// rollups counts the rollups added (Store.rollupsUsed).
	rollups *atomic.Int64
	want    []string       // the wanted channels
	idx     map[string]int // index in want by name
	// all: every channel is wanted, so channels outside the catalogue (an
	// older catalogue's) are found in keys by name.
	all      bool
	bySource map[string]*sourceSlots
	keys     map[SeriesKey]*bucketSeries
	w        samplecodec.Walker
}

func newBucketScan(cat *charting.Catalogue, c *charting.Case, plan *queryPlan, q SampleQuery) *bucketScan {
	sc := &bucketScan{q: q, cat: cat, c: c, skipRuns: plan.skip, sealed: plan.sealed, rollups: plan.rollups, want: q.Channels, all: len(q.Channels) == 0,
		bySource: make(map[string]*sourceSlots), keys: make(map[SeriesKey]*bucketSeries), mixed: make(map[SeriesKey][][2]int64)}
	if sc.all {
		for _, ch := range cat.Channels() {
			sc.want = append(sc.want, ch.Key)
		}
	}
	sc.idx = make(map[string]int, len(sc.want))
	for i, ch := range sc.want {
		sc.idx[ch] = i
	}
	return sc
}

// source returns the slots of a source.
func (sc *bucketScan) source(id string) *sourceSlots {
	src := sc.bySource[id]
	if src == nil {
		src = &sourceSlots{slots: make([]*bucketSeries, len(sc.want))}
		sc.bySource[id] = src
	}
	return src
}

// series returns the accumulator for a wanted pick (an index into want,
// or -2 for a channel found by name), creating it on first use.
func (sc *bucketScan) series(src *sourceSlots, sourceID string, pick int, name []byte) *bucketSeries {
	if pick >= 0 {
		bs := src.slots[pick]
		if bs == nil {
			bs = sc.newSeries(sc.want[pick])
			src.slots[pick] = bs
			sc.keys[SeriesKey{sc.want[pick], sourceID}] = bs
		}
		return bs
	}
	k := SeriesKey{string(name), sourceID}
	bs := sc.keys[k]
	if bs == nil {
		bs = sc.newSeries(k.Channel)
		sc.keys[k] = bs
	}
	return bs
}

func (sc *bucketScan) newSeries(channel string) *bucketSeries {
	return &bucketSeries{acc: newRollAcc(sc.q.FromMs, sc.q.ToMs, sc.q.Buckets, sc.cat.Flagging(channel))}
}

// scanRunsThenBatches is how a bucketed query reads a case: the chunk
// rows of sc's channels overlapping [from, to) (0: open) with every run's
// marker, whatever its time, so that where each source's last run ends is
// exact; then the batches overlapping the range past those ends. onRun
// gets the channel rows, onBatch the batches. Runs are read in one
// statement, so a run committed in between is read whole or not at all,
// and then its batches are read instead.
func (s *Store) scanRunsThenBatches(ctx context.Context, sc *bucketScan, from, to int64,
	onRun func(*SampleChunkRow) error, onBatch func(*SampleBatchRow) error) error {
	if sc.sealed {
		return s.scanSealed(ctx, sc, from, to, onRun, onBatch)
	}
	after := make(map[string]int64)
	if !s.ignoreRuns {
		var channels []string
		if !sc.all {
			channels = sc.want
		}
		err := s.b.ScanSampleChunks(ctx, sc.q.CaseID, ChunkFilter{SourceID: sc.q.SourceID, FromMs: from, ToMs: to, Channels: channels}, func(row *SampleChunkRow) error {
			if sc.skipRuns[row.SourceID] {
				return nil // read from its batches instead
			}
			if row.Channel == "" {
				after[row.SourceID] = max(after[row.SourceID], row.SeqTo)
				return nil
			}
			return onRun(row)
		})
		if err != nil {
			return err
		}
	}
	return s.b.ScanSampleBatches(ctx, sc.q.CaseID, SampleFilter{SourceID: sc.q.SourceID, FromMs: from, ToMs: to, After: after}, onBatch)
}

// wants reports whether the query asks for a channel.
func (sc *bucketScan) wants(name string) bool {
	_, ok := sc.idx[name]
	return ok || sc.all
}

// run folds one chunk row of a wanted channel.
func (sc *bucketScan) run(row *SampleChunkRow, lo, hi int64) error {
	pick, ok := sc.idx[row.Channel]
	if !ok {
		if !sc.all {
			return nil
		}
		pick = -2
	}
	bs := sc.series(sc.source(row.SourceID), row.SourceID, pick, []byte(row.Channel))
	if row.col != nil {
		return sc.foldColumn(bs, row.col, lo, hi, false) // a sealed column
	}
	if col, ok, err := chunkColumn(row); err != nil || ok {
		if err != nil {
			return err
		}
		return sc.foldColumn(bs, col, lo, hi, true)
	}
	err := sc.w.Walk(row.Block, nil, func(_ []byte, sr charting.Series) error {
		return bs.add(sr, lo, hi, true)
	})
	if err != nil && !errors.Is(err, errUnordered) {
		return fmt.Errorf("trend chunk %s..%d: %w", charting.SampleRef(row.SourceID, row.SeqFrom), row.SeqTo, err)
	}
	return err
}

// batch folds one batch's wanted series.
func (sc *bucketScan) batch(row *SampleBatchRow, lo, hi int64) error {
	src := sc.source(row.SourceID)
	var bs *bucketSeries
	pos := 0
	wanted := func(name []byte) bool {
		p := pos
		pos++
		if p == len(src.names) {
			src.names, src.pick = append(src.names, ""), append(src.pick, -1)
		}
		if src.names[p] != string(name) {
			src.names[p] = string(name)
			src.pick[p] = -1
			if i, ok := sc.idx[string(name)]; ok {
				src.pick[p] = i
			} else if sc.all {
				src.pick[p] = -2
			}
		}
		if src.pick[p] == -1 {
			return false
		}
		bs = sc.series(src, row.SourceID, src.pick[p], name)
		return true
	}
	fold := func(_ []byte, sr charting.Series) error { return bs.add(sr, lo, hi, false) }
	if !sc.c.PlausiblyTimed(row.RecordedAt, row.MinTimeMs, row.MaxTimeMs) {
		// Rare: a batch from a clock far off. Its samples outside the
		// case's device window are left out, as the reference path does.
		win := sc.c.DeviceWindow(row.RecordedAt)
		fold = func(_ []byte, sr charting.Series) error { return bs.add(sr.Within(win), lo, hi, false) }
	}
	err := sc.w.Walk(row.Block, wanted, fold)
	if err != nil && !errors.Is(err, errUnordered) {
		return fmt.Errorf("batch %s: %w", charting.SampleRef(row.SourceID, row.Seq), err)
	}
	return err
}

// add folds the samples of sr in [from, to) into the buckets, or returns
// errUnordered when they are not in time order, within the series or after
// those added before.
//
// A run's samples, and the first samples after a run, must come strictly
// after those added before: the reference path orders equal times by
// batch, and a run boundary between them would hide that order.
func (bs *bucketSeries) add(sr charting.Series, from, to int64, run bool) error {
	ts := sr.TimesMs
	for i := 1; i < len(ts); i++ {
		if ts[i] < ts[i-1] {
			return errUnordered
		}
	}
	if len(ts) == 0 {
		return nil
	}
	lo, hi := 0, len(ts)
	if ts[0] < from || ts[hi-1] >= to { // the usual block lies inside the range
		lo = sort.Search(len(ts), func(i int) bool { return ts[i] >= from })
		hi = sort.Search(len(ts), func(i int) bool { return ts[i] >= to })
	}
	if lo == hi {
		return nil
	}
	if bs.any && (ts[lo] < bs.last || ts[lo] == bs.last && (run || bs.afterRun)) {
		return errUnordered
	}
	bs.any, bs.last, bs.afterRun = true, ts[hi-1], run
	sub := charting.Series{TimesMs: ts[lo:hi], Values: sr.Values[lo:hi]}
	if sr.Invalid != nil {
		sub.Invalid = sr.Invalid[lo:hi]
	}
	bs.acc.add(sub)
	return nil
}
