package deid

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

var key = bytes.Repeat([]byte{7}, 32)

func TestAge(t *testing.T) {
	at := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	tests := []struct{ birth, want string }{
		{"1961-04-02", "65"},  // birthday passed this year
		{"1961-06-02", "64"},  // not yet
		{"1936-05-01", "90+"}, // 90 today
		{"1936-05-02", "89"},  // 89 until tomorrow: still reported
		{"1900-01-01", "90+"},
		{"2026-04-20", "0"}, // neonate
		{"", ""},
		{"not a date", ""},
		{"2027-01-01", ""}, // after the case: unknown, not negative
	}
	for _, tc := range tests {
		if got := Age(tc.birth, at); got != tc.want {
			t.Errorf("Age(%q) = %q, want %q", tc.birth, got, tc.want)
		}
	}
}

func TestPseudonymStableAndKeyed(t *testing.T) {
	c := &charting.Case{ID: uuid.MustParse("123e4567-e89b-12d3-a456-426614174000")}
	p1, _ := NewPseudonymizer(key)
	p2, _ := NewPseudonymizer(key)
	other, _ := NewPseudonymizer(bytes.Repeat([]byte{8}, 32))
	if p1.Pseudonym(c) != p2.Pseudonym(c) || len(p1.Pseudonym(c)) != 32 {
		t.Fatalf("pseudonym not stable: %s %s", p1.Pseudonym(c), p2.Pseudonym(c))
	}
	if p1.Pseudonym(c) == other.Pseudonym(c) || strings.Contains(p1.Pseudonym(c), "123e4567") {
		t.Fatal("pseudonym does not depend on the key, or shows the id")
	}
	if _, err := NewPseudonymizer(key[:31]); err == nil {
		t.Fatal("short key accepted")
	}
}

func TestBuildDropsIdentifiers(t *testing.T) {
	start := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	c := &charting.Case{ID: uuid.New(), Kind: charting.KindCPB, Status: charting.StatusSigned, Site: "St-Elsewhere-North", Room: "OR-Secret-9", ScheduledStart: start}
	c.Details = charting.Details{
		Patient: charting.Patient{MRN: "MRN-998877", FamilyName: "Zyxwabc", GivenName: "Quentinia", BirthDate: "1930-02-03",
			Sex: "Zyxwabc free text", HeightCm: 160, WeightKg: 55},
		Team:      charting.Team{Surgeon: charting.StaffMember{StaffID: "SURG-4411", DisplayName: "Dr Hiddenname"}},
		Procedure: charting.Procedure{Description: "redo AVR for Zyxwabc", EncounterID: "ENC-554433"},
		Circuit:   charting.Circuit{Oxygenator: charting.Component{Model: "OXY-MODEL-77", Lot: "LOT-8899", UDI: "(01)0884450012345"}},
	}
	ev := func(min int, typ, comment string) charting.Entry {
		at := start.Add(time.Duration(min) * time.Minute)
		return charting.Entry{ID: uuid.New(), CaseID: c.ID, Kind: charting.EntryEvent, OccurredAt: at, RecordedAt: at,
			Detail: charting.EntryDetail{Event: &charting.Event{Type: typ, Comment: comment}}}
	}
	entries := []charting.Entry{ev(30, "bypass_on", "told Quentinia's family"), ev(-5, "heparin_given", ""), ev(120, "bypass_off", "")}
	m := charting.Metrics{Version: 1, Values: map[string]float64{"cpb_minutes": 90, "nadir_hct_pct": 22}, BypassStart: start.Add(30 * time.Minute),
		Population: "elderly"}
	p, _ := NewPseudonymizer(key)
	r := p.Build(c, entries, m, nil)
	if r.Age != "90+" || r.Year != 2026 || r.Sex != "" || len(r.Events) != 3 {
		t.Fatalf("record %+v", r)
	}
	// Minutes from bypass start: heparin at −5 is 35 before bypass at 30.
	want := []Event{{"heparin_given", -35}, {"bypass_on", 0}, {"bypass_off", 90}}
	for i, e := range r.Events {
		if e != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, e, want[i])
		}
	}
	var out bytes.Buffer
	if err := WriteNDJSON(&out, r); err != nil {
		t.Fatal(err)
	}
	cw := NewCSVWriter(&out, []string{"cpb_minutes", "nadir_hct_pct"})
	if err := cw.Write(r); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"MRN-998877", "Zyxwabc", "Quentinia", "1930", "02-03", "2026-05-01", "St-Elsewhere", "OR-Secret",
		"SURG-4411", "Hiddenname", "ENC-554433", "OXY-MODEL", "LOT-8899", "0884450012345", c.ID.String(), "family"} {
		if strings.Contains(out.String(), s) {
			t.Errorf("extract contains %q:\n%s", s, out.String())
		}
	}
	if !strings.Contains(out.String(), ",1,elderly,90,22") || !strings.Contains(out.String(), `"metrics_population":"elderly"`) ||
		!strings.Contains(out.String(), "definitions_version,metrics_population,cpb_minutes") {
		t.Errorf("extract lacks the metrics and the population they were measured for:\n%s", out.String())
	}
}
