package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"perfusion/store"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite/sqlitetest"
)

// BenchmarkSealCase seals a closed case of 4 and of 24 hours, 40 channels
// at 1 Hz in 1-s batches (576,000 and 3,456,000 samples), on both stores,
// and reports how long sealing took (seal-s: verification, building,
// reading back and comparing, the transaction), the sealed data's bytes
// per sample, and in the same run VerifyRecord and a 10-channel, 600-bucket
// trend before and after sealing. One case per backend and length, so run
// it once:
//
//	PERFUSION_TEST_DATABASE_URL=… go test ./store -run XXX -bench SealCase -benchtime 1x
func BenchmarkSealCase(b *testing.B) {
	backends := []struct {
		name string
		open func(testing.TB) store.Backend
	}{
		{"postgres", func(tb testing.TB) store.Backend { return pgtest.Open(tb) }},
		{"sqlite", func(tb testing.TB) store.Backend { return sqlitetest.Open(tb) }},
	}
	for _, be := range backends {
		for _, hours := range []int{4, 24} {
			b.Run(fmt.Sprintf("%s/hours=%d", be.name, hours), func(b *testing.B) {
				ctx := context.Background()
				secs := hours * 3600
				s, q := loadQueryCase(b, be.open(b), secs, 1, 0)
				if _, err := s.CloseCase(ctx, "bench", q.CaseID); err != nil {
					b.Fatal(err)
				}
				for {
					n, err := s.CompactSamples(ctx, 0)
					if err != nil {
						b.Fatal(err)
					}
					if n == 0 {
						break
					}
				}
				timed := func(f func() error) time.Duration {
					t := time.Now()
					if err := f(); err != nil {
						b.Fatal(err)
					}
					return time.Since(t)
				}
				verify := func() error {
					v, err := s.VerifyRecord(ctx, q.CaseID)
					if err == nil && !v.OK() {
						err = fmt.Errorf("verify: %+v", *v.Bad)
					}
					return err
				}
				query := func() error { _, err := s.QuerySamples(ctx, q); return err }
				vBefore, qBefore := timed(verify), timed(query)
				b.ResetTimer()
				var res *store.SealResult
				took := timed(func() (err error) { res, err = s.SealCase(ctx, q.CaseID); return err })
				b.StopTimer()
				vAfter, qAfter := timed(verify), timed(query)
				samples := float64(secs * 40)
				b.ReportMetric(took.Seconds(), "seal-s")
				b.ReportMetric(res.Write.Seconds(), "seal-write-s")
				b.ReportMetric(float64(res.SealedBytes)/samples, "sealed-data-B/sample")
				b.ReportMetric(vBefore.Seconds(), "verify-before-s")
				b.ReportMetric(vAfter.Seconds(), "verify-after-s")
				b.ReportMetric(float64(qBefore.Microseconds())/1000, "trend-before-ms")
				b.ReportMetric(float64(qAfter.Microseconds())/1000, "trend-after-ms")
				b.Logf("%d batches, %d samples: blocks %d B, sealed %d B in %d segments; sealing %v", res.Batches, res.Samples, res.BlockBytes, res.SealedBytes, res.Segments, took)
			})
		}
	}
}
