package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
	"perfusion/store"
)

// sampleKey identifies one sample for counting.
type sampleKey struct {
	source, channel string
	t               int64
}

// countSamples reads every stored sample of a case back from the blocks.
func countSamples(t *testing.T, b store.Backend, caseID uuid.UUID) map[sampleKey]int {
	t.Helper()
	got := make(map[sampleKey]int)
	err := b.ScanSampleBatches(context.Background(), caseID, store.SampleFilter{}, func(row *store.SampleBatchRow) error {
		series, err := samplecodec.DecodeBlock(row.Block)
		if err != nil {
			return err
		}
		for _, s := range series {
			for _, ts := range s.TimesMs {
				got[sampleKey{row.SourceID, s.Channel, ts}]++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scan samples: %v", err)
	}
	return got
}

// diffSamples reports samples missing from got and samples present more
// often than expected, in the form of a transparency-log test.
func diffSamples(want, got map[sampleKey]int) error {
	var missing, extra []string
	for k, n := range want {
		if got[k] < n {
			missing = append(missing, fmt.Sprintf("+%s/%s@%d", k.source, k.channel, k.t))
		}
	}
	for k, n := range got {
		if n > want[k] {
			extra = append(extra, fmt.Sprintf("-%s/%s@%d (×%d)", k.source, k.channel, k.t, n))
		}
	}
	if len(missing)+len(extra) == 0 {
		return nil
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return fmt.Errorf("%d missing, %d extra: %v %v", len(missing), len(extra), head10(missing), head10(extra))
}

func head10(s []string) []string { return s[:min(len(s), 10)] }

func testSamplesShuffled(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	const sources, perSource, perBatch = 3, 40, 10
	start := time.Now().Add(-2 * time.Hour).UnixMilli()
	want := make(map[sampleKey]int)
	var all []*charting.SampleBatch
	for src := 0; src < sources; src++ {
		name := fmt.Sprintf("device-%d", src)
		for seq := int64(1); seq <= perSource; seq++ {
			bt := batch(c.ID, name, seq, start+(seq-1)*perBatch*1000, perBatch)
			for _, sr := range bt.Series {
				for _, ts := range sr.TimesMs {
					want[sampleKey{name, sr.Channel, ts}] = 1
				}
			}
			all = append(all, bt, batch(c.ID, name, seq, start+(seq-1)*perBatch*1000, perBatch)) // and a duplicate
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	dups := 0
	for len(all) > 0 {
		n := min(len(all), 1+rng.IntN(12))
		for i, r := range s.AppendSamples(ctx, "gw", all[:n]) {
			if r.Err != nil {
				t.Fatalf("append %s: %v", charting.SampleRef(all[i].SourceID, all[i].Seq), r.Err)
			}
			if r.Duplicate {
				dups++
			}
		}
		all = all[n:]
	}
	if dups != sources*perSource {
		t.Fatalf("%d duplicates acknowledged, want %d", dups, sources*perSource)
	}
	if err := diffSamples(want, countSamples(t, b, c.ID)); err != nil {
		t.Fatal(err)
	}
	pos, err := s.SourcePositions(ctx, c.ID, []string{"device-0", "never-seen"})
	if err != nil {
		t.Fatal(err)
	}
	for src := 0; src < sources; src++ {
		if p := pos[fmt.Sprintf("device-%d", src)]; p != perSource {
			t.Fatalf("watermark of device-%d = %d, want %d", src, p, perSource)
		}
	}
	if p, ok := pos["never-seen"]; !ok || p != 0 {
		t.Fatalf("unknown source position = %d, %v; want 0", p, ok)
	}
	v := verifyOK(t, s, c.ID)
	if v.SampleBatchesVerified != sources*perSource || v.SamplesVerified != int64(len(want)) {
		t.Fatalf("verified %d batches, %d samples; want %d, %d", v.SampleBatchesVerified, v.SamplesVerified, sources*perSource, len(want))
	}
}

func testInvalidReadings(t *testing.T, h *Harness) {
	s, _, _ := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	ms := time.Now().Add(-time.Minute).UnixMilli()
	bt := &charting.SampleBatch{CaseID: c.ID, SourceID: "cdi", Seq: 1, Series: []charting.Series{{
		Channel: "inline_svo2", TimesMs: []int64{ms, ms + 6000, ms + 12000},
		Values: []float64{72, math.NaN(), 70}, Invalid: []bool{false, true, false},
	}}}
	appendOne(t, s, bt)
	res, err := s.QuerySamples(ctx, store.SampleQuery{CaseID: c.ID})
	if err != nil {
		t.Fatal(err)
	}
	sr := res.Raw[store.SeriesKey{Channel: "inline_svo2", SourceID: "cdi"}]
	if sr == nil || sr.Len() != 3 || !sr.IsInvalid(1) || sr.IsInvalid(0) || sr.Values[0] != 72 || sr.Values[1] != 0 {
		t.Fatalf("invalid reading read back as %+v", sr)
	}
	q, err := s.QuerySamples(ctx, store.SampleQuery{CaseID: c.ID, Buckets: 1})
	if err != nil {
		t.Fatal(err)
	}
	bk := q.Downsampled[store.SeriesKey{Channel: "inline_svo2", SourceID: "cdi"}]
	if len(bk) != 1 || bk[0].Count != 2 || bk[0].InvalidCount != 1 || bk[0].Min != 70 || bk[0].Mean != 71 {
		t.Fatalf("bucket over an invalid reading: %+v", bk)
	}
}

func testSampleConflict(t *testing.T, h *Harness) {
	s, _, _ := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	ms := time.Now().Add(-time.Hour).UnixMilli()
	appendOne(t, s, batch(c.ID, "hlm", 1, ms, 5))
	before := head(t, s, c.ID)
	r := s.AppendSamples(ctx, "gw", []*charting.SampleBatch{batch(c.ID, "hlm", 1, ms+1000, 5)})[0]
	if !errors.Is(r.Err, charting.ErrConflict) {
		t.Fatalf("same sequence, different samples: %v, want conflict", r.Err)
	}
	r = s.AppendSamples(ctx, "gw", []*charting.SampleBatch{batch(uuid.New(), "hlm", 1, ms, 5)})[0]
	if !errors.Is(r.Err, charting.ErrNotFound) {
		t.Fatalf("unknown case: %v, want not found", r.Err)
	}
	if after := head(t, s, c.ID); after != before {
		t.Fatal("a rejected batch reached the ledger")
	}
}

func testGroupCommit(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	ctx := context.Background()
	open, closed := createCase(t, s, "OR-1"), createCase(t, s, "OR-2")
	if _, err := s.CloseCase(ctx, actor, closed.ID); err != nil {
		t.Fatal(err)
	}
	ms := time.Now().Add(-time.Hour).UnixMilli()
	res := s.AppendSamples(ctx, "gw", []*charting.SampleBatch{
		batch(open.ID, "hlm", 1, ms, 5),
		batch(closed.ID, "hlm", 1, ms, 5),
		{CaseID: open.ID, SourceID: "hlm", Seq: 2, Series: []charting.Series{{Channel: "nope", TimesMs: []int64{ms}, Values: []float64{1}}}},
		batch(open.ID, "hlm", 3, ms+10_000, 5),
	})
	if res[0].Err != nil || res[3].Err != nil {
		t.Fatalf("good batches failed: %v, %v", res[0].Err, res[3].Err)
	}
	wantPrecondition(t, "batch for a closed case in a group", res[1].Err)
	wantInvalid(t, "bad batch in a group", res[2].Err, "batch.series[0].channel")
	if res[0].Watermark != 1 || res[3].Watermark != 1 {
		t.Fatalf("watermarks %d, %d; want 1, 1 (sequence 2 is missing)", res[0].Watermark, res[3].Watermark)
	}
	if n := len(countSamples(t, b, open.ID)); n != 20 {
		t.Fatalf("open case holds %d samples, want 20", n)
	}
	if n := len(countSamples(t, b, closed.ID)); n != 0 {
		t.Fatalf("closed case holds %d samples, want 0", n)
	}
	verifyOK(t, s, open.ID)
	verifyOK(t, s, closed.ID)
}

func testQuerySamples(t *testing.T, h *Harness) {
	s, _, _ := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	start := time.Now().Add(-time.Hour).Truncate(time.Minute).UnixMilli()
	// 600 s of 1 Hz flow on two sources, sent in 60 batches each.
	for seq := int64(1); seq <= 60; seq++ {
		appendOne(t, s, batch(c.ID, "hlm", seq, start+(seq-1)*10_000, 10))
		appendOne(t, s, batch(c.ID, "hlm-2", seq, start+(seq-1)*10_000, 10))
	}
	raw, err := s.QuerySamples(ctx, store.SampleQuery{CaseID: c.ID, Channels: []string{"pump_flow"}, SourceID: "hlm", FromMs: start + 100_000, ToMs: start + 200_000})
	if err != nil {
		t.Fatal(err)
	}
	sr := raw.Raw[store.SeriesKey{Channel: "pump_flow", SourceID: "hlm"}]
	if len(raw.Raw) != 1 || sr == nil || sr.Len() != 100 || sr.TimesMs[0] != start+100_000 || sr.TimesMs[99] != start+199_000 {
		t.Fatalf("raw query: %d series, %+v", len(raw.Raw), sr)
	}
	ds, err := s.QuerySamples(ctx, store.SampleQuery{CaseID: c.ID, Channels: []string{"temp_arterial_outlet"}, FromMs: start, ToMs: start + 600_000, Buckets: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Downsampled) != 2 || ds.WidthMs != 60_000 {
		t.Fatalf("downsampled: %d series, width %d", len(ds.Downsampled), ds.WidthMs)
	}
	for key, buckets := range ds.Downsampled {
		if len(buckets) != 10 {
			t.Fatalf("%v: %d buckets, want 10", key, len(buckets))
		}
		for _, bk := range buckets {
			if bk.Count != 60 || bk.Min > bk.Mean || bk.Mean > bk.Max {
				t.Fatalf("%v: bucket %+v", key, bk)
			}
		}
	}
	_, err = s.QuerySamples(ctx, store.SampleQuery{CaseID: c.ID, Channels: []string{"warp"}})
	wantInvalid(t, "unknown channel", err, "channels[0]")
	_, err = s.QuerySamples(ctx, store.SampleQuery{CaseID: c.ID, FromMs: 10, ToMs: 5})
	wantInvalid(t, "backwards range", err, "end")
	if _, err := s.QuerySamples(ctx, store.SampleQuery{CaseID: uuid.New()}); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("unknown case: %v", err)
	}
}

// testSourceSummaries: per source, what was stored and how far its clock
// lags the server's, from known clocks: hlm 10 min behind (its second
// batch sent 5 s late), mon 2 s ahead, and a source whose first batch never
// arrived.
func testSourceSummaries(t *testing.T, h *Harness) {
	s, _, clk := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	behind := 10 * time.Minute
	first := clk.now()
	appendOne(t, s, batch(c.ID, "hlm", 1, clk.now().Add(-behind-9*time.Second).UnixMilli(), 10))
	appendOne(t, s, batch(c.ID, "mon", 1, clk.now().Add(2*time.Second-9*time.Second).UnixMilli(), 10))
	clk.advance(10 * time.Second)
	appendOne(t, s, batch(c.ID, "hlm", 2, clk.now().Add(-behind-14*time.Second).UnixMilli(), 10))
	appendOne(t, s, batch(c.ID, "late", 2, clk.now().Add(-9*time.Second).UnixMilli(), 10))
	got, err := s.SourceSummaries(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	hlmFirst := first.Add(-behind - 9*time.Second).UnixMilli()
	want := []store.SourceSummary{
		{SourceID: "hlm", Batches: 2, Samples: 40, AcknowledgedThrough: 2, FirstSampleMs: hlmFirst, LastSampleMs: hlmFirst + 10_000 - 5_000 + 9_000,
			LastReceived: clk.now(), MinReceiptLagMs: behind.Milliseconds(), LastReceiptLagMs: behind.Milliseconds() + 5_000},
		{SourceID: "late", Batches: 1, Samples: 20, AcknowledgedThrough: 0, FirstSampleMs: clk.now().Add(-9 * time.Second).UnixMilli(), LastSampleMs: clk.now().UnixMilli(),
			LastReceived: clk.now(), MinReceiptLagMs: 0, LastReceiptLagMs: 0},
		{SourceID: "mon", Batches: 1, Samples: 20, AcknowledgedThrough: 1, FirstSampleMs: first.Add(-7 * time.Second).UnixMilli(), LastSampleMs: first.Add(2 * time.Second).UnixMilli(),
			LastReceived: first, MinReceiptLagMs: -2_000, LastReceiptLagMs: -2_000},
	}
	if len(got) != len(want) {
		t.Fatalf("%d sources %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.LastReceived.Equal(w.LastReceived) {
			t.Errorf("%s: last received %s, want %s", w.SourceID, g.LastReceived, w.LastReceived)
		}
		g.LastReceived, w.LastReceived = time.Time{}, time.Time{}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("source %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	if _, err := s.SourceSummaries(ctx, uuid.New()); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("unknown case: %v", err)
	}
}
