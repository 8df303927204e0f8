package store_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/postgres"
	"perfusion/store/postgres/pgtest"
)

// BenchmarkFootprint measures what PostgreSQL stores per sample for 1 Hz
// numeric device data: 40 channels per case, gateways sending a batch every
// `batch` seconds, all cases' batches of one interval committed together as
// the server's group commit does. One op is one batch interval for every
// case. Sizes are pg_total_relation_size (heap, TOAST, free-space and
// visibility maps, every index) of each table a sample batch grows, taken
// before and after and divided by the samples written. Values are a random
// walk at each channel's resolution, so the codec sees realistic data
// rather than constants. Run for about an hour of data:
//
//	PERFUSION_TEST_DATABASE_URL=… go test ./store -run XXX -bench Footprint -benchtime 3600x
//
// (-benchtime counts seconds of data; each sub-benchmark divides it by its
// batch length, so every batch length stores the same data.)
//
// The cases are then closed and compacted, as a finished case ends up:
// every batch also copied into a trend chunk run (store/chunks.go).
// "B/sample" is the record as acknowledged (sample_batches and ledger);
// "chunks-B/sample" what the runs add; "total-B/sample" both.
func BenchmarkFootprint(b *testing.B) {
	for _, secs := range []int{1, 5, 7, 10, 15, 30, 60} {
		b.Run(fmt.Sprintf("batch=%ds", secs), func(b *testing.B) {
			benchFootprint(b, pgtest.Open(b), 20, secs)
		})
	}
}

// footprintTables are the relations that grow with sample batches. cases
// and sample_sources hold a row per case and per source whose updates leave
// dead versions until vacuum reuses them; they are reported but do not grow
// with the data.
var footprintTables = []string{"sample_batches", "ledger", "sample_chunks", "cases", "sample_sources", "sealed_segments", "sealed_cases"}

func relationSizes(b *testing.B, pg *postgres.Backend) map[string]int64 {
	out := make(map[string]int64)
	for _, t := range footprintTables {
		var n int64
		if err := pg.Pool().QueryRow(context.Background(), `SELECT pg_total_relation_size($1::regclass)`, t).Scan(&n); err != nil {
			b.Fatal(err)
		}
		out[t] = n
	}
	return out
}

func benchFootprint(b *testing.B, pg *postgres.Backend, cases, secs int) {
	ctx := context.Background()
	s := store.New(pg, store.Config{})
	chans := charting.DefaultCatalogue().Channels()[:40]
	ids := make([]uuid.UUID, cases)
	for i := range ids {
		c, err := s.CreateCase(ctx, "bench", store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: fmt.Sprintf("OR-%d", i), ScheduledStart: time.Now()})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = c.ID
	}
	walk := newWalk(chans, cases)
	intervals := max(1, b.N/secs)
	start := time.Now().Add(-time.Duration(intervals*secs+1) * time.Second).Truncate(time.Second).UnixMilli()
	before := relationSizes(b, pg)
	b.ResetTimer()
	samples := 0
	for n := 0; n < intervals; n++ {
		batches := make([]*charting.SampleBatch, cases)
		for i, id := range ids {
			bt := &charting.SampleBatch{CaseID: id, SourceID: "hlm-1", Seq: int64(n + 1)}
			t0 := start + int64(n*secs)*1000
			for c := range chans {
				sr := charting.Series{Channel: chans[c].Key}
				for k := 0; k < secs; k++ {
					sr.TimesMs = append(sr.TimesMs, t0+int64(k)*1000)
					sr.Values = append(sr.Values, walk.next(i, c))
				}
				bt.Series = append(bt.Series, sr)
				samples += secs
			}
			batches[i] = bt
		}
		for _, r := range s.AppendSamples(ctx, "gateway-or-01", batches) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	b.StopTimer()
	for _, id := range ids {
		if _, err := s.CloseCase(ctx, "bench", id); err != nil {
			b.Fatal(err)
		}
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
	after := relationSizes(b, pg)
	var grown, chunks int64
	var parts []string
	for _, t := range footprintTables {
		d := after[t] - before[t]
		parts = append(parts, fmt.Sprintf("%s %.2f", t, float64(d)/float64(samples)))
		switch t {
		case "sample_batches", "ledger":
			grown += d
		case "sample_chunks":
			chunks += d
		}
	}
	b.ReportMetric(float64(grown)/float64(samples), "B/sample")
	b.ReportMetric(float64(chunks)/float64(samples), "chunks-B/sample")
	b.ReportMetric(float64(grown+chunks)/float64(samples), "total-B/sample")
	b.ReportMetric(float64(samples), "samples")
	b.Logf("%d samples in %d-s batches; bytes per sample by table: %s", samples, secs, strings.Join(parts, ", "))
	var heap, toast, idx, block float64
	err := pg.Pool().QueryRow(ctx, `SELECT pg_relation_size('sample_batches'),
		coalesce(pg_total_relation_size(nullif(reltoastrelid, 0)), 0), pg_indexes_size('sample_batches'),
		(SELECT avg(octet_length(block)) FROM sample_batches)
		FROM pg_class WHERE oid = 'sample_batches'::regclass`).Scan(&heap, &toast, &idx, &block)
	if err != nil {
		b.Fatal(err)
	}
	rows := float64(intervals * cases)
	b.Logf("per batch: block %.0f B; sample_batches heap %.0f, TOAST %.0f, indexes %.0f B", block, heap/rows, toast/rows, idx/rows)

	// Sealed: every case rewritten into its sealed form (sealed.go), the
	// space of the rows it removed given back (VACUUM FULL; in service,
	// autovacuum makes it free for new rows instead), and everything the
	// cases' device data now takes measured: sealed segments, the seal
	// rows, what is left of the record's tables, every index.
	var took time.Duration
	var sealedBytes int64
	for _, id := range ids {
		res, err := s.SealCase(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		took += res.Took
		sealedBytes += res.SealedBytes
	}
	for _, t := range []string{"sample_batches", "ledger", "sample_chunks"} {
		if _, err := pg.Pool().Exec(ctx, "VACUUM FULL "+t); err != nil {
			b.Fatal(err)
		}
	}
	var left, leftLinks int64
	if err := pg.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM sample_batches), (SELECT count(*) FROM ledger)`).Scan(&left, &leftLinks); err != nil {
		b.Fatal(err)
	}
	b.Logf("after sealing: %d batch rows, %d ledger rows", left, leftLinks)
	sealed := relationSizes(b, pg)
	var all int64
	parts = parts[:0]
	for _, t := range footprintTables {
		d := sealed[t] - before[t]
		parts = append(parts, fmt.Sprintf("%s %.3f", t, float64(d)/float64(samples)))
		if t != "cases" && t != "sample_sources" {
			all += d
		}
	}
	b.ReportMetric(float64(all)/float64(samples), "sealed-B/sample")
	b.ReportMetric(float64(sealedBytes)/float64(samples), "sealed-data-B/sample")
	b.ReportMetric(took.Seconds()/float64(len(ids)), "s/seal")
	b.Logf("sealed: %.3f bytes per sample in all (data alone %.3f); by table: %s; sealing took %v per case of %d samples",
		float64(all)/float64(samples), float64(sealedBytes)/float64(samples), strings.Join(parts, ", "), took/time.Duration(len(ids)), samples/len(ids))
}

// walk produces per-case, per-channel random walks at each channel's
// resolution, inside its plausible range: device data that changes a little
// from one reading to the next.
type walk struct {
	chans []charting.Channel
	cur   [][]float64
	rng   *rand.Rand
}

func newWalk(chans []charting.Channel, cases int) *walk {
	w := &walk{chans: chans, rng: rand.New(rand.NewPCG(7, 11))}
	for range cases {
		row := make([]float64, len(chans))
		for c, ch := range chans {
			row[c] = plausible(ch)
		}
		w.cur = append(w.cur, row)
	}
	return w
}

func (w *walk) next(i, c int) float64 {
	ch := w.chans[c]
	res := ch.Resolution
	if res == 0 {
		res = 1
	}
	v := w.cur[i][c] + float64(w.rng.IntN(5)-2)*res
	if v < ch.Min || v > ch.Max {
		v = w.cur[i][c]
	}
	// Keep the value an exact decimal at the resolution, as devices send it.
	if d := math.Round(-math.Log10(res)); d > 0 {
		p := math.Pow(10, d)
		v = math.Round(v*p) / p
	}
	w.cur[i][c] = v
	return v
}
