package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
)

// Sample chunks are a derived, read-optimised copy of a source's batches.
//
// A gateway that sends every second leaves a 4-hour case as 14,400 batches
// of 40 channels; a trend of 10 channels then has to read and walk all of
// them. Once a run of a source's batches is complete (every sequence up to
// the source's watermark is stored, so nothing can be slotted in later) the
// compactor copies each channel of the run into one chunk row. A trend
// reads a few dozen chunk rows of the channels it wants, then only the
// batches past the last run.
//
// Chunks are not the record: the batches stay, unchanged, and the ledger
// covers them. A chunk is append-only like a batch, exactly rebuildable
// from its batches, and VerifyRecord rebuilds every one and compares it, so
// a chunk altered in the database is reported like altered content.

// DefaultChunkBatches is how many batches of a source the compactor gathers
// into one run: ten minutes of 1-s batches.
const DefaultChunkBatches = 600

// SampleChunkRow is one row of a run: the samples of one channel in the
// run's batches SeqFrom..SeqTo, or, with Channel "", the run's marker, which
// every run has (even one without samples) and which says which batches the
// run covers.
type SampleChunkRow struct {
	CaseID         uuid.UUID
	SourceID       string
	SeqFrom, SeqTo int64
	// Channel is the channel's catalogue key; "" for the marker.
	Channel string
	// MinTimeMs and MaxTimeMs bound the samples' device times (the run's
	// for the marker; both 0 when it holds no sample).
	MinTimeMs, MaxTimeMs int64
	SampleCount          int
	// Block holds the channel's samples, batch after batch in the order a
	// batch scan returns them, as a one-series samplecodec block; empty for
	// the marker.
	Block []byte
	// col, when set, holds the samples instead of Block: a sealed case's
	// column standing in for a run in a trend (sealedquery.go).
	col *sealedCol
}

// walk calls fn with the row's series.
func (row *SampleChunkRow) walk(w *samplecodec.Walker, fn func(channel []byte, s charting.Series) error) error {
	col := row.col
	if col == nil {
		var ok bool
		var err error
		if col, ok, err = chunkColumn(row); err != nil {
			return err
		} else if !ok {
			return w.Walk(row.Block, nil, fn)
		}
	}
	sr, err := col.decode()
	if err != nil {
		return err
	}
	return fn(nil, sr)
}

// ChunkFilter selects chunk rows of a case.
type ChunkFilter struct {
	SourceID string
	// Channel rows whose time range overlaps [FromMs, ToMs) are returned;
	// 0 means unbounded. Markers are always returned, whatever their time.
	FromMs, ToMs int64
	// Channels restricts the channel rows returned; nil returns them all.
	Channels []string
}

// ChunkCandidate is a source with complete batches not yet in a run.
type ChunkCandidate struct {
	Key SourceKey
	// Covered is the last sequence in a run, Watermark the source's.
	Covered, Watermark int64
	// Closed reports that the case is closed or signed, so a short final
	// run is worth building: no more batches will join it.
	Closed bool
}

// decodedBatch is one batch's samples, as a run is built from them.
type decodedBatch struct {
	seq     int64
	minTime int64
	series  []charting.Series
}

// batchOrder is the order a batch scan returns one source's batches: first
// sample time, then sequence. Runs concatenate batches in this order so a
// chunk's samples reach a trend in the order the batches' would.
func batchOrder(a, b decodedBatch) int {
	return cmp.Or(cmp.Compare(a.minTime, b.minTime), cmp.Compare(a.seq, b.seq))
}

// Chunk formats. A chunk row's block was first a one-series samplecodec
// block (format version 1 or 2, its first byte); since issue 21 the
// compactor writes the channel's samples as a time column and a value
// column (samplecodec "Columns": one-minute frames, each value frame with
// its rollup), so long trends fold whole minutes without decoding them
// where that is exact (sealedquery.go), and the chunk takes about 0.5
// bytes a sample instead of 1.2:
//
//	byte     chunkColumns
//	uvarint  the time column's length, then the time column
//	         the value column, to the end
//
// Rows of the earlier form stay as they are and are read as before.
const chunkColumns = 0x81

// encodeChunkColumns is a chunk row's block in the columns form.
func encodeChunkColumns(sr *charting.Series, resolution float64) []byte {
	tcol := samplecodec.AppendTimeColumn(nil, sr.TimesMs)
	b := binary.AppendUvarint([]byte{chunkColumns}, uint64(len(tcol)))
	b = append(b, tcol...)
	inv := sr.Invalid
	if !slices.Contains(inv, true) {
		inv = nil
	}
	return samplecodec.AppendValueColumn(b, samplecodec.Frames(sr.TimesMs), sr.Values, inv, resolution)
}

// chunkColumn reads a chunk row in the columns form; false for a row of
// the earlier form.
func chunkColumn(row *SampleChunkRow) (*sealedCol, bool, error) {
	if len(row.Block) == 0 || row.Block[0] != chunkColumns {
		return nil, false, nil
	}
	n, k := binary.Uvarint(row.Block[1:])
	if k <= 0 || n > uint64(len(row.Block)-1-k) {
		return nil, true, fmt.Errorf("trend chunk %s..%d: truncated", charting.SampleRef(row.SourceID, row.SeqFrom), row.SeqTo)
	}
	times := row.Block[1+k : 1+k+int(n)]
	values := row.Block[1+k+int(n):]
	return &sealedCol{seg: -1, source: row.SourceID, channel: row.Channel, minT: row.MinTimeMs, maxT: row.MaxTimeMs, n: row.SampleCount,
		times: times, values: values, integers: samplecodec.IntegerValues(values)}, true, nil
}

// buildRun makes the rows of the run of key's batches from..to; batches
// must be all of them, in batchOrder. The encoding is deterministic, so
// verification can rebuild a run and compare bytes. legacy builds the
// channel rows in the earlier form (one-series samplecodec blocks), to
// compare with runs stored so.
func buildRun(key SourceKey, from, to int64, batches []decodedBatch, resolution func(string) float64, legacy ...bool) []*SampleChunkRow {
	byChannel := make(map[string]*charting.Series)
	var names []string
	for _, b := range batches {
		for _, sr := range b.series {
			if sr.Len() == 0 {
				continue // never stored (a series holds a sample), but never a crash
			}
			dst := byChannel[sr.Channel]
			if dst == nil {
				dst = &charting.Series{Channel: sr.Channel}
				byChannel[sr.Channel] = dst
				names = append(names, sr.Channel)
			}
			if sr.Invalid != nil && dst.Invalid == nil {
				dst.Invalid = make([]bool, len(dst.TimesMs), len(dst.TimesMs)+sr.Len())
			}
			dst.TimesMs = append(dst.TimesMs, sr.TimesMs...)
			dst.Values = append(dst.Values, sr.Values...)
			if dst.Invalid != nil {
				if sr.Invalid != nil {
					dst.Invalid = append(dst.Invalid, sr.Invalid...)
				} else {
					dst.Invalid = append(dst.Invalid, make([]bool, sr.Len())...)
				}
			}
		}
	}
	slices.Sort(names)
	marker := &SampleChunkRow{CaseID: key.CaseID, SourceID: key.SourceID, SeqFrom: from, SeqTo: to, Block: []byte{}}
	rows := []*SampleChunkRow{marker}
	for _, name := range names {
		sr := byChannel[name]
		lo, hi := slices.Min(sr.TimesMs), slices.Max(sr.TimesMs)
		block := encodeChunkColumns(sr, resolution(name))
		if len(legacy) > 0 && legacy[0] {
			block = samplecodec.EncodeBlock([]charting.Series{*sr}, resolution)
		}
		rows = append(rows, &SampleChunkRow{CaseID: key.CaseID, SourceID: key.SourceID, SeqFrom: from, SeqTo: to,
			Channel: name, MinTimeMs: lo, MaxTimeMs: hi, SampleCount: sr.Len(), Block: block})
		if marker.SampleCount == 0 {
			marker.MinTimeMs, marker.MaxTimeMs = lo, hi
		}
		marker.MinTimeMs, marker.MaxTimeMs = min(marker.MinTimeMs, lo), max(marker.MaxTimeMs, hi)
		marker.SampleCount += sr.Len()
	}
	return rows
}

// batchOf is a decoded batch with its first sample time, as stored in
// min_time_ms.
func batchOf(seq int64, series []charting.Series) decodedBatch {
	d := decodedBatch{seq: seq, series: series}
	first := true
	for _, sr := range series {
		if sr.Len() > 0 && (first || sr.TimesMs[0] < d.minTime) {
			d.minTime, first = sr.TimesMs[0], false
		}
	}
	return d
}

// CompactSamples builds runs of runBatches batches (DefaultChunkBatches when
// 0) for every source that has that many complete batches past its last
// run, and the final short run of closed and signed cases. It returns how
// many runs it built. Several processes may compact one database at once:
// a run is built by whichever commits first, and the others skip it.
func (s *Store) CompactSamples(ctx context.Context, runBatches int) (int, error) {
	if runBatches <= 0 {
		runBatches = DefaultChunkBatches
	}
	cands, err := s.b.ChunkCandidates(ctx, runBatches, 100)
	if err != nil {
		return 0, fmt.Errorf("compact samples: %w", err)
	}
	built := 0
	var errs []error
	for _, c := range cands {
		for from := c.Covered + 1; from <= c.Watermark; from += int64(runBatches) {
			to := min(c.Watermark, from+int64(runBatches)-1)
			if to-from+1 < int64(runBatches) && !c.Closed {
				break
			}
			ok, err := s.compactRun(ctx, c.Key, from, to)
			if err != nil {
				// Other sources go on: one that cannot be compacted (a
				// batch that no longer decodes, say) must not starve them.
				errs = append(errs, fmt.Errorf("case %s source %s: %w", c.Key.CaseID, c.Key.SourceID, err))
				break
			}
			if !ok {
				break // another process is compacting this source
			}
			built++
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		return built, fmt.Errorf("compact samples: %w", err)
	}
	return built, nil
}

// compactRun builds and stores the run of key's batches from..to, all of
// which are stored (they lie at or below the watermark). It reports false
// when the source's last run no longer ends at from-1.
//
// A run is never built over a batch timed outside the case's device window
// (a gateway whose clock reset, say): a run keeps no receipt times, so a
// trend could not leave such samples out of it. The source then stays
// unrun from that batch on and its trends read batches, as before runs
// existed; it reports false, as for a run that is not due.
func (s *Store) compactRun(ctx context.Context, key SourceKey, from, to int64) (bool, error) {
	if off, err := s.implausibleIn(ctx, key, from, to); err != nil || off {
		return false, err
	}
	keys := make([]SampleKey, 0, to-from+1)
	for seq := from; seq <= to; seq++ {
		keys = append(keys, SampleKey{CaseID: key.CaseID, SourceID: key.SourceID, Seq: seq})
	}
	blocks, err := s.b.ReadSampleBlocks(ctx, keys)
	if err != nil {
		return false, err
	}
	batches := make([]decodedBatch, 0, len(keys))
	for _, k := range keys {
		block, ok := blocks[k]
		if !ok {
			return false, fmt.Errorf("batch %s below the watermark is missing", charting.SampleRef(k.SourceID, k.Seq))
		}
		series, err := samplecodec.DecodeBlock(block)
		if err != nil {
			return false, fmt.Errorf("batch %s: %w", charting.SampleRef(k.SourceID, k.Seq), err)
		}
		batches = append(batches, batchOf(k.Seq, series))
	}
	slices.SortFunc(batches, batchOrder)
	rows := buildRun(key, from, to, batches, s.cat.Resolution, s.legacyChunks)
	stored := false
	err = s.b.ReadWrite(ctx, func(ctx context.Context, tx Tx) error {
		stored = false
		// The case lock orders this run against another compactor's.
		if _, err := tx.LockCase(ctx, key.CaseID); err != nil {
			return err
		}
		covered, err := tx.ChunkCoverage(ctx, key)
		if err != nil || covered != from-1 {
			return err
		}
		stored = true
		return tx.InsertSampleChunks(ctx, rows)
	})
	return stored, err
}

// implausibleIn reports whether any of key's batches from..to is timed
// outside its case's device window.
func (s *Store) implausibleIn(ctx context.Context, key SourceKey, from, to int64) (bool, error) {
	c, err := s.b.GetCase(ctx, key.CaseID)
	if err != nil {
		return false, err
	}
	off := false
	f := SampleFilter{SourceID: key.SourceID, WithoutBlocks: true, Implausible: deviceWindowFilter(c),
		After: map[string]int64{key.SourceID: from - 1}}
	err = s.b.ScanSampleBatches(ctx, key.CaseID, f, func(row *SampleBatchRow) error {
		off = off || row.Seq <= to
		return nil
	})
	return off, err
}

// RunCompactor calls CompactSamples every interval until ctx ends, logging
// (without patient data) what it built and any error.
func (s *Store) RunCompactor(ctx context.Context, interval time.Duration, runBatches int) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		start := time.Now()
		n, err := s.CompactSamples(ctx, runBatches)
		if s.observer != nil && ctx.Err() == nil {
			s.observer.Compacted(n, time.Since(start), err)
		}
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("sample compaction failed", "err", err)
		case n > 0:
			s.log.Info("sample runs compacted", "runs", n, "took", time.Since(start))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// runCheck rebuilds a case's runs during verification from the batches a
// scan yields, and compares each with the stored rows once its last batch
// has been seen.
type runCheck struct {
	resolution func(string) float64
	// runs of each source, by SeqFrom.
	runs map[string][]*storedRun
}

type storedRun struct {
	key      SourceKey
	from, to int64
	rows     []*SampleChunkRow // as stored, marker first
	batches  []decodedBatch
	broken   bool   // a batch of it did not decode (reported on its own link)
	done     bool   // compared
	detail   string // how it differs; "" when it matches
}

// newRunCheck reads the stored runs of a case. ScanSampleChunks yields a
// run's rows together, and a source's runs in sequence order.
func newRunCheck(ctx context.Context, r Reader, caseID uuid.UUID, resolution func(string) float64) (*runCheck, error) {
	rc := &runCheck{resolution: resolution, runs: make(map[string][]*storedRun)}
	err := r.ScanSampleChunks(ctx, caseID, ChunkFilter{}, func(row *SampleChunkRow) error {
		runs := rc.runs[row.SourceID]
		if n := len(runs); n == 0 || runs[n-1].to != row.SeqTo {
			runs = append(runs, &storedRun{key: SourceKey{caseID, row.SourceID}, from: row.SeqFrom, to: row.SeqTo})
			rc.runs[row.SourceID] = runs
		}
		run := runs[len(runs)-1]
		run.rows = append(run.rows, row)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rc, nil
}

// add gives a scanned batch to the run that covers it, if any.
func (rc *runCheck) add(sourceID string, seq int64, series []charting.Series, decodeErr error) {
	runs := rc.runs[sourceID]
	i, _ := slices.BinarySearchFunc(runs, seq, func(r *storedRun, seq int64) int {
		if seq < r.from {
			return 1
		}
		if seq > r.to {
			return -1
		}
		return 0
	})
	if i == len(runs) || seq < runs[i].from || seq > runs[i].to {
		return
	}
	run := runs[i]
	if decodeErr != nil {
		run.broken = true
		return
	}
	run.batches = append(run.batches, batchOf(seq, series))
	if int64(len(run.batches)) == run.to-run.from+1 {
		// Complete: compare now and let its samples go.
		run.detail, run.done, run.batches = run.compare(rc.resolution), true, nil
	}
}

// finish compares every run with its rebuild and returns the first that
// differs, or nil.
func (rc *runCheck) finish() *storedRun {
	var sources []string
	for src := range rc.runs {
		sources = append(sources, src)
	}
	slices.Sort(sources)
	for _, src := range sources {
		for _, run := range rc.runs[src] {
			if run.broken {
				continue
			}
			if !run.done {
				run.detail, run.done = run.compare(rc.resolution), true
			}
			if run.detail != "" {
				return run
			}
		}
	}
	return nil
}

// compare rebuilds the run and says how the stored rows differ, or "".
func (run *storedRun) compare(resolution func(string) float64) string {
	if n := int64(len(run.batches)); n != run.to-run.from+1 {
		return fmt.Sprintf("a trend chunk covers batches %d–%d but %d of them are stored", run.from, run.to, n)
	}
	slices.SortFunc(run.batches, batchOrder)
	// Rebuilt in the form the run was stored in (its first channel row's).
	legacy := len(run.rows) > 1 && slices.ContainsFunc(run.rows, func(r *SampleChunkRow) bool {
		return r.Channel != "" && len(r.Block) > 0 && r.Block[0] != chunkColumns
	})
	want := buildRun(run.key, run.from, run.to, run.batches, resolution, legacy)
	got := run.rows
	slices.SortFunc(got, func(a, b *SampleChunkRow) int { return cmp.Compare(a.Channel, b.Channel) })
	if len(got) != len(want) {
		return fmt.Sprintf("the trend chunk of batches %d–%d has %d channels, its batches %d", run.from, run.to, len(got)-1, len(want)-1)
	}
	for i, w := range want {
		g := got[i]
		if g.Channel != w.Channel || g.SeqFrom != w.SeqFrom || g.MinTimeMs != w.MinTimeMs || g.MaxTimeMs != w.MaxTimeMs ||
			g.SampleCount != w.SampleCount || string(g.Block) != string(w.Block) {
			return fmt.Sprintf("the trend chunk of batches %d–%d (channel %q) differs from its batches", run.from, run.to, w.Channel)
		}
	}
	return ""
}
