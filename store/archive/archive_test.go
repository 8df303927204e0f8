package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite/sqlitetest"
)

const (
	perfusionist = "perfusionist-1"
	reviewer     = "reviewer-7"
	gateway      = "gateway-1"
)

// clock is a settable server clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newStore returns a Store over b with a fixed clock whose times carry
// microseconds, so precision is exercised.
func newStore(b store.Backend) (*store.Store, *clock) {
	clk := &clock{t: time.Date(2026, 3, 14, 7, 30, 0, 123456789, time.UTC)}
	return store.New(b, store.Config{Now: clk.now}), clk
}

func details() charting.Details {
	return charting.Details{
		Patient: charting.Patient{MRN: "MRN-TEST-0001", MRNAssigningAuthority: "HOSP", FamilyName: "Testpatient",
			GivenName: "Alex", BirthDate: "1961-04-02", Sex: "female", HeightCm: 170, WeightKg: 70,
			BloodType: "A+", Allergies: []string{"penicillin", "latex <severe> & \"documented\""}},
		Team: charting.Team{Surgeon: charting.StaffMember{StaffID: "S1", DisplayName: "Dr Surgeon"},
			Anesthesiologist: charting.StaffMember{StaffID: "A1", DisplayName: "Dr Anaesthetist"},
			Perfusionists:    []charting.StaffMember{{StaffID: "P1", DisplayName: "Pat Perfusionist"}}},
		Procedure: charting.Procedure{Description: "CABG ×3, LIMA→LAD", SnomedCode: "232717009"},
		Circuit: charting.Circuit{ArterialPump: "centrifugal", Oxygenator: charting.Component{Model: "OXY-1", Lot: "L123"},
			Cannulae: []charting.Cannula{{Site: "aorta", SizeFr: 22}, {Site: "right atrium", SizeFr: 36.5}}, CellSalvage: true},
		Prime: charting.Prime{Components: []charting.PrimeComponent{{Name: "Plasma-Lyte A", VolumeML: 1200}, {Name: "Mannitol 20%", VolumeML: 100}}, RAPVolumeML: 400},
	}
}

// batch builds a batch of n one-second samples on two channels of source's
// devices; values derive from seq so every batch differs.
func batch(caseID uuid.UUID, source string, seq, startMs int64, n int) *charting.SampleBatch {
	a, b := charting.Series{Channel: "pump_flow"}, charting.Series{Channel: "temp_arterial_outlet"}
	if source == "monitor" {
		a.Channel, b.Channel = "map", "heart_rate"
		b.Invalid = make([]bool, n)
	}
	for i := range n {
		t := startMs + int64(i)*1000
		a.TimesMs = append(a.TimesMs, t)
		a.Values = append(a.Values, math.Round((4+float64((seq*7+int64(i))%200)/100)*100)/100)
		b.TimesMs = append(b.TimesMs, t)
		v := math.Round((28+float64((seq+int64(i))%90)/10)*10) / 10
		if b.Invalid != nil {
			v = float64(60 + (seq+int64(i))%40)
			if i == 2 {
				b.Invalid[i], v = true, 0 // a device-invalid reading is kept
			}
		}
		b.Values = append(b.Values, v)
	}
	return &charting.SampleBatch{CaseID: caseID, SourceID: source, Seq: seq, Series: []charting.Series{a, b}}
}

// shape is how far a test case is charted.
type shape int

const (
	planned       shape = iota // created, details updated
	closedEmpty                // closed without charting
	inProgress                 // charted, still open
	signedAddenda              // charted, corrected, closed, signed twice, with an addendum
)

// chartCase builds a case on s: details updates, samples from two sources
// (one with a gap, one in a group commit), entries of several kinds, a late
// entry, a correction, a void, and — depending on sh — close, a correction
// in review, two signatures and an addendum. n is the samples per batch.
func chartCase(t testing.TB, s *store.Store, clk *clock, id uuid.UUID, sh shape, n int) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.CreateCase(ctx, perfusionist, store.NewCase{ID: id, Kind: charting.KindCPB, Site: "MAIN", Room: "OR-3",
		ScheduledStart: clk.now().Add(30 * time.Minute), Details: details()})
	must(err)
	clk.advance(5*time.Minute + 17*time.Microsecond)
	d := c.Details
	d.Patient.WeightKg = 72.4
	_, err = s.UpdateCaseDetails(ctx, perfusionist, c.ID, 1, d, "")
	must(err)
	switch sh {
	case planned:
		return c.ID
	case closedEmpty:
		_, err = s.CloseCase(ctx, perfusionist, c.ID)
		must(err)
		return c.ID
	}
	rec := func(e charting.Entry) *charting.Entry {
		t.Helper()
		e.ID, e.CaseID = uuid.New(), c.ID
		got, _, err := s.RecordEntry(ctx, perfusionist, e)
		must(err)
		clk.advance(time.Minute)
		return got
	}
	appendSamples := func(bs ...*charting.SampleBatch) {
		t.Helper()
		for i, r := range s.AppendSamples(ctx, gateway, bs) {
			if r.Err != nil {
				t.Fatalf("batch %d: %v", i, r.Err)
			}
		}
		clk.advance(3 * time.Second)
	}
	ms := func(back time.Duration) int64 { return clk.now().Add(-back).UnixMilli() }
	// hlm 1, 2, 3 and then 5 (4 never arrives: watermark 3); monitor 1
	// and 2, the latter in one group commit with hlm 3.
	appendSamples(batch(c.ID, "hlm", 1, ms(10*time.Minute), n))
	appendSamples(batch(c.ID, "monitor", 1, ms(10*time.Minute), n))
	rec(charting.Entry{OccurredAt: clk.now().Add(-30 * time.Second), Detail: charting.EntryDetail{Event: &charting.Event{Type: "bypass_on", Comment: "uneventful"}}})
	appendSamples(batch(c.ID, "hlm", 2, ms(9*time.Minute), n))
	dose := rec(charting.Entry{OccurredAt: clk.now(), Detail: charting.EntryDetail{Drug: &charting.DrugDose{Drug: "heparin", Dose: 30000, Unit: "[iU]", Route: "intravenous"}}})
	appendSamples(batch(c.ID, "hlm", 3, ms(8*time.Minute), n), batch(c.ID, "monitor", 2, ms(8*time.Minute), n))
	appendSamples(batch(c.ID, "hlm", 5, ms(6*time.Minute), n))
	note := rec(charting.Entry{OccurredAt: clk.now(), Detail: charting.EntryDetail{Note: &charting.Note{Text: "Wrong patient? \"quoted\" <b>text</b>\nsecond line"}}})
	rec(charting.Entry{OccurredAt: clk.now(), Detail: charting.EntryDetail{LabResult: &charting.LabResult{Analyte: "ph", Value: 7.352, Unit: "[pH]", Site: "arterial", TemperatureCorrection: "alpha_stat"}}})
	rec(charting.Entry{OccurredAt: clk.now(), Detail: charting.EntryDetail{ArtifactMark: &charting.ArtifactMark{Channel: "pump_flow", SourceID: "hlm",
		Start: clk.now().Add(-9*time.Minute + 250*time.Microsecond), End: clk.now().Add(-8 * time.Minute), Reason: "line kinked"}}})
	rec(charting.Entry{OccurredAt: clk.now(), Detail: charting.EntryDetail{Cardioplegia: &charting.CardioplegiaDose{Solution: "del Nido", Route: "antegrade", VolumeML: 1000, TemperatureC: 4, Phase: "induction"}}})
	rec(charting.Entry{OccurredAt: clk.now(), Detail: charting.EntryDetail{Fluid: &charting.Fluid{Kind: "crystalloid", Name: "NaCl 0.9%", VolumeML: 250}}})
	clk.advance(20 * time.Minute)
	late := rec(charting.Entry{OccurredAt: clk.now().Add(-15 * time.Minute), Detail: charting.EntryDetail{Event: &charting.Event{Type: "cross_clamp_on"}}})
	if !late.Late {
		t.Fatal("the late entry is not flagged late")
	}
	fix := charting.Entry{OccurredAt: dose.OccurredAt, Detail: charting.EntryDetail{Drug: &charting.DrugDose{Drug: "heparin", Dose: 25000, Unit: "[iU]", Route: "intravenous"}}}
	_, _, err = s.CorrectEntry(ctx, perfusionist, store.Correction{CaseID: c.ID, EntryID: uuid.New(), Supersedes: dose.ID, Reason: "dose mis-keyed", Replacement: &fix})
	must(err)
	_, _, err = s.CorrectEntry(ctx, perfusionist, store.Correction{CaseID: c.ID, EntryID: uuid.New(), Supersedes: note.ID, Reason: "charted on the wrong case"})
	must(err)
	d.Patient.WeightKg = 71.9
	_, err = s.UpdateCaseDetails(ctx, perfusionist, c.ID, 2, d, "re-weighed")
	must(err)
	if sh == inProgress {
		return c.ID
	}
	clk.advance(time.Hour)
	_, err = s.CloseCase(ctx, perfusionist, c.ID)
	must(err)
	clk.advance(time.Minute)
	fix2 := charting.Entry{OccurredAt: late.OccurredAt.Add(-time.Minute), Detail: charting.EntryDetail{Event: &charting.Event{Type: "cross_clamp_on"}}}
	_, _, err = s.CorrectEntry(ctx, perfusionist, store.Correction{CaseID: c.ID, EntryID: uuid.New(), Supersedes: late.ID, Reason: "time from the anaesthesia record", Replacement: &fix2})
	must(err)
	clk.advance(time.Minute)
	_, _, _, err = s.SignCase(ctx, perfusionist, c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "Pat Perfusionist"})
	must(err)
	clk.advance(2 * time.Hour)
	_, _, err = s.AddAddendum(ctx, perfusionist, c.ID, uuid.New(), "Transferred to ICU on low-dose inotropes.", "hand-off information")
	must(err)
	clk.advance(time.Minute)
	_, _, _, err = s.SignCase(ctx, reviewer, c.ID, store.SignRequest{Meaning: charting.MeaningReviewed, DisplayName: "Rev Reviewer"})
	must(err)
	return c.ID
}

// exportCase exports a case from one snapshot of b.
func exportCase(t testing.TB, b store.Backend, id uuid.UUID) []byte {
	t.Helper()
	var buf bytes.Buffer
	err := b.Snapshot(context.Background(), func(ctx context.Context, r store.Reader) error {
		buf.Reset()
		return Export(ctx, r, id, &buf)
	})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	return buf.Bytes()
}

func verifyOK(t testing.TB, b store.Backend, id uuid.UUID) *store.Verification {
	t.Helper()
	v, err := store.New(b, store.Config{}).VerifyRecord(context.Background(), id)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !v.OK() {
		t.Fatalf("verify: first bad link %+v", *v.Bad)
	}
	return v
}

// sameRecord checks that dst holds case id exactly as src does.
func sameRecord(t *testing.T, src, dst store.Backend, id uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	ss, ds := store.New(src, store.Config{}), store.New(dst, store.Config{})
	want, err := ss.GetCase(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	v := verifyOK(t, dst, id)
	if v.Head != want.Head.Hash || v.LinksVerified != want.Head.Seq {
		t.Fatalf("imported record verifies to head %d %s, source head is %d %s", v.LinksVerified, v.Head, want.Head.Seq, want.Head.Hash)
	}
	sv := verifyOK(t, src, id)
	if sv.EntriesVerified != v.EntriesVerified || sv.SampleBatchesVerified != v.SampleBatchesVerified || sv.SamplesVerified != v.SamplesVerified {
		t.Fatalf("verified %+v after import, %+v at the source", *v, *sv)
	}
	same := func(what string, a, b any, err1, err2 error) {
		t.Helper()
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v / %v", what, err1, err2)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s differ:\nsource:   %+v\nimported: %+v", what, a, b)
		}
	}
	got, err := ds.GetCase(ctx, id)
	same("cases", want, got, nil, err)
	for _, history := range []bool{true, false} {
		we, err1 := ss.ListEntries(ctx, id, history)
		ge, err2 := ds.ListEntries(ctx, id, history)
		same(fmt.Sprintf("entries (history %v)", history), we, ge, err1, err2)
	}
	wd, err1 := src.DetailsVersions(ctx, id)
	gd, err2 := dst.DetailsVersions(ctx, id)
	same("details versions", wd, gd, err1, err2)
	wl, err1 := ss.AuditTrail(ctx, id, 0, 0)
	gl, err2 := ds.AuditTrail(ctx, id, 0, 0)
	same("ledgers", wl, gl, err1, err2)
	wi, err1 := src.IdentityReconciliations(ctx, id)
	gi, err2 := dst.IdentityReconciliations(ctx, id)
	same("identity reconciliations", wi, gi, err1, err2)
	ww, err1 := src.SourceWatermarks(ctx, id)
	gw, err2 := dst.SourceWatermarks(ctx, id)
	same("source watermarks", ww, gw, err1, err2)
	wq, err1 := ss.QuerySamples(ctx, store.SampleQuery{CaseID: id})
	gq, err2 := ds.QuerySamples(ctx, store.SampleQuery{CaseID: id})
	same("raw samples", wq, gq, err1, err2)
	wq, err1 = ss.QuerySamples(ctx, store.SampleQuery{CaseID: id, Buckets: 7})
	gq, err2 = ds.QuerySamples(ctx, store.SampleQuery{CaseID: id, Buckets: 7})
	same("downsampled samples", wq, gq, err1, err2)
	if a, b := exportCase(t, src, id), exportCase(t, dst, id); !bytes.Equal(a, b) {
		t.Fatalf("the imported case exports differently:\nsource:\n%s\nimported:\n%s", a, b)
	}
}

// targets are the backends an archive is imported into: SQLite always,
// PostgreSQL when pgtest has a server (it skips the subtest otherwise).
var targets = []struct {
	name string
	open func(t *testing.T) store.Backend
}{
	{"sqlite", func(t *testing.T) store.Backend { return sqlitetest.Open(t) }},
	{"postgres", func(t *testing.T) store.Backend { return pgtest.Open(t) }},
}

func importOK(t testing.TB, dst store.Backend, archive []byte) uuid.UUID {
	t.Helper()
	id, err := Import(context.Background(), dst, bytes.NewReader(archive))
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	return id
}

func TestSQLiteToPostgres(t *testing.T) {
	dst := pgtest.Open(t)
	src := sqlitetest.Open(t)
	s, clk := newStore(src)
	id := chartCase(t, s, clk, uuid.New(), signedAddenda, 20)
	archive := exportCase(t, src, id)
	if got := importOK(t, dst, archive); got != id {
		t.Fatalf("import returned case %s, want %s", got, id)
	}
	sameRecord(t, src, dst, id)
	c, _ := dst.GetCase(context.Background(), id)
	if c.Status != charting.StatusSigned || len(c.Signatures) != 2 || c.DetailsVersion != 3 {
		t.Fatalf("imported case: status %s, %d signatures, details version %d", c.Status, len(c.Signatures), c.DetailsVersion)
	}
	// And back: PostgreSQL → SQLite gives the same record again.
	back := sqlitetest.Open(t)
	importOK(t, back, exportCase(t, dst, id))
	sameRecord(t, src, back, id)
}

func TestSQLiteToSQLite(t *testing.T) {
	for _, tc := range []struct {
		name string
		sh   shape
	}{{"Planned", planned}, {"ClosedWithoutCharting", closedEmpty}, {"InProgress", inProgress}, {"SignedWithAddendum", signedAddenda}} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := sqlitetest.Open(t), sqlitetest.Open(t)
			s, clk := newStore(src)
			id := chartCase(t, s, clk, uuid.New(), tc.sh, 10)
			importOK(t, dst, exportCase(t, src, id))
			sameRecord(t, src, dst, id)
		})
	}
}

// TestIdentityReconciliationArchived: a signed case with an identity
// reconciliation moves with it and verifies; an archive whose
// reconciliation was edited is refused at its link.
func TestIdentityReconciliationArchived(t *testing.T) {
	src := sqlitetest.Open(t)
	s, clk := newStore(src)
	id := chartCase(t, s, clk, uuid.New(), signedAddenda, 5)
	rec, err := s.ReconcileIdentity(context.Background(), "registrar-1", id,
		store.IdentityUpdate{MRN: "MRN-ARCH-9", AssigningAuthority: "HOSP", GivenName: "Robin", Reason: "EHR merge"})
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	archive := exportCase(t, src, id)
	if !bytes.Contains(archive, []byte(`{"type":"identity","case_id":"`+id.String())) ||
		!bytes.Contains(archive, []byte(`"identity_reconciliations":1`)) {
		t.Fatalf("archive lacks the reconciliation:\n%s", archive)
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			dst := tg.open(t)
			importOK(t, dst, archive)
			sameRecord(t, src, dst, id)
		})
	}
	altered := tamper(t, archive, `"type":"identity"`, replace(`"mrn":"MRN-ARCH-9"`, `"mrn":"MRN-ARCH-8"`))
	_, err = Import(context.Background(), sqlitetest.Open(t), bytes.NewReader(altered))
	var ve *VerificationError
	if !errors.As(err, &ve) || ve.Bad.Seq != rec.Seq || ve.Bad.Kind != charting.LinkIdentity || ve.Bad.Problem != charting.ProblemContentAltered {
		t.Fatalf("altered reconciliation: %v, want content altered at link %d", err, rec.Seq)
	}
}

// TestManyLinks moves a case whose ledger spans several pages of Export's
// link reads and whose batches fill several spool buffers.
func TestManyLinks(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	for _, target := range targets {
		t.Run(target.name, func(t *testing.T) {
			ctx := context.Background()
			dst, src := target.open(t), sqlitetest.Open(t)
			s, clk := newStore(src)
			id := chartCase(t, s, clk, uuid.New(), planned, 0)
			start := clk.now().Add(-4 * time.Hour).UnixMilli()
			var seq int64
			for _, n := range []int{900, 900, 400} {
				var bs []*charting.SampleBatch
				for range n {
					seq++
					bs = append(bs, batch(id, "hlm", seq, start+seq*5000, 5))
				}
				for _, r := range s.AppendSamples(ctx, gateway, bs) {
					if r.Err != nil {
						t.Fatal(r.Err)
					}
				}
				clk.advance(time.Second)
			}
			if _, err := s.CloseCase(ctx, perfusionist, id); err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := s.SignCase(ctx, perfusionist, id, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "P P"}); err != nil {
				t.Fatal(err)
			}
			archive := exportCase(t, src, id)
			if n := bytes.Count(archive, []byte(`{"type":"link"`)); n <= 2*linkPage {
				t.Fatalf("only %d links: Export's paging is not exercised", n)
			}
			importOK(t, dst, archive)
			sameRecord(t, src, dst, id)
		})
	}
}

func TestImportToleratesCRLFAndBlankLines(t *testing.T) {
	src, dst := sqlitetest.Open(t), sqlitetest.Open(t)
	s, clk := newStore(src)
	id := chartCase(t, s, clk, uuid.New(), signedAddenda, 5)
	archive := bytes.ReplaceAll(exportCase(t, src, id), []byte("\n"), []byte("\r\n"))
	importOK(t, dst, append(archive, "\r\n  \n"...))
	sameRecord(t, src, dst, id)
}

func TestArchiveFormat(t *testing.T) {
	src := sqlitetest.Open(t)
	s, clk := newStore(src)
	id := chartCase(t, s, clk, uuid.New(), signedAddenda, 5)
	lines := strings.Split(strings.TrimSuffix(string(exportCase(t, src, id)), "\n"), "\n")
	want := fmt.Sprintf(`{"type":"archive","format":"perfusion-case-archive","version":1,"case_id":"%s"}`, id)
	if lines[0] != want {
		t.Fatalf("first line %s, want %s", lines[0], want)
	}
	var types []string
	for _, l := range lines {
		typ := strings.SplitN(strings.TrimPrefix(l, `{"type":"`), `"`, 2)[0]
		if len(types) == 0 || types[len(types)-1] != typ {
			types = append(types, typ)
		}
	}
	if got := strings.Join(types, " "); got != "archive case details entry samples signature link end" {
		t.Fatalf("line types in order: %s", got)
	}
	c, _ := s.GetCase(context.Background(), id)
	end := fmt.Sprintf(`{"type":"end","details":3,"entries":12,"sample_batches":6,"samples":60,"signatures":2,"links":%d,"head_seq":%d,"head_hash":"%s"}`,
		c.Head.Seq, c.Head.Seq, c.Head.Hash)
	if last := lines[len(lines)-1]; last != end {
		t.Fatalf("end line %s, want %s", last, end)
	}
}

// tamper returns archive with the first line containing marker edited by
// edit; it fails the test when no line contains marker.
func tamper(t *testing.T, archive []byte, marker string, edit func(line string) string) []byte {
	t.Helper()
	lines := strings.SplitAfter(string(archive), "\n")
	for i, l := range lines {
		if strings.Contains(l, marker) {
			lines[i] = edit(l)
			if lines[i] == l {
				t.Fatalf("edit of the line with %q changed nothing", marker)
			}
			return []byte(strings.Join(lines, ""))
		}
	}
	t.Fatalf("no archive line contains %q", marker)
	return nil
}

func replace(old, new string) func(string) string {
	return func(l string) string { return strings.Replace(l, old, new, 1) }
}

func drop(string) string { return "" }

func linkSeq(t *testing.T, b store.Backend, id uuid.UUID, kind charting.LinkKind, ref string) int64 {
	t.Helper()
	links, err := b.Links(context.Background(), id, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Kind == kind && l.Ref == ref {
			return l.Seq
		}
	}
	t.Fatalf("no %s link %s", kind, ref)
	return 0
}

func TestImportRefusesAlteredArchive(t *testing.T) {
	ctx := context.Background()
	src, dst := sqlitetest.Open(t), sqlitetest.Open(t)
	s, clk := newStore(src)
	id := chartCase(t, s, clk, uuid.New(), signedAddenda, 5)
	archive := exportCase(t, src, id)
	entries, _ := src.Entries(ctx, id)
	var dose charting.Entry
	for _, e := range entries {
		if e.Detail.Drug != nil && e.Supersedes == uuid.Nil {
			dose = e
		}
	}
	sigs, _ := src.Signatures(ctx, id)
	c, _ := src.GetCase(ctx, id)
	started := c.StartedAt.Format(time.RFC3339Nano)
	for _, tc := range []struct {
		name    string
		archive []byte
		// want is the refusal: a bad link (seq, problem) or, with seq -1,
		// a format error mentioning msg.
		seq     int64
		problem charting.Problem
		msg     string
	}{
		{"EntryValue", tamper(t, archive, `"entry_id":"`+dose.ID.String(), replace(`"dose":30000`, `"dose":3000`)),
			linkSeq(t, src, id, charting.LinkEntry, dose.ID.String()), charting.ProblemContentAltered, ""},
		{"EntryAuthor", tamper(t, archive, `"entry_id":"`+dose.ID.String(), replace(`"author":"perfusionist-1"`, `"author":"perfusionist-2"`)),
			linkSeq(t, src, id, charting.LinkEntry, dose.ID.String()), charting.ProblemContentAltered, ""},
		{"SampleBatchDropped", tamper(t, archive, `"source_id":"monitor","seq":2,`, drop),
			linkSeq(t, src, id, charting.LinkSamples, "monitor/2"), charting.ProblemContentMissing, ""},
		{"SampleBlock", tamper(t, archive, `"source_id":"hlm","seq":2,`, func(l string) string {
			i := strings.Index(l, `"block":"`) + len(`"block":"`) + 12
			b := []byte(l)
			b[i] = map[bool]byte{true: 'B', false: 'A'}[b[i] == 'A']
			return string(b)
		}), linkSeq(t, src, id, charting.LinkSamples, "hlm/2"), "", ""},
		{"SampleSummary", tamper(t, archive, `"source_id":"hlm","seq":3,`, replace(`"sample_count":10`, `"sample_count":9`)),
			linkSeq(t, src, id, charting.LinkSamples, "hlm/3"), charting.ProblemContentAltered, ""},
		{"SampleActor", tamper(t, archive, `"source_id":"hlm","seq":3,`, replace(`"actor":"gateway-1"`, `"actor":"gateway-2"`)),
			linkSeq(t, src, id, charting.LinkSamples, "hlm/3"), charting.ProblemContentAltered, ""},
		{"DetailsReason", tamper(t, archive, `"reason":"re-weighed"`, replace(`re-weighed`, `re-weighted`)),
			linkSeq(t, src, id, charting.LinkDetails, "3"), charting.ProblemContentAltered, ""},
		{"DetailsDropped", tamper(t, archive, `"type":"details","version":2`, drop), -1, "", "version 3 where version 2"},
		{"SignatureName", tamper(t, archive, `"type":"signature"`, replace(`Pat Perfusionist`, `Pat Perfusionlst`)),
			sigs[0].Number, charting.ProblemContentAltered, ""},
		{"CaseRoom", tamper(t, archive, `"type":"case"`, replace(`"room":"OR-3"`, `"room":"OR-4"`)),
			1, charting.ProblemContentAltered, ""},
		{"CaseStatus", tamper(t, archive, `"type":"case"`, replace(`"status":"signed"`, `"status":"closed"`)),
			c.Head.Seq, charting.ProblemHeadMismatch, ""},
		{"CaseStartedAt", tamper(t, archive, `"type":"case"`, replace(`"started_at":"`+started, `"started_at":"2020-01-01T00:00:00Z`)),
			c.Head.Seq, charting.ProblemHeadMismatch, ""},
		{"LinkActor", tamper(t, archive, `"type":"link","seq":4,`, replace(`"actor":"`, `"actor":"x`)),
			4, charting.ProblemContentAltered, ""},
		{"LinkDropped", tamper(t, archive, `"type":"link","seq":4,`, drop), 5, charting.ProblemChainBroken, ""},
		{"EndDropped", tamper(t, archive, `"type":"end"`, drop), -1, "", "no end line"},
		{"CountsAltered", tamper(t, archive, `"type":"end"`, replace(`"signatures":2`, `"signatures":1`)), -1, "", "counts"},
		{"UnknownMember", tamper(t, archive, `"entry_id":"`+dose.ID.String(), replace(`"type":"entry",`, `"type":"entry","extra":1,`)), -1, "", "unknown field"},
		{"NotUTC", tamper(t, archive, `"entry_id":"`+dose.ID.String(), func(l string) string {
			i := strings.Index(l, `"recorded_at":"`) + len(`"recorded_at":"`)
			j := i + strings.Index(l[i:], `Z"`)
			ts, _ := time.Parse(time.RFC3339Nano, l[i:j+1])
			return l[:i] + ts.In(time.FixedZone("", 3600)).Format(time.RFC3339Nano) + l[j+1:]
		}), -1, "", "not in UTC"},
		{"EntriesReordered", func() []byte {
			lines := strings.SplitAfter(string(archive), "\n")
			for i := range lines {
				if strings.HasPrefix(lines[i], `{"type":"entry"`) && strings.HasPrefix(lines[i+1], `{"type":"entry"`) &&
					!strings.Contains(lines[i+1], `"supersedes"`) {
					lines[i], lines[i+1] = lines[i+1], lines[i]
					break
				}
			}
			return []byte(strings.Join(lines, ""))
		}(), linkSeq(t, src, id, charting.LinkEntry, entries[0].ID.String()), charting.ProblemChainBroken, ""},
		{"LinesOutOfOrder", func() []byte {
			lines := strings.SplitAfter(string(archive), "\n")
			// The last details line moves after the first entry line.
			out := append([]string{}, lines[:4]...)
			out = append(out, lines[5], lines[4])
			return []byte(strings.Join(append(out, lines[6:]...), ""))
		}(), -1, "", `"details" line after a "entry" line`},
		{"NotAnArchive", []byte("{\"type\":\"case\"}\n"), -1, "", "not a perfusion case archive"},
		{"OtherVersion", tamper(t, archive, `"type":"archive"`, replace(`"version":1`, `"version":2`)), -1, "", "version 2 is not supported"},
		{"Empty", nil, -1, "", "empty input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Import(ctx, dst, bytes.NewReader(tc.archive))
			if err == nil {
				t.Fatalf("import of an altered archive succeeded (case %s)", got)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			var ve *VerificationError
			var fe *FormatError
			switch {
			case tc.seq < 0:
				if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("error %v, want a format error about %q", err, tc.msg)
				}
			case !errors.As(err, &ve):
				t.Fatalf("error %v, want a verification error at link %d", err, tc.seq)
			case ve.Bad.Seq != tc.seq || (tc.problem != "" && ve.Bad.Problem != tc.problem):
				t.Fatalf("refused at link %d (%s), want link %d (%s): %v", ve.Bad.Seq, ve.Bad.Problem, tc.seq, tc.problem, err)
			}
			t.Logf("refused: %v", err)
			if _, err := dst.GetCase(ctx, id); !errors.Is(err, charting.ErrNotFound) {
				t.Fatalf("after a refused import GetCase gives %v, want not found", err)
			}
		})
	}
	// The pristine archive still imports into the same database.
	importOK(t, dst, archive)
	sameRecord(t, src, dst, id)
}

func TestReimportIsNoop(t *testing.T) {
	for _, target := range targets {
		t.Run(target.name, func(t *testing.T) {
			ctx := context.Background()
			dst, src := target.open(t), sqlitetest.Open(t)
			s, clk := newStore(src)
			id := chartCase(t, s, clk, uuid.New(), signedAddenda, 5)
			archive := exportCase(t, src, id)
			importOK(t, dst, archive)
			before := exportCase(t, dst, id)
			if got := importOK(t, dst, archive); got != id {
				t.Fatalf("re-import returned %s, want %s", got, id)
			}
			if after := exportCase(t, dst, id); !bytes.Equal(before, after) {
				t.Fatal("re-import changed the record")
			}
			// A re-import of an altered copy is still refused, not taken for a no-op.
			altered := tamper(t, archive, `"type":"signature"`, replace(`Pat Perfusionist`, `Pat Perfusionlst`))
			if _, err := Import(ctx, dst, bytes.NewReader(altered)); !errors.Is(err, ErrInvalid) {
				t.Fatalf("re-import of an altered archive: %v, want refused", err)
			}
			sameRecord(t, src, dst, id)
		})
	}
}

func TestImportConflict(t *testing.T) {
	for _, target := range targets {
		t.Run(target.name, func(t *testing.T) {
			ctx := context.Background()
			id := uuid.New()
			dst, a, b := target.open(t), sqlitetest.Open(t), sqlitetest.Open(t)
			sa, clkA := newStore(a)
			sb, clkB := newStore(b)
			chartCase(t, sa, clkA, id, inProgress, 5)
			clkB.advance(time.Hour) // another case, by chance under the same id
			chartCase(t, sb, clkB, id, planned, 5)
			importOK(t, dst, exportCase(t, a, id))
			_, err := Import(ctx, dst, bytes.NewReader(exportCase(t, b, id)))
			if !errors.Is(err, charting.ErrConflict) {
				t.Fatalf("import of another case under an existing id: %v, want conflict", err)
			}
			t.Logf("refused: %v", err)
			sameRecord(t, a, dst, id)
		})
	}
}

// failingBackend fails the transaction when the ledger link failAt is
// appended, as a database error half-way through an import would.
type failingBackend struct {
	store.Backend
	failAt int64
}

type failingTx struct {
	store.Tx
	failAt int64
}

var errInjected = errors.New("injected database failure")

func (f *failingBackend) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	return f.Backend.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		return fn(ctx, &failingTx{Tx: tx, failAt: f.failAt})
	})
}

func (f *failingTx) AppendLink(ctx context.Context, l *charting.Link) error {
	if l.Seq == f.failAt {
		return errInjected
	}
	return f.Tx.AppendLink(ctx, l)
}

func TestFailedImportStoresNothing(t *testing.T) {
	for _, target := range targets {
		t.Run(target.name, func(t *testing.T) {
			ctx := context.Background()
			dst, src := target.open(t), sqlitetest.Open(t)
			s, clk := newStore(src)
			id := chartCase(t, s, clk, uuid.New(), signedAddenda, 5)
			c, _ := src.GetCase(ctx, id)
			archive := exportCase(t, src, id)
			_, err := Import(ctx, &failingBackend{Backend: dst, failAt: c.Head.Seq}, bytes.NewReader(archive))
			if !errors.Is(err, errInjected) || errors.Is(err, ErrInvalid) {
				t.Fatalf("import with a failing database: %v, want the database's error", err)
			}
			if _, err := dst.GetCase(ctx, id); !errors.Is(err, charting.ErrNotFound) {
				t.Fatalf("after a failed import GetCase gives %v, want not found", err)
			}
			if e, err := dst.Entries(ctx, id); err != nil || len(e) != 0 {
				t.Fatalf("after a failed import: %d entries stored, %v", len(e), err)
			}
			importOK(t, dst, archive)
			sameRecord(t, src, dst, id)
		})
	}
}

// retryingBackend runs every ReadWrite function twice: the first run is
// rolled back as if the database had asked for a retry. (storetest.Retrying
// does the same for the conformance suite; storetest imports this package,
// so this internal test cannot import it.)
type retryingBackend struct {
	store.Backend
	retries int
}

var errRetry = errors.New("simulated serialization failure")

func (r *retryingBackend) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	err := r.Backend.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		if err := fn(ctx, tx); err != nil {
			return err
		}
		return errRetry
	})
	if !errors.Is(err, errRetry) {
		return err
	}
	r.retries++
	return r.Backend.ReadWrite(ctx, fn)
}

func TestImportSurvivesRetriedTransaction(t *testing.T) {
	src := sqlitetest.Open(t)
	dst := &retryingBackend{Backend: sqlitetest.Open(t)}
	s, clk := newStore(src)
	id := chartCase(t, s, clk, uuid.New(), signedAddenda, 5)
	importOK(t, dst, exportCase(t, src, id))
	if n := dst.retries; n != 1 {
		t.Fatalf("%d transactions retried, want 1", n)
	}
	sameRecord(t, src, dst.Backend, id)
}

// writingReader is a Reader that records an entry on the case the first
// time the ledger is read, as a concurrent writer could.
type writingReader struct {
	store.Reader
	write func()
}

func (w *writingReader) Links(ctx context.Context, caseID uuid.UUID, after int64, limit int) ([]charting.Link, error) {
	if w.write != nil {
		w.write()
		w.write = nil
	}
	return w.Reader.Links(ctx, caseID, after, limit)
}

func TestExportDetectsConcurrentWrite(t *testing.T) {
	ctx := context.Background()
	src := sqlitetest.Open(t)
	s, clk := newStore(src)
	id := chartCase(t, s, clk, uuid.New(), inProgress, 5)
	r := &writingReader{Reader: src, write: func() {
		if _, _, err := s.RecordEntry(ctx, perfusionist, charting.Entry{ID: uuid.New(), CaseID: id, OccurredAt: clk.now(),
			Detail: charting.EntryDetail{Note: &charting.Note{Text: "concurrent"}}}); err != nil {
			t.Fatal(err)
		}
	}}
	var buf bytes.Buffer
	if err := Export(ctx, r, id, &buf); !errors.Is(err, charting.ErrStale) {
		t.Fatalf("export while the case was written: %v, want stale", err)
	}
	if _, err := Import(ctx, sqlitetest.Open(t), &buf); !errors.Is(err, ErrInvalid) {
		t.Fatalf("import of the partial export: %v, want refused", err)
	}
}

func TestExportUnknownCase(t *testing.T) {
	var buf bytes.Buffer
	if err := Export(context.Background(), sqlitetest.Open(t), uuid.New(), &buf); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("export of an unknown case: %v, want not found", err)
	}
}

// lazyBackend opens its backend on the first transaction, so fuzz inputs
// that fail before reaching the database cost no database.
type lazyBackend struct {
	store.Backend
	open func() store.Backend
}

func (l *lazyBackend) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	if l.Backend == nil {
		l.Backend = l.open()
	}
	return l.Backend.ReadWrite(ctx, fn)
}

// FuzzImport feeds arbitrary bytes to Import. It must never panic; an
// import that succeeds must leave a case that verifies, and importing the
// same bytes again must succeed as a no-op.
func FuzzImport(f *testing.F) {
	src := sqlitetest.Open(f)
	s, clk := newStore(src)
	id := chartCase(f, s, clk, uuid.New(), signedAddenda, 3)
	archive := exportCase(f, src, id)
	f.Add(archive)
	lines := bytes.SplitAfter(archive, []byte("\n"))
	f.Add(bytes.Join(lines[:3], nil))
	f.Add(bytes.Join(lines[:len(lines)-2], nil))
	plannedID := chartCase(f, s, clk, uuid.New(), planned, 3)
	f.Add(exportCase(f, src, plannedID))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		dst := &lazyBackend{open: func() store.Backend { return sqlitetest.Open(t) }}
		got, err := Import(ctx, dst, bytes.NewReader(data))
		if err != nil {
			return
		}
		v := verifyOK(t, dst.Backend, got)
		c, err := dst.GetCase(ctx, got)
		if err != nil {
			t.Fatal(err)
		}
		if v.Head != c.Head.Hash {
			t.Fatalf("imported case verifies to %s, its head is %s", v.Head, c.Head.Hash)
		}
		if again, err := Import(ctx, dst, bytes.NewReader(data)); err != nil || again != got {
			t.Fatalf("re-import: %s, %v", again, err)
		}
	})
}

// TestImportCaseReportsAlreadyPresent: ImportCase says what it wrote, and
// that a second import of the same archive found the case and wrote
// nothing.
func TestImportCaseReportsAlreadyPresent(t *testing.T) {
	src, dst := sqlitetest.Open(t), sqlitetest.Open(t)
	s, clk := newStore(src)
	id := chartCase(t, s, clk, uuid.New(), signedAddenda, 5)
	archive := exportCase(t, src, id)
	ctx := context.Background()
	first, err := ImportCase(ctx, dst, bytes.NewReader(archive), ImportOptions{})
	if err != nil || first.CaseID != id || first.AlreadyPresent || first.Links < 5 || first.Entries < 5 || first.Signatures < 1 {
		t.Fatalf("first import: %+v, %v", first, err)
	}
	again, err := ImportCase(ctx, dst, bytes.NewReader(archive), ImportOptions{})
	if err != nil || !again.AlreadyPresent || again.CaseID != id || again.Head != first.Head {
		t.Fatalf("second import: %+v, %v", again, err)
	}
	sameRecord(t, src, dst, id)
}
