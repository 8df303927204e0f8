package store

import (
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
)

// sealedFixture encodes one segment of a few batches from two sources.
func sealedFixture(t testing.TB) []*SealedPart {
	t.Helper()
	cat := charting.DefaultCatalogue()
	caseID := uuid.New()
	var batches []origBatch
	for i := range 70 {
		series := []charting.Series{
			{Channel: "pump_flow", TimesMs: []int64{int64(i) * 1000}, Values: []float64{math.Round(400+float64(i%7)) / 100}},
			{Channel: "map", TimesMs: []int64{int64(i)*1000 + 3}, Values: []float64{float64(60 + i%9)}, Invalid: []bool{i%11 == 0}},
		}
		src := "hlm"
		if i%3 == 0 {
			src = "mon"
		}
		row := &SampleBatchRow{CaseID: caseID, SourceID: src, Seq: int64(i + 1), RecordedAt: time.UnixMicro(1_700_000_000_000_000 + int64(i)*1_000_123),
			Actor: "gw", MinTimeMs: int64(i) * 1000, MaxTimeMs: int64(i)*1000 + 3, SampleCount: 2, Block: samplecodec.EncodeBlock(series, cat.Resolution)}
		l := charting.Link{Seq: int64(i + 3)}
		l.Hash[0], l.Hash[5] = byte(i), 7
		batches = append(batches, origBatch{row: row, series: series, link: l})
	}
	parts, err := encodeSegment(caseID, 0, batches, cat.Resolution, func(*SampleBatchRow) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	return parts
}

// TestSegmentRoundTrip: a segment rebuilds its batches' rows exactly.
func TestSegmentRoundTrip(t *testing.T) {
	parts := sealedFixture(t)
	ds, err := decodeParts(parts, "")
	if err != nil || ds.err != nil {
		t.Fatal(err, ds.err)
	}
	// Links 3..72: none is a multiple of 256, so no anchor.
	if len(ds.m.batches) != 70 || len(ds.m.anchors) != 0 {
		t.Fatalf("%d batches, %d anchors", len(ds.m.batches), len(ds.m.anchors))
	}
	for i := range ds.m.batches {
		row := ds.rowOf(parts[0].CaseID, i, true)
		if row.SampleCount != 2 || row.MaxTimeMs-row.MinTimeMs != 3 {
			t.Fatalf("batch %d rebuilt as %+v", i, row)
		}
	}
}

// FuzzSealedSegment decodes arbitrary bytes as a segment's manifest and
// columns: never a panic, whatever the rows hold.
func FuzzSealedSegment(f *testing.F) {
	parts := sealedFixture(f)
	var times, values []byte
	for _, p := range parts[1:] {
		if p.Channel == "" && times == nil {
			times = p.Data
		} else if p.Channel != "" && values == nil {
			values = p.Data
		}
	}
	f.Add(parts[0].Data, times, values)
	f.Add([]byte{}, []byte{1, 0}, []byte{1})
	f.Fuzz(func(t *testing.T, manifest, times, values []byte) {
		m, err := decodeManifest(manifest)
		if err != nil {
			return
		}
		var ps []*SealedPart
		for _, src := range m.sources {
			ps = append(ps, &SealedPart{SourceID: src, Data: times})
		}
		for _, ch := range m.channels {
			if ch.source < len(m.sources) {
				ps = append(ps, &SealedPart{SourceID: m.sources[ch.source], Channel: ch.name, Data: values})
			}
		}
		series, err := rebuildBatches(m, ps, "")
		if err != nil {
			return
		}
		for i := range series {
			if series[i] == nil {
				continue
			}
			ds := &decodedSegment{m: m, series: series}
			_ = ds.rowOf(uuid.Nil, i, true)
		}
	})
}
