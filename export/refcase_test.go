package export_test

import (
	"bytes"
	"context"
	"flag"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/export"
	"perfusion/hl7/fhir"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The reference case of hl7/v2 and hl7/fhir (refcase_test.go there) as
// stored and rendered: the same case ID, patient and times, charted
// through a real store, with device data from four sources. Its render is
// the export golden files.

var refCaseID = uuid.MustParse("7f1c2b9e-4d3a-4e8b-9a51-0c6d2e8f4b17")

func refTime(hhmm string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", "2026-11-27 "+hhmm)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// fixedClock returns the same time always: rendering reads recorded times,
// so a fixed clock makes the record, and so the render, reproducible.
func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func refHL7() export.HL7Config {
	return export.HL7Config{SendingApplication: v2.HD{NamespaceID: "PERFUSION", UniversalID: "1.2.826.0.1.3680043.10.1234", UniversalIDType: "ISO"},
		SendingFacility: v2.HD{NamespaceID: "GENHOSP"}, ReceivingApplication: v2.HD{NamespaceID: "EHR"},
		ReceivingFacility: v2.HD{NamespaceID: "GENHOSP"}, PointOfCare: "CARDIAC OR"}
}

func refFHIR() fhir.Options {
	return fhir.Options{MRNSystems: map[string]string{"GENHOSP": "http://genhosp.example.org/fhir/sid/mrn"},
		EncounterSystem: "http://genhosp.example.org/fhir/sid/visit", StaffSystem: "http://genhosp.example.org/fhir/sid/staff",
		DeviceSystem: "http://genhosp.example.org/fhir/sid/device"}
}

// refChannel is one simulated device channel: a smooth course over the
// run (cooling to the nadir at 09:05, rewarming after), at the channel's
// resolution.
type refChannel struct {
	source, channel string
	everyS          int
	value           func(minutes float64) float64 // minutes since bypass on
}

// cooling is 0 before bypass, 1 at the deepest point (50 minutes after
// bypass on, 09:05) and back to 0 at bypass off (97 minutes).
func cooling(m float64) float64 {
	if m <= 0 || m >= 97 {
		return 0
	}
	return math.Sin(math.Pi * m / 97)
}

var refChannels = []refChannel{
	{"hlm-1", "pump_flow", 1, func(m float64) float64 {
		if m < 0 || m >= 97 {
			return 0
		}
		return 4.2 - 0.6*cooling(m)
	}},
	{"hlm-1", "temp_arterial_outlet", 1, func(m float64) float64 { return 36.9 - 4.8*cooling(m) }},
	{"hlm-1", "temp_venous_inlet", 1, func(m float64) float64 { return 36.5 - 4.2*cooling(m) }},
	{"blender-1", "fio2", 5, func(m float64) float64 { return 60 }},
	{"blender-1", "sweep_flow", 5, func(m float64) float64 { return 2.5 - 0.5*cooling(m) }},
	{"monitor-3", "map", 1, func(m float64) float64 { return 62 + 6*math.Sin(m/7) }},
	{"monitor-3", "temp_nasopharyngeal", 1, func(m float64) float64 { return 36.6 - 4.5*cooling(m) }},
	{"monitor-3", "spo2", 1, func(m float64) float64 { return 99 }},
	{"cdi-1", "inline_hct", 6, func(m float64) float64 { return 30 - 5*cooling(m) }},
	{"cdi-1", "inline_svo2", 6, func(m float64) float64 { return 75 - 5*cooling(m) }},
}

// refSamples simulates the channels from 08:10 for the given duration, in
// one-minute batches per source. The monitor reports SpO2 invalid while on
// full bypass (no pulsatile flow) between 08:40 and 08:42.
func refSamples(caseID uuid.UUID, dur time.Duration) []*charting.SampleBatch {
	cat := charting.DefaultCatalogue()
	from := refTime("08:10")
	bypassOn := refTime("08:15")
	seq := map[string]int64{}
	var out []*charting.SampleBatch
	for minute := time.Duration(0); minute < dur; minute += time.Minute {
		bySource := map[string]*charting.SampleBatch{}
		var order []string
		for _, rc := range refChannels {
			b := bySource[rc.source]
			if b == nil {
				seq[rc.source]++
				b = &charting.SampleBatch{CaseID: caseID, SourceID: rc.source, Seq: seq[rc.source]}
				bySource[rc.source] = b
				order = append(order, rc.source)
			}
			ch, _ := cat.Lookup(rc.channel)
			s := charting.Series{Channel: rc.channel}
			for sec := 0; sec < 60; sec += rc.everyS {
				at := from.Add(minute + time.Duration(sec)*time.Second)
				v := rc.value(at.Sub(bypassOn).Minutes())
				v = math.Round(v/ch.Resolution) * ch.Resolution
				v, _ = parseAt(v, ch.Resolution)
				bad := rc.channel == "spo2" && !at.Before(refTime("08:40")) && at.Before(refTime("08:42"))
				if bad {
					v = 0
				}
				s.TimesMs = append(s.TimesMs, at.UnixMilli())
				s.Values = append(s.Values, v)
				s.Invalid = append(s.Invalid, bad)
			}
			b.Series = append(b.Series, s)
		}
		for _, src := range order {
			out = append(out, bySource[src])
		}
	}
	return out
}

// parseAt makes v the float64 nearest its decimal at the resolution, as a
// device's reading is.
func parseAt(v, res float64) (float64, error) {
	d := 0
	for r := res; r < 1 && d < 6; r *= 10 {
		d++
	}
	return strconv.ParseFloat(strconv.FormatFloat(v, 'f', d, 64), 64)
}

// chartRefCase stores the reference case in s: details, entries, the
// device data of dur, an artifact mark over the arterial outlet
// temperature, close and two signatures. It returns the second
// signature's version.
func chartRefCase(t testing.TB, s *store.Store, dur time.Duration) int64 {
	t.Helper()
	ctx := context.Background()
	_, err := s.CreateCase(ctx, "perf.kowalski", store.NewCase{ID: refCaseID, Kind: charting.KindCPB, Site: "GENHOSP", Room: "3",
		ScheduledStart: refTime("07:45"), Details: charting.Details{
			Patient: charting.Patient{MRN: "00012345", MRNAssigningAuthority: "GENHOSP", FamilyName: "Żółkiewska-Müller",
				GivenName: "Zoë", BirthDate: "1956-03-14", Sex: "female", HeightCm: 162, WeightKg: 58, BSAFormula: charting.BSAMosteller},
			Team: charting.Team{Surgeon: charting.StaffMember{StaffID: "surg.nowak", DisplayName: "Dr Piotr Nowak"},
				Perfusionists: []charting.StaffMember{{StaffID: "perf.kowalski", DisplayName: "Anna Kowalski, CCP"},
					{StaffID: "perf.osei", DisplayName: "Kwame Osei, CCP"}}},
			Procedure: charting.Procedure{Description: "Aortic valve replacement", EncounterID: "V20261127-0042"},
			Circuit: charting.Circuit{ArterialPump: "centrifugal",
				Oxygenator:     charting.Component{Model: "Inspire 8F", Lot: "2611A0457", UDI: "(01)08033588031234(17)281031(10)2611A0457"},
				ArterialFilter: charting.Component{Model: "AF 40", Lot: "F2610-118"}},
			Prime: charting.Prime{Components: []charting.PrimeComponent{{Name: "Plasma-Lyte A", VolumeML: 1200}, {Name: "Mannitol 20%", VolumeML: 200}},
				RAPVolumeML: 300},
		}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	entry := func(n byte, hhmm string, d charting.EntryDetail) {
		t.Helper()
		if _, _, err := s.RecordEntry(ctx, "perf.kowalski", charting.Entry{ID: uuid.UUID{0x10, n}, CaseID: refCaseID,
			OccurredAt: refTime(hhmm), Detail: d}); err != nil {
			t.Fatalf("entry %x: %v", n, err)
		}
	}
	ev := func(typ string) charting.EntryDetail { return charting.EntryDetail{Event: &charting.Event{Type: typ}} }
	lab := func(analyte string, v float64, unit string) charting.EntryDetail {
		return charting.EntryDetail{LabResult: &charting.LabResult{Analyte: analyte, Value: v, Unit: unit, Site: "arterial"}}
	}
	entry(0x40, "08:05", charting.EntryDetail{Drug: &charting.DrugDose{Drug: "Heparin sodium", Dose: 30000, Unit: "[iU]", Route: "intravenous"}})
	entry(0x20, "08:12", lab("act", 480, "s"))
	entry(3, "08:15", ev("bypass_on"))
	entry(0x50, "08:20", charting.EntryDetail{Fluid: &charting.Fluid{Kind: "crystalloid", Name: "Plasma-Lyte A", VolumeML: 1000}})
	entry(4, "08:22", ev("cross_clamp_on"))
	entry(0x60, "08:24", charting.EntryDetail{Cardioplegia: &charting.CardioplegiaDose{Solution: "del Nido", Route: "antegrade", VolumeML: 1000, TemperatureC: 4, Phase: "induction"}})
	entry(0x21, "08:30", lab("ph", 7.38, "[pH]"))
	entry(0x24, "08:30", lab("hct", 24, "%"))
	entry(0x25, "08:30", lab("hb", 8.1, "g/dL"))
	entry(0x26, "08:30", lab("sao2", 99, "%"))
	entry(0x27, "08:30", lab("po2", 245, "mm[Hg]"))
	entry(0x70, "08:40", charting.EntryDetail{BloodProduct: &charting.BloodProduct{Type: "prbc", Units: 1, VolumeML: 280, Route: "circuit"}})
	entry(0x28, "09:15", lab("lactate", 1.8, "mmol/L"))
	entry(6, "09:31", ev("cross_clamp_off"))
	entry(7, "09:52", ev("bypass_off"))
	entry(0x42, "10:00", charting.EntryDetail{Drug: &charting.DrugDose{Drug: "Protamine sulfate", Dose: 300, Unit: "mg", Route: "intravenous"}})
	for i, r := range s.AppendSamples(ctx, "gateway-or3", refSamples(refCaseID, dur)) {
		if r.Err != nil {
			t.Fatalf("samples %d: %v", i, r.Err)
		}
	}
	entry(0x80, "09:30", charting.EntryDetail{ArtifactMark: &charting.ArtifactMark{Channel: "temp_arterial_outlet", SourceID: "hlm-1",
		Start: refTime("09:20"), End: refTime("09:22"), Reason: "probe flushed with cold saline"}})
	if _, err := s.CloseCase(ctx, "perf.kowalski", refCaseID); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, _, _, err := s.SignCase(ctx, "perf.kowalski", refCaseID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "Anna Kowalski, CCP"}); err != nil {
		t.Fatalf("sign: %v", err)
	}
	_, sig, _, err := s.SignCase(ctx, "perf.osei", refCaseID, store.SignRequest{Meaning: charting.MeaningReviewed, DisplayName: "Kwame Osei, CCP"})
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return sig.Number
}

func openSQLite(t testing.TB) store.Backend {
	t.Helper()
	ctx := context.Background()
	b, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ref.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

// renderRef charts the reference case in b and renders its version for
// both destinations, and as the FHIR document the same record makes.
func renderRef(t testing.TB, b store.Backend, dur time.Duration) (hl7, bundle, doc, pcd01, mdm, pdf []byte) {
	t.Helper()
	s := store.New(b, store.Config{Now: fixedClock(refTime("10:45"))})
	v := chartRefCase(t, s, dur)
	r := export.NewRenderer(b, refHL7(), refFHIR(), nil)
	ctx := context.Background()
	h, err := r.Render(ctx, store.DestinationMLLP, refCaseID, v)
	if err != nil {
		t.Fatalf("render HL7: %v", err)
	}
	f, err := r.Render(ctx, store.DestinationFHIR, refCaseID, v)
	if err != nil {
		t.Fatalf("render FHIR: %v", err)
	}
	ver, err := r.Load(ctx, refCaseID, v)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.Record(ver)
	if err != nil {
		t.Fatal(err)
	}
	d, err := fhir.BuildDocument(rec, refFHIR())
	if err != nil {
		t.Fatalf("document: %v", err)
	}
	dj, err := fhir.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.DeviceReport(ver)
	if err != nil {
		t.Fatalf("device report: %v", err)
	}
	m, err := r.MDM(ver)
	if err != nil {
		t.Fatalf("MDM: %v", err)
	}
	rd, err := r.RenderDocument(ctx, refCaseID, v)
	if err != nil {
		t.Fatalf("document: %v", err)
	}
	return h.Payload, f.Payload, dj, p.Payload, m.Payload, rd.PDF
}

// TestReferenceCaseGolden renders the stored reference case from the
// embedded store and from PostgreSQL: the bytes are the golden files, the
// same from both backends, and both messages pass the independent
// validators.
func TestReferenceCaseGolden(t *testing.T) {
	hl7, bundle, doc, pcd01, mdm, pdf := renderRef(t, openSQLite(t), 105*time.Minute)
	for name, got := range map[string][]byte{"reference_oru.hl7": hl7, "reference_transaction.json": bundle,
		"reference_document.json": doc, "reference_pcd01.hl7": pcd01, "reference_mdm.hl7": mdm} {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("render differs from %s (run go test -update and review the diff)", path)
		}
		t.Logf("%s: %d bytes", name, len(got))
	}
	validateHL7(t, hl7)
	validateHL7(t, pcd01)
	validateHL7(t, mdm)
	validateFHIR(t, bundle)
	validateFHIR(t, doc)
	// The MDM's document is exactly the PDF RenderDocument makes.
	m, err := v2.Parse(mdm)
	if err != nil {
		t.Fatal(err)
	}
	if sent, err := v2.DocumentPDF(m); err != nil || !bytes.Equal(sent, pdf) {
		t.Errorf("the MDM's OBX-5 does not decode to the rendered PDF (%v)", err)
	}
	pgHL7, pgBundle, pgDoc, pgPCD01, pgMDM, _ := renderRef(t, pgtest.Open(t), 105*time.Minute)
	if !bytes.Equal(pgHL7, hl7) || !bytes.Equal(pgBundle, bundle) || !bytes.Equal(pgDoc, doc) || !bytes.Equal(pgPCD01, pcd01) || !bytes.Equal(pgMDM, mdm) {
		t.Error("PostgreSQL and the embedded store render the reference case differently")
	}
}

// TestRenderUsesSiteThresholds: a site that reviews DO2i against 300
// exports the reference case's DO2i minutes and threshold against 300 too,
// not against the default 280 (the renderer computes the metrics it sends).
func TestRenderUsesSiteThresholds(t *testing.T) {
	b := openSQLite(t)
	s := store.New(b, store.Config{Now: fixedClock(refTime("10:45"))})
	v := chartRefCase(t, s, 105*time.Minute)
	ctx := context.Background()
	render := func(r *export.Renderer) string {
		msg, err := r.Render(ctx, store.DestinationMLLP, refCaseID, v)
		if err != nil {
			t.Fatal(err)
		}
		return string(msg.Payload)
	}
	def := render(export.NewRenderer(b, refHL7(), refFHIR(), nil))
	cfg := charting.DefaultMetricsConfig()
	cfg.DO2iThreshold = 300
	site := render(export.NewRenderer(b, refHL7(), refFHIR(), nil).WithMetricsConfig(cfg))
	if !strings.Contains(def, "do2i_threshold^DO2i threshold^99PERF||280|") {
		t.Fatalf("default render lacks the 280 threshold")
	}
	if !strings.Contains(site, "do2i_threshold^DO2i threshold^99PERF||300|") {
		t.Fatalf("site render lacks the 300 threshold")
	}
	below := regexp.MustCompile(`do2i_below_threshold_duration\^[^|]*\|\|([0-9.]+)\|`)
	d, sMin := below.FindStringSubmatch(def), below.FindStringSubmatch(site)
	if d == nil || sMin == nil || d[1] == sMin[1] {
		t.Fatalf("minutes below DO2i: default %v, site %v; want both, different", d, sMin)
	}
}
