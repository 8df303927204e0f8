package store_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite/sqlitetest"
)

// BenchmarkQuerySamples times the trend view of issue 4: a 4-hour case of
// 40 channels at 1 Hz stored as 1-s batches (14,400 blocks, as a gateway
// sending every second leaves it), 10 channels downsampled to 600 buckets.
//
//   - "batches": every batch read and walked (no chunk runs yet), split
//     into one part per processor; "batches-1part" in one part.
//   - "naive": the reference path (decode every block into raw series,
//     sort, then bucket), measured in the same run for the ratio.
//   - "runs": after the compactor has run, as perfusiond's does every few
//     seconds (store/chunks.go). The case is still open and the last 600
//     batches are not in a run yet, so they are read as batches: the most
//     an open case has outside runs (599 short of a run, plus what arrives
//     before the compactor's next pass).
//   - "runs-whole-case": the same without a range, whose ends the query
//     first finds in the data.
//
// Run:
//
//	PERFUSION_TEST_DATABASE_URL=… go test ./store -run XXX -bench QuerySamples -benchtime 50x
func BenchmarkQuerySamples(b *testing.B) {
	backends := []struct {
		name string
		open func(testing.TB) store.Backend
	}{
		{"postgres", func(tb testing.TB) store.Backend { return pgtest.Open(tb) }},
		{"sqlite", func(tb testing.TB) store.Backend { return sqlitetest.Open(tb) }},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			const secs = 4 * 3600
			s, q := loadQueryCase(b, be.open(b), secs, 1, secs-store.DefaultChunkBatches)
			for _, v := range []struct {
				name  string
				run   func(context.Context, store.SampleQuery) (*store.SampleQueryResult, error)
				parts int
				runs  bool
			}{{"batches", s.QuerySamples, 0, false}, {"batches-1part", s.QuerySamples, 1, false}, {"naive", store.QuerySamplesNaive(s), 0, false}, {"runs", s.QuerySamples, 0, true}} {
				b.Run(v.name, func(b *testing.B) {
					store.SetQueryParts(s, v.parts)
					store.SetQueryRuns(s, v.runs)
					benchQuery(b, v.run, q)
				})
			}
			// The whole case, no range given: its ends come from the data.
			whole := q
			whole.FromMs, whole.ToMs = 0, 0
			b.Run("runs-whole-case", func(b *testing.B) {
				store.SetQueryParts(s, 0)
				store.SetQueryRuns(s, true)
				benchQuery(b, s.QuerySamples, whole)
			})
		})
	}
}

func benchQuery(b *testing.B, run func(context.Context, store.SampleQuery) (*store.SampleQueryResult, error), q store.SampleQuery) {
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t := time.Now()
		r, err := run(ctx, q)
		lat = append(lat, time.Since(t))
		if err != nil || len(r.Downsampled) != len(q.Channels) {
			b.Fatalf("query: %v (%d series)", err, len(r.Downsampled))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99+99)/100-1].Microseconds())/1000, "p99-ms")
}

// loadQueryCase stores secs seconds of 40 channels at 1 Hz in batches of
// batchSecs seconds, with a few invalid-marked readings, compacting the
// batches into runs once compactAfter of them are stored (never when 0),
// and returns the store and the 10-channel, 600-bucket query over the
// whole range.
func loadQueryCase(tb testing.TB, backend store.Backend, secs, batchSecs, compactAfter int) (*store.Store, store.SampleQuery) {
	ctx := context.Background()
	s := store.New(backend, store.Config{})
	chans := charting.DefaultCatalogue().Channels()[:40]
	// Scheduled when its data begins: a case longer than a day would
	// otherwise begin before its device window (a day before it is
	// scheduled), and those batches would be judged as from a clock far off.
	start := time.Now().Add(-time.Duration(secs+10) * time.Second).Truncate(time.Second).UnixMilli()
	c, err := s.CreateCase(ctx, "bench", store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: "OR-Q", ScheduledStart: time.UnixMilli(start)})
	if err != nil {
		tb.Fatal(err)
	}
	walk := newWalk(chans, 1)
	rng := rand.New(rand.NewPCG(3, 5))
	var pending []*charting.SampleBatch
	flush := func() {
		for _, r := range s.AppendSamples(ctx, "gateway-or-01", pending) {
			if r.Err != nil {
				tb.Fatal(r.Err)
			}
		}
		pending = pending[:0]
	}
	for n := 0; n*batchSecs < secs; n++ {
		bt := &charting.SampleBatch{CaseID: c.ID, SourceID: "hlm-1", Seq: int64(n + 1)}
		t0 := start + int64(n*batchSecs)*1000
		for ci, ch := range chans {
			sr := charting.Series{Channel: ch.Key}
			for k := 0; k < batchSecs; k++ {
				sr.TimesMs = append(sr.TimesMs, t0+int64(k)*1000)
				sr.Values = append(sr.Values, walk.next(0, ci))
			}
			if ci%7 == 0 && rng.IntN(50) == 0 {
				sr.Invalid = make([]bool, batchSecs)
				sr.Invalid[rng.IntN(batchSecs)] = true
			}
			bt.Series = append(bt.Series, sr)
		}
		pending = append(pending, bt)
		if len(pending) == 500 || n+1 == compactAfter {
			flush()
		}
		if n+1 == compactAfter {
			if _, err := s.CompactSamples(ctx, 0); err != nil {
				tb.Fatal(err)
			}
		}
	}
	flush()
	q := store.SampleQuery{CaseID: c.ID, FromMs: start, ToMs: start + int64(secs)*1000, Buckets: 600}
	for _, ch := range chans[:10] {
		q.Channels = append(q.Channels, ch.Key)
	}
	return s, q
}
