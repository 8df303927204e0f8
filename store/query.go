package store

import (
	"context"
	"errors"
	"fmt"
	"sort"

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

func (s *Store) streamBuckets(ctx context.Context, q SampleQuery) (*SampleQueryResult, error) {
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
	bySource := make(map[string][]*bucketSeries)
	keys := make(map[SeriesKey]*bucketSeries)
	var w samplecodec.Walker
	err := s.b.ScanSampleBatches(ctx, q.CaseID, SampleFilter{SourceID: q.SourceID, FromMs: q.FromMs, ToMs: q.ToMs}, func(row *SampleBatchRow) error {
		slots := bySource[row.SourceID]
		if slots == nil {
			slots = make([]*bucketSeries, len(want))
			bySource[row.SourceID] = slots
		}
		var bs *bucketSeries
		want := func(name []byte) bool {
			i, ok := idx[string(name)]
			switch {
			case ok:
				bs = slots[i]
			case !all:
				return false
			default:
				bs = keys[SeriesKey{string(name), row.SourceID}]
			}
			if bs == nil {
				bs = &bucketSeries{d: charting.NewDownsampler(q.FromMs, q.ToMs, q.Buckets)}
				keys[SeriesKey{string(name), row.SourceID}] = bs
				if ok {
					slots[i] = bs
				}
			}
			return true
		}
		err := w.Walk(row.Block, want, func(_ []byte, sr charting.Series) error {
			return bs.add(sr, q.FromMs, q.ToMs)
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
	res := &SampleQueryResult{Downsampled: make(map[SeriesKey][]charting.Bucket, len(keys))}
	for k, bs := range keys {
		res.Downsampled[k] = bs.d.Buckets()
		res.WidthMs = bs.d.WidthMs()
	}
	return res, nil
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
	lo := sort.Search(len(ts), func(i int) bool { return ts[i] >= from })
	hi := sort.Search(len(ts), func(i int) bool { return ts[i] >= to })
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
