package store

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
)

// The sealed form of a case (see sealed.go for why and how it is used).
//
// A sealed case's batches are kept in segments: consecutive batches in the
// order a batch scan returns them (first sample time, source, sequence), at
// most sealSegmentBatches batches or sealSegmentSamples samples each. A
// segment is stored as rows of sealed_segments:
//
//   - its manifest (source and channel ""): everything about its batches
//     but their samples, flate-compressed (sealManifestVersion below);
//   - per source, its time columns (channel ""): every distinct sequence of
//     times a channel of the source has over the segment, as samplecodec
//     time columns;
//   - per (source, channel), its value column: the channel's values and
//     invalid flags over the segment, batch after batch, as a samplecodec
//     value column with a rollup per one-minute frame.
//
// Manifest, version 1, before compression (uvarint unless said; strings are
// a uvarint length and the bytes; zz(x) is zigzag):
//
//	byte     1
//	sources  count, names
//	actors   count, names
//	channels count; each: source index, name, time column index, resolution (8 bytes, float64 bits LE)
//	layouts  count; each: series count, then per series channel index << 1 | invalid-flags-present
//	batches  count n, then columns of n items each:
//	         source index; zz(seq − previous seq of its source); zz(ledger seq − previous batch's);
//	         zz(recorded_at µs − previous batch's); actor index; layout index; block format (1 byte)
//	counts   per batch, per series of its layout: sample count
//	prefixes n × 4 bytes: the first 4 bytes of each batch's ledger link hash
//	anchors  count; each: zz(batch index − previous anchor's), 32 bytes: the full hash of the
//	         batch's link (links whose sequence is a multiple of sealAnchorEvery)
//
// The time columns row of a source: a flags byte (bit 0: every batch of
// the source in the segment lies in its device window, so a trend may read
// its columns without judging batch by batch), the number of columns, then
// per column its length and bytes. A value column row: byte 1, the index of its time column, then the
// column's bytes.

const (
	// SealFormat is the version of the sealed form written.
	SealFormat          = 1
	sealManifestVersion = 1
	sealValueVersion    = 1
	// sealSegmentBatches and sealSegmentSamples bound a segment: an hour
	// of 1-s batches, or fewer batches when they are large.
	sealSegmentBatches = 3600
	sealSegmentSamples = 200_000
	// sealAnchorEvery: a sealed link whose sequence is a multiple of it
	// keeps its full hash, so that a page of links is computed from at
	// most this many links back.
	sealAnchorEvery = 256
	// sealPrefixLen is how much of each sealed link's hash is kept.
	sealPrefixLen = 4
	// maxManifestSize bounds what a manifest may inflate to.
	maxManifestSize = 64 << 20
)

// timesPlausible is the flag of a time columns row whose source's batches
// all lie in their device windows.
const timesPlausible = 1

// errSealedCorrupt marks a sealed segment that does not decode.
var errSealedCorrupt = errors.New("sealed segment does not decode")

func sealedCorrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errSealedCorrupt, fmt.Sprintf(format, args...))
}

// sealedChannel is a (source, channel) column of a segment.
type sealedChannel struct {
	source     int
	name       string
	timeCol    int
	resolution float64
}

// layoutSeries is one series of a batch layout.
type layoutSeries struct {
	channel int  // index into the manifest's channels
	invalid bool // the series has an invalid-flags slice (charting.Series.Invalid != nil)
}

// sealedBatch is a batch as the manifest describes it.
type sealedBatch struct {
	source     int
	seq        int64
	linkSeq    int64
	recordedAt int64 // µs since the epoch
	actor      int
	layout     int
	version    byte // block format: 1 or 2
	counts     []int
	prefix     [sealPrefixLen]byte
}

// manifest is a segment's manifest, decoded.
type manifest struct {
	sources  []string
	actors   []string
	channels []sealedChannel
	layouts  [][]layoutSeries
	batches  []sealedBatch
	anchors  map[int]charting.Hash // by batch index
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// encodeManifest returns the compressed manifest.
func encodeManifest(m *manifest) []byte {
	b := []byte{sealManifestVersion}
	b = binary.AppendUvarint(b, uint64(len(m.sources)))
	for _, s := range m.sources {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(m.actors)))
	for _, s := range m.actors {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(m.channels)))
	for _, c := range m.channels {
		b = binary.AppendUvarint(b, uint64(c.source))
		b = appendString(b, c.name)
		b = binary.AppendUvarint(b, uint64(c.timeCol))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(c.resolution))
	}
	b = binary.AppendUvarint(b, uint64(len(m.layouts)))
	for _, l := range m.layouts {
		b = binary.AppendUvarint(b, uint64(len(l)))
		for _, s := range l {
			x := uint64(s.channel) << 1
			if s.invalid {
				x |= 1
			}
			b = binary.AppendUvarint(b, x)
		}
	}
	n := len(m.batches)
	b = binary.AppendUvarint(b, uint64(n))
	for _, bt := range m.batches {
		b = binary.AppendUvarint(b, uint64(bt.source))
	}
	prevSeq := make([]int64, len(m.sources))
	for _, bt := range m.batches {
		b = binary.AppendUvarint(b, zigzag(bt.seq-prevSeq[bt.source]))
		prevSeq[bt.source] = bt.seq
	}
	var prev int64
	for _, bt := range m.batches {
		b = binary.AppendUvarint(b, zigzag(bt.linkSeq-prev))
		prev = bt.linkSeq
	}
	prev = 0
	for _, bt := range m.batches {
		b = binary.AppendUvarint(b, zigzag(bt.recordedAt-prev))
		prev = bt.recordedAt
	}
	for _, bt := range m.batches {
		b = binary.AppendUvarint(b, uint64(bt.actor))
	}
	for _, bt := range m.batches {
		b = binary.AppendUvarint(b, uint64(bt.layout))
	}
	for _, bt := range m.batches {
		b = append(b, bt.version)
	}
	for _, bt := range m.batches {
		for _, c := range bt.counts {
			b = binary.AppendUvarint(b, uint64(c))
		}
	}
	for _, bt := range m.batches {
		b = append(b, bt.prefix[:]...)
	}
	idx := make([]int, 0, len(m.anchors))
	for i := range m.anchors {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	b = binary.AppendUvarint(b, uint64(len(idx)))
	last := 0
	for _, i := range idx {
		b = binary.AppendUvarint(b, zigzag(int64(i-last)))
		last = i
		h := m.anchors[i]
		b = append(b, h[:]...)
	}
	var out bytes.Buffer
	w, _ := flate.NewWriter(&out, flate.BestCompression) // level is valid: no error
	_, _ = w.Write(b)                                    // writes to a bytes.Buffer do not fail
	_ = w.Close()
	return out.Bytes()
}

// mreader reads a manifest's fields.
type mreader struct {
	b   []byte
	err error
}

func (r *mreader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = sealedCorrupt("manifest truncated")
		return 0
	}
	r.b = r.b[k:]
	return v
}

// count reads a count that each item of which takes at least one byte.
func (r *mreader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err = sealedCorrupt("manifest count %d exceeds its %d bytes", n, len(r.b))
		return 0
	}
	return int(n)
}

func (r *mreader) index(n int) int {
	v := r.uvarint()
	if v >= uint64(n) && r.err == nil {
		r.err = sealedCorrupt("manifest index %d out of %d", v, n)
		return 0
	}
	return int(v)
}

func (r *mreader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = sealedCorrupt("manifest truncated")
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *mreader) str() string { return string(r.bytes(r.count())) }

// decodeManifest inflates and decodes a manifest.
func decodeManifest(data []byte) (*manifest, error) {
	raw, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(data)), maxManifestSize+1))
	if err != nil {
		return nil, sealedCorrupt("manifest does not inflate: %v", err)
	}
	if len(raw) > maxManifestSize || len(raw) == 0 || raw[0] != sealManifestVersion {
		return nil, sealedCorrupt("manifest of an unknown version or size")
	}
	r := &mreader{b: raw[1:]}
	m := &manifest{}
	for range r.count() {
		m.sources = append(m.sources, r.str())
	}
	for range r.count() {
		m.actors = append(m.actors, r.str())
	}
	for range r.count() {
		c := sealedChannel{source: r.index(len(m.sources)), name: r.str(), timeCol: int(r.uvarint())}
		if rb := r.bytes(8); rb != nil {
			c.resolution = math.Float64frombits(binary.LittleEndian.Uint64(rb))
		}
		m.channels = append(m.channels, c)
	}
	for range r.count() {
		var l []layoutSeries
		for range r.count() {
			x := r.uvarint()
			if x>>1 >= uint64(len(m.channels)) && r.err == nil {
				r.err = sealedCorrupt("layout names channel %d of %d", x>>1, len(m.channels))
			}
			l = append(l, layoutSeries{channel: int(x >> 1), invalid: x&1 == 1})
		}
		m.layouts = append(m.layouts, l)
	}
	n := r.count()
	m.batches = make([]sealedBatch, n)
	for i := range m.batches {
		m.batches[i].source = r.index(len(m.sources))
	}
	prevSeq := make([]int64, len(m.sources))
	for i := range m.batches {
		bt := &m.batches[i]
		bt.seq = prevSeq[bt.source] + unzigzag(r.uvarint())
		prevSeq[bt.source] = bt.seq
	}
	var prev int64
	for i := range m.batches {
		m.batches[i].linkSeq = prev + unzigzag(r.uvarint())
		prev = m.batches[i].linkSeq
	}
	prev = 0
	for i := range m.batches {
		m.batches[i].recordedAt = prev + unzigzag(r.uvarint())
		prev = m.batches[i].recordedAt
	}
	for i := range m.batches {
		m.batches[i].actor = r.index(len(m.actors))
	}
	for i := range m.batches {
		m.batches[i].layout = r.index(len(m.layouts))
	}
	if vs := r.bytes(n); vs != nil {
		for i := range m.batches {
			m.batches[i].version = vs[i]
			if v := vs[i]; v != samplecodec.Version1 && v != samplecodec.Version2 && r.err == nil {
				r.err = sealedCorrupt("batch %d: block format %d", i, v)
			}
		}
	}
	for i := range m.batches {
		if r.err != nil {
			break
		}
		bt := &m.batches[i]
		bt.counts = make([]int, len(m.layouts[bt.layout]))
		for j := range bt.counts {
			c := r.uvarint()
			if c > math.MaxInt32 {
				r.err = sealedCorrupt("batch %d: a series of %d samples", i, c)
			}
			bt.counts[j] = int(c)
		}
	}
	for i := range m.batches {
		copy(m.batches[i].prefix[:], r.bytes(sealPrefixLen))
	}
	na := r.count()
	m.anchors = make(map[int]charting.Hash, na)
	last := 0
	for range na {
		i := last + int(unzigzag(r.uvarint()))
		if (i < 0 || i >= n) && r.err == nil {
			r.err = sealedCorrupt("anchor of batch %d of %d", i, n)
		}
		var h charting.Hash
		copy(h[:], r.bytes(len(h)))
		m.anchors[i] = h
		last = i
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = sealedCorrupt("%d bytes after the manifest", len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

func zigzag(x int64) uint64   { return uint64(x<<1) ^ uint64(x>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// origBatch is a stored batch as sealing reads it: its row, its decoded
// series and its ledger link.
type origBatch struct {
	row    *SampleBatchRow
	series []charting.Series
	link   charting.Link
}

// encodeSegment builds the rows of one segment from its batches, in scan
// order. It fails when a batch's block cannot be reproduced byte for byte
// from its samples (a block format or encoder choice this sealer does not
// write), as the sealed form must give back every stored byte.
func encodeSegment(caseID uuid.UUID, seg int, batches []origBatch, resolution func(string) float64, plausible func(*SampleBatchRow) bool) ([]*SealedPart, error) {
	m := &manifest{anchors: make(map[int]charting.Hash)}
	srcIdx := make(map[string]int)
	actorIdx := make(map[string]int)
	type chanKey struct {
		source int
		name   string
	}
	chIdx := make(map[chanKey]int)
	type column struct {
		ts  []int64
		vs  []float64
		inv []bool
		any bool // some sample invalid
	}
	var cols []*column
	layoutIdx := make(map[string]int)
	var minT, maxT int64
	samples := 0
	var offClock []bool // by source: a batch outside its device window
	for bi, ob := range batches {
		src, ok := srcIdx[ob.row.SourceID]
		if !ok {
			src = len(m.sources)
			srcIdx[ob.row.SourceID] = src
			m.sources = append(m.sources, ob.row.SourceID)
			offClock = append(offClock, false)
		}
		if !plausible(ob.row) {
			offClock[src] = true
		}
		act, ok := actorIdx[ob.row.Actor]
		if !ok {
			act = len(m.actors)
			actorIdx[ob.row.Actor] = act
			m.actors = append(m.actors, ob.row.Actor)
		}
		var version byte
		switch {
		case bytes.Equal(samplecodec.EncodeBlock(ob.series, resolution), ob.row.Block):
			version = samplecodec.Version2
		case bytes.Equal(samplecodec.EncodeBlockV1(ob.series, resolution), ob.row.Block):
			version = samplecodec.Version1
		default:
			return nil, fmt.Errorf("batch %s: its stored block is not what this version writes for its samples", charting.SampleRef(ob.row.SourceID, ob.row.Seq))
		}
		var layout []layoutSeries
		key := make([]byte, 0, 4*len(ob.series))
		counts := make([]int, len(ob.series))
		for j, sr := range ob.series {
			k := chanKey{src, sr.Channel}
			c, ok := chIdx[k]
			if !ok {
				c = len(m.channels)
				chIdx[k] = c
				m.channels = append(m.channels, sealedChannel{source: src, name: sr.Channel, resolution: resolution(sr.Channel)})
				cols = append(cols, &column{})
			}
			col := cols[c]
			col.ts = append(col.ts, sr.TimesMs...)
			col.vs = append(col.vs, sr.Values...)
			if sr.Invalid != nil {
				col.inv = append(col.inv, sr.Invalid...)
				col.any = col.any || slices.Contains(sr.Invalid, true)
			} else {
				col.inv = append(col.inv, make([]bool, sr.Len())...)
			}
			layout = append(layout, layoutSeries{channel: c, invalid: sr.Invalid != nil})
			x := uint64(c) << 1
			if sr.Invalid != nil {
				x |= 1
			}
			key = binary.AppendUvarint(key, x)
			counts[j] = sr.Len()
		}
		li, ok := layoutIdx[string(key)]
		if !ok {
			li = len(m.layouts)
			layoutIdx[string(key)] = li
			m.layouts = append(m.layouts, layout)
		}
		bt := sealedBatch{source: src, seq: ob.row.Seq, linkSeq: ob.link.Seq, recordedAt: charting.NormTime(ob.row.RecordedAt).UnixMicro(),
			actor: act, layout: li, version: version, counts: counts}
		copy(bt.prefix[:], ob.link.Hash[:sealPrefixLen])
		if ob.link.Seq%sealAnchorEvery == 0 {
			m.anchors[bi] = ob.link.Hash
		}
		m.batches = append(m.batches, bt)
		if bi == 0 || ob.row.MinTimeMs < minT {
			minT = ob.row.MinTimeMs
		}
		if bi == 0 || ob.row.MaxTimeMs > maxT {
			maxT = ob.row.MaxTimeMs
		}
		samples += ob.row.SampleCount
	}
	// Time columns: per source, the distinct time sequences of its
	// channels, in order of first use.
	type srcTimes struct {
		cols [][]int64
	}
	times := make([]srcTimes, len(m.sources))
	for c, ch := range m.channels {
		st := &times[ch.source]
		ts := cols[c].ts
		j := slices.IndexFunc(st.cols, func(x []int64) bool { return slices.Equal(x, ts) })
		if j < 0 {
			j = len(st.cols)
			st.cols = append(st.cols, ts)
		}
		m.channels[c].timeCol = j
	}
	parts := []*SealedPart{{CaseID: caseID, Seg: seg, MinTimeMs: minT, MaxTimeMs: maxT, SampleCount: samples, Data: encodeManifest(m)}}
	for src, st := range times {
		var flags byte
		if !offClock[src] {
			flags |= timesPlausible
		}
		data := binary.AppendUvarint([]byte{flags}, uint64(len(st.cols)))
		lo, hi, n := int64(math.MaxInt64), int64(math.MinInt64), 0
		for _, ts := range st.cols {
			col := samplecodec.AppendTimeColumn(nil, ts)
			data = binary.AppendUvarint(data, uint64(len(col)))
			data = append(data, col...)
			if len(ts) > 0 {
				lo, hi = min(lo, slices.Min(ts)), max(hi, slices.Max(ts))
			}
			n += len(ts)
		}
		if n == 0 {
			lo, hi = 0, 0
		}
		parts = append(parts, &SealedPart{CaseID: caseID, Seg: seg, SourceID: m.sources[src], MinTimeMs: lo, MaxTimeMs: hi, SampleCount: n, Data: data})
	}
	for c, ch := range m.channels {
		col := cols[c]
		var inv []bool
		if col.any {
			inv = col.inv
		}
		data := []byte{sealValueVersion}
		data = binary.AppendUvarint(data, uint64(ch.timeCol))
		data = samplecodec.AppendValueColumn(data, samplecodec.Frames(col.ts), col.vs, inv, ch.resolution)
		lo, hi := int64(0), int64(0)
		if len(col.ts) > 0 {
			lo, hi = slices.Min(col.ts), slices.Max(col.ts)
		}
		parts = append(parts, &SealedPart{CaseID: caseID, Seg: seg, SourceID: m.sources[ch.source], Channel: ch.name,
			MinTimeMs: lo, MaxTimeMs: hi, SampleCount: len(col.ts), Data: data})
	}
	return parts, nil
}

// decodedSegment is a segment's batches rebuilt from its rows.
type decodedSegment struct {
	seg int
	m   *manifest
	// batches rebuilt, in scan order; nil series when the segment's
	// columns do not decode (err says why).
	series [][]charting.Series
	err    error
}

// decodedColumn is one (source, channel) column decoded.
type decodedColumn struct {
	ts  []int64
	vs  []float64
	inv []bool // nil when no sample is invalid
}

// decodeSegment rebuilds the batches of a segment from its rows (manifest
// first). Only the batches of source (all when "") are rebuilt. A manifest
// that does not decode is an error; columns that do not decode leave
// series nil with err set, so each batch can still be named.
func decodeSegment(parts []*SealedPart, source string) (*decodedSegment, error) {
	if len(parts) == 0 || parts[0].SourceID != "" || parts[0].Channel != "" {
		return nil, sealedCorrupt("segment without its manifest")
	}
	m, err := decodeManifest(parts[0].Data)
	if err != nil {
		return nil, fmt.Errorf("segment %d: %w", parts[0].Seg, err)
	}
	ds := &decodedSegment{seg: parts[0].Seg, m: m}
	ds.series, ds.err = rebuildBatches(m, parts[1:], source)
	if ds.err != nil {
		ds.series = make([][]charting.Series, len(m.batches)) // none rebuilt
	}
	return ds, nil
}

func rebuildBatches(m *manifest, parts []*SealedPart, source string) ([][]charting.Series, error) {
	srcIdx := make(map[string]int, len(m.sources))
	for i, s := range m.sources {
		srcIdx[s] = i
	}
	timeRows := make(map[int][]byte)
	valueRows := make(map[string]map[string][]byte) // by source, channel
	for _, p := range parts {
		src, ok := srcIdx[p.SourceID]
		if !ok {
			return nil, sealedCorrupt("a row of source %q that the manifest does not list", p.SourceID)
		}
		if p.Channel == "" {
			timeRows[src] = p.Data
			continue
		}
		if valueRows[p.SourceID] == nil {
			valueRows[p.SourceID] = make(map[string][]byte)
		}
		valueRows[p.SourceID][p.Channel] = p.Data
	}
	wanted := func(src int) bool { return source == "" || m.sources[src] == source }
	// Time columns of each wanted source.
	type tcol struct {
		ts     []int64
		frames []samplecodec.Frame
	}
	tcols := make(map[int][]tcol)
	for src := range m.sources {
		if !wanted(src) {
			continue
		}
		data, ok := timeRows[src]
		if !ok {
			return nil, sealedCorrupt("the time columns of source %q are missing", m.sources[src])
		}
		if len(data) < 1 || data[0]&^timesPlausible != 0 {
			return nil, sealedCorrupt("source %q: time columns of an unknown form", m.sources[src])
		}
		r := &mreader{b: data[1:]}
		n := r.count()
		for range n {
			b := r.bytes(r.count())
			if r.err != nil {
				break
			}
			ts, frames, err := samplecodec.DecodeTimeColumn(b, nil)
			if err != nil {
				return nil, sealedCorrupt("source %q: %v", m.sources[src], err)
			}
			tcols[src] = append(tcols[src], tcol{ts, frames})
		}
		if r.err == nil && len(r.b) != 0 {
			r.err = sealedCorrupt("bytes after the time columns")
		}
		if r.err != nil {
			return nil, r.err
		}
	}
	cols := make([]*decodedColumn, len(m.channels))
	for c, ch := range m.channels {
		if !wanted(ch.source) {
			continue
		}
		data, ok := valueRows[m.sources[ch.source]][ch.name]
		if !ok {
			return nil, sealedCorrupt("the column of channel %q is missing", ch.name)
		}
		r := &mreader{b: data}
		if v := r.bytes(1); r.err != nil || v[0] != sealValueVersion {
			return nil, sealedCorrupt("channel %q: value column of an unknown version", ch.name)
		}
		tc := int(r.uvarint())
		if r.err != nil || tc != ch.timeCol || tc >= len(tcols[ch.source]) {
			return nil, sealedCorrupt("channel %q: time column %d", ch.name, tc)
		}
		t := tcols[ch.source][tc]
		vs, inv, err := samplecodec.DecodeValueColumn(r.b, t.frames, nil)
		if err != nil {
			return nil, sealedCorrupt("channel %q: %v", ch.name, err)
		}
		cols[c] = &decodedColumn{ts: t.ts, vs: vs, inv: inv}
	}
	pos := make([]int, len(m.channels))
	out := make([][]charting.Series, len(m.batches))
	for i, bt := range m.batches {
		if !wanted(bt.source) {
			continue
		}
		layout := m.layouts[bt.layout]
		series := make([]charting.Series, len(layout))
		for j, ls := range layout {
			ch := m.channels[ls.channel]
			if ch.source != bt.source {
				return nil, sealedCorrupt("batch %d names a channel of another source", i)
			}
			col := cols[ls.channel]
			lo, hi := pos[ls.channel], pos[ls.channel]+bt.counts[j]
			if hi > len(col.ts) || hi < lo {
				return nil, sealedCorrupt("batch %d: channel %q runs past its column", i, ch.name)
			}
			pos[ls.channel] = hi
			sr := charting.Series{Channel: ch.name, TimesMs: col.ts[lo:hi:hi], Values: col.vs[lo:hi:hi]}
			switch {
			case ls.invalid && col.inv != nil:
				sr.Invalid = col.inv[lo:hi:hi]
			case ls.invalid:
				sr.Invalid = make([]bool, hi-lo)
			case col.inv != nil && slices.Contains(col.inv[lo:hi], true):
				// The batch had no flags but its column says some sample
				// is invalid: not what was sealed. Give the flags, so the
				// batch's content differs and verification names it.
				sr.Invalid = col.inv[lo:hi:hi]
			}
			if hi == lo {
				sr.TimesMs, sr.Values = nil, nil
				if sr.Invalid != nil {
					sr.Invalid = []bool{}
				}
			}
			series[j] = sr
		}
		out[i] = series
	}
	for c, col := range cols {
		if col != nil && pos[c] != len(col.ts) {
			return nil, sealedCorrupt("channel %q: %d samples in its column, %d in its batches", m.channels[c].name, len(col.ts), pos[c])
		}
	}
	return out, nil
}

// rowOf is the stored row a rebuilt batch stands for. Its block is
// re-encoded in the batch's format with the resolutions it was sealed
// with, which gives back the stored bytes (sealing checked it).
func (ds *decodedSegment) rowOf(caseID uuid.UUID, i int, withBlock bool) *SampleBatchRow {
	bt := ds.m.batches[i]
	row := &SampleBatchRow{CaseID: caseID, SourceID: ds.m.sources[bt.source], Seq: bt.seq,
		RecordedAt: charting.NormTime(timeFromMicros(bt.recordedAt)), Actor: ds.m.actors[bt.actor], Block: []byte{}}
	series := ds.series[i]
	if series == nil {
		// The columns do not decode: a row whose block does not decode
		// either, so verification names this batch's link.
		row.Block = nil
		return row
	}
	b := charting.SampleBatch{Series: series}
	row.SampleCount = b.SampleCount()
	if row.SampleCount > 0 {
		row.MinTimeMs, row.MaxTimeMs = b.TimeRange()
	}
	if withBlock {
		res := ds.resolution(bt.source)
		if bt.version == samplecodec.Version1 {
			row.Block = samplecodec.EncodeBlockV1(series, res)
		} else {
			row.Block = samplecodec.EncodeBlock(series, res)
		}
	}
	return row
}

// resolution returns the resolutions a source's channels were sealed with.
func (ds *decodedSegment) resolution(src int) func(string) float64 {
	return func(name string) float64 {
		for _, ch := range ds.m.channels {
			if ch.source == src && ch.name == name {
				return ch.resolution
			}
		}
		return 0
	}
}
