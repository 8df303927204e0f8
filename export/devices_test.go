package export_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"perfusion/export"
	v2 "perfusion/hl7/v2"
	"perfusion/store/postgres/pgtest"
)

// TestDeviceDataExported: the device data of a signed case reaches both
// formats as one-minute means — FHIR Devices (the pump-flow source as the
// heart-lung machine), DeviceMetrics and SampledData trend Observations;
// HL7 v2 as an IHE PCD-01 report, one OBR per minute — and both pass the
// independent validators.
func TestDeviceDataExported(t *testing.T) {
	// On a whole minute, so the case's samples fall into the export's
	// epoch-aligned minutes as the expectations below count them.
	e := newEnv(t, pgtest.Open(t), &clock{t: time.Now().UTC().Truncate(time.Minute)})
	caseID, version := signedCase(t, e.s, e.clk)
	v, err := e.r.Load(context.Background(), caseID, version)
	if err != nil {
		t.Fatal(err)
	}

	f, err := e.r.FHIR(v)
	if err != nil {
		t.Fatal(err)
	}
	validateFHIR(t, f.Payload)
	var bundle struct {
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(f.Payload, &bundle); err != nil {
		t.Fatal(err)
	}
	devices := map[string]string{} // identifier value → type text
	metrics := 0
	trends := map[string]map[string]any{} // channel code → valueSampledData
	for _, en := range bundle.Entry {
		r := en.Resource
		switch r["resourceType"] {
		case "Device":
			ids, _ := r["identifier"].([]any)
			if len(ids) == 0 {
				continue
			}
			id := ids[0].(map[string]any)
			typ, _ := r["type"].(map[string]any)
			text, _ := typ["text"].(string)
			devices[id["value"].(string)] = text
		case "DeviceMetric":
			metrics++
		case "Observation":
			if sd, ok := r["valueSampledData"].(map[string]any); ok {
				code := r["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"].(string)
				trends[code] = sd
			}
		}
	}
	if devices["hlm-1"] != "Heart-lung machine" {
		t.Errorf("devices %v: want hlm-1 typed as the heart-lung machine", devices)
	}
	if _, ok := devices["monitor-1"]; !ok {
		t.Errorf("devices %v: want the monitor too", devices)
	}
	if metrics != 2 || len(trends) != 2 {
		t.Fatalf("%d DeviceMetrics and %d trend Observations, want 2 each", metrics, len(trends))
	}
	flow := trends["pump_flow"]
	if flow["period"] != float64(export.TrendPeriodMs) {
		t.Errorf("pump flow period %v, want %d ms", flow["period"], export.TrendPeriodMs)
	}
	// Minutes 10–89, each the mean of 4.40 and 4.60, except minute 20
	// whose first reading was invalid: 4.6 alone.
	data := strings.Fields(flow["data"].(string))
	if len(data) != 80 || data[0] != "4.5" || data[10] != "4.6" || data[79] != "4.5" {
		t.Errorf("pump flow data (%d values) %v", len(data), data)
	}
	// Temperature once a minute, minutes 10–90: 35.0 down to the nadir
	// 32 at minute 40, back up to 37.0.
	temp := strings.Fields(trends["temp_nasopharyngeal"]["data"].(string))
	if len(temp) != 81 || temp[0] != "35" || temp[30] != "32" || temp[80] != "37" {
		t.Errorf("temperature data (%d values) %v", len(temp), temp)
	}

	// The summary sends when the nadir occurred: 32.0 °C at minute 40 of
	// signedCase (three hours before the clock).
	sum, err := e.r.HL7(v)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := v2.Parse(sum.Payload)
	if err != nil {
		t.Fatal(err)
	}
	nadirAt := e.clk.now().Add(-3*time.Hour + 40*time.Minute)
	found := false
	for _, obx := range sm.All("OBX") {
		if obx.Field(3).Value() == v2.MetricLowestTemperature {
			found = true
			if got, want := obx.Field(14).Value(), v2.FormatDTM(nadirAt, nil); got != want || obx.Field(5).Value() != "32" {
				t.Errorf("lowest temperature OBX-5 %q OBX-14 %q, want 32 at %q", obx.Field(5).Value(), got, want)
			}
		}
	}
	if !found {
		t.Error("no lowest temperature in the summary")
	}

	h, err := e.r.DeviceReport(v)
	if err != nil {
		t.Fatal(err)
	}
	validateHL7(t, h.Payload)
	m, err := v2.Parse(h.Payload)
	if err != nil {
		t.Fatal(err)
	}
	msh := m.Segment("MSH")
	if got := msh.Field(21).Value(); got != "IHE_PCD_001" {
		t.Errorf("MSH-21 %q, want IHE_PCD_001", got)
	}
	if got := msh.Field(10).Value(); got != h.MessageID || got == "" {
		t.Errorf("MSH-10 %q, message id %q", got, h.MessageID)
	}
	// Each OBR is the interval of its one-minute mean (IHE PCD TF-2
	// OBR-7/OBR-8); a metric OBX-14 would turn the mean into a point value.
	for _, obr := range m.All("OBR") {
		start, err1 := time.Parse("20060102150405-0700", obr.Field(7).Value())
		end, err2 := time.Parse("20060102150405-0700", obr.Field(8).Value())
		if err1 != nil || err2 != nil || end.Sub(start) != time.Minute {
			t.Fatalf("OBR-7 %q OBR-8 %q, want a one-minute interval", obr.Field(7).Value(), obr.Field(8).Value())
		}
	}
	for _, obx := range m.All("OBX") {
		if obx.Field(2).Value() == "NM" && obx.Field(14).Value() != "" {
			t.Fatalf("metric OBX %s has OBX-14 %q", obx.Field(4).Value(), obx.Field(14).Value())
		}
	}
	if n := len(m.All("OBR")); n != 81 {
		t.Errorf("%d OBR groups, want one per minute with data (81)", n)
	}
	var flowRows, tempRows int
	for _, obx := range m.All("OBX") {
		switch obx.Field(3).Value() {
		case "pump_flow":
			flowRows++
		case "temp_nasopharyngeal":
			tempRows++
		}
	}
	if flowRows != 80 || tempRows != 81 {
		t.Errorf("%d pump flow and %d temperature OBX rows, want 80 and 81", flowRows, tempRows)
	}
}
