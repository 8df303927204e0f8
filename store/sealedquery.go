package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"slices"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
)

// Trends of a sealed case read its columns.
//
// A sealed case's batches can be rebuilt (SealedBatches), but a trend needs
// only the channels it shows: it reads those channels' value columns and
// their sources' time columns, segment by segment, and folds them like
// chunk runs. A column holds its channel's samples in exactly the order the
// batches gave them (batch scan order), so it is folded as the batches
// would be, and the answer is the same. A source with a batch timed outside
// its device window (its time columns say so) is read batch by batch
// instead, rebuilt from the sealed form, so that its far-off samples are
// left out as the batch path leaves them out.

// sealedTrend reports whether a bucketed query of c reads a sealed form.
func (s *Store) sealedTrend(ctx context.Context, c *charting.Case) (bool, error) {
	if s.ignoreRuns || (c.Status != charting.StatusClosed && c.Status != charting.StatusSigned) {
		return false, nil
	}
	hdr, err := s.b.SealedCase(ctx, c.ID)
	return hdr != nil, err
}

// scanSealed is scanRunsThenBatches for a sealed case: the value columns of
// sc's channels overlapping [from, to) go to onRun as rows whose samples
// are decoded when walked; the batches of sources read batch by batch go
// to onBatch.
func (s *Store) scanSealed(ctx context.Context, sc *bucketScan, from, to int64, onRun func(*SampleChunkRow) error, onBatch func(*SampleBatchRow) error) error {
	var channels []string
	if !sc.all {
		channels = sc.want
	}
	type timesKey struct {
		seg    int
		source string
	}
	times := make(map[timesKey][]byte)
	var values []*SealedPart
	offClock := make(map[string]bool)
	err := s.b.ScanSealedParts(ctx, sc.q.CaseID, SealedFilter{WithoutManifests: true, SourceID: sc.q.SourceID, Channels: channels, FromMs: from, ToMs: to},
		func(p *SealedPart) error {
			if p.Channel != "" {
				values = append(values, p)
				return nil
			}
			times[timesKey{p.Seg, p.SourceID}] = p.Data
			if len(p.Data) == 0 || p.Data[0]&timesPlausible == 0 {
				offClock[p.SourceID] = true
			}
			return nil
		})
	if err != nil {
		return err
	}
	slices.SortFunc(values, func(a, b *SealedPart) int {
		return cmp.Or(cmp.Compare(a.Seg, b.Seg), cmp.Compare(a.SourceID, b.SourceID), cmp.Compare(a.Channel, b.Channel))
	})
	// Time columns are decoded once each, for all the channels using them.
	type colKey struct {
		timesKey
		col int
	}
	decoded := make(map[colKey]timeColumn)
	timeCol := func(k colKey) (timeColumn, error) {
		if tc, ok := decoded[k]; ok {
			return tc, nil
		}
		data, ok := times[k.timesKey]
		if !ok {
			return timeColumn{}, sealedCorrupt("segment %d: the time columns of source %q are missing", k.seg, k.source)
		}
		r := &mreader{b: data[1:]}
		n := r.count()
		if k.col >= n {
			return timeColumn{}, sealedCorrupt("segment %d: source %q has no time column %d", k.seg, k.source, k.col)
		}
		var col []byte
		for i := 0; i <= k.col; i++ {
			col = r.bytes(r.count())
		}
		if r.err != nil {
			return timeColumn{}, r.err
		}
		ts, frames, err := samplecodec.DecodeTimeColumn(col, nil)
		if err != nil {
			return timeColumn{}, sealedCorrupt("segment %d, source %q: %v", k.seg, k.source, err)
		}
		tc := timeColumn{ts, frames}
		decoded[k] = tc
		return tc, nil
	}
	for _, p := range values {
		if offClock[p.SourceID] {
			continue
		}
		if len(p.Data) < 2 || p.Data[0] != sealValueVersion {
			return sealedCorrupt("segment %d: the column of channel %q is of an unknown version", p.Seg, p.Channel)
		}
		col, k := binary.Uvarint(p.Data[1:])
		if k <= 0 {
			return sealedCorrupt("segment %d: the column of channel %q is truncated", p.Seg, p.Channel)
		}
		body := p.Data[1+k:]
		key := colKey{timesKey{p.Seg, p.SourceID}, int(col)}
		row := &SampleChunkRow{CaseID: sc.q.CaseID, SourceID: p.SourceID, Channel: p.Channel,
			MinTimeMs: p.MinTimeMs, MaxTimeMs: p.MaxTimeMs, SampleCount: p.SampleCount}
		row.decode = func() (charting.Series, error) {
			tc, err := timeCol(key)
			if err != nil {
				return charting.Series{}, err
			}
			vs, inv, err := samplecodec.DecodeValueColumn(body, tc.frames, nil)
			if err != nil {
				return charting.Series{}, sealedCorrupt("segment %d, channel %q: %v", key.seg, p.Channel, err)
			}
			return charting.Series{Channel: p.Channel, TimesMs: tc.ts, Values: vs, Invalid: inv}, nil
		}
		if err := onRun(row); err != nil {
			return err
		}
	}
	for _, src := range slices.Sorted(mapKeys(offClock)) {
		if _, err := SealedBatches(ctx, s.b, sc.q.CaseID, SampleFilter{SourceID: src, FromMs: from, ToMs: to}, onBatch); err != nil {
			return err
		}
	}
	return nil
}

// timeColumn is a decoded time column.
type timeColumn struct {
	ts     []int64
	frames []samplecodec.Frame
}
