package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// SourceSummary is what a case holds from one device source, and how far
// the source's clock appears to lag the server's.
//
// Device clocks drift: surveyed OR device clocks were off by 24 minutes on
// average (shared/domain). The record keeps both clocks as they are and
// never re-times a sample; what it can do is show each source's lag, so a
// display can warn and a reviewer can read device times with it in mind.
// The receipt lag of a batch is the server time it was recorded minus its
// newest device time: transmission and batching delay plus the server
// clock's lead over the device's. Its minimum over the batches is the best
// estimate of the clock part (delay is never negative); a negative lag
// means the device clock is ahead of the server's.
type SourceSummary struct {
	SourceID string
	Batches  int64
	Samples  int64
	// AcknowledgedThrough is the watermark: every batch 1..it is stored.
	AcknowledgedThrough int64
	// FirstSampleMs and LastSampleMs bound the device times.
	FirstSampleMs, LastSampleMs int64
	// LastReceived is when the server recorded the highest sequence.
	LastReceived time.Time
	// MinReceiptLagMs is the smallest receipt lag over the batches,
	// LastReceiptLagMs that of the highest sequence.
	MinReceiptLagMs, LastReceiptLagMs int64
}

// SourceSummaries lists the device sources of a case by source id, from
// the batches' summaries (their blocks are not read).
func (s *Store) SourceSummaries(ctx context.Context, caseID uuid.UUID) ([]SourceSummary, error) {
	if _, err := s.b.GetCase(ctx, caseID); err != nil {
		return nil, fmt.Errorf("source summaries: %w", err)
	}
	bySource := make(map[string]*SourceSummary)
	lastSeq := make(map[string]int64)
	err := s.b.ScanSampleBatches(ctx, caseID, SampleFilter{WithoutBlocks: true}, func(r *SampleBatchRow) error {
		lag := r.RecordedAt.UnixMilli() - r.MaxTimeMs
		sum := bySource[r.SourceID]
		if sum == nil {
			sum = &SourceSummary{SourceID: r.SourceID, FirstSampleMs: r.MinTimeMs, LastSampleMs: r.MaxTimeMs, MinReceiptLagMs: lag}
			bySource[r.SourceID] = sum
		}
		sum.Batches++
		sum.Samples += int64(r.SampleCount)
		sum.FirstSampleMs, sum.LastSampleMs = min(sum.FirstSampleMs, r.MinTimeMs), max(sum.LastSampleMs, r.MaxTimeMs)
		sum.MinReceiptLagMs = min(sum.MinReceiptLagMs, lag)
		if r.Seq > lastSeq[r.SourceID] {
			lastSeq[r.SourceID] = r.Seq
			sum.LastReceived, sum.LastReceiptLagMs = r.RecordedAt, lag
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("source summaries: %w", err)
	}
	marks, err := s.b.SourceWatermarks(ctx, caseID)
	if err != nil {
		return nil, fmt.Errorf("source summaries: %w", err)
	}
	out := make([]SourceSummary, 0, len(bySource))
	for id, sum := range bySource {
		sum.AcknowledgedThrough = marks[id]
		out = append(out, *sum)
	}
	slices.SortFunc(out, func(a, b SourceSummary) int { return strings.Compare(a.SourceID, b.SourceID) })
	return out, nil
}
