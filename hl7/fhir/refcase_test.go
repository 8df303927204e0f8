package fhir

import (
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	v2 "perfusion/hl7/v2"
)

// The reference case of hl7/v2 (refcase_test.go there): the same case ID,
// patient, times, labs, drug, fluid and blood totals and metrics, so the
// FHIR and HL7 v2 golden files describe the same case. v2 sends totals;
// FHIR sends each administration, so the entries below add up to v2's
// totals. Cardioplegia doses, trends, devices and the circuit are added
// here (v2's summary does not carry them).

var refCaseID = uuid.MustParse("7f1c2b9e-4d3a-4e8b-9a51-0c6d2e8f4b17")

func refTime(hhmm string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", "2026-11-27 "+hhmm)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func refOptions() Options {
	return Options{
		MRNSystems:      map[string]string{"GENHOSP": "http://genhosp.example.org/fhir/sid/mrn"},
		EncounterSystem: "http://genhosp.example.org/fhir/sid/visit",
		StaffSystem:     "http://genhosp.example.org/fhir/sid/staff",
	}
}

func refEntry(n byte, kind charting.EntryKind, hhmm string, d charting.EntryDetail) charting.Entry {
	at := refTime(hhmm)
	return charting.Entry{ID: uuid.UUID{0x10, n}, CaseID: refCaseID, Kind: kind, OccurredAt: at,
		RecordedAt: at.Add(40 * time.Second), Author: "perf.kowalski", Detail: d}
}

func event(n byte, hhmm, typ string) charting.Entry {
	return refEntry(n, charting.EntryEvent, hhmm, charting.EntryDetail{Event: &charting.Event{Type: typ}})
}

func lab(n byte, hhmm, analyte string, v float64, unit, tc string) charting.Entry {
	return refEntry(n, charting.EntryLabResult, hhmm, charting.EntryDetail{LabResult: &charting.LabResult{
		Analyte: analyte, Value: v, Unit: unit, Site: "arterial", TemperatureCorrection: tc, Device: "ABL90"}})
}

func drug(n byte, hhmm, name string, dose float64, unit string) charting.Entry {
	return refEntry(n, charting.EntryDrug, hhmm, charting.EntryDetail{Drug: &charting.DrugDose{Drug: name, Dose: dose, Unit: unit, Route: "intravenous"}})
}

func fluid(n byte, hhmm, kind, name string, ml float64) charting.Entry {
	return refEntry(n, charting.EntryFluid, hhmm, charting.EntryDetail{Fluid: &charting.Fluid{Kind: kind, Name: name, VolumeML: ml}})
}

func cardioplegia(n byte, hhmm, phase string, ml, temp float64) charting.Entry {
	return refEntry(n, charting.EntryCardioplegia, hhmm, charting.EntryDetail{Cardioplegia: &charting.CardioplegiaDose{
		Solution: "del Nido", Route: "antegrade", VolumeML: ml, TemperatureC: temp, Phase: phase}})
}

func refCase() *charting.Case {
	return &charting.Case{
		ID: refCaseID, Kind: charting.KindCPB, Site: "GENHOSP", Room: "3", Status: charting.StatusSigned,
		DetailsVersion: 2,
		Details: charting.Details{
			Patient: charting.Patient{MRN: "00012345", MRNAssigningAuthority: "GENHOSP", FamilyName: "Żółkiewska-Müller",
				GivenName: "Zoë", BirthDate: "1956-03-14", Sex: "female", HeightCm: 162, WeightKg: 58,
				BSAFormula: charting.BSAMosteller, BSAM2: 1.615},
			Team: charting.Team{
				Surgeon:          charting.StaffMember{StaffID: "surg.nowak", DisplayName: "Dr Piotr Nowak"},
				Anesthesiologist: charting.StaffMember{StaffID: "anes.weber", DisplayName: "Dr Lena Weber"},
				Perfusionists: []charting.StaffMember{
					{StaffID: "perf.kowalski", DisplayName: "Anna Kowalski, CCP"},
					{StaffID: "perf.osei", DisplayName: "Kwame Osei, CCP"},
				},
			},
			Procedure: charting.Procedure{Description: "Aortic valve replacement", SnomedCode: "63697000", EncounterID: "V20261127-0042"},
			Circuit: charting.Circuit{ArterialPump: "centrifugal",
				Oxygenator:     charting.Component{Model: "Inspire 8F", Lot: "2611A0457", UDI: "(01)08033588031234(17)281031(10)2611A0457"},
				ArterialFilter: charting.Component{Model: "AF 40", Lot: "F2610-118"},
				Reservoir:      "hard_shell"},
			Prime: charting.Prime{Components: []charting.PrimeComponent{{Name: "Plasma-Lyte A", VolumeML: 1200}, {Name: "Mannitol 20%", VolumeML: 200}}, RAPVolumeML: 300},
		},
		Signatures: []charting.Signature{
			{CaseID: refCaseID, Number: 1, Signer: "perf.kowalski", DisplayName: "Anna Kowalski, CCP",
				Meaning: charting.MeaningAuthored, SignedAt: refTime("10:40"), CoversSeq: 212,
				CoversHash: charting.Hash{0x5e, 0x1a, 0x93, 0x07}},
			{CaseID: refCaseID, Number: 2, Signer: "perf.osei", DisplayName: "Kwame Osei, CCP",
				Meaning: charting.MeaningReviewed, SignedAt: refTime("10:44"), CoversSeq: 213,
				CoversHash: charting.Hash{0x9c, 0x42, 0x11, 0xe0}},
		},
	}
}

// refTrend is a minute of data every 20 s (research data set rate).
func refTrend(src, ch, from string, vals []float64, invalid []bool) Trend {
	t0 := refTime(from).UnixMilli()
	s := charting.Series{Channel: ch, Values: vals, Invalid: invalid}
	for i := range vals {
		s.TimesMs = append(s.TimesMs, t0+int64(i)*20000)
	}
	return Trend{SourceID: src, Series: s, PeriodMs: 20000}
}

func refRecord() *Record {
	return &Record{
		Case:        refCase(),
		Version:     1,
		Timestamp:   refTime("10:45"),
		BypassStart: refTime("08:15"),
		BypassEnd:   refTime("09:52"),
		Entries: []charting.Entry{
			drug(0x40, "08:05", "Heparin sodium", 30000, "[iU]"),
			lab(0x20, "08:12", "act", 480, "s", ""),
			event(3, "08:15", "bypass_on"),
			fluid(0x50, "08:20", "crystalloid", "Plasma-Lyte A", 1000),
			event(4, "08:22", "cross_clamp_on"),
			cardioplegia(0x60, "08:24", "induction", 1000, 4),
			drug(0x41, "08:25", "Mannitol 20%", 25, "g"),
			lab(0x21, "08:30", "ph", 7.38, "[pH]", "alpha_stat"),
			lab(0x24, "08:30", "hct", 24, "%", ""),
			refEntry(0x70, charting.EntryBloodProduct, "08:40", charting.EntryDetail{BloodProduct: &charting.BloodProduct{Type: "prbc", Units: 1, VolumeML: 280, Route: "circuit"}}),
			cardioplegia(0x61, "09:05", "maintenance", 500, 4),
			lab(0x28, "09:15", "lactate", 1.8, "mmol/L", ""),
			event(6, "09:31", "cross_clamp_off"),
			fluid(0x51, "09:50", "ultrafiltration_removed", "", 800),
			event(7, "09:52", "bypass_off"),
			drug(0x42, "10:00", "Protamine sulfate", 300, "mg"),
			fluid(0x52, "10:05", "urine_output", "", 350),
		},
		Metrics: []v2.Metric{
			{Key: v2.MetricCPBDuration, Value: 97},
			{Key: v2.MetricCrossClampDuration, Value: 69},
			{Key: v2.MetricLowestTemperature, Value: 32.1, At: refTime("09:05"), Channel: "temp_nasopharyngeal"},
			{Key: v2.MetricHighestTemperature, Value: 36.9, At: refTime("09:48"), Channel: "temp_arterial_outlet"},
			{Key: v2.MetricLowestDO2i, Value: 268, At: refTime("08:48")},
			{Key: v2.MetricBSA, Value: 1.615, Method: "mosteller"},
		},
		Devices: []DeviceInfo{
			{SourceID: "hlm-1", Identifier: Identifier{System: "http://genhosp.example.org/fhir/sid/device-eui64", Value: "0012A3FFFE4B5C6D"},
				Name: "HLM OR 3", Manufacturer: "LivaNova", Model: "S5", HeartLungMachine: true},
			{SourceID: "monitor-3", Identifier: Identifier{System: "http://genhosp.example.org/fhir/sid/device-serial", Value: "SN4711"},
				Name: "Patient monitor OR 3", Manufacturer: "Philips", Model: "IntelliVue MX800"},
		},
		Trends: []Trend{
			refTrend("hlm-1", "pump_flow", "09:00", []float64{4.2, 4.25, 4.2, 4.1}, nil),
			refTrend("hlm-1", "temp_arterial_outlet", "09:00", []float64{32.5, 32.4, 32.4, 32.5}, nil),
			refTrend("monitor-3", "map", "09:00", []float64{62, 0, 58, 60}, []bool{false, true, false, false}),
		},
	}
}

// refAmended is the export after an amendment (version 2): the lactate
// result corrected (a new entry superseding the first, status corrected)
// and a new bundle identifier, so the receiver keeps both versions.
func refAmended() *Record {
	r := refRecord()
	r.Version = 2
	r.Timestamp = refTime("11:30")
	for i, e := range r.Entries {
		if e.Detail.LabResult != nil && e.Detail.LabResult.Analyte == "lactate" {
			fixed := lab(0x2b, "09:15", "lactate", 2.1, "mmol/L", "")
			fixed.Supersedes = e.ID
			fixed.RecordedAt = refTime("11:20")
			r.Entries[i] = fixed
		}
	}
	return r
}
