package store_test

import (
	"context"
	"testing"
	"time"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite/sqlitetest"
)

// BenchmarkLongTrend times the trend of a long closed case, an ECMO run:
// 10 channels over the whole case in 600 buckets, for 24 hours (40
// channels at 1 Hz in 1-s batches, 3,456,000 samples) and 7 days (12
// channels, 7,257,600 samples; the trend reads 10 of them either way), on
// both stores, in the same run:
//
//   - "chunks-blocks": closed and compacted as before issue 21, the chunk
//     rows one-series samplecodec blocks: the current path of a case
//     before sealing;
//   - "sealed": the same case sealed (sealed.go): the trend reads the
//     channels' value columns (sealedquery.go);
//   - "chunks-columns": a second case with the same data compacted as the
//     compactor does now, chunk rows in the column form with rollups (an
//     open case's long trend, or a closed one's before it is sealed).
//
// Loading a 7-day case takes minutes; run it once per -benchtime:
//
//	PERFUSION_TEST_DATABASE_URL=… go test ./store -run XXX -bench LongTrend -benchtime 30x -timeout 60m
func BenchmarkLongTrend(b *testing.B) {
	backends := []struct {
		name string
		open func(testing.TB) store.Backend
	}{
		{"postgres", func(tb testing.TB) store.Backend { return pgtest.Open(tb) }},
		{"sqlite", func(tb testing.TB) store.Backend { return sqlitetest.Open(tb) }},
	}
	lengths := []struct {
		name           string
		secs, channels int
	}{{"24h", 24 * 3600, 40}, {"7d", 7 * 24 * 3600, 12}}
	for _, be := range backends {
		for _, l := range lengths {
			b.Run(be.name+"/"+l.name, func(b *testing.B) {
				ctx := context.Background()
				backend := be.open(b)
				s, q := loadTrendCase(b, backend, l.secs, l.channels, true)
				if _, err := s.CloseCase(ctx, "bench", q.CaseID); err != nil {
					b.Fatal(err)
				}
				compactAll(b, s)
				b.Run("chunks-blocks", func(b *testing.B) { benchQuery(b, s.QuerySamples, q) })
				res, err := s.SealCase(ctx, q.CaseID)
				if err != nil {
					b.Fatal(err)
				}
				b.Logf("sealed %d samples in %v", res.Samples, res.Took)
				b.Run("sealed", func(b *testing.B) { benchQuery(b, s.QuerySamples, q) })
				s2, q2 := loadTrendCase(b, backend, l.secs, l.channels, false)
				if _, err := s2.CloseCase(ctx, "bench", q2.CaseID); err != nil {
					b.Fatal(err)
				}
				compactAll(b, s2)
				b.Run("chunks-columns", func(b *testing.B) { benchQuery(b, s2.QuerySamples, q2) })
			})
		}
	}
}

func compactAll(tb testing.TB, s *store.Store) {
	for {
		n, err := s.CompactSamples(context.Background(), 0)
		if err != nil {
			tb.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// loadTrendCase stores secs seconds of the first `channels` channels at
// 1 Hz in 1-s batches, random walks at each channel's resolution, and
// returns the store and the 10-channel, 600-bucket query over the whole
// range. legacyChunks: chunk rows in their earlier form.
func loadTrendCase(tb testing.TB, backend store.Backend, secs, channels int, legacyChunks bool) (*store.Store, store.SampleQuery) {
	ctx := context.Background()
	s := store.New(backend, store.Config{})
	store.SetLegacyChunks(s, legacyChunks)
	chans := charting.DefaultCatalogue().Channels()[:channels]
	// Scheduled when its data begins, so every sample lies in the case's
	// device window (a day before its schedule to an hour past receipt).
	start := time.Now().Add(-time.Duration(secs+10) * time.Second).Truncate(time.Second).UnixMilli()
	c, err := s.CreateCase(ctx, "bench", store.NewCase{Kind: charting.KindECMO, Site: "MAIN", Room: "ICU-1", ScheduledStart: time.UnixMilli(start)})
	if err != nil {
		tb.Fatal(err)
	}
	walk := newWalk(chans, 1)
	pending := make([]*charting.SampleBatch, 0, 1000)
	for n := 0; n < secs; n++ {
		bt := &charting.SampleBatch{CaseID: c.ID, SourceID: "hlm-1", Seq: int64(n + 1)}
		for ci, ch := range chans {
			bt.Series = append(bt.Series, charting.Series{Channel: ch.Key, TimesMs: []int64{start + int64(n)*1000}, Values: []float64{walk.next(0, ci)}})
		}
		pending = append(pending, bt)
		if len(pending) == cap(pending) || n+1 == secs {
			for _, r := range s.AppendSamples(ctx, "gateway-or-01", pending) {
				if r.Err != nil {
					tb.Fatal(r.Err)
				}
			}
			pending = pending[:0]
		}
		if (n+1)%50_000 == 0 {
			compactAll(tb, s)
		}
	}
	q := store.SampleQuery{CaseID: c.ID, FromMs: start, ToMs: start + int64(secs)*1000, Buckets: 600}
	for _, ch := range chans[:10] {
		q.Channels = append(q.Channels, ch.Key)
	}
	return s, q
}
