package export_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/clients/pumpsim/sim"
	"perfusion/export"
	"perfusion/export/document"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
)

// A printed record is checked three ways: its bytes against golden files
// (rendering is deterministic), its text as pdftotext extracts it against
// every section and the values the record holds, and by eye as page images
// (README "The printed record").

// docCase is a simulated case charted through a real store.
type docCase struct {
	name    string
	cfg     sim.Config
	details charting.Details
	every   time.Duration // device data period: 1 s, or thinner for a day-long run
}

var docStart = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

// docCases are the three golden records: an adult CPB case, a neonate with
// a deep hypothermic arrest, a 24-hour VA-ECMO run.
func docCases() []docCase {
	team := charting.Team{Surgeon: charting.StaffMember{StaffID: "surg.nowak", DisplayName: "Dr Piotr Nowak"},
		Anesthesiologist: charting.StaffMember{StaffID: "anes.ito", DisplayName: "Dr Keiko Ito"},
		Perfusionists: []charting.StaffMember{{StaffID: "perf.kowalski", DisplayName: "Anna Kowalski, CCP"},
			{StaffID: "perf.osei", DisplayName: "Kwame Osei, CCP"}}}
	circuit := func(pump, oxy string) charting.Circuit {
		return charting.Circuit{ArterialPump: pump, Reservoir: "hard_shell",
			Oxygenator:     charting.Component{Model: oxy, Lot: "2611A0457", UDI: "(01)08033588031234(17)281031(10)2611A0457"},
			ArterialFilter: charting.Component{Model: "AF 40", Lot: "F2610-118"},
			Cannulae:       []charting.Cannula{{Site: "ascending aorta", SizeFr: 22}, {Site: "right atrium", SizeFr: 36}},
			CellSalvage:    true, Ultrafiltration: true, CardioplegiaSystem: "del Nido 4:1"}
	}
	return []docCase{
		{name: "adult", every: time.Second,
			cfg: sim.Config{Seed: 11, HeightCm: 162, WeightKg: 58, Duration: 3 * time.Hour},
			details: charting.Details{
				Patient: charting.Patient{MRN: "00012345", MRNAssigningAuthority: "GENHOSP", FamilyName: "Żółkiewska-Müller",
					GivenName: "Zoë", BirthDate: "1956-03-14", Sex: "female", HeightCm: 162, WeightKg: 58, BloodType: "A Rh(D) positive",
					Allergies: []string{"penicillin"}, BSAFormula: charting.BSAMosteller},
				Team: team, Procedure: charting.Procedure{Description: "Aortic valve replacement", EncounterID: "V20261127-0042"},
				Circuit: circuit("centrifugal", "Inspire 8F"),
				Prime:   charting.Prime{Components: []charting.PrimeComponent{{Name: "Plasma-Lyte A", VolumeML: 1200}, {Name: "Mannitol 20%", VolumeML: 200}}, RAPVolumeML: 300},
			}},
		{name: "neonate", every: time.Second,
			cfg: sim.Config{Seed: 12, HeightCm: 50, WeightKg: 3.2, Duration: 3 * time.Hour, Arrest: 30 * time.Minute, BSAFormula: charting.BSAHaycock},
			details: charting.Details{
				Patient: charting.Patient{MRN: "00067890", MRNAssigningAuthority: "GENHOSP", FamilyName: "Okonkwo", GivenName: "Baby girl",
					BirthDate: "2026-11-20", Sex: "female", HeightCm: 50, WeightKg: 3.2, BSAFormula: charting.BSAHaycock},
				Team: team, Procedure: charting.Procedure{Description: "Arterial switch operation", EncounterID: "V20261127-0043"},
				Circuit: circuit("roller", "Kids D100"),
				Prime:   charting.Prime{Components: []charting.PrimeComponent{{Name: "Plasma-Lyte A", VolumeML: 150}, {Name: "PRBC", VolumeML: 100}}},
			}},
		{name: "ecmo", every: 10 * time.Second,
			cfg: sim.Config{Seed: 13, HeightCm: 178, WeightKg: 84, ECMO: true, Duration: 24 * time.Hour},
			details: charting.Details{
				Patient: charting.Patient{MRN: "00024680", MRNAssigningAuthority: "GENHOSP", FamilyName: "Lindqvist", GivenName: "Erik",
					BirthDate: "1971-06-02", Sex: "male", HeightCm: 178, WeightKg: 84, BSAFormula: charting.BSADuBois},
				Team: team, Procedure: charting.Procedure{Description: "Veno-arterial ECMO for cardiogenic shock", EncounterID: "V20261127-0044"},
				Circuit: circuit("centrifugal", "Quadrox-iD"),
				Prime:   charting.Prime{Components: []charting.PrimeComponent{{Name: "Plasma-Lyte A", VolumeML: 600}}},
			}},
	}
}

// simEntries turns a simulated operator event into entries, as pumpsim
// charts them.
func simEntries(ev sim.Event, at time.Time) []charting.EntryDetail {
	var out []charting.EntryDetail
	switch ev.Kind {
	case sim.KindEvent:
		out = append(out, charting.EntryDetail{Event: &charting.Event{Type: ev.Type, Comment: ev.Comment}})
	case sim.KindDrug:
		out = append(out, charting.EntryDetail{Drug: &charting.DrugDose{Drug: ev.Drug.Name, Dose: ev.Drug.Dose, Unit: ev.Drug.Unit, Route: ev.Drug.Route}})
	case sim.KindCardioplegia:
		out = append(out, charting.EntryDetail{Cardioplegia: &charting.CardioplegiaDose{Solution: ev.CPG.Solution, Route: "antegrade",
			VolumeML: ev.CPG.VolumeML, TemperatureC: ev.CPG.TempC, Phase: ev.CPG.Phase}})
	case sim.KindLab:
		for _, l := range ev.Labs {
			lr := &charting.LabResult{Analyte: l.Analyte, Value: l.Value, Unit: l.Unit, Site: "arterial", Device: "POC analyser"}
			if l.Analyte != "act" {
				lr.TemperatureCorrection = "alpha_stat"
			}
			out = append(out, charting.EntryDetail{LabResult: lr})
		}
	case sim.KindNote:
		out = append(out, charting.EntryDetail{Note: &charting.Note{Text: ev.Note}})
	case sim.KindBloodProduct:
		out = append(out, charting.EntryDetail{BloodProduct: &charting.BloodProduct{Type: "prbc", Units: ev.Blood.Units, VolumeML: ev.Blood.VolumeML, Route: "circuit"}})
	case sim.KindFluid:
		out = append(out, charting.EntryDetail{Fluid: &charting.Fluid{Kind: ev.Fluid.Kind, Name: ev.Fluid.Name, VolumeML: ev.Fluid.VolumeML}})
	case sim.KindChecklist:
		out = append(out, charting.EntryDetail{ChecklistItem: &charting.ChecklistItem{Section: ev.Check.Section, Item: ev.Check.Item, State: ev.Check.State}})
	case sim.KindArtifact:
		for _, ch := range ev.Artifact.Channels {
			out = append(out, charting.EntryDetail{ArtifactMark: &charting.ArtifactMark{Channel: ch, SourceID: string(ev.Artifact.Source),
				Start: docStart.Add(ev.Artifact.Start), End: docStart.Add(ev.Artifact.End), Reason: ev.Artifact.Reason}})
		}
	}
	return out
}

// docRecord is a charted case: its id, its draft (rendered before close),
// the first signature's version and the latest (an addendum's), and the
// correction's values for the text checks.
type docRecord struct {
	id             uuid.UUID
	draft          *export.Document
	signed, latest int64
	labWas, labNow string
	correctReason  string
	addendum       string
	addendumReason string
}

// chartDocCase charts dc through s, the clock following the simulation;
// corrects the first haematocrit (a transcription error), renders the
// draft, closes, signs as author and reviewer and adds an addendum.
func chartDocCase(t testing.TB, s *store.Store, r *export.Renderer, clk *clock, dc docCase) docRecord {
	t.Helper()
	ctx := context.Background()
	id := uuid.NewSHA1(uuid.NameSpaceURL, []byte("perfusion-document-test/"+dc.name))
	kind := charting.KindCPB
	if dc.cfg.ECMO {
		kind = charting.KindECMO
	}
	clk.t = docStart.Add(-30 * time.Minute)
	if _, err := s.CreateCase(ctx, "perf.kowalski", store.NewCase{ID: id, Kind: kind, Site: "GENHOSP", Room: "OR 3",
		ScheduledStart: docStart, Details: dc.details}); err != nil {
		t.Fatalf("%s: create: %v", dc.name, err)
	}
	sm := sim.New(dc.cfg)
	type buf struct {
		series map[string]*charting.Series
		order  []string
		seq    int64
	}
	bufs := map[sim.Source]*buf{}
	var srcOrder []sim.Source
	add := func(src sim.Source, ms int64, rd sim.Reading) {
		b := bufs[src]
		if b == nil {
			b = &buf{series: map[string]*charting.Series{}}
			bufs[src] = b
			srcOrder = append(srcOrder, src)
		}
		sr := b.series[rd.Channel]
		if sr == nil {
			sr = &charting.Series{Channel: rd.Channel}
			b.series[rd.Channel] = sr
			b.order = append(b.order, rd.Channel)
		}
		sr.TimesMs = append(sr.TimesMs, ms)
		sr.Values = append(sr.Values, rd.Value)
		sr.Invalid = append(sr.Invalid, rd.Invalid)
	}
	flush := func() {
		var batches []*charting.SampleBatch
		for _, src := range srcOrder {
			b := bufs[src]
			if len(b.order) == 0 {
				continue
			}
			b.seq++
			sb := &charting.SampleBatch{CaseID: id, SourceID: string(src), Seq: b.seq}
			for _, ch := range b.order {
				sb.Series = append(sb.Series, *b.series[ch])
			}
			batches = append(batches, sb)
			b.series, b.order = map[string]*charting.Series{}, nil
		}
		for _, res := range s.AppendSamples(ctx, "gateway-or3", batches) {
			if res.Err != nil {
				t.Fatalf("%s: samples: %v", dc.name, res.Err)
			}
		}
	}
	n := 0
	var firstHct *charting.Entry
	for !sm.Done() {
		tk := sm.Step()
		at := docStart.Add(tk.At)
		ms := at.UnixMilli()
		if tk.At%dc.every == 0 {
			for _, rd := range tk.Numerics {
				add(sim.SourceOf[rd.Channel], ms, rd)
			}
		}
		for _, rd := range tk.Gases {
			add(sim.Inline, ms, rd)
		}
		if tk.At%time.Minute == time.Minute-time.Second || len(tk.Events) > 0 {
			clk.t = at.Add(2 * time.Second)
			flush()
		}
		for _, ev := range tk.Events {
			for _, det := range simEntries(ev, at) {
				n++
				e := charting.Entry{ID: uuid.NewSHA1(id, []byte(strconv.Itoa(n))), CaseID: id, OccurredAt: at, Detail: det}
				got, _, err := s.RecordEntry(ctx, "perf.kowalski", e)
				if err != nil {
					t.Fatalf("%s: entry %d (%v): %v", dc.name, n, det.Kinds(), err)
				}
				if l := det.LabResult; l != nil && l.Analyte == "hct" && firstHct == nil {
					firstHct = got
				}
			}
		}
	}
	clk.t = docStart.Add(dc.cfg.Duration + time.Minute)
	flush()
	rec := docRecord{id: id, correctReason: "transcription error: the analyser printout reads 2 % higher"}
	if firstHct == nil {
		t.Fatalf("%s: the simulation charted no haematocrit", dc.name)
	}
	clk.t = clk.t.Add(5 * time.Minute)
	was := *firstHct.Detail.LabResult
	now := was
	now.Value = was.Value + 2
	rec.labWas, rec.labNow = g(was.Value), g(now.Value)
	if _, _, err := s.CorrectEntry(ctx, "perf.osei", store.Correction{CaseID: id, EntryID: uuid.NewSHA1(id, []byte("correction")),
		Supersedes: firstHct.ID, Reason: rec.correctReason,
		Replacement: &charting.Entry{OccurredAt: firstHct.OccurredAt, Detail: charting.EntryDetail{LabResult: &now}}}); err != nil {
		t.Fatalf("%s: correct: %v", dc.name, err)
	}
	d, err := r.RenderDocument(ctx, id, 0)
	if err != nil {
		t.Fatalf("%s: draft: %v", dc.name, err)
	}
	rec.draft = d
	clk.t = clk.t.Add(5 * time.Minute)
	if _, err := s.CloseCase(ctx, "perf.kowalski", id); err != nil {
		t.Fatalf("%s: close: %v", dc.name, err)
	}
	clk.t = clk.t.Add(10 * time.Minute)
	_, sig, _, err := s.SignCase(ctx, "perf.kowalski", id, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "Anna Kowalski, CCP"})
	if err != nil {
		t.Fatalf("%s: sign: %v", dc.name, err)
	}
	rec.signed = sig.Number
	clk.t = clk.t.Add(40 * time.Minute)
	if _, _, _, err := s.SignCase(ctx, "perf.osei", id, store.SignRequest{Meaning: charting.MeaningReviewed, DisplayName: "Kwame Osei, CCP"}); err != nil {
		t.Fatalf("%s: review: %v", dc.name, err)
	}
	clk.t = clk.t.Add(3 * time.Hour)
	rec.addendum = "Post-operative review: arterial line zeroing was checked after the case; pressures stand."
	rec.addendumReason = "reviewer's query"
	add2, _, err := s.AddAddendum(ctx, "perf.kowalski", id, uuid.NewSHA1(id, []byte("addendum")), rec.addendum, rec.addendumReason)
	if err != nil {
		t.Fatalf("%s: addendum: %v", dc.name, err)
	}
	c, err := s.Backend().GetCase(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	rec.latest = c.Head.Seq
	_ = add2
	return rec
}

func g(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// pdfText extracts a PDF's text with poppler's pdftotext, one string per
// page. CI installs poppler-utils (.ci/run); elsewhere the test skips
// without it.
func pdfText(t *testing.T, pdf []byte) []string {
	t.Helper()
	if _, err := exec.LookPath("pdftotext"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("pdftotext is missing: .ci/run installs poppler-utils")
		}
		t.Skip("pdftotext (poppler-utils) is not installed")
	}
	path := filepath.Join(t.TempDir(), "doc.pdf")
	if err := os.WriteFile(path, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	// Two reading orders: -layout keeps a label beside its value,
	// the default keeps a wrapped table cell's lines together.
	var pages []string
	for _, args := range [][]string{{"-layout"}, {}} {
		out, err := exec.Command("pdftotext", append(args, "-enc", "UTF-8", path, "-")...).Output()
		if err != nil {
			t.Fatalf("pdftotext: %v", err)
		}
		ps := strings.Split(strings.TrimRight(string(out), "\f"), "\f")
		if pages == nil {
			pages = ps
			continue
		}
		if len(ps) != len(pages) {
			t.Fatalf("pdftotext finds %d pages with -layout, %d without", len(pages), len(ps))
		}
		for i := range ps {
			pages[i] += "\n" + ps[i]
		}
	}
	return pages
}

// sections are the headings every printed record has.
var sections = []string{"Patient and case", "Team", "Circuit and prime", "BSA and targets", "Trends", "Flow and flow index",
	"Pressures", "Temperatures", "Haematocrit and SvO2", "DO2i", "Event timeline", "Events", "Drugs", "Cardioplegia",
	"Fluids", "Blood products", "Labs", "Checklist", "Artifact marks", "Notes", "Quality metrics", "Full-flow window",
	"Corrections", "Addenda", "Signatures", "Ledger head and verification"}

// squash removes the spaces pdftotext's layout puts inside table cells.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

// TestDocumentGolden renders the three simulated records: the signed
// version, the latest (with an addendum) and the draft before close. The
// signed PDFs are the golden files; their text holds every section and
// the record's values; the draft says DRAFT on every page.
func TestDocumentGolden(t *testing.T) {
	for _, dc := range docCases() {
		t.Run(dc.name, func(t *testing.T) {
			b := openSQLite(t)
			clk := &clock{}
			s := store.New(b, store.Config{Now: clk.now})
			r := export.NewRenderer(b, refHL7(), refFHIR(), nil)
			rec := chartDocCase(t, s, r, clk, dc)
			ctx := context.Background()
			doc, err := r.RenderDocument(ctx, rec.id, rec.latest)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			again, err := r.RenderDocument(ctx, rec.id, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(doc.PDF, again.PDF) || doc.Version != rec.latest || doc.Draft {
				t.Fatalf("the latest version renders differently the second time (or is not version %d: %d, draft %v)", rec.latest, doc.Version, doc.Draft)
			}
			golden := filepath.Join("testdata", "document_"+dc.name+".pdf")
			if *update {
				if err := os.WriteFile(golden, doc.PDF, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(doc.PDF, want) {
				t.Errorf("render differs from %s (run go test -update and review the pages)", golden)
			}
			pages := pdfText(t, doc.PDF)
			t.Logf("%s: %d bytes, %d pages", golden, len(doc.PDF), len(pages))
			text := squash(strings.Join(pages, "\n"))
			v, err := r.Load(ctx, rec.id, rec.latest)
			if err != nil {
				t.Fatal(err)
			}
			checkDocText(t, text, v, doc, rec)
			for i, p := range pages {
				if strings.Contains(p, "DRAFT") {
					t.Errorf("signed record page %d says DRAFT", i+1)
				}
			}

			// The first signature's version: one signature, no addendum.
			first, err := r.RenderDocument(ctx, rec.id, rec.signed)
			if err != nil {
				t.Fatal(err)
			}
			ft := squash(strings.Join(pdfText(t, first.PDF), "\n"))
			if strings.Contains(ft, rec.addendum) || strings.Contains(ft, "Kwame Osei, CCP (perf.osei) reviewed") {
				t.Error("the first signature's version shows what was added after it")
			}
			if !strings.Contains(ft, first.Head.Hash.String()) || first.Head.Seq != rec.signed {
				t.Errorf("the first version does not print its own ledger link %d", rec.signed)
			}

			// PERFUSION_DOC_PREVIEW_DIR keeps the PDFs, the draft too, for
			// a look at their pages (README "The printed record").
			if dir := os.Getenv("PERFUSION_DOC_PREVIEW_DIR"); dir != "" {
				for name, pdf := range map[string][]byte{dc.name + ".pdf": doc.PDF, dc.name + "-draft.pdf": rec.draft.PDF} {
					if err := os.WriteFile(filepath.Join(dir, name), pdf, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			// The draft: marked on every page, no signatures.
			dp := pdfText(t, rec.draft.PDF)
			if !rec.draft.Draft || rec.draft.Version != 0 {
				t.Errorf("draft: Draft %v, version %d", rec.draft.Draft, rec.draft.Version)
			}
			for i, p := range dp {
				if !strings.Contains(p, "DRAFT") || !strings.Contains(p, "not signed") {
					t.Errorf("draft page %d of %d is not marked DRAFT", i+1, len(dp))
				}
			}
			if dt := squash(strings.Join(dp, "\n")); !strings.Contains(dt, rec.draft.Head.Hash.String()) {
				t.Error("the draft does not print the ledger head it was made from")
			}
		})
	}
}

// checkDocText finds in the text every section and the values of the
// record: header, team, circuit, targets, each entry's values, metrics,
// the full-flow window, corrections, addenda, signatures and the ledger.
func checkDocText(t *testing.T, text string, v *export.Version, doc *export.Document, rec docRecord) {
	t.Helper()
	want := func(what string, subs ...string) {
		t.Helper()
		for _, s := range subs {
			if !strings.Contains(text, squash(s)) {
				t.Errorf("%s: %q not in the text", what, s)
			}
		}
	}
	want("section", sections...)
	c := v.Case
	p := c.Details.Patient
	want("patient", p.FamilyName, p.GivenName, p.MRN, p.BirthDate, c.ID.String(), g(p.HeightCm)+" cm", g(p.WeightKg)+" kg",
		strconv.FormatFloat(p.BSAM2, 'f', 2, 64)+" m²", string(p.BSAFormula))
	want("case", c.Details.Procedure.Description, c.Details.Procedure.EncounterID, c.Site)
	want("team", "Dr Piotr Nowak", "Dr Keiko Ito", "Anna Kowalski, CCP", "Kwame Osei, CCP")
	ci := c.Details.Circuit
	want("circuit", ci.Oxygenator.Model, ci.Oxygenator.Lot, ci.Oxygenator.UDI, ci.ArterialFilter.Model, "ascending aorta 22 Fr", ci.CardioplegiaSystem)
	for _, pc := range c.Details.Prime.Components {
		want("prime", pc.Name+" "+g(pc.VolumeML)+" mL")
	}
	want("targets", "DO2i threshold 280 mL/min/m²", "Flow at index 2.4 "+strconv.FormatFloat(2.4*p.BSAM2, 'f', 2, 64)+" L/min",
		"threshold 280 mL/min/m²")
	labels := map[string]string{}
	for _, ch := range charting.DefaultCatalogue().Channels() {
		labels[ch.Key] = ch.Name
	}
	want("graph legends", labels["pump_flow"][:10], labels["map"], labels["temp_arterial_outlet"], labels["inline_hct"], "DO2i from minute means")
	counts := map[string]int{}
	for _, e := range v.Current {
		d := e.Detail
		switch {
		case d.Event != nil:
			counts["event"]++
			want("event", strings.ReplaceAll(d.Event.Type, "_", " "))
		case d.Drug != nil:
			counts["drug"]++
			want("drug", d.Drug.Drug)
		case d.Fluid != nil:
			counts["fluid"]++
			want("fluid", g(d.Fluid.VolumeML)+" mL")
		case d.BloodProduct != nil:
			counts["blood"]++
			want("blood product", strings.ToUpper(d.BloodProduct.Type), g(d.BloodProduct.VolumeML)+" mL")
		case d.LabResult != nil:
			counts["lab"]++
			want("lab", g(d.LabResult.Value))
		case d.ChecklistItem != nil:
			counts["checklist"]++
			want("checklist", d.ChecklistItem.Item)
		case d.Cardioplegia != nil:
			counts["cardioplegia"]++
			want("cardioplegia", d.Cardioplegia.Solution)
		}
	}
	for _, k := range []string{"event", "drug", "lab", "checklist"} {
		if counts[k] == 0 {
			t.Errorf("the simulated record has no %s entries: the check proves nothing for them", k)
		}
	}
	m := charting.ComputeMetricsWith(v.Case, v.All, v.Series, charting.DefaultMetricsConfig(), nil)
	for _, name := range []string{"cpb_minutes", "nadir_temp_c", "nadir_hct_pct", "nadir_do2i", "minutes_do2i_below", "full_flow_minutes", "bsa_m2"} {
		val, ok := m.Values[name]
		if !ok {
			continue
		}
		want("metric", strings.ReplaceAll(name, "_", " "))
		digits := 2
		if val == float64(int64(val)) || val >= 100 {
			digits = 0
		}
		want("metric "+name, strconv.FormatFloat(val, 'f', digits, 64))
	}
	if len(m.Runs) == 0 {
		t.Error("no bypass run: the full-flow window is not checked")
	}
	want("full-flow window", "Start / end found by")
	want("correction", rec.correctReason, rec.labWas+" %", rec.labNow+" %", "perf.osei")
	want("addendum", rec.addendum, rec.addendumReason)
	for _, s := range v.Case.Signatures {
		want("signature", s.DisplayName, string(s.Meaning), s.SignedAt.Format("2006-01-02 15:04:05"), s.CoversHash.String())
	}
	want("ledger", doc.Head.Hash.String(), fmt.Sprintf(document.VerifyCommand, c.ID), fmt.Sprintf("version %d", doc.Version))
}

// BenchmarkRenderDocumentFourHourCase renders the PDF of the 4-hour,
// 40-channel, 1 Hz case of BenchmarkRenderFourHourCase: the load and the
// render, as RenderDocument does per call. README performance table.
func BenchmarkRenderDocumentFourHourCase(b *testing.B) {
	e := newEnv(b, pgtest.Open(b), startClock())
	caseID, version := longCase(b, e.s, e.clk, 4)
	ctx := context.Background()
	var size, pages int
	for b.Loop() {
		d, err := e.r.RenderDocument(ctx, caseID, version)
		if err != nil {
			b.Fatal(err)
		}
		size = len(d.PDF)
	}
	if d, err := e.r.RenderDocument(ctx, caseID, version); err == nil {
		pages = bytes.Count(d.PDF, []byte("/Type /Page\n"))
	}
	b.ReportMetric(float64(size), "bytes")
	b.ReportMetric(float64(pages), "pages")
}
