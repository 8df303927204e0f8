package storetest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
	"perfusion/store"
)

// testSamplesImplausible: readings are refused only for being malformed.
// A pump flow outside the plausible range and batches from a clock reset
// to 1970 or a year ahead are stored and acknowledged; queries flag the
// out-of-range reading and keep it out of bucket statistics; the far-off
// times show in a raw query over their range but never drive an open
// range, a bucket width or a bucket, with or without chunk runs; the
// source summary names the clock.
func testSamplesImplausible(t *testing.T, h *Harness) {
	s, _, clk := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	start := clk.now().Add(-30 * time.Second).Truncate(time.Second).UnixMilli()

	// 20 s of real data: 7.5 L/min (an adult ECMO flow, plausible) and
	// one reading of 12 L/min (outside 0–10: stored, flagged).
	real1 := batch(c.ID, "hlm", 1, start, 10)
	real1.Series[0].Values[3] = 7.5
	real1.Series[0].Values[5] = 12
	real2 := batch(c.ID, "hlm", 2, start+10_000, 10)
	reset := batch(c.ID, "mon", 1, 0, 10) // 1970-01-01: a clock reset
	ahead := batch(c.ID, "fut", 1, clk.now().AddDate(1, 0, 0).UnixMilli(), 5)
	for _, b := range []*charting.SampleBatch{real1, real2, reset, ahead} {
		if r := appendOne(t, s, b); r.Duplicate {
			t.Fatalf("batch %s/%d: duplicate", b.SourceID, b.Seq)
		}
	}

	checkBuckets := func(when string) {
		t.Helper()
		ds, err := s.QuerySamples(ctx, store.SampleQuery{CaseID: c.ID, Channels: []string{"pump_flow"}, Buckets: 10})
		if err != nil {
			t.Fatal(err)
		}
		// The real samples span 19.001 s: 1901-ms buckets. A 1970 sample
		// in the range would make them about 5.6 years wide.
		if ds.WidthMs != 1901 {
			t.Fatalf("%s: bucket width %d ms, want 1901 (the real samples' span)", when, ds.WidthMs)
		}
		if len(ds.Downsampled) != 1 {
			t.Fatalf("%s: %d series %v, want only hlm's (the others have no plausibly timed sample)", when, len(ds.Downsampled), ds.Downsampled)
		}
		buckets := ds.Downsampled[store.SeriesKey{Channel: "pump_flow", SourceID: "hlm"}]
		var n, out int64
		for _, b := range buckets {
			if b.StartMs < start || b.StartMs >= start+20_000 {
				t.Errorf("%s: bucket at %d outside the real span", when, b.StartMs)
			}
			if b.Max > 10 {
				t.Errorf("%s: bucket %+v: its max includes the out-of-range reading", when, b)
			}
			n, out = n+b.Count, out+b.OutOfRangeCount
		}
		if n != 19 || out != 1 {
			t.Errorf("%s: %d readings in statistics and %d out of range, want 19 and 1", when, n, out)
		}
	}
	checkBuckets("batches")

	// Raw over an explicit range covering 1970: the record keeps them.
	raw, err := s.QuerySamples(ctx, store.SampleQuery{CaseID: c.ID, FromMs: 1, ToMs: 3_600_000, Channels: []string{"pump_flow"}})
	if err != nil {
		t.Fatal(err)
	}
	key := store.SeriesKey{Channel: "pump_flow", SourceID: "mon"}
	if sr := raw.Raw[key]; sr == nil || sr.Len() != 9 { // 1..9 s: the sample at 0 is before FromMs
		t.Fatalf("raw 1970 range: %+v, want mon's 9 samples", raw.Raw)
	}
	if m := raw.TimeImplausible[key]; len(m) != 9 || slices.Contains(m, false) {
		t.Errorf("raw 1970 range: implausible marks %v, want all 9 set", m)
	}
	// Raw over the whole case: everything, the far-off samples marked.
	all, err := s.QuerySamples(ctx, store.SampleQuery{CaseID: c.ID, Channels: []string{"pump_flow"}})
	if err != nil {
		t.Fatal(err)
	}
	hlm := store.SeriesKey{Channel: "pump_flow", SourceID: "hlm"}
	if all.Raw[hlm].Len() != 20 || all.Raw[key].Len() != 10 || all.Raw[store.SeriesKey{Channel: "pump_flow", SourceID: "fut"}].Len() != 5 {
		t.Fatalf("raw whole case: %v", all.Raw)
	}
	if all.TimeImplausible[hlm] != nil {
		t.Errorf("hlm's samples marked implausibly timed: %v", all.TimeImplausible[hlm])
	}
	if i := slices.Index(all.Raw[hlm].Values, 12); i < 0 || all.Raw[hlm].IsInvalid(i) {
		t.Errorf("the out-of-range reading is not returned as sent: %v", all.Raw[hlm].Values)
	}
	if len(all.TimeImplausible) != 2 {
		t.Errorf("implausible marks for %d series, want mon's and fut's", len(all.TimeImplausible))
	}

	sums, err := s.SourceSummaries(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, sum := range sums {
		want := sum.SourceID != "hlm"
		if sum.ClockImplausible != want || sum.LastImplausible != want {
			t.Errorf("%s: clock implausible %v (last %v), want %v", sum.SourceID, sum.ClockImplausible, sum.LastImplausible, want)
		}
		if want && (sum.ImplausibleBatches != 1 || !slices.Equal(sum.ImplausibleSeqs, []store.SeqRange{{From: 1, To: 1}})) {
			t.Errorf("%s: %d implausible batches %v, want 1 [1-1]", sum.SourceID, sum.ImplausibleBatches, sum.ImplausibleSeqs)
		}
	}

	// Chunk runs keep no receipt times, so the compactor builds none over
	// a far-off batch: hlm's two batches become runs, mon's and fut's stay
	// batches.
	if n, err := s.CompactSamples(ctx, 1); err != nil || n != 2 {
		t.Fatalf("compact: %d runs, %v; want 2 (hlm's)", n, err)
	}
	checkBuckets("runs")
	verifyOK(t, s, c.ID)

	// A run built over the 1970 batch before that rule (by an older
	// compactor) is recognised by its marker's time and not read as it is.
	legacyRun(t, s, reset)
	checkBuckets("a legacy run over a reset clock")
	verifyOK(t, s, c.ID)
}

// legacyRun stores the run of the single batch b exactly as the compactor
// builds it (one row per channel, sorted, and a marker spanning them), as a
// compactor that did not yet refuse far-off batches would have.
func legacyRun(t *testing.T, s *store.Store, b *charting.SampleBatch) {
	t.Helper()
	marker := &store.SampleChunkRow{CaseID: b.CaseID, SourceID: b.SourceID, SeqFrom: b.Seq, SeqTo: b.Seq, Block: []byte{}}
	rows := []*store.SampleChunkRow{marker}
	series := slices.Clone(b.Series)
	slices.SortFunc(series, func(x, y charting.Series) int { return strings.Compare(x.Channel, y.Channel) })
	for i, sr := range series {
		lo, hi := slices.Min(sr.TimesMs), slices.Max(sr.TimesMs)
		rows = append(rows, &store.SampleChunkRow{CaseID: b.CaseID, SourceID: b.SourceID, SeqFrom: b.Seq, SeqTo: b.Seq,
			Channel: sr.Channel, MinTimeMs: lo, MaxTimeMs: hi, SampleCount: sr.Len(),
			Block: samplecodec.EncodeBlock([]charting.Series{sr}, s.Catalogue().Resolution)})
		if i == 0 {
			marker.MinTimeMs, marker.MaxTimeMs = lo, hi
		}
		marker.MinTimeMs, marker.MaxTimeMs = min(marker.MinTimeMs, lo), max(marker.MaxTimeMs, hi)
		marker.SampleCount += sr.Len()
	}
	err := s.Backend().ReadWrite(context.Background(), func(ctx context.Context, tx store.Tx) error {
		return tx.InsertSampleChunks(ctx, rows)
	})
	if err != nil {
		t.Fatalf("legacy run: %v", err)
	}
}
