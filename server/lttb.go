package server

import (
	"context"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/store"
)

// maxLTTBSamples bounds what one LTTB query reads: 4 hours of 40 channels
// at 1 Hz is under 600,000 samples; a million keeps a query's memory near
// 20 MB.
const maxLTTBSamples = 1_000_000

// queryLTTB answers QuerySamples with method LTTB: every valid sample of
// the range read raw, then each series reduced to at most q.Buckets points.
// Invalid readings are left out: a display draws no line through them.
// Samples timed outside the case's device window are left out too, as from
// buckets: one from 1970 would stretch the line over decades. Out-of-range
// readings are kept (a line shows what the device sent) and marked.
func (s *chartingService) queryLTTB(ctx context.Context, q store.SampleQuery) (*pb.QuerySamplesResponse, error) {
	n := q.Buckets
	q.Buckets, q.RawLimit = 0, maxLTTBSamples
	r, err := s.h.store.QuerySamples(ctx, q)
	if err != nil {
		return nil, err
	}
	for k, sr := range r.Raw {
		r.Raw[k] = lttbSeries(sr, r.TimeImplausible[k], n)
	}
	r.TimeImplausible = nil
	return samplesOut(s.h.store.Catalogue(), r), nil
}

// lttbSeries keeps sr's valid samples, not marked in late (nil: none
// marked), that LTTB picks.
func lttbSeries(sr *charting.Series, late []bool, n int) *charting.Series {
	valid := &charting.Series{Channel: sr.Channel}
	for i, t := range sr.TimesMs {
		if !sr.IsInvalid(i) && (late == nil || !late[i]) {
			valid.TimesMs = append(valid.TimesMs, t)
			valid.Values = append(valid.Values, sr.Values[i])
		}
	}
	keep := charting.LTTB(valid.TimesMs, valid.Values, n)
	out := &charting.Series{Channel: sr.Channel, TimesMs: make([]int64, len(keep)), Values: make([]float64, len(keep))}
	for k, i := range keep {
		out.TimesMs[k], out.Values[k] = valid.TimesMs[i], valid.Values[i]
	}
	return out
}
