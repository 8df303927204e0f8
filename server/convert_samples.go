package server

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/google/uuid"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/store"
)

// batchIn converts a sample batch. invalid_indexes become Series.Invalid;
// indexes must be strictly increasing and within the series. Everything
// else (channels, lengths, times, values, limits) is the domain's to check.
func (p *parser) batchIn(caseID uuid.UUID, b *pb.SampleBatch) *charting.SampleBatch {
	out := &charting.SampleBatch{CaseID: caseID, SourceID: b.GetSourceId(), Seq: b.GetSequence()}
	series := b.GetSeries()
	if len(series) > charting.MaxSeriesPerBatch {
		// Refuse before converting: an oversized batch is not worth the
		// allocations.
		p.v.Add("batch.series", "must hold 1 to %d series", charting.MaxSeriesPerBatch)
		return out
	}
	out.Series = make([]charting.Series, 0, len(series))
	for i, s := range series {
		f := "batch.series[" + strconv.Itoa(i) + "].invalid_indexes"
		out.Series = append(out.Series, charting.Series{
			Channel: s.GetChannel(),
			TimesMs: s.GetOccurredAtUnixMs(),
			Values:  s.GetValues(),
			Invalid: p.invalidIn(f, s.GetInvalidIndexes(), len(s.GetOccurredAtUnixMs())),
		})
	}
	return out
}

// invalidIn turns invalid indexes into a mask over n samples; nil when no
// sample is invalid.
func (p *parser) invalidIn(field string, idx []int32, n int) []bool {
	if len(idx) == 0 {
		return nil
	}
	mask := make([]bool, n)
	for k, i := range idx {
		switch {
		case i < 0 || int(i) >= n:
			p.v.Add(field+"["+strconv.Itoa(k)+"]", "index %d is outside the series' %d samples", i, n)
			return nil
		case k > 0 && i <= idx[k-1]:
			p.v.Add(field+"["+strconv.Itoa(k)+"]", "indexes must be strictly increasing")
			return nil
		}
		mask[i] = true
	}
	return mask
}

// invalidOut turns an invalid mask back into indexes.
func invalidOut(mask []bool) []int32 {
	var out []int32
	for i, bad := range mask {
		if bad {
			out = append(out, int32(i))
		}
	}
	return out
}

// sortedKeys orders series by channel, then source, so responses are
// deterministic.
func sortedKeys[V any](m map[store.SeriesKey]V) []store.SeriesKey {
	keys := make([]store.SeriesKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b store.SeriesKey) int {
		return cmp.Or(cmp.Compare(a.Channel, b.Channel), cmp.Compare(a.SourceID, b.SourceID))
	})
	return keys
}

// samplesOut renders a query result; units and plausible ranges come from
// the catalogue. Out-of-range marks are derived here from the values, never
// stored (charting.Channel.Plausible).
func samplesOut(cat *charting.Catalogue, r *store.SampleQueryResult) *pb.QuerySamplesResponse {
	out := &pb.QuerySamplesResponse{}
	unit := func(ch string) string { c, _ := cat.Lookup(ch); return c.Unit }
	for _, k := range sortedKeys(r.Raw) {
		s := r.Raw[k]
		out.Raw = append(out.Raw, &pb.RawSeries{Channel: k.Channel, SourceId: k.SourceID, Unit: unit(k.Channel),
			OccurredAtUnixMs: s.TimesMs, Values: s.Values, InvalidIndexes: invalidOut(s.Invalid),
			OutOfRangeIndexes: outOfRangeOut(cat.Flagging(k.Channel), s), ImplausibleTimeIndexes: invalidOut(r.TimeImplausible[k])})
	}
	for _, k := range sortedKeys(r.Downsampled) {
		bs := &pb.BucketSeries{Channel: k.Channel, SourceId: k.SourceID, Unit: unit(k.Channel), BucketWidthMs: r.WidthMs}
		for _, b := range r.Downsampled[k] {
			bs.Buckets = append(bs.Buckets, bucketOut(b))
		}
		out.Downsampled = append(out.Downsampled, bs)
	}
	return out
}

func bucketOut(b charting.Bucket) *pb.Bucket {
	return &pb.Bucket{StartUnixMs: b.StartMs, Count: b.Count, Min: b.Min, Max: b.Max,
		Mean: b.Mean, InvalidCount: b.InvalidCount, OutOfRangeCount: b.OutOfRangeCount}
}

// outOfRangeOut lists the valid samples of s outside ch's plausible range.
func outOfRangeOut(ch charting.Channel, s *charting.Series) []int32 {
	var out []int32
	for i, x := range s.Values {
		if !s.IsInvalid(i) && !ch.Plausible(x) {
			out = append(out, int32(i))
		}
	}
	return out
}

// positionsOut renders source watermarks in source order.
func positionsOut(pos map[string]int64) []*pb.SourcePosition {
	out := make([]*pb.SourcePosition, 0, len(pos))
	for src, w := range pos {
		out = append(out, &pb.SourcePosition{SourceId: src, LastCommittedSequence: w})
	}
	slices.SortFunc(out, func(a, b *pb.SourcePosition) int { return cmp.Compare(a.SourceId, b.SourceId) })
	return out
}
