package v2

import (
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

// The reference case: a signed CPB case with everything the summary can
// carry, including a non-ASCII patient name and a note full of characters
// that must be escaped. It is built here, in code, so the golden files show
// exactly what the builders make of known input.

var (
	refCaseID = uuid.MustParse("7f1c2b9e-4d3a-4e8b-9a51-0c6d2e8f4b17")
	refZone   = time.FixedZone("CET", 3600) // the site writes local time with its offset
)

func refTime(hhmm string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", "2026-11-27 "+hhmm)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func refHeader(version int64) Header {
	return Header{
		SendingApplication:   HD{NamespaceID: "PERFUSION", UniversalID: "1.2.826.0.1.3680043.10.1234", UniversalIDType: "ISO"},
		SendingFacility:      HD{NamespaceID: "GENHOSP"},
		ReceivingApplication: HD{NamespaceID: "EHR"},
		ReceivingFacility:    HD{NamespaceID: "GENHOSP"},
		ControlID:            ControlID("oru-summary", refCaseID, version),
		Time:                 refTime("10:45").Add(time.Duration(version-1) * 26 * time.Hour),
		ProcessingID:         Production,
		Location:             refZone,
	}
}

func refPatient() charting.Patient {
	return charting.Patient{
		MRN:                   "00012345",
		MRNAssigningAuthority: "GENHOSP",
		FamilyName:            "Żółkiewska-Müller",
		GivenName:             "Zoë",
		BirthDate:             "1956-03-14",
		Sex:                   "female",
		HeightCm:              162,
		WeightKg:              58,
		BSAFormula:            charting.BSAMosteller,
		BSAM2:                 1.615,
	}
}

func refVisit() Visit {
	return Visit{PointOfCare: "CARDIAC OR", Room: "3", Facility: HD{NamespaceID: "GENHOSP"}, VisitNumber: "V20261127-0042"}
}

func refEntry(n byte, kind charting.EntryKind, hhmm string, d charting.EntryDetail) charting.Entry {
	at := refTime(hhmm)
	return charting.Entry{
		ID:         uuid.UUID{0x10, n},
		CaseID:     refCaseID,
		Kind:       kind,
		OccurredAt: at,
		RecordedAt: at.Add(40 * time.Second),
		Author:     "perf.kowalski",
		Detail:     d,
	}
}

func event(n byte, hhmm, typ, comment string) charting.Entry {
	return refEntry(n, charting.EntryEvent, hhmm, charting.EntryDetail{Event: &charting.Event{Type: typ, Comment: comment}})
}

func lab(n byte, hhmm, analyte string, v float64, unit, tc string) charting.Entry {
	return refEntry(n, charting.EntryLabResult, hhmm, charting.EntryDetail{LabResult: &charting.LabResult{
		Analyte: analyte, Value: v, Unit: unit, Site: "arterial", TemperatureCorrection: tc, Device: "ABL90"}})
}

// refSummary is the summary as first sent at sign-off (version 1).
func refSummary() *Summary {
	glucose := lab(0x2a, "09:15", "glucose", 7.2, "mmol/L", "")
	return &Summary{
		CaseID:      refCaseID,
		Kind:        charting.KindCPB,
		Patient:     refPatient(),
		Visit:       refVisit(),
		Status:      StatusFinal,
		BypassStart: refTime("08:15"),
		BypassEnd:   refTime("09:52"),
		Signature: charting.Signature{CaseID: refCaseID, Number: 1, Signer: "perf.kowalski",
			DisplayName: "Anna Kowalski, CCP", Meaning: charting.MeaningAuthored, SignedAt: refTime("10:40")},
		Metrics: []Metric{
			{Key: MetricCPBDuration, Value: 97},
			{Key: MetricCrossClampDuration, Value: 69},
			{Key: MetricCPBOutsideCrossClampDuration, Value: 28},
			{Key: MetricLowestTemperature, Value: 32.1, At: refTime("09:05"), Channel: "temp_nasopharyngeal"},
			{Key: MetricHighestTemperature, Value: 36.9, At: refTime("09:48"), Channel: "temp_arterial_outlet"},
			{Key: MetricLowestHct, Value: 24, At: refTime("08:30")},
			{Key: MetricLowestMAP, Value: 48, At: refTime("08:17")},
			{Key: MetricLowestDO2i, Value: 268, At: refTime("08:48")},
			{Key: MetricDO2iThreshold, Value: 272},
			{Key: MetricDO2iBelowThresholdDuration, Value: 11},
			{Key: MetricDO2iBelowThresholdArea, Value: 23.5},
			{Key: MetricArtifactExcludedDuration, Value: 2},
			{Key: MetricBSA, Value: 1.615, Method: "mosteller"},
			{Key: MetricPrimeVolume, Value: 1400},
			{Key: MetricRAPVolume, Value: 300},
			{Key: MetricNetPrimeVolumeIndex, Value: 681.1},
		},
		Events: []charting.Entry{
			event(1, "08:05", "heparin_given", ""),
			event(2, "08:10", "act_adequate", ""),
			event(3, "08:15", "bypass_on", "Venous drainage improved after cannula repositioned"),
			event(4, "08:22", "cross_clamp_on", ""),
			event(5, "09:10", "rewarming_start", ""),
			event(6, "09:31", "cross_clamp_off", ""),
			event(7, "09:52", "bypass_off", ""),
			event(8, "10:00", "protamine_given", ""),
		},
		Labs: []charting.Entry{
			lab(0x20, "08:12", "act", 480, "s", ""),
			lab(0x21, "08:30", "ph", 7.38, "[pH]", "alpha_stat"),
			lab(0x22, "08:30", "pco2", 41, "mm[Hg]", "alpha_stat"),
			lab(0x23, "08:30", "po2", 245, "mm[Hg]", "alpha_stat"),
			lab(0x24, "08:30", "hct", 24, "%", ""),
			lab(0x25, "08:30", "k", 4.6, "mmol/L", ""),
			lab(0x26, "09:15", "ph", 7.41, "[pH]", "alpha_stat"),
			lab(0x27, "09:15", "hct", 27, "%", ""),
			lab(0x28, "09:15", "lactate", 1.8, "mmol/L", ""),
			glucose,
		},
		Drugs: []DrugTotal{
			{Drug: "Heparin sodium", Dose: 30000, Unit: "[iU]"},
			{Drug: "Protamine sulfate", Dose: 300, Unit: "mg"},
			{Drug: "Mannitol 20%", Dose: 25, Unit: "g"},
		},
		Fluids: []FluidTotal{
			{Kind: "crystalloid", VolumeML: 1000},
			{Kind: "ultrafiltration_removed", VolumeML: 800},
			{Kind: "urine_output", VolumeML: 350},
		},
		BloodProducts: []BloodProductTotal{{Type: "prbc", Units: 1, VolumeML: 280}},
		Notes: []charting.Entry{
			refEntry(0x30, charting.EntryNote, "08:02", charting.EntryDetail{Note: &charting.Note{
				Text: "Pre-bypass checklist complete.\r\nLine pressures |ok| ^ A&B ~ C:\\pump\\log; flow 4.2 L/min"}}),
		},
	}
}

// refAmended is the same case resent after an addendum (version 2): OBR-25
// C, one corrected lab result (OBX-11 C) and the addendum as an NTE.
func refAmended() *Summary {
	s := refSummary()
	s.Status = StatusCorrected
	fixed := lab(0x2b, "09:15", "glucose", 8.2, "mmol/L", "")
	fixed.Supersedes = s.Labs[len(s.Labs)-1].ID
	fixed.RecordedAt = refTime("11:20")
	s.Labs[len(s.Labs)-1] = fixed
	add := refEntry(0x31, charting.EntryAddendum, "11:25", charting.EntryDetail{Addendum: &charting.Addendum{
		Text:   "Cell saver: 350 mL returned at 09:40 (not charted before sign-off).",
		Reason: "Omitted at sign-off; confirmed with anaesthesia",
	}})
	s.Notes = append(s.Notes, add)
	s.Fluids = append(s.Fluids, FluidTotal{Kind: "cell_saver_returned", VolumeML: 350, Corrected: true})
	return s
}

// refDeviceReport is a PCD-01 report of two readings a minute apart from
// the heart-lung machine, the gas blender and the patient monitor.
func refDeviceReport() *DeviceReport {
	t1, t2 := refTime("09:00"), refTime("09:01")
	obs := func(src, ch string, t time.Time, v float64) DeviceObservation {
		return DeviceObservation{SourceID: src, Channel: ch, Time: t, Value: v}
	}
	return &DeviceReport{
		Kind:    charting.KindCPB,
		Patient: refPatient(),
		Visit:   refVisit(),
		Devices: []Device{
			{SourceID: "hlm-1", Equipment: EUI64("0012A3FFFE4B5C6D")},
			{SourceID: "monitor-3", Equipment: EI{EntityID: "SN4711", NamespaceID: "IntelliVue_MX800", UniversalID: "philips.com", UniversalIDType: "DNS"}},
		},
		Observations: []DeviceObservation{
			obs("hlm-1", "pump_flow", t1, 4.2),
			obs("hlm-1", "pump_speed", t1, 2650),
			obs("hlm-1", "arterial_line_pressure", t1, 182),
			obs("hlm-1", "temp_arterial_outlet", t1, 32.5),
			obs("blender-1", "fio2", t1, 60),
			obs("blender-1", "sweep_flow", t1, 2.5),
			obs("monitor-3", "map", t1, 62),
			obs("monitor-3", "heart_rate", t1, 0),
			{SourceID: "monitor-3", Channel: "spo2", Time: t1, Invalid: true},
			obs("hlm-1", "pump_flow", t2, 4.25),
			obs("hlm-1", "temp_arterial_outlet", t2, 32.4),
			obs("monitor-3", "map", t2, 58),
		},
	}
}

func refDeviceHeader() Header {
	h := refHeader(1)
	h.ControlID = "PCD01-20261127-0900"
	h.Time = refTime("09:01").Add(5 * time.Second)
	h.Location = nil // device data in UTC (+0000), as IHE PCD recommends
	return h
}
