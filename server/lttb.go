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
		r.Raw[k] = charting.LTTBSeries(sr, r.TimeImplausible[k], n)
	}
	r.TimeImplausible = nil
	return samplesOut(s.h.store.Catalogue(), r), nil
}
