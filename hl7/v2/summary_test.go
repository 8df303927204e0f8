package v2

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

func TestControlIDStableAndDistinct(t *testing.T) {
	a := ControlID("oru-summary", refCaseID, 1)
	if a != ControlID("oru-summary", refCaseID, 1) {
		t.Error("not stable")
	}
	if len(a) != 20 {
		t.Errorf("length %d, want 20 (the IHE PCD MSA-2 length)", len(a))
	}
	seen := map[string]bool{a: true}
	for _, other := range []string{
		ControlID("oru-summary", refCaseID, 2),
		ControlID("mdm-record", refCaseID, 1),
		ControlID("oru-summary", uuid.UUID{1}, 1),
	} {
		if seen[other] {
			t.Errorf("collision: %s", other)
		}
		seen[other] = true
	}
	h := refHeader(1)
	if err := h.validate(); err != nil {
		t.Errorf("derived control ID rejected: %v", err)
	}
}

func TestSummaryECMOAndASCII(t *testing.T) {
	s := refSummary()
	s.Kind = charting.KindECMO
	s.Patient.FamilyName, s.Patient.GivenName = "Smith", "Jo"
	s.Notes = nil
	m, err := BuildSummary(refHeader(1), s)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Get("OBR-4"); got != "233573008" {
		t.Errorf("OBR-4 = %q", got)
	}
	if got := m.Get("MSH-18"); got != "" {
		t.Errorf("MSH-18 = %q for an ASCII message", got)
	}
	for path, want := range map[string]string{"MSH-9.3": "ORU_R01", "MSH-11": "P", "MSH-12": "2.6", "MSH-15": "AL", "MSH-16": "NE", "MSH-21": ""} {
		if got := m.Get(path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
}

func TestSummaryPatientDefaults(t *testing.T) {
	s := refSummary()
	s.Patient = charting.Patient{MRN: "1"}
	m, err := BuildSummary(refHeader(1), s)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Segment("PID").Field(5).Component(7); got != "U" {
		t.Errorf("name type without a name = %q, want U", got)
	}
	if got := m.Get("PID-3.5"); got != "MR" {
		t.Errorf("PID-3.5 = %q", got)
	}
}

func TestSummaryRepeatedEventsNumbered(t *testing.T) {
	s := refSummary()
	s.Events = append(s.Events, event(9, "09:35", "cross_clamp_on", ""), event(10, "09:40", "cross_clamp_off", "re-clamped for bleeding"))
	m, err := BuildSummary(refHeader(1), s)
	if err != nil {
		t.Fatal(err)
	}
	var subs []string
	for _, o := range m.All("OBX") {
		if o.Field(3).Value() == "event_cross_clamp_on" || o.Field(3).Value() == "event_cross_clamp_off" {
			subs = append(subs, o.Field(3).Value()+"/"+o.Field(4).Value())
		}
	}
	want := "event_cross_clamp_on/1 event_cross_clamp_off/1 event_cross_clamp_on/2 event_cross_clamp_off/2"
	if strings.Join(subs, " ") != want {
		t.Errorf("sub-IDs %v, want %s", subs, want)
	}
}

// TestSummaryRejects checks that bad input is refused with an error naming
// the field, never echoing patient data.
func TestSummaryRejects(t *testing.T) {
	secret := "Żółkiewska"
	for name, mutate := range map[string]func(s *Summary, h *Header){
		"no MRN":          func(s *Summary, h *Header) { s.Patient.MRN = "" },
		"bad birth date":  func(s *Summary, h *Header) { s.Patient.BirthDate = "14.03.1956" },
		"bad sex":         func(s *Summary, h *Header) { s.Patient.Sex = secret },
		"no case":         func(s *Summary, h *Header) { s.CaseID = uuid.Nil },
		"bad kind":        func(s *Summary, h *Header) { s.Kind = "vad" },
		"bad status":      func(s *Summary, h *Header) { s.Status = "P" },
		"no start":        func(s *Summary, h *Header) { s.BypassStart = time.Time{} },
		"end before":      func(s *Summary, h *Header) { s.BypassEnd = s.BypassStart.Add(-1) },
		"unknown metric":  func(s *Summary, h *Header) { s.Metrics[0].Key = secret },
		"duplicate key":   func(s *Summary, h *Header) { s.Metrics[1].Key = s.Metrics[0].Key },
		"NaN metric":      func(s *Summary, h *Header) { s.Metrics[0].Value = math.NaN() },
		"bad channel":     func(s *Summary, h *Header) { s.Metrics[3].Channel = secret },
		"bad method":      func(s *Summary, h *Header) { s.Metrics[12].Method = "cpb_duration" },
		"event no detail": func(s *Summary, h *Header) { s.Events[0].Detail = charting.EntryDetail{} },
		"event bad type":  func(s *Summary, h *Header) { s.Events[0].Detail.Event.Type = secret },
		"lab not lab":     func(s *Summary, h *Header) { s.Labs[0] = s.Events[0] },
		"lab twice":       func(s *Summary, h *Header) { s.Labs = append(s.Labs, s.Labs[1]) },
		"lab analyte":     func(s *Summary, h *Header) { s.Labs[0].Detail.LabResult.Analyte = secret },
		"lab inf":         func(s *Summary, h *Header) { s.Labs[0].Detail.LabResult.Value = math.Inf(1) },
		"lab tc":          func(s *Summary, h *Header) { s.Labs[1].Detail.LabResult.TemperatureCorrection = "mosteller_x" },
		"drug no unit":    func(s *Summary, h *Header) { s.Drugs[0].Unit = "" },
		"fluid kind":      func(s *Summary, h *Header) { s.Fluids[0].Kind = secret },
		"blood type":      func(s *Summary, h *Header) { s.BloodProducts[0].Type = secret },
		"blood negative":  func(s *Summary, h *Header) { s.BloodProducts[0].Units = -1 },
		"note void":       func(s *Summary, h *Header) { s.Notes[0].Void = true },
		"note is event":   func(s *Summary, h *Header) { s.Notes[0] = s.Events[0] },
		"invalid UTF-8":   func(s *Summary, h *Header) { s.Patient.FamilyName = "\xff" + secret },
		"no sender":       func(s *Summary, h *Header) { h.SendingApplication = HD{} },
		"no control ID":   func(s *Summary, h *Header) { h.ControlID = "" },
		"bad control ID":  func(s *Summary, h *Header) { h.ControlID = "a|b" },
		"no time":         func(s *Summary, h *Header) { h.Time = time.Time{} },
		"bad processing":  func(s *Summary, h *Header) { h.ProcessingID = "X" },
	} {
		s, h := refSummary(), refHeader(1)
		mutate(s, &h)
		_, err := BuildSummary(h, s)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		for _, leak := range []string{secret, "00012345", "Zoë", "1956"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("%s: error %q echoes input", name, err)
			}
		}
	}
}

// TestLabCodesFollowSite: OBX-3 of a lab result is chosen by analyte and
// sample site: glucose in mmol/L goes out molar (15074-8, not 2339-0), and
// venous samples never go out under the arterial codes (2744-1, 2019-8);
// where the dictionary has no venous code, a local code names the site.
// An arterial and a venous sample drawn together are both sent.
func TestLabCodesFollowSite(t *testing.T) {
	s := refSummary()
	venous := func(n byte, analyte string, v float64, unit string) charting.Entry {
		e := lab(n, "09:15", analyte, v, unit, "")
		e.Detail.LabResult.Site = "venous"
		return e
	}
	s.Labs = []charting.Entry{
		lab(0x40, "09:15", "glucose", 7.2, "mmol/L", ""),
		lab(0x41, "09:15", "ph", 7.41, "[pH]", ""),
		venous(0x42, "ph", 7.35, "[pH]"),
		venous(0x43, "pco2", 48, "mm[Hg]"),
		venous(0x44, "hb", 9.1, "g/dL"),
		venous(0x45, "svo2", 71, "%"),
	}
	m, err := BuildSummary(refHeader(1), s)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range m.All("OBX") {
		f := o.Field(3)
		if sys := f.Component(3); sys == SystemLOINC || strings.HasPrefix(f.Value(), "lab_") {
			got = append(got, f.Value()+"^"+sys)
		}
	}
	want := []string{"15074-8^LN", "2744-1^LN", "lab_ph_venous^99PERF", "lab_pco2_venous^99PERF", "718-7^LN", "2711-0^LN"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("lab OBX-3 = %v, want %v", got, want)
	}
	listed := map[string]bool{}
	for _, lc := range LocalCodes(nil) {
		listed[lc.Code] = true
	}
	for _, c := range []string{"lab_ph_venous", "lab_pco2_venous"} {
		if !listed[c] {
			t.Errorf("%s not in LocalCodes (the interface specification)", c)
		}
	}
	s.Labs[2].Detail.LabResult.Site = "portal"
	if _, err := BuildSummary(refHeader(1), s); err == nil {
		t.Error("unknown sample site accepted")
	}
}

// TestSignerStaffID: OBR-32 names the signer by the staff id the token's
// configured claim gave (Signature.StaffID), as the team is named, and by
// the login name only when the signature has none.
func TestSignerStaffID(t *testing.T) {
	s := refSummary()
	s.Signature.StaffID = "S-40127"
	m, err := BuildSummary(refHeader(1), s)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Get("OBR-32.1.1"); got != "S-40127" {
		t.Errorf("OBR-32.1.1 = %q, want the staff id S-40127", got)
	}
	s.Signature.StaffID = ""
	if m, _ = BuildSummary(refHeader(1), s); m.Get("OBR-32.1.1") != "perf.kowalski" {
		t.Errorf("without a staff id OBR-32.1.1 = %q", m.Get("OBR-32.1.1"))
	}
}
