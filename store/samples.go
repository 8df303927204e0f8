package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
)

// SampleResult is the outcome of one batch of AppendSamples.
type SampleResult struct {
	// Duplicate is true when the batch had been stored before.
	Duplicate bool
	// Watermark is the source's resume point after the batch.
	Watermark int64
	// Err is nil when the batch is durable.
	Err error
}

// AppendSamples validates and stores sample batches, possibly of several
// cases, in one transaction (group commit), and returns one result per
// batch. A batch is durable exactly when its result has no error and
// AppendSamples has returned. One batch's invalid content or closed case
// fails that batch only.
func (s *Store) AppendSamples(ctx context.Context, actor string, batches []*charting.SampleBatch) []SampleResult {
	res := make([]SampleResult, len(batches))
	now := s.clock()
	blocks := make([][]byte, len(batches))
	byCase := make(map[uuid.UUID][]int)
	var ids []uuid.UUID
	for i, b := range batches {
		if err := charting.ValidateBatch(s.cat, b, now); err != nil {
			res[i].Err = err
			continue
		}
		b.RecordedAt, b.Actor = now, actor
		blocks[i] = samplecodec.EncodeBlock(b.Series, s.cat.Resolution)
		byCase[b.CaseID] = append(byCase[b.CaseID], i)
		ids = append(ids, b.CaseID)
	}
	if len(ids) == 0 {
		return res
	}
	err := s.b.ReadWrite(ctx, func(ctx context.Context, tx Tx) error {
		for _, id := range sortedCaseIDs(ids) {
			if err := s.appendCase(ctx, tx, id, byCase[id], batches, blocks, res); err != nil {
				return err
			}
		}
		return nil
	})
	for _, idxs := range byCase {
		for _, i := range idxs {
			if err != nil {
				res[i] = SampleResult{Err: fmt.Errorf("append samples: %w", err)}
			}
		}
	}
	return res
}

// appendCase stores one case's batches under its lock. Per-batch failures
// go into res; a returned error aborts the whole transaction.
func (s *Store) appendCase(ctx context.Context, tx Tx, id uuid.UUID, idxs []int, batches []*charting.SampleBatch, blocks [][]byte, res []SampleResult) error {
	c, err := tx.LockCase(ctx, id)
	if errors.Is(err, charting.ErrNotFound) {
		for _, i := range idxs {
			res[i] = SampleResult{Err: fmt.Errorf("append samples: %w", charting.ErrNotFound)}
		}
		return nil
	} else if err != nil {
		return err
	}
	changed := false
	for _, i := range idxs {
		b := batches[i]
		res[i] = SampleResult{}
		prev, err := tx.GetSampleBlock(ctx, id, b.SourceID, b.Seq)
		switch {
		case err == nil && bytes.Equal(prev, blocks[i]):
			res[i].Duplicate = true
		case err == nil:
			res[i].Err = fmt.Errorf("batch %s: %w", charting.SampleRef(b.SourceID, b.Seq), charting.ErrConflict)
			continue
		case !errors.Is(err, charting.ErrNotFound):
			return err
		default:
			if err := c.CanChart(); err != nil {
				res[i].Err = err
				continue
			}
			if err := s.insertBatch(ctx, tx, c, b, blocks[i]); err != nil {
				return err
			}
			changed = true
		}
		if res[i].Watermark, err = advanceWatermark(ctx, tx, id, b.SourceID, b.Seq); err != nil {
			return err
		}
	}
	if !changed {
		return nil
	}
	return tx.UpdateCaseState(ctx, c)
}

func (s *Store) insertBatch(ctx context.Context, tx Tx, c *charting.Case, b *charting.SampleBatch, block []byte) error {
	lo, hi := b.TimeRange()
	row := &SampleBatchRow{CaseID: c.ID, SourceID: b.SourceID, Seq: b.Seq, RecordedAt: b.RecordedAt, Actor: b.Actor,
		MinTimeMs: lo, MaxTimeMs: hi, SampleCount: b.SampleCount(), Block: block}
	if err := tx.InsertSampleBatch(ctx, row); err != nil {
		return err
	}
	ref := charting.SampleRef(b.SourceID, b.Seq)
	if err := appendLink(ctx, tx, c, charting.LinkSamples, ref, b.Actor, "", b.RecordedAt, charting.SampleDigest(b.SourceID, b.Seq, b.Series)); err != nil {
		return err
	}
	markStarted(c, b.RecordedAt)
	return nil
}

// advanceWatermark moves the source's watermark past seq and past any
// batches stored earlier out of order.
func advanceWatermark(ctx context.Context, tx Tx, caseID uuid.UUID, source string, seq int64) (int64, error) {
	w, err := tx.SourceWatermark(ctx, caseID, source)
	if err != nil || seq != w+1 {
		return w, err
	}
	w = seq
	for {
		_, err := tx.GetSampleBlock(ctx, caseID, source, w+1)
		if errors.Is(err, charting.ErrNotFound) {
			break
		} else if err != nil {
			return 0, err
		}
		w++
	}
	return w, tx.SetSourceWatermark(ctx, caseID, source, w)
}

// SourcePositions returns the watermark of each source of a case, with 0 for
// requested sources that have none.
func (s *Store) SourcePositions(ctx context.Context, caseID uuid.UUID, sources []string) (map[string]int64, error) {
	if _, err := s.b.GetCase(ctx, caseID); err != nil {
		return nil, fmt.Errorf("source positions: %w", err)
	}
	pos, err := s.b.SourceWatermarks(ctx, caseID)
	if err != nil {
		return nil, fmt.Errorf("source positions: %w", err)
	}
	for _, src := range sources {
		if _, ok := pos[src]; !ok {
			pos[src] = 0
		}
	}
	return pos, nil
}

// SampleQuery selects device data.
type SampleQuery struct {
	CaseID   uuid.UUID
	Channels []string // empty: all
	SourceID string   // empty: all
	FromMs   int64    // inclusive; 0: from the first sample
	ToMs     int64    // exclusive; 0: to the last sample
	Buckets  int      // 0: raw
}

// Query limits.
const (
	MaxRawSamples = 100000
	MaxBuckets    = 10000
)

// SeriesKey identifies a channel from one source.
type SeriesKey struct{ Channel, SourceID string }

// SampleQueryResult holds raw series or downsampled buckets.
type SampleQueryResult struct {
	Raw         map[SeriesKey]*charting.Series
	Downsampled map[SeriesKey][]charting.Bucket
	WidthMs     int64
}

// QuerySamples reads the batches overlapping the range, keeps the requested
// channels, and returns them raw or in buckets.
func (s *Store) QuerySamples(ctx context.Context, q SampleQuery) (*SampleQueryResult, error) {
	var v charting.Violations
	if q.Buckets < 0 || q.Buckets > MaxBuckets {
		v.Add("buckets", "must be 0 (raw) to %d", MaxBuckets)
	}
	if q.ToMs != 0 && q.ToMs <= q.FromMs {
		v.Add("end", "must be after start")
	}
	for i, ch := range q.Channels {
		if _, ok := s.cat.Lookup(ch); !ok {
			v.Add(fmt.Sprintf("channels[%d]", i), "unknown channel %q", ch)
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if _, err := s.b.GetCase(ctx, q.CaseID); err != nil {
		return nil, fmt.Errorf("query samples: %w", err)
	}
	raw, err := s.collect(ctx, q)
	if err != nil {
		return nil, err
	}
	if q.Buckets == 0 {
		return &SampleQueryResult{Raw: raw}, nil
	}
	return downsample(raw, q), nil
}

func (s *Store) collect(ctx context.Context, q SampleQuery) (map[SeriesKey]*charting.Series, error) {
	to := q.ToMs
	if to == 0 {
		to = math.MaxInt64
	}
	out := make(map[SeriesKey]*charting.Series)
	total := 0
	err := s.b.ScanSampleBatches(ctx, q.CaseID, SampleFilter{SourceID: q.SourceID, FromMs: q.FromMs, ToMs: q.ToMs}, func(row *SampleBatchRow) error {
		series, err := samplecodec.DecodeBlock(row.Block)
		if err != nil {
			return fmt.Errorf("batch %s: %w", charting.SampleRef(row.SourceID, row.Seq), err)
		}
		for _, sr := range series {
			if len(q.Channels) > 0 && !slices.Contains(q.Channels, sr.Channel) {
				continue
			}
			key := SeriesKey{sr.Channel, row.SourceID}
			dst := out[key]
			if dst == nil {
				dst = &charting.Series{Channel: sr.Channel}
				out[key] = dst
			}
			for i, t := range sr.TimesMs {
				if t < q.FromMs || t >= to {
					continue
				}
				dst.TimesMs = append(dst.TimesMs, t)
				dst.Values = append(dst.Values, sr.Values[i])
				dst.Invalid = append(dst.Invalid, sr.IsInvalid(i))
				total++
			}
		}
		if q.Buckets == 0 && total > MaxRawSamples {
			return &charting.InvalidError{Violations: []charting.FieldViolation{{Field: "buckets",
				Description: fmt.Sprintf("more than %d raw samples match; narrow the range or ask for buckets", MaxRawSamples)}}}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("query samples: %w", err)
	}
	for _, sr := range out {
		sortSeries(sr)
	}
	return out, nil
}

// sortSeries orders samples by time: batches of one source may overlap in
// time when a device re-sends or clocks step back.
func sortSeries(s *charting.Series) {
	if slices.IsSorted(s.TimesMs) {
		return
	}
	idx := make([]int, s.Len())
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(s.TimesMs[a], s.TimesMs[b]) })
	t, v, inv := make([]int64, len(idx)), make([]float64, len(idx)), make([]bool, len(idx))
	for k, i := range idx {
		t[k], v[k], inv[k] = s.TimesMs[i], s.Values[i], s.Invalid[i]
	}
	s.TimesMs, s.Values, s.Invalid = t, v, inv
}

func downsample(raw map[SeriesKey]*charting.Series, q SampleQuery) *SampleQueryResult {
	from, to := q.FromMs, q.ToMs
	if from == 0 || to == 0 {
		lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
		for _, sr := range raw {
			if n := sr.Len(); n > 0 {
				lo, hi = min(lo, sr.TimesMs[0]), max(hi, sr.TimesMs[n-1])
			}
		}
		if from == 0 {
			from = lo
		}
		if to == 0 {
			to = hi + 1
		}
	}
	res := &SampleQueryResult{Downsampled: make(map[SeriesKey][]charting.Bucket, len(raw))}
	for key, sr := range raw {
		d := charting.NewDownsampler(from, to, q.Buckets)
		d.Add(*sr)
		res.Downsampled[key] = d.Buckets()
		res.WidthMs = d.WidthMs()
	}
	return res
}
