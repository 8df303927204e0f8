package storetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
	"perfusion/store"
	"perfusion/store/archive"
)

// sealedCase charts a closed case whose device data exercises what the
// sealed form must give back: two segments of 1-s batches (more than an
// hour), a second source with 5-s batches, invalid readings (one batch's
// flags all false), an out-of-range value, batches stored out of order and
// a gap, a batch from a clock reset to 1970, an entry between batches, and
// trend chunks. It returns the case and the number of pump batches.
func sealedCase(t *testing.T, s *store.Store, clk *clock) (*charting.Case, int) {
	t.Helper()
	ctx := context.Background()
	c := createCase(t, s, "OR-SEAL")
	const pumpBatches = 3700 // over sealSegmentBatches (3600): two segments
	start := clk.now().Add(-(pumpBatches + 60) * time.Second).Truncate(time.Second).UnixMilli()
	var group []*charting.SampleBatch
	send := func() {
		for i, r := range s.AppendSamples(ctx, "gateway-1", group) {
			if r.Err != nil {
				t.Fatalf("append %s: %v", charting.SampleRef(group[i].SourceID, group[i].Seq), r.Err)
			}
		}
		group = group[:0]
		clk.advance(1 * time.Second)
	}
	for i := range pumpBatches {
		b := batch(c.ID, "hlm", int64(i+1), start+int64(i)*1000, 1)
		b.Series = append(b.Series, charting.Series{Channel: "pump_speed", TimesMs: []int64{start + int64(i)*1000 + 7}, Values: []float64{float64(2000 + i%50)}})
		if i == 100 {
			b.Series[0].Values[0] = 12 // out of the plausible range: stored, flagged
		}
		group = append(group, b)
		if i%5 == 4 {
			mon := int64(i/5 + 1)
			if mon == 20 || mon == 21 { // 21 arrives before 20
				mon = 41 - mon
			}
			if mon == 600 {
				continue // a gap: never sent
			}
			m := charting.Series{Channel: "map"}
			for k := range 5 {
				m.TimesMs = append(m.TimesMs, start+(mon-1)*5000+int64(k)*1000+250)
				m.Values = append(m.Values, float64(60+(mon+int64(k))%30))
			}
			switch mon % 7 {
			case 0:
				m.Invalid = []bool{false, true, false, false, true}
				m.Values[1], m.Values[4] = 0, 0
			case 3:
				m.Invalid = make([]bool, 5) // present, all false
			}
			group = append(group, &charting.SampleBatch{CaseID: c.ID, SourceID: "mon", Seq: mon, Series: []charting.Series{m}})
		}
		if len(group) >= 200 {
			send()
		}
		if i == 1800 {
			send()
			record(t, s, noteEntry(c.ID, clk.now().Add(-time.Minute), "cross-clamp on"))
		}
	}
	group = append(group, batch(c.ID, "reset", 1, 5_000, 3)) // a clock reset to 1970
	send()
	if _, err := s.CompactSamples(ctx, 600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CloseCase(ctx, actor, c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CompactSamples(ctx, 600); err != nil {
		t.Fatal(err)
	}
	c, err := s.GetCase(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	return c, pumpBatches
}

// sealedReads is everything a sealed case must read back unchanged,
// rendered as text so a difference can be shown.
func sealedReads(t *testing.T, s *store.Store, c *charting.Case) map[string]string {
	t.Helper()
	ctx := context.Background()
	b := s.Backend()
	out := make(map[string]string)
	v, err := s.VerifyRecord(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	out["verify"] = fmt.Sprintf("%+v %v", *v, v.Bad)
	var arch bytes.Buffer
	if err := b.Snapshot(ctx, func(ctx context.Context, r store.Reader) error { return archive.Export(ctx, r, c.ID, &arch) }); err != nil {
		t.Fatal(err)
	}
	out["archive"] = arch.String()
	links, err := b.Links(ctx, c.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	out["links"] = fmt.Sprint(len(links), links)
	for _, p := range [][2]int{{0, 5}, {1, 3}, {250, 10}, {255, 1}, {256, 2}, {1000, 300}, {int(c.Head.Seq) - 3, 10}, {int(c.Head.Seq), 5}} {
		ls, err := b.Links(ctx, c.ID, int64(p[0]), p[1])
		if err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("links after %d limit %d", p[0], p[1])] = fmt.Sprint(ls)
		if len(ls) > 0 {
			trail, err := s.AuditTrail(ctx, c.ID, int64(p[0]), p[1])
			if err != nil {
				t.Fatal(err)
			}
			out[fmt.Sprintf("trail %d %d", p[0], p[1])] = fmt.Sprint(trail)
		}
	}
	first := c.CreatedAt.Add(-time.Hour).UnixMilli()
	mid := first + 2*3600_000
	for name, f := range map[string]store.SampleFilter{
		"all":         {},
		"mon":         {SourceID: "mon"},
		"range":       {FromMs: mid - 600_000, ToMs: mid},
		"after":       {After: map[string]int64{"hlm": 3000, "mon": 100}},
		"summaries":   {WithoutBlocks: true},
		"implausible": {WithoutBlocks: true, Implausible: &store.DeviceWindowFilter{BeginsMs: c.Begins().UnixMilli(), AheadMs: charting.MaxDeviceClockAhead.Milliseconds()}},
	} {
		var sb strings.Builder
		err := b.ScanSampleBatches(ctx, c.ID, f, func(r *store.SampleBatchRow) error {
			fmt.Fprintf(&sb, "%s/%d %s %s %d %d %d %s\n", r.SourceID, r.Seq, r.RecordedAt.UTC().Format(time.RFC3339Nano), r.Actor,
				r.MinTimeMs, r.MaxTimeMs, r.SampleCount, hex.EncodeToString(r.Block))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		out["scan "+name] = sb.String()
	}
	for i, q := range []store.SampleQuery{
		{Buckets: 600},
		{Buckets: 100, Channels: []string{"pump_flow", "map"}},
		{Buckets: 37, SourceID: "mon"},
		{Buckets: 50, FromMs: mid - 3_600_000, ToMs: mid + 60_000, Channels: []string{"pump_speed"}},
		{Buckets: 10, FromMs: 1, ToMs: 60_000}, // the 1970 clock
		{FromMs: mid - 60_000, ToMs: mid},
		{FromMs: 1, ToMs: 60_000},
		{SourceID: "mon", Channels: []string{"map"}, RawLimit: 1 << 20},
	} {
		q.CaseID = c.ID
		res, err := s.QuerySamples(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("query %d", i)] = queryText(res)
	}
	sums, err := s.SourceSummaries(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	out["sources"] = fmt.Sprintf("%+v", sums)
	keys := []store.SampleKey{{CaseID: c.ID, SourceID: "hlm", Seq: 1}, {CaseID: c.ID, SourceID: "hlm", Seq: 3650},
		{CaseID: c.ID, SourceID: "mon", Seq: 20}, {CaseID: c.ID, SourceID: "mon", Seq: 600}, {CaseID: c.ID, SourceID: "reset", Seq: 1}}
	blocks, err := b.ReadSampleBlocks(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		out[fmt.Sprintf("block %s/%d", k.SourceID, k.Seq)] = hex.EncodeToString(blocks[k])
	}
	items, err := s.WatchContent(ctx, c.ID, links[:min(len(links), 40)], 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	out["watch"] = fmt.Sprintf("%+v", items)
	return out
}

// queryText renders a query result with every bit of every value.
func queryText(r *store.SampleQueryResult) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "width %d\n", r.WidthMs)
	for _, k := range sortedKeys(r.Raw) {
		sr := r.Raw[k]
		fmt.Fprintf(&sb, "raw %v %v %v %v %v\n", k, sr.TimesMs, bitsOf(sr.Values), sr.Invalid, r.TimeImplausible[k])
	}
	for _, k := range sortedKeys(r.Downsampled) {
		for _, b := range r.Downsampled[k] {
			fmt.Fprintf(&sb, "bucket %v %d %d %x %x %x %d %d\n", k, b.StartMs, b.Count, math.Float64bits(b.Min), math.Float64bits(b.Max),
				math.Float64bits(b.Mean), b.InvalidCount, b.OutOfRangeCount)
		}
	}
	return sb.String()
}

func sortedKeys[V any](m map[store.SeriesKey]V) []store.SeriesKey {
	var ks []store.SeriesKey
	for k := range m {
		ks = append(ks, k)
	}
	slicesSortKeys(ks)
	return ks
}

func slicesSortKeys(ks []store.SeriesKey) {
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && (ks[j].SourceID < ks[j-1].SourceID || ks[j].SourceID == ks[j-1].SourceID && ks[j].Channel < ks[j-1].Channel); j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
}

func bitsOf(vs []float64) []uint64 {
	out := make([]uint64, len(vs))
	for i, v := range vs {
		out[i] = math.Float64bits(v)
	}
	return out
}

func diffReads(t *testing.T, before, after map[string]string) {
	t.Helper()
	for k, want := range before {
		if got := after[k]; got != want {
			i := 0
			for i < len(got) && i < len(want) && got[i] == want[i] {
				i++
			}
			lo := max(0, i-200)
			t.Errorf("%s differs after sealing at byte %d:\n got …%s…\nwant …%s…", k, i, got[lo:min(len(got), i+200)], want[lo:min(len(want), i+200)])
		}
	}
}

// testSealedReadsIdentical seals a closed case and requires every read of
// it — verification, the archive, links whole and paged, the audit trail,
// batch scans with every filter, raw and bucketed queries, source
// summaries, blocks by key, the watch feed — to give the same bytes as
// before; then the rows it replaced are gone, a resend is still a
// duplicate, and the case goes on (a signature after sealing) and
// verifies.
func testSealedReadsIdentical(t *testing.T, h *Harness) {
	s, b, clk := newStore(t, h)
	ctx := context.Background()
	c, _ := sealedCase(t, s, clk)
	if _, err := s.SealCase(ctx, uuid.New()); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("sealing an unknown case: %v", err)
	}
	before := sealedReads(t, s, c)
	res, err := s.SealCase(ctx, c.ID)
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	t.Logf("sealed %d batches, %d samples in %d segments: blocks %d B, sealed %d B, %v", res.Batches, res.Samples, res.Segments, res.BlockBytes, res.SealedBytes, res.Took)
	if res.Segments < 2 || res.Batches < 4000 {
		t.Fatalf("sealed %+v, want two segments or more and every batch", res)
	}
	hdr, err := b.SealedCase(ctx, c.ID)
	if err != nil || hdr == nil || hdr.Batches != res.Batches || hdr.Samples != res.Samples {
		t.Fatalf("sealed case row %+v, %v", hdr, err)
	}
	after := sealedReads(t, s, c)
	diffReads(t, before, after)

	// The rows it replaced are gone: a DELETE that matches no row fires no
	// trigger, one that matches any is refused.
	for _, q := range []string{`DELETE FROM sample_batches WHERE case_id = $1`, `DELETE FROM sample_chunks WHERE case_id = $1`,
		`DELETE FROM ledger WHERE case_id = $1 AND kind = 'samples'`} {
		// (A serving role without DELETE privilege is refused before any
		// row is looked at; the owner's run of the suite checks this.)
		if err := h.Exec(t, b, q, idArg(b, c.ID)); err != nil && !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s: %v (rows are left)", q, err)
		}
	}
	for _, q := range []string{`DELETE FROM ledger WHERE case_id = $1`, `DELETE FROM sealed_segments WHERE case_id = $1`,
		`DELETE FROM sealed_cases WHERE case_id = $1`, `UPDATE sealed_segments SET data = data WHERE case_id = $1`} {
		if err := h.Exec(t, b, q, idArg(b, c.ID)); err == nil {
			t.Errorf("%s: not refused", q)
		}
	}
	if _, err := s.SealCase(ctx, c.ID); !errors.Is(err, store.ErrAlreadySealed) {
		t.Fatalf("sealing twice: %v", err)
	}
	// A resend is acknowledged as the duplicate it is; a new batch is
	// refused as for any closed case.
	resend := batch(c.ID, "hlm", 7, 0, 1)
	scan := func(f store.SampleFilter) (out []*store.SampleBatchRow) {
		if err := b.ScanSampleBatches(ctx, c.ID, f, func(r *store.SampleBatchRow) error { out = append(out, r); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	rows := scan(store.SampleFilter{SourceID: "hlm", After: map[string]int64{"hlm": 6}})
	series, err := samplecodec.DecodeBlock(rows[0].Block)
	if err != nil || rows[0].Seq != 7 {
		t.Fatalf("batch 7: %v %v", rows[0].Seq, err)
	}
	resend.Series = series
	r := s.AppendSamples(ctx, "gateway-1", []*charting.SampleBatch{resend})[0]
	if r.Err != nil || !r.Duplicate {
		t.Fatalf("resend to a sealed case: %+v", r)
	}
	// Also one stored above a gap in its source (mon/600 never came).
	monRows := scan(store.SampleFilter{SourceID: "mon", After: map[string]int64{"mon": 700}})
	monSeries, err := samplecodec.DecodeBlock(monRows[0].Block)
	if err != nil {
		t.Fatal(err)
	}
	monResend := &charting.SampleBatch{CaseID: c.ID, SourceID: "mon", Seq: monRows[0].Seq, Series: monSeries}
	if r := s.AppendSamples(ctx, "gateway-1", []*charting.SampleBatch{monResend})[0]; r.Err != nil || !r.Duplicate || r.Watermark != 599 {
		t.Fatalf("resend above a gap to a sealed case: %+v", r)
	}
	monResend.Series[0].Values[0]++
	if r := s.AppendSamples(ctx, "gateway-1", []*charting.SampleBatch{monResend})[0]; !errors.Is(r.Err, charting.ErrConflict) {
		t.Fatalf("a different batch under a sealed one's number: %+v", r)
	}
	next := batch(c.ID, "hlm", 9999, time.Now().UnixMilli(), 1)
	wantPrecondition(t, "new batch to a sealed case", s.AppendSamples(ctx, "gateway-1", []*charting.SampleBatch{next})[0].Err)
	// The case goes on: a signature links after the sealed links.
	if _, _, _, err := s.SignCase(ctx, reviewer, c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "R"}); err != nil {
		t.Fatal(err)
	}
	v := verifyOK(t, s, c.ID)
	if v.SampleBatchesVerified != res.Batches || v.SamplesVerified != res.Samples {
		t.Fatalf("verified %d batches, %d samples; sealed %d, %d", v.SampleBatchesVerified, v.SamplesVerified, res.Batches, res.Samples)
	}
	// The compactor has nothing to do for it.
	if n, err := s.CompactSamples(ctx, 600); err != nil || n != 0 {
		t.Fatalf("compact after sealing: %d runs, %v", n, err)
	}
}

// testSealedArchiveRoundTrip imports a sealed case's archive into a fresh
// store, where it is stored as batches again, and seals it there: the
// archives of all three are the same bytes.
func testSealedArchiveRoundTrip(t *testing.T, h *Harness) {
	s, b, clk := newStore(t, h)
	ctx := context.Background()
	c, _ := sealedCase(t, s, clk)
	if _, err := s.SealCase(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	export := func(b store.Backend) []byte {
		var buf bytes.Buffer
		if err := b.Snapshot(ctx, func(ctx context.Context, r store.Reader) error { return archive.Export(ctx, r, c.ID, &buf) }); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	sealed := export(b)
	s2, b2, _ := newStore(t, h)
	if _, err := archive.ImportCase(ctx, b2, bytes.NewReader(sealed), archive.ImportOptions{}); err != nil {
		t.Fatalf("import: %v", err)
	}
	if got := export(b2); !bytes.Equal(got, sealed) {
		t.Fatal("the imported case exports differently")
	}
	// Importing it again where it is sealed is the idempotent no-op it is
	// for any case present.
	if _, err := s2.SealCase(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if got := export(b2); !bytes.Equal(got, sealed) {
		t.Fatal("the imported case, sealed again, exports differently")
	}
	imp, err := archive.ImportCase(ctx, b2, bytes.NewReader(sealed), archive.ImportOptions{})
	if err != nil || !imp.AlreadyPresent {
		t.Fatalf("import into the sealed copy: %+v %v", imp, err)
	}
	verifyOK(t, s2, c.ID)
}

// sealedColumn is a value column row of a sealed case, decoded.
type sealedColumn struct {
	part   store.SealedPart
	tcol   int
	frames []samplecodec.Frame
	times  []int64
	vs     []float64
	inv    []bool
}

// readColumn reads and decodes one value column of a sealed case's
// segment (the row formats of store/sealedform.go).
func readColumn(t *testing.T, b store.Backend, caseID uuid.UUID, seg int, source, channel string) sealedColumn {
	t.Helper()
	ctx := context.Background()
	var col sealedColumn
	var timeRow []byte
	err := b.ScanSealedParts(ctx, caseID, store.SealedFilter{Segs: []int{seg}, SourceID: source}, func(p *store.SealedPart) error {
		switch {
		case p.SourceID == source && p.Channel == "":
			timeRow = p.Data
		case p.SourceID == source && p.Channel == channel:
			col.part = *p
		}
		return nil
	})
	if err != nil || timeRow == nil || col.part.Data == nil {
		t.Fatalf("segment %d %s/%s: %v", seg, source, channel, err)
	}
	d := col.part.Data
	if d[0] != 1 {
		t.Fatalf("value column version %d", d[0])
	}
	tc, k := binary.Uvarint(d[1:])
	col.tcol = int(tc)
	// The source's time columns: flags, count, then length-prefixed
	// columns.
	rest := timeRow[1:]
	n, k2 := binary.Uvarint(rest)
	rest = rest[k2:]
	for i := range int(n) {
		l, k3 := binary.Uvarint(rest)
		rest = rest[k3:]
		if i == col.tcol {
			col.times, col.frames, err = samplecodec.DecodeTimeColumn(rest[:l], nil)
			if err != nil {
				t.Fatal(err)
			}
		}
		rest = rest[l:]
	}
	col.vs, col.inv, err = samplecodec.DecodeValueColumn(d[1+k:], col.frames, nil)
	if err != nil {
		t.Fatal(err)
	}
	return col
}

// write re-encodes a changed column the way the sealer does.
func (col sealedColumn) write(resolution float64) []byte {
	d := []byte{1}
	d = binary.AppendUvarint(d, uint64(col.tcol))
	return samplecodec.AppendValueColumn(d, col.frames, col.vs, col.inv, resolution)
}

// testSealedTamperDetected changes what a sealed case holds behind the
// service's back, as an administrator could, and requires verification to
// name the batch each change affects: one value in a value column, a
// column that no longer decodes, a column removed. The database refuses
// every change to the sealed rows to anyone else.
func testSealedTamperDetected(t *testing.T, h *Harness) {
	s, b, clk := newStore(t, h)
	ctx := context.Background()
	c, _ := sealedCase(t, s, clk)
	if _, err := s.SealCase(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, s, c.ID)
	update := `UPDATE sealed_segments SET data = $1 WHERE case_id = $2 AND seg = $3 AND source_id = $4 AND channel = $5`
	col := readColumn(t, b, c.ID, 0, "hlm", "pump_flow")
	orig := col.part.Data
	if err := h.Exec(t, b, update, []byte{1}, idArg(b, c.ID), 0, "hlm", "pump_flow"); err == nil {
		t.Fatal("the database let a sealed column be changed")
	}

	// One value of batch hlm/1234 (one sample per batch and channel, the
	// batches in time order: sample 1233 of the column).
	col.vs[1233] += 0.01
	h.Tamper(t, b, update, col.write(0.01), idArg(b, c.ID), 0, "hlm", "pump_flow")
	bad := verifyBad(t, s, c.ID)
	wantBad(t, bad, linkOf(t, s, c.ID, charting.LinkSamples, "hlm/1234"), charting.LinkSamples, "hlm/1234", charting.ProblemContentAltered)

	// Put back, it verifies again.
	col.vs[1233] -= 0.01
	h.Tamper(t, b, update, col.write(0.01), idArg(b, c.ID), 0, "hlm", "pump_flow")
	verifyOK(t, s, c.ID)

	// A column that does not decode: its batches' content is unreadable,
	// reported at the segment's first batch of that source.
	h.Tamper(t, b, update, orig[:len(orig)/2], idArg(b, c.ID), 0, "hlm", "pump_flow")
	bad = verifyBad(t, s, c.ID)
	if bad.Problem != charting.ProblemContentUnreadable || bad.Kind != charting.LinkSamples {
		t.Fatalf("truncated column reported as %+v", *bad)
	}
	h.Tamper(t, b, update, orig, idArg(b, c.ID), 0, "hlm", "pump_flow")
	verifyOK(t, s, c.ID)

	// In the second segment, a reading of the monitor marked invalid that
	// was not.
	col2 := readColumn(t, b, c.ID, 1, "mon", "map")
	if col2.inv == nil {
		col2.inv = make([]bool, len(col2.vs))
	}
	i := 3
	for col2.inv[i] {
		i++
	}
	col2.inv[i] = true
	h.Tamper(t, b, update, col2.write(1), idArg(b, c.ID), 1, "mon", "map")
	bad = verifyBad(t, s, c.ID)
	if bad.Problem != charting.ProblemContentAltered || bad.Kind != charting.LinkSamples || !strings.HasPrefix(bad.Ref, "mon/") {
		t.Fatalf("a flag changed in the second segment reported as %+v", *bad)
	}
	h.Tamper(t, b, update, col2.part.Data, idArg(b, c.ID), 1, "mon", "map")
	verifyOK(t, s, c.ID)

	// A column removed: its batches cannot be rebuilt.
	h.Tamper(t, b, `DELETE FROM sealed_segments WHERE case_id = $1 AND seg = $2 AND source_id = $3 AND channel = $4`, idArg(b, c.ID), 1, "hlm", "pump_speed")
	bad = verifyBad(t, s, c.ID)
	if bad.Problem != charting.ProblemContentUnreadable || !strings.HasPrefix(bad.Ref, "hlm/") {
		t.Fatalf("a removed column reported as %+v", *bad)
	}
}

// testSealedRemovalRefused: outside the sealing step the database refuses
// to remove anything, whatever a client writes first.
func testSealedRemovalRefused(t *testing.T, h *Harness) {
	s, b, clk := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-R")
	appendOne(t, s, batch(c.ID, "hlm", 1, clk.now().Add(-time.Minute).UnixMilli(), 5))
	if _, err := s.CloseCase(ctx, actor, c.ID); err != nil {
		t.Fatal(err)
	}
	id := idArg(b, c.ID)
	sealing := "true"
	if b.Name() == "sqlite" {
		sealing = "1"
	}
	// A sealing flag cannot outlive its transaction.
	if err := h.Exec(t, b, `INSERT INTO sealed_cases (case_id, format, sealed_at, segments, batches, samples, links, sealing)
		VALUES ($1, 1, $2, 1, 1, 10, 1, `+sealing+`)`, id, sealedAtArg(b)); err == nil {
		t.Fatal("a sealing flag was committed")
	}
	for _, q := range []string{`DELETE FROM sample_batches WHERE case_id = $1`, `DELETE FROM ledger WHERE case_id = $1 AND kind = 'samples'`,
		`DELETE FROM ledger WHERE case_id = $1`} {
		if err := h.Exec(t, b, q, id); err == nil {
			t.Errorf("%s: not refused", q)
		}
	}
	// An open case is not sealed.
	open := createCase(t, s, "OR-O")
	appendOne(t, s, batch(open.ID, "hlm", 1, clk.now().Add(-time.Minute).UnixMilli(), 5))
	_, err := s.SealCase(ctx, open.ID)
	wantPrecondition(t, "sealing an open case", err)
	// A case that does not verify is not sealed, and stays as it is.
	h.Tamper(t, b, `UPDATE sample_batches SET sample_count = 4 WHERE case_id = $1`, id)
	if _, err := s.SealCase(ctx, c.ID); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("sealing a damaged case: %v", err)
	}
	if hdr, err := b.SealedCase(ctx, c.ID); err != nil || hdr != nil {
		t.Fatalf("a damaged case was sealed: %+v %v", hdr, err)
	}
}

func sealedAtArg(b store.Backend) any {
	if b.Name() == "sqlite" {
		return time.Now().UnixMicro()
	}
	return time.Now()
}
