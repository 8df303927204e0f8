package store_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite/sqlitetest"
)

// BenchmarkIngest compares the two stores on one workload: concurrent cases
// streaming 40 channels at 1 Hz, one batch per case per second, committed
// together (group commit) as the server does. One op is one second of data
// for every case. Run:
//
//	PERFUSION_TEST_DATABASE_URL=… go test ./store -run XXX -bench Ingest -benchtime 200x
func BenchmarkIngest(b *testing.B) {
	backends := []struct {
		name string
		open func(testing.TB) store.Backend
	}{
		{"sqlite", func(tb testing.TB) store.Backend { return sqlitetest.Open(tb) }},
		{"postgres", func(tb testing.TB) store.Backend { return pgtest.Open(tb) }},
	}
	for _, be := range backends {
		for _, cases := range []int{1, 50, 1000} {
			b.Run(fmt.Sprintf("%s/cases=%d", be.name, cases), func(b *testing.B) {
				benchIngest(b, be.open(b), cases)
			})
		}
	}
}

func benchIngest(b *testing.B, backend store.Backend, cases int) {
	ctx := context.Background()
	s := store.New(backend, store.Config{})
	cat := charting.DefaultCatalogue().Channels()[:40]
	ids := make([]uuid.UUID, cases)
	for i := range ids {
		c, err := s.CreateCase(ctx, "bench", store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: fmt.Sprintf("OR-%d", i), ScheduledStart: time.Now()})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = c.ID
	}
	start := time.Now().Add(-time.Duration(b.N+1) * time.Second).UnixMilli()
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		batches := make([]*charting.SampleBatch, cases)
		for i, id := range ids {
			bt := &charting.SampleBatch{CaseID: id, SourceID: "hlm", Seq: int64(n + 1)}
			for _, ch := range cat {
				v := plausible(ch)
				bt.Series = append(bt.Series, charting.Series{Channel: ch.Key, TimesMs: []int64{start + int64(n)*1000}, Values: []float64{v}})
			}
			batches[i] = bt
		}
		for _, r := range s.AppendSamples(ctx, "bench", batches) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	b.StopTimer()
	samples := float64(b.N * cases * len(cat))
	b.ReportMetric(samples/b.Elapsed().Seconds(), "samples/s")
}

// plausible returns a value inside the channel's range at its resolution.
func plausible(ch charting.Channel) float64 {
	switch {
	case !math.IsInf(ch.Min, 0) && !math.IsInf(ch.Max, 0):
		return math.Round((ch.Min + ch.Max) / 2)
	case !math.IsInf(ch.Min, 0):
		return ch.Min + 1
	default:
		return 0
	}
}
