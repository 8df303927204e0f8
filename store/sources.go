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
// average (docs/domain.md, "Clocks and late entries"). The record keeps both clocks as they are and
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
	// ClockImplausible reports that some batch holds device times outside
	// the case's device window (charting.Case.DeviceWindow of its receipt:
	// a clock reset to 1970, or one far ahead). Those samples are stored
	// as sent, returned by raw queries over their range, and kept out of
	// trends, watches and exports; a display should warn.
	ClockImplausible bool
	// ImplausibleBatches and ImplausibleSamples count those batches and
	// their samples (all of a batch's samples, as the batch is judged by
	// its time range).
	ImplausibleBatches, ImplausibleSamples int64
	// ImplausibleSeqs are the sequence ranges of those batches, ascending,
	// at most MaxImplausibleRanges of them (the first ones).
	ImplausibleSeqs []SeqRange
	// LastImplausible reports that the highest-sequence batch is one of
	// them: the clock is still off.
	LastImplausible bool
}

// SeqRange is an inclusive range of batch sequences.
type SeqRange struct{ From, To int64 }

// MaxImplausibleRanges bounds SourceSummary.ImplausibleSeqs: a clock that
// flips on and off every batch must not make the summary grow with the case.
const MaxImplausibleRanges = 32

// SourceSummaries lists the device sources of a case by source id, from
// the batches' summaries (their blocks are not read).
func (s *Store) SourceSummaries(ctx context.Context, caseID uuid.UUID) ([]SourceSummary, error) {
	c, err := s.b.GetCase(ctx, caseID)
	if err != nil {
		return nil, fmt.Errorf("source summaries: %w", err)
	}
	bySource := make(map[string]*SourceSummary)
	lastSeq := make(map[string]int64)
	implausible := make(map[string][]int64)
	err = s.b.ScanSampleBatches(ctx, caseID, SampleFilter{WithoutBlocks: true}, func(r *SampleBatchRow) error {
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
		bad := !c.PlausiblyTimed(r.RecordedAt, r.MinTimeMs, r.MaxTimeMs)
		if bad {
			sum.ClockImplausible = true
			sum.ImplausibleBatches++
			sum.ImplausibleSamples += int64(r.SampleCount)
			implausible[r.SourceID] = append(implausible[r.SourceID], r.Seq)
		}
		if r.Seq > lastSeq[r.SourceID] {
			lastSeq[r.SourceID] = r.Seq
			sum.LastReceived, sum.LastReceiptLagMs, sum.LastImplausible = r.RecordedAt, lag, bad
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
		sum.ImplausibleSeqs = seqRanges(implausible[id])
		out = append(out, *sum)
	}
	slices.SortFunc(out, func(a, b SourceSummary) int { return strings.Compare(a.SourceID, b.SourceID) })
	return out, nil
}

// seqRanges compresses sequences into ascending ranges, at most
// MaxImplausibleRanges of them.
func seqRanges(seqs []int64) []SeqRange {
	slices.Sort(seqs)
	var out []SeqRange
	for _, q := range seqs {
		if n := len(out); n > 0 && out[n-1].To+1 == q {
			out[n-1].To = q
			continue
		}
		if len(out) == MaxImplausibleRanges {
			break
		}
		out = append(out, SeqRange{q, q})
	}
	return out
}
