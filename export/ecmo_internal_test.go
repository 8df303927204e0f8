package export

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/hl7/fhir"
	v2 "perfusion/hl7/v2"
)

// ecmoVersion is a signed ECMO run as pumpsim --ecmo charts it:
// cannulation and full flow, no bypass on/off.
func ecmoVersion(events map[string]time.Duration) *Version {
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	c := &charting.Case{ID: uuid.New(), Kind: charting.KindECMO, StartedAt: t0, ClosedAt: t0.Add(24 * time.Hour),
		Signatures: []charting.Signature{{Number: 1, Signer: "perf.kowalski", Meaning: charting.MeaningAuthored, SignedAt: t0.Add(24*time.Hour + time.Minute)}}}
	c.Details.Patient.MRN = "00012345"
	var cur []charting.Entry
	n := byte(0)
	for typ, at := range events {
		n++
		cur = append(cur, charting.Entry{ID: uuid.UUID{0x10, n}, CaseID: c.ID, Kind: charting.EntryEvent, OccurredAt: t0.Add(at),
			Detail: charting.EntryDetail{Event: &charting.Event{Type: typ}}})
	}
	return &Version{Case: c, Number: 1, At: c.Signatures[0].SignedAt, All: cur, Current: cur, First: true}
}

// TestECMORunTimes: an ECMO run that charts no bypass on/off still has a
// run time: OBR-7/8 and Procedure.performedPeriod from cannulation to
// decannulation (else to the case's close), and an ecmo_duration metric.
func TestECMORunTimes(t *testing.T) {
	r := NewRenderer(nil, HL7Config{}, fhir.Options{}, nil)
	for name, tc := range map[string]struct {
		events     map[string]time.Duration
		start, end time.Duration
	}{
		"cannulation to decannulation":   {map[string]time.Duration{"cannulation": 30 * time.Minute, "full_flow": 33 * time.Minute, "decannulation": 20 * time.Hour}, 30 * time.Minute, 20 * time.Hour},
		"cannulation, run to case close": {map[string]time.Duration{"cannulation": 30 * time.Minute, "full_flow": 33 * time.Minute}, 30 * time.Minute, 24 * time.Hour},
		"bypass on/off charted":          {map[string]time.Duration{"cannulation": 10 * time.Minute, "bypass_on": 30 * time.Minute, "bypass_off": 90 * time.Minute}, 30 * time.Minute, 90 * time.Minute},
	} {
		v := ecmoVersion(tc.events)
		t0 := v.Case.StartedAt
		s, err := r.Summary(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !s.BypassStart.Equal(t0.Add(tc.start)) || !s.BypassEnd.Equal(t0.Add(tc.end)) {
			t.Errorf("%s: run %v–%v, want %v–%v", name, s.BypassStart, s.BypassEnd, t0.Add(tc.start), t0.Add(tc.end))
		}
		var minutes float64
		for _, m := range s.Metrics {
			if m.Key == v2.MetricECMODuration {
				minutes = m.Value
			}
		}
		if want := (tc.end - tc.start).Minutes(); minutes != want {
			t.Errorf("%s: ecmo_duration %v, want %v", name, minutes, want)
		}
		rec, err := r.Record(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !rec.BypassEnd.Equal(t0.Add(tc.end)) {
			t.Errorf("%s: FHIR period end %v", name, rec.BypassEnd)
		}
	}
}
