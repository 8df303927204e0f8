package storetest

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"perfusion/charting"
	"perfusion/store"
)

// chunkedCase stores 25 ten-second batches of "hlm" and 4 of "mon" in an
// open case, and returns it with the start of its samples.
func chunkedCase(t *testing.T, s *store.Store) (*charting.Case, int64) {
	t.Helper()
	c := createCase(t, s, "OR-1")
	start := time.Now().Add(-time.Hour).Truncate(time.Minute).UnixMilli()
	for seq := int64(1); seq <= 25; seq++ {
		appendOne(t, s, batch(c.ID, "hlm", seq, start+(seq-1)*10_000, 10))
	}
	for seq := int64(1); seq <= 4; seq++ {
		appendOne(t, s, batch(c.ID, "mon", seq, start+(seq-1)*10_000, 10))
	}
	return c, start
}

func compact(t *testing.T, s *store.Store, runBatches, want int) {
	t.Helper()
	n, err := s.CompactSamples(context.Background(), runBatches)
	if err != nil || n != want {
		t.Fatalf("compaction built %d runs (%v), want %d", n, err, want)
	}
}

// testSampleRuns checks the compactor: complete runs only, idempotent, the
// short final run once the case is closed; trends the same before and
// after; every row of a run counted; the record still verifies.
func testSampleRuns(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	ctx := context.Background()
	c, start := chunkedCase(t, s)
	q := store.SampleQuery{CaseID: c.ID, FromMs: start, ToMs: start + 250_000, Buckets: 7}
	before, err := s.QuerySamples(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	compact(t, s, 10, 2) // hlm 1–10, 11–20; hlm 21–25 and mon 1–4 are short
	compact(t, s, 10, 0)
	if _, err := s.CloseCase(ctx, actor, c.ID); err != nil {
		t.Fatal(err)
	}
	compact(t, s, 10, 2) // the short final runs of a closed case
	compact(t, s, 10, 0)

	type runKey struct {
		src      string
		from, to int64
	}
	rows := make(map[runKey][]string)
	samples := 0
	err = b.ScanSampleChunks(ctx, c.ID, store.ChunkFilter{}, func(r *store.SampleChunkRow) error {
		k := runKey{r.SourceID, r.SeqFrom, r.SeqTo}
		rows[k] = append(rows[k], r.Channel)
		if r.Channel != "" {
			samples += r.SampleCount
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []runKey{{"hlm", 1, 10}, {"hlm", 11, 20}, {"hlm", 21, 25}, {"mon", 1, 4}}
	if len(rows) != len(want) {
		t.Fatalf("runs %v, want %v", rows, want)
	}
	for _, k := range want {
		if got := rows[k]; len(got) != 3 || got[0] != "" || got[1] != "pump_flow" || got[2] != "temp_arterial_outlet" {
			t.Fatalf("run %v has rows %q, want the marker then both channels", k, got)
		}
	}
	if samples != (25+4)*10*2 {
		t.Fatalf("runs hold %d samples, want %d", samples, (25+4)*10*2)
	}

	after, err := s.QuerySamples(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Downsampled) != 4 || after.WidthMs != before.WidthMs {
		t.Fatalf("after compaction: %d series, width %d; before: %d, %d", len(after.Downsampled), after.WidthMs, len(before.Downsampled), before.WidthMs)
	}
	for k, wb := range before.Downsampled {
		gb := after.Downsampled[k]
		if len(gb) != len(wb) {
			t.Fatalf("%v: %d buckets after compaction, %d before", k, len(gb), len(wb))
		}
		for i := range wb {
			x, y := wb[i], gb[i]
			if x.StartMs != y.StartMs || x.Count != y.Count || math.Float64bits(x.Mean) != math.Float64bits(y.Mean) || x.Min != y.Min || x.Max != y.Max {
				t.Fatalf("%v bucket %d: %+v after compaction, %+v before", k, i, y, x)
			}
		}
	}
	v := verifyOK(t, s, c.ID)
	if v.SampleBatchesVerified != 29 {
		t.Fatalf("verified %d batches, want 29", v.SampleBatchesVerified)
	}
}

// testTamperRuns checks that a run altered in the database is reported at
// the link of its first batch: a channel's block swapped, and a forged
// marker that would hide batches from trends.
func testTamperRuns(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	c, _ := chunkedCase(t, s)
	compact(t, s, 10, 2)
	id := c.ID.String()
	for _, q := range []string{
		`UPDATE sample_chunks SET sample_count = 0 WHERE case_id = $1`,
		`DELETE FROM sample_chunks WHERE case_id = $1`,
	} {
		if err := h.Exec(t, b, q, id); err == nil {
			t.Errorf("the database accepted %q", q)
		}
	}
	verifyOK(t, s, c.ID)

	// Batches 21–25 claimed by a run that holds nothing: a trend would skip
	// them.
	h.Tamper(t, b, `INSERT INTO sample_chunks (case_id, source_id, seq_from, seq_to, channel, min_time_ms, max_time_ms, sample_count, block)
		VALUES ($1, 'hlm', 21, 25, '', 0, 0, 0, $2)`, id, []byte{})
	ref := charting.SampleRef("hlm", 21)
	wantBad(t, verifyBad(t, s, c.ID), linkOf(t, s, c.ID, charting.LinkSamples, ref), charting.LinkSamples, ref, charting.ProblemContentAltered)

	// A channel of run 11–20 given the other channel's samples.
	s2, b2, _ := newStore(t, h)
	c2, _ := chunkedCase(t, s2)
	compact(t, s2, 10, 2)
	h.Tamper(t, b2, `UPDATE sample_chunks SET block = (SELECT block FROM sample_chunks
		WHERE case_id = $1 AND source_id = 'hlm' AND seq_to = 20 AND channel = 'temp_arterial_outlet')
		WHERE case_id = $1 AND source_id = 'hlm' AND seq_to = 20 AND channel = 'pump_flow'`, c2.ID.String())
	ref = charting.SampleRef("hlm", 11)
	wantBad(t, verifyBad(t, s2, c2.ID), linkOf(t, s2, c2.ID, charting.LinkSamples, ref), charting.LinkSamples, ref, charting.ProblemContentAltered)

	// A source whose batch no longer decodes cannot be compacted; the
	// others still are, and the error names the case and source.
	s3, b3, _ := newStore(t, h)
	c3, _ := chunkedCase(t, s3)
	if _, err := s3.CloseCase(context.Background(), actor, c3.ID); err != nil {
		t.Fatal(err)
	}
	h.Tamper(t, b3, `UPDATE sample_batches SET block = $1 WHERE case_id = $2 AND source_id = 'hlm' AND seq = 3`, []byte{0xff, 0x00}, c3.ID.String())
	n, err := s3.CompactSamples(context.Background(), 10)
	if err == nil || n != 1 || !strings.Contains(err.Error(), c3.ID.String()) || !strings.Contains(err.Error(), "source hlm") {
		t.Fatalf("compaction with an unreadable batch: %d runs, %v; want mon's run and an error naming the case and hlm", n, err)
	}
}
