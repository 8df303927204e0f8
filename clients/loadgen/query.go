package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
)

// historyTimeout bounds the history load, like every phase of a run.
const historyTimeout = 10 * time.Minute

// historyResult is the bulk load of the queried case's history.
type historyResult struct {
	span    time.Duration
	batch   time.Duration
	samples int64
	batches int64
	elapsed time.Duration
}

// loadHistory streams span of 1 Hz history into the queried case, ending
// at endMs, as fast as acks allow, on the same sources the live stream will
// continue. It is a setup step: its acks are not part of the ingest figures.
// Its batches span --history-batch, by default the run's batch interval,
// because a query reads what was stored: a case streamed for four hours in
// one-second batches holds 14,400 of them per source, and loading it in
// minute batches would time a query over 60 times fewer.
func loadHistory(ctx context.Context, c *config, client pb.ChartingServiceClient, caseID string, endMs int64) (historyResult, error) {
	s := &stream{caseID: caseID, sources: caseSources(c, 0, false), originMs: endMs - c.history.Milliseconds(),
		limitMs: endMs, interval: c.historyBatch, window: c.window}
	if err := s.open(ctx, client); err != nil {
		return historyResult{}, fmt.Errorf("history: open stream: %w", err)
	}
	var errs errorCounts
	start := time.Now()
	r := s.run(start.Add(historyTimeout), c.drainTimeout, &errs)
	res := historyResult{span: c.history, batch: c.historyBatch, samples: r.samplesAcked, batches: r.batchesAcked, elapsed: time.Since(start)}
	if kinds, first := errs.snapshot(); len(kinds) > 0 {
		return res, fmt.Errorf("history: %v (first: %v)", kinds, first)
	}
	if !r.exhausted {
		return res, fmt.Errorf("history: not loaded within %s", historyTimeout)
	}
	return res, nil
}

// queryResult is the QuerySamples measurement.
type queryResult struct {
	caseID   string
	channels []string
	buckets  int
	span     time.Duration
	covered  int64 // valid samples the buckets aggregate, from the first answer
	series   int
	lat      latencies
	errs     errorCounts
}

// measureQueries asks, iters times one after another, for the queried
// case's first c.queryChannels channels over [fromMs, toMs) in
// c.queryBuckets buckets, the trend view a reviewer or the tablet opens.
// Calls are sequential: this is the latency one user sees, not throughput.
func measureQueries(ctx context.Context, c *config, client pb.ChartingServiceClient, caseID string, fromMs, toMs int64) *queryResult {
	q := &queryResult{caseID: caseID, buckets: c.queryBuckets, span: time.Duration(toMs-fromMs) * time.Millisecond}
	for _, ch := range charting.DefaultCatalogue().Channels()[:c.queryChannels] {
		q.channels = append(q.channels, ch.Key)
	}
	req := &pb.QuerySamplesRequest{CaseId: caseID, Channels: q.channels,
		Start: timestamppb.New(time.UnixMilli(fromMs)), End: timestamppb.New(time.UnixMilli(toMs)), Buckets: int32(c.queryBuckets)}
	for i := 0; i < c.queryIters && ctx.Err() == nil; i++ {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		t := time.Now()
		r, err := client.QuerySamples(cctx, req)
		d := time.Since(t)
		cancel()
		if err != nil {
			q.errs.add("query", err)
			continue
		}
		q.lat = append(q.lat, d)
		if i == 0 {
			q.series = len(r.Downsampled)
			for _, s := range r.Downsampled {
				for _, b := range s.Buckets {
					q.covered += b.Count
				}
			}
		}
	}
	return q
}
