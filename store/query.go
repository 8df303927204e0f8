package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"

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
// order). Otherwise, and for open-ended ranges (whose buckets depend on the
// data's extent), it falls back to the reference path.
func (s *Store) queryBuckets(ctx context.Context, q SampleQuery) (*SampleQueryResult, error) {
	if q.FromMs == 0 || q.ToMs == 0 {
		return s.querySamplesNaive(ctx, q)
	}
	res, err := s.streamBuckets(ctx, q)
	if errors.Is(err, errUnordered) {
		return s.querySamplesNaive(ctx, q)
	}
	return res, err
}

// bucketSeries accumulates one (channel, source) series.
type bucketSeries struct {
	d    *charting.Downsampler
	last int64 // time of the last sample added
	any  bool  // a sample has been added
}

// streamBuckets splits the range at a bucket boundary into one part per
// processor and scans the parts concurrently (each on its own connection),
// then joins their buckets. The parts' buckets are disjoint, so every
// bucket's samples are added by one part, in the order the reference path
// adds them: the join is exact.
func (s *Store) streamBuckets(ctx context.Context, q SampleQuery) (*SampleQueryResult, error) {
	width := charting.NewDownsampler(q.FromMs, q.ToMs, q.Buckets).WidthMs()
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
			results[i], err = s.scanBuckets(gctx, q, bounds[i], bounds[i+1])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	res := &SampleQueryResult{Downsampled: make(map[SeriesKey][]charting.Bucket)}
	for _, part := range results {
		for k, bs := range part {
			res.Downsampled[k] = append(res.Downsampled[k], bs.d.Buckets()...)
			res.WidthMs = bs.d.WidthMs()
		}
	}
	// The reference path gives a series with no sample in range nil
	// buckets, not an empty slice.
	for k, b := range res.Downsampled {
		if len(b) == 0 {
			res.Downsampled[k] = nil
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
// the whole query range.
func (s *Store) scanBuckets(ctx context.Context, q SampleQuery, lo, hi int64) (map[SeriesKey]*bucketSeries, error) {
	want := q.Channels
	if len(want) == 0 {
		for _, ch := range s.cat.Channels() {
			want = append(want, ch.Key)
		}
	}
	// Wanted channels have a slot per source; when every channel is wanted,
	// channels outside the catalogue (an older catalogue's) are found in
	// keys by name.
	idx := make(map[string]int, len(want))
	for i, ch := range want {
		idx[ch] = i
	}
	all := len(q.Channels) == 0
	bySource := make(map[string]*sourceSlots)
	keys := make(map[SeriesKey]*bucketSeries)
	var w samplecodec.Walker
	err := s.b.ScanSampleBatches(ctx, q.CaseID, SampleFilter{SourceID: q.SourceID, FromMs: lo, ToMs: hi}, func(row *SampleBatchRow) error {
		src := bySource[row.SourceID]
		if src == nil {
			src = &sourceSlots{slots: make([]*bucketSeries, len(want))}
			bySource[row.SourceID] = src
		}
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
				if i, ok := idx[string(name)]; ok {
					src.pick[p] = i
				} else if all {
					src.pick[p] = -2
				}
			}
			switch i := src.pick[p]; {
			case i >= 0:
				bs = src.slots[i]
				if bs == nil {
					bs = &bucketSeries{d: charting.NewDownsampler(q.FromMs, q.ToMs, q.Buckets)}
					src.slots[i] = bs
					keys[SeriesKey{want[i], row.SourceID}] = bs
				}
			case i == -2:
				k := SeriesKey{string(name), row.SourceID}
				if bs = keys[k]; bs == nil {
					bs = &bucketSeries{d: charting.NewDownsampler(q.FromMs, q.ToMs, q.Buckets)}
					keys[k] = bs
				}
			default:
				return false
			}
			return true
		}
		err := w.Walk(row.Block, wanted, func(_ []byte, sr charting.Series) error {
			return bs.add(sr, lo, hi)
		})
		if err != nil && !errors.Is(err, errUnordered) {
			return fmt.Errorf("batch %s: %w", charting.SampleRef(row.SourceID, row.Seq), err)
		}
		return err
	})
	if err != nil {
		if errors.Is(err, errUnordered) {
			return nil, err
		}
		return nil, fmt.Errorf("query samples: %w", err)
	}
	return keys, nil
}

// add folds the samples of sr in [from, to) into the buckets, or returns
// errUnordered when they are not in time order, within the series or after
// those added before.
func (bs *bucketSeries) add(sr charting.Series, from, to int64) error {
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
	if bs.any && ts[lo] < bs.last {
		return errUnordered
	}
	bs.any, bs.last = true, ts[hi-1]
	sub := charting.Series{TimesMs: ts[lo:hi], Values: sr.Values[lo:hi]}
	if sr.Invalid != nil {
		sub.Invalid = sr.Invalid[lo:hi]
	}
	bs.d.Add(sub)
	return nil
}
