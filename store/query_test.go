package store_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"testing"
	"time"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite/sqlitetest"
)

// TestQueryBucketsMatchNaive checks that bucketed QuerySamples, which folds
// blocks into buckets as they stream, answers exactly (bit for bit, sums
// included) what the reference path answers, on random data with invalid
// readings, several sources, batches that overlap or arrive out of time
// order (which must take the reference path), channels missing from some
// batches, and random ranges, bucket counts and channel selections.
func TestQueryBucketsMatchNaive(t *testing.T) {
	for _, be := range []struct {
		name string
		open func(testing.TB) store.Backend
	}{
		{"postgres", func(tb testing.TB) store.Backend { return pgtest.Open(tb) }},
		{"sqlite", func(tb testing.TB) store.Backend { return sqlitetest.Open(tb) }},
	} {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			for _, disorder := range []bool{false, true} {
				for _, runs := range []bool{false, true} {
					t.Run(fmt.Sprintf("disorder=%v/runs=%v", disorder, runs), func(t *testing.T) {
						checkQueryMatchesNaive(t, be.open(t), disorder, runs, false, false)
					})
				}
				// Closed and sealed: the trend reads the sealed columns,
				// with rollups where they are exact (sealedquery.go).
				t.Run(fmt.Sprintf("disorder=%v/sealed", disorder), func(t *testing.T) {
					checkQueryMatchesNaive(t, be.open(t), disorder, true, true, false)
				})
				// Chunk rows in their form before issue 21, as a store
				// upgraded from then holds them.
				t.Run(fmt.Sprintf("disorder=%v/runs=legacy", disorder), func(t *testing.T) {
					checkQueryMatchesNaive(t, be.open(t), disorder, true, false, true)
				})
			}
		})
	}
}

// With runs, part of the batches is compacted into chunk runs of random
// length half-way through loading and again at the end, so queries read
// runs, then batches past them.
//
// Legacy, the runs are written in the chunk rows' earlier form.
//
// Sealed, the case is then closed and sealed, and queries read its sealed
// columns (and rollups of whole minutes where those are exact).
func checkQueryMatchesNaive(t *testing.T, backend store.Backend, disorder, runs, sealed, legacy bool) {
	ctx := context.Background()
	s := store.New(backend, store.Config{})
	store.SetLegacyChunks(s, legacy)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	chans := charting.DefaultCatalogue().Channels()[:12]
	c, err := s.CreateCase(ctx, "t", store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: "OR-1", ScheduledStart: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-2 * time.Hour).Truncate(time.Second).UnixMilli()
	walk := newWalk(chans, 1)
	var batches []*charting.SampleBatch
	for _, src := range []string{"hlm-1", "mon-1"} {
		t0 := start
		for seq := int64(1); seq <= 60; seq++ {
			secs := 1 + rng.IntN(20)
			bt := &charting.SampleBatch{CaseID: c.ID, SourceID: src, Seq: seq}
			for ci, ch := range chans {
				if rng.IntN(6) == 0 {
					continue // this batch lacks the channel
				}
				sr := charting.Series{Channel: ch.Key}
				step := int64(250 * (1 + rng.IntN(4)))
				for k := 0; k < secs; k++ {
					sr.TimesMs = append(sr.TimesMs, t0+int64(k)*step)
					sr.Values = append(sr.Values, walk.next(0, ci))
				}
				if rng.IntN(3) == 0 {
					sr.Invalid = make([]bool, len(sr.TimesMs))
					for k := range sr.Invalid {
						sr.Invalid[k] = rng.IntN(4) == 0
					}
				}
				bt.Series = append(bt.Series, sr)
			}
			if len(bt.Series) == 0 {
				continue
			}
			batches = append(batches, bt)
			t0 += int64(secs) * 1000
			if disorder && rng.IntN(10) == 0 {
				t0 -= int64(rng.IntN(30)) * 1000 // a clock step back: overlapping batches
			}
		}
	}
	rng.Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })
	built := 0
	compact := func() {
		if !runs {
			return
		}
		n, err := s.CompactSamples(ctx, 3+rng.IntN(10))
		if err != nil {
			t.Fatal(err)
		}
		built += n
	}
	for i := 0; i < len(batches); i += 17 {
		for _, r := range s.AppendSamples(ctx, "gw", batches[i:min(i+17, len(batches))]) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
		if i/17 == len(batches)/34 {
			compact()
		}
	}
	compact()
	if runs {
		if built < 4 {
			t.Fatalf("%d runs built: the test data is wrong", built)
		}
		if v, err := s.VerifyRecord(ctx, c.ID); err != nil || !v.OK() {
			t.Fatalf("verify after compaction: %v %+v", err, v)
		}
	}
	if sealed {
		if _, err := s.CloseCase(ctx, "t", c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SealCase(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
	}
	naive := store.QuerySamplesNaive(s)
	end := start + 2*3600*1000
	rolled := store.RollupsUsed(s)
	defer func() {
		if runs && !disorder && !legacy && store.RollupsUsed(s) == rolled {
			t.Error("no rollup was used: the test does not test them")
		}
	}()
	for i := range 60 {
		q := store.SampleQuery{CaseID: c.ID, Buckets: 1 + rng.IntN(700)}
		if i%3 == 0 {
			q.Buckets = 1 + rng.IntN(40) // wide buckets: whole minutes inside
		}
		switch i % 5 {
		case 0: // the whole case: both ends from the data
		case 1: // from a time to the last sample
			q.FromMs = start - 5000 + rng.Int64N(3600*1000)
		case 2: // from the first sample to a time
			q.ToMs = start + rng.Int64N(end-start)
		default:
			q.FromMs = start - 5000 + rng.Int64N(3600*1000)
			q.ToMs = q.FromMs + 1 + rng.Int64N(end-q.FromMs)
		}
		for _, ch := range chans {
			if rng.IntN(3) == 0 {
				q.Channels = append(q.Channels, ch.Key)
			}
		}
		if i%4 == 0 {
			q.SourceID = "mon-1"
		}
		want, err := naive(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.QuerySamples(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if got.WidthMs != want.WidthMs || len(got.Downsampled) != len(want.Downsampled) {
			t.Fatalf("query %+v: width %d, %d series; reference: width %d, %d series", q, got.WidthMs, len(got.Downsampled), want.WidthMs, len(want.Downsampled))
		}
		covered := 0
		for k, wb := range want.Downsampled {
			gb, ok := got.Downsampled[k]
			if !ok || !sameBuckets(gb, wb) {
				t.Fatalf("query %+v: series %v: got %+v, reference %+v", q, k, gb, wb)
			}
			covered += len(wb)
		}
		if i == 0 && covered == 0 {
			t.Fatal("the whole-case query covered no bucket: the test data is wrong")
		}
	}
}

// sameBuckets compares buckets bit for bit (reflect.DeepEqual would call
// two NaN means different and two different-signed zeros equal).
func sameBuckets(a, b []charting.Bucket) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.StartMs != y.StartMs || x.Count != y.Count || x.InvalidCount != y.InvalidCount ||
			math.Float64bits(x.Min) != math.Float64bits(y.Min) || math.Float64bits(x.Max) != math.Float64bits(y.Max) ||
			math.Float64bits(x.Mean) != math.Float64bits(y.Mean) {
			return false
		}
	}
	return true
}
