package v2

import (
	"math"
	"strings"
	"testing"
	"time"

	"perfusion/charting"
)

func TestDeviceOBXHierarchy(t *testing.T) {
	m, err := BuildDeviceReport(refDeviceHeader(), refDeviceReport())
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Get("MSH-21.3"); got != "1.3.6.1.4.1.19376.1.6.1.1.1" {
		t.Errorf("MSH-21 = %q", got)
	}
	// Within each OBR: OBX-4 unique, in dictionary order, device rows X
	// before their metrics, metric rows R with AMEAS.
	var prev []int
	seen := map[string]bool{}
	for _, s := range m.Segments {
		switch s.ID {
		case "OBR":
			prev, seen = nil, map[string]bool{}
		case "OBX":
			sub := s.Field(4).Value()
			if seen[sub] {
				t.Errorf("OBX-4 %s repeated within an OBR", sub)
			}
			seen[sub] = true
			parts := strings.Split(sub, ".")
			if len(parts) != 4 {
				t.Fatalf("OBX-4 %q is not MDS.VMD.CHAN.METRIC", sub)
			}
			var cur []int
			for _, p := range parts {
				n := 0
				for _, c := range p {
					n = n*10 + int(c-'0')
				}
				cur = append(cur, n)
			}
			if prev != nil && !lexLess(prev, cur) {
				t.Errorf("OBX-4 %v does not follow %v in dictionary order", cur, prev)
			}
			prev = cur
			device := cur[3] == 0
			if st := s.Field(11).Value(); device && st != "X" {
				t.Errorf("device row %s has OBX-11 %q", sub, st)
			}
			if !device {
				if s.Field(17).Component(1) != "AMEAS" || s.Field(17).Component(3) != "MDC" {
					t.Errorf("metric %s OBX-17 = %v", sub, s.Field(17))
				}
				if s.Field(6).Component(6) != "UCUM" {
					t.Errorf("metric %s OBX-6 = %v", sub, s.Field(6))
				}
			}
			if cur[1] == 0 && cur[3] == 0 && s.Field(18).Value() == "" {
				t.Errorf("MDS row %s has no equipment ID", sub)
			}
		}
	}
}

func lexLess(a, b []int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func TestDeviceOBXRejects(t *testing.T) {
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	for name, obs := range map[string][]DeviceObservation{
		"unknown channel": {{SourceID: "a", Channel: "nope", Time: at}},
		"no source":       {{Channel: "pump_flow", Time: at, Value: 1}},
		"twice":           {{SourceID: "a", Channel: "pump_flow", Time: at, Value: 1}, {SourceID: "a", Channel: "pump_flow", Time: at, Value: 2}},
		"NaN":             {{SourceID: "a", Channel: "pump_flow", Time: at, Value: math.NaN()}},
	} {
		if _, err := DeviceOBX(nil, nil, obs, 1, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	r := refDeviceReport()
	r.Observations = nil
	if _, err := BuildDeviceReport(refDeviceHeader(), r); err == nil {
		t.Error("empty report accepted")
	}
	r = refDeviceReport()
	r.Observations[0].Time = time.Time{}
	if _, err := BuildDeviceReport(refDeviceHeader(), r); err == nil {
		t.Error("observation without time accepted")
	}
	r = refDeviceReport()
	r.Kind = "x"
	if _, err := BuildDeviceReport(refDeviceHeader(), r); err == nil {
		t.Error("unknown kind accepted")
	}
}

func TestFormatAtResolution(t *testing.T) {
	for _, tc := range []struct {
		v, res float64
		want   string
	}{
		{4.2, 0.01, "4.20"},
		{4.25, 0.01, "4.25"},
		{32.5, 0.1, "32.5"},
		{32, 0.1, "32.0"},
		{0, 0.1, "0.0"},
		{math.Copysign(0, -1), 0.1, "0.0"},
		{-12, 1, "-12"},
		{4.123, 0.01, "4.123"}, // off the grid: written exactly, never rounded
		{7.4, 0, "7.4"},
		{2650, 1, "2650"},
	} {
		got, err := formatAtResolution(tc.v, tc.res)
		if err != nil || got != tc.want {
			t.Errorf("formatAtResolution(%v, %v) = %q, %v; want %q", tc.v, tc.res, got, err, tc.want)
		}
	}
}

func TestLocalCodesCoverEventsAndCatalogue(t *testing.T) {
	codes := map[string]LocalCode{}
	for _, c := range LocalCodes(nil) {
		codes[c.Code] = c
	}
	for _, e := range charting.EventTypes {
		if c, ok := codes[CodeEventPrefix+e]; !ok || c.Display == "" {
			t.Errorf("event type %s has no local code with a display name", e)
		}
	}
	for _, k := range charting.FluidKinds {
		if _, ok := codes[CodeFluidKindPrefix+k]; !ok {
			t.Errorf("fluid kind %s has no local code", k)
		}
	}
	for _, k := range charting.BloodProductTypes {
		if _, ok := codes[CodeBloodProductTypePrefix+k]; !ok {
			t.Errorf("blood product %s has no local code", k)
		}
	}
	for _, ch := range charting.DefaultCatalogue().Channels() {
		if ch.CodeSystem == SystemLocal {
			if _, ok := codes[ch.Code]; !ok {
				t.Errorf("channel %s missing", ch.Key)
			}
		}
	}
	for _, f := range []string{"alpha_stat", "ph_stat", string(charting.BSAMosteller), string(charting.BSADuBois), string(charting.BSAHaycock)} {
		if c := codes[f]; c.Use != UseMethod {
			t.Errorf("method %s missing", f)
		}
	}
}

// A slot whose readings all lay outside the plausible range is sent
// without a value, flagged < or > in OBX-8, status X.
func TestDeviceOBXOutOfRange(t *testing.T) {
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	obs := []DeviceObservation{
		{SourceID: "hlm-1", Channel: "pump_flow", Time: at, OutOfRange: 1, Value: 0},
		{SourceID: "hlm-1", Channel: "temp_arterial_outlet", Time: at, OutOfRange: -1},
		{SourceID: "hlm-1", Channel: "map", Time: at, Value: 65},
	}
	rows, err := DeviceOBX(nil, nil, obs, 1, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string][3]string{}
	for _, s := range rows {
		flags[s.Field(3).Value()] = [3]string{s.Field(5).Value(), s.Field(8).Value(), s.Field(11).Value()}
	}
	if got := flags["pump_flow"]; got != [3]string{"", ">", "X"} {
		t.Errorf("pump flow above the range: OBX-5/8/11 %q", got)
	}
	if got := flags["temp_arterial_outlet"]; got != [3]string{"", "<", "X"} {
		t.Errorf("temperature below the range: OBX-5/8/11 %q", got)
	}
	if got := flags["150035"]; got != [3]string{"65", "", "R"} {
		t.Errorf("MAP in range: OBX-5/8/11 %q", got)
	}
}

// TestDeviceReportIntervalAndMDC checks the PCD-01 content rules of IHE PCD
// TF-2: OBX-3.2 the MDC reference ID, OBR-7/OBR-8 the interval of a mean
// (no OBX-14, which would make it a point value), the monitor MDS code.
func TestDeviceReportIntervalAndMDC(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	r := &DeviceReport{Kind: charting.KindCPB, Patient: refDeviceReport().Patient, Period: time.Minute,
		Devices: []Device{{SourceID: "mon", Type: MDCMonitorMDS}},
		Observations: []DeviceObservation{
			{SourceID: "mon", Channel: "spo2", Time: t0, Value: 97},
			{SourceID: "mon", Channel: "heart_rate", Time: t0, Value: 80},
			{SourceID: "mon", Channel: "map", Time: t0, Value: 62},
			{SourceID: "hlm", Channel: "pump_flow", Time: t0, Value: 4.2},
		}}
	m, err := BuildDeviceReport(refDeviceHeader(), r)
	if err != nil {
		t.Fatal(err)
	}
	obr := m.Segment("OBR")
	if got, want := obr.Field(8).Value(), FormatDTM(t0.Add(time.Minute), refDeviceHeader().Location); got != want || obr.Field(7).Value() == "" {
		t.Errorf("OBR-7 %q OBR-8 %q, want the interval to %q", obr.Field(7).Value(), got, want)
	}
	want := map[string]string{ // OBX-4 → OBX-3
		"1.0.0.0":  "device_mds^Perfusion data source^99PERF",
		"2.0.0.0":  "69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC",
		"2.1.1.26": "147842^MDC_ECG_CARD_BEAT_RATE^MDC",
		"2.1.1.27": "150456^MDC_PULS_OXIM_SAT_O2^MDC",
		// No reference ID in our sources: the numeric code with the name.
		"2.1.1.21": "150035^Mean arterial pressure^MDC",
	}
	for _, obx := range m.All("OBX") {
		sub := obx.Field(4).Value()
		if w, ok := want[sub]; ok {
			if f := obx.Field(3); f.Component(1)+"^"+f.Component(2)+"^"+f.Component(3) != w {
				t.Errorf("OBX-3 of %s = %s^%s^%s, want %q", sub, f.Component(1), f.Component(2), f.Component(3), w)
			}
			delete(want, sub)
		}
		if obx.Field(11).Value() == "R" && obx.Field(14).Value() != "" {
			t.Errorf("metric %s has OBX-14 %q: a point time on an interval mean", sub, obx.Field(14).Value())
		}
	}
	if len(want) > 0 {
		t.Errorf("rows missing: %v", want)
	}
}
