package ingest_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/ingest"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite/sqlitetest"
)

// BenchmarkCommitter drives the committer as the server does, without
// gRPC: one goroutine per stream (one case each) submits 40-channel batches
// of `secs` seconds of 1 Hz data with up to `window` awaiting their commit,
// as fast as the committer takes them. One op is one batch. It reports the
// sustained rate and the spread of the time from Submit to result (the
// server's part of an acknowledgement), at saturation: a latency figure for
// overload, not for a given rate (clients/loadgen measures that over gRPC).
//
//	PERFUSION_TEST_DATABASE_URL=… go test ./store/ingest -run XXX -bench Committer -benchtime 20000x
func BenchmarkCommitter(b *testing.B) {
	for _, be := range []struct {
		name string
		open func(testing.TB) store.Backend
	}{
		{"sqlite", func(tb testing.TB) store.Backend { return sqlitetest.Open(tb) }},
		{"postgres", func(tb testing.TB) store.Backend { return pgtest.Open(tb) }},
	} {
		for _, streams := range []int{100, 1000} {
			for _, secs := range []int{1, 10} {
				b.Run(fmt.Sprintf("%s/streams=%d/batch=%ds", be.name, streams, secs), func(b *testing.B) {
					benchCommitter(b, be.open(b), streams, secs, 4, ingest.Config{})
				})
			}
		}
	}
}

// BenchmarkCommitterPaced is the hospital load of issue 4 at the store: 1,000
// streams (one case each) sending a 40-channel batch every second, each at
// its own phase, as real gateways do. One op is one second of that load;
// the p99 is the time from Submit to result, the server's share of an
// acknowledgement's latency.
//
//	PERFUSION_TEST_DATABASE_URL=… go test ./store/ingest -run XXX -bench CommitterPaced -benchtime 30x
func BenchmarkCommitterPaced(b *testing.B) {
	benchCommitterPaced(b, pgtest.Open(b), 1000, ingest.Config{})
}

func benchCommitterPaced(b *testing.B, backend store.Backend, streams int, cfg ingest.Config) {
	b.ReportAllocs()
	ctx := context.Background()
	s := store.New(backend, store.Config{})
	chans := charting.DefaultCatalogue().Channels()[:40]
	ids := newCases(b, s, streams)
	c := ingest.New(s, cfg)
	// Start in the future: a start in the past would make every stream
	// whose phase has passed send at once, a burst rather than a rate.
	start := time.Now().Add(100 * time.Millisecond)
	lat := make([][]time.Duration, streams)
	var wg sync.WaitGroup
	b.ResetTimer()
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			phase := time.Duration(i) * time.Second / time.Duration(streams)
			for seq := 1; seq <= b.N; seq++ {
				due := start.Add(time.Duration(seq-1)*time.Second + phase)
				time.Sleep(time.Until(due))
				bt := &charting.SampleBatch{CaseID: id, SourceID: "hlm", Seq: int64(seq), Actor: "gw"}
				for c, ch := range chans {
					bt.Series = append(bt.Series, charting.Series{Channel: ch.Key, TimesMs: []int64{due.Add(-time.Second).UnixMilli()}, Values: []float64{reading(ch, i+c+seq)}})
				}
				at := time.Now()
				t, err := c.Submit(ctx, bt)
				if err == nil {
					var r store.SampleResult
					if r, err = t.Wait(ctx); err == nil {
						err = r.Err
					}
				}
				if err != nil {
					b.Error(err)
					return
				}
				lat[i] = append(lat[i], time.Since(at))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if err := c.Close(ctx); err != nil {
		b.Fatal(err)
	}
	reportLatency(b, lat, len(chans))
}

func benchCommitter(b *testing.B, backend store.Backend, streams, secs, window int, cfg ingest.Config) {
	ctx := context.Background()
	s := store.New(backend, store.Config{})
	chans := charting.DefaultCatalogue().Channels()[:40]
	ids := newCases(b, s, streams)
	// Pre-build every batch so the benchmark measures the committer and
	// the store, not the test's allocation.
	perStream := (b.N + streams - 1) / streams
	start := time.Now().Add(-time.Duration(perStream*secs+1) * time.Second).UnixMilli()
	batches := make([][]*charting.SampleBatch, streams)
	for i, id := range ids {
		for seq := 1; seq <= perStream; seq++ {
			bt := &charting.SampleBatch{CaseID: id, SourceID: "hlm", Seq: int64(seq), Actor: fmt.Sprintf("gw-%d", i)}
			for c, ch := range chans {
				sr := charting.Series{Channel: ch.Key}
				for k := 0; k < secs; k++ {
					sr.TimesMs = append(sr.TimesMs, start+int64((seq-1)*secs+k)*1000)
					sr.Values = append(sr.Values, reading(ch, i+c+seq+k))
				}
				bt.Series = append(bt.Series, sr)
			}
			batches[i] = append(batches[i], bt)
		}
	}
	c := ingest.New(s, cfg)
	lat := make([][]time.Duration, streams)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			type sent struct {
				t  *ingest.Ticket
				at time.Time
			}
			inflight := make(chan sent, window)
			go func() {
				defer close(inflight)
				for _, bt := range batches[i] {
					at := time.Now()
					t, err := c.Submit(ctx, bt)
					if err != nil {
						b.Error(err)
						return
					}
					inflight <- sent{t, at}
				}
			}()
			for f := range inflight {
				r, err := f.t.Wait(ctx)
				if err == nil {
					err = r.Err
				}
				if err != nil {
					b.Error(err)
					return
				}
				lat[i] = append(lat[i], time.Since(f.at))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if err := c.Close(ctx); err != nil {
		b.Fatal(err)
	}
	reportLatency(b, lat, len(chans)*secs)
}

// reportLatency reports the rate and the median and 99th percentile of the
// latencies; each latency stands for one batch of perBatch samples.
func reportLatency(b *testing.B, lat [][]time.Duration, perBatch int) {
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(math.Ceil(p*float64(len(all))))-1)].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(all)*perBatch)/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// reading is a plausible value of ch at its resolution that varies with k.
func reading(ch charting.Channel, k int) float64 {
	base := 0.0
	switch {
	case !math.IsInf(ch.Min, 0) && !math.IsInf(ch.Max, 0):
		base = math.Round((ch.Min + ch.Max) / 2)
	case !math.IsInf(ch.Min, 0):
		base = ch.Min + 10
	}
	res := ch.Resolution
	if res == 0 {
		res = 1
	}
	d := math.Round(-math.Log10(res))
	p := math.Pow(10, max(d, 0))
	return math.Round((base+float64(k%5)*res)*p) / p
}
