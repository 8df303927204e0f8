package charting

import (
	"slices"
	"testing"

	"github.com/google/uuid"
)

func TestRegularTrends(t *testing.T) {
	ms := func(min float64) int64 { return at(min).UnixMilli() }
	b := &entryBuilder{caseID: uuid.New()}
	// An artifact on the monitor's MAP from 2:00 to 3:00 (a flush).
	b.mark("map", "monitor-1", 2, 3)
	series := []SourcedSeries{
		// Pump flow every 20 s for three minutes; one invalid reading.
		{SourceID: "hlm-1", Series: Series{Channel: "pump_flow",
			TimesMs: []int64{ms(0), ms(1.0 / 3), ms(2.0 / 3), ms(1), ms(4.0 / 3), ms(5.0 / 3), ms(2), ms(7.0 / 3), ms(8.0 / 3)},
			Values:  []float64{4.0, 4.2, 4.4, 4.1, 0, 4.3, 4.5, 4.5, 4.5},
			Invalid: []bool{false, false, false, false, true, false, false, false, false}}},
		// MAP from the monitor: minute 2 is all artifact, minute 3 all invalid.
		{SourceID: "monitor-1", Series: Series{Channel: "map",
			TimesMs: []int64{ms(0), ms(0.5), ms(2), ms(2.5), ms(3), ms(4)},
			Values:  []float64{60, 64, 300, 10, 0, 70},
			Invalid: []bool{false, false, false, false, true, false}}},
		// MAP from the pump's pressure port too: fewer usable samples, so
		// the monitor's series is the one exported.
		{SourceID: "hlm-1", Series: Series{Channel: "map", TimesMs: []int64{ms(0)}, Values: []float64{99}}},
	}
	got := RegularTrends(series, CurrentView(b.all, false), 60_000, nil)
	if len(got) != 2 {
		t.Fatalf("got %d series, want 2 (one per channel): %+v", len(got), got)
	}
	// Sorted by channel: map, then pump_flow.
	m, f := got[0], got[1]
	if m.SourceID != "monitor-1" || m.Series.Channel != "map" {
		t.Fatalf("first series %s/%s, want monitor-1/map", m.SourceID, m.Series.Channel)
	}
	wantTimes := []int64{ms(0), ms(1), ms(2), ms(3), ms(4)}
	if !slices.Equal(m.Series.TimesMs, wantTimes) {
		t.Errorf("map times %v, want %v (a slot per minute from the first to the last)", m.Series.TimesMs, wantTimes)
	}
	// Minute 0: (60+64)/2 = 62; minute 1: no sample; minute 2: artifact;
	// minute 3: invalid; minute 4: 70.
	wantInvalid := []bool{false, true, true, true, false}
	if !slices.Equal(m.Series.Invalid, wantInvalid) {
		t.Errorf("map invalid %v, want %v", m.Series.Invalid, wantInvalid)
	}
	if m.Series.Values[0] != 62 || m.Series.Values[4] != 70 {
		t.Errorf("map values %v, want 62 at minute 0 and 70 at minute 4", m.Series.Values)
	}
	if f.SourceID != "hlm-1" || f.Series.Channel != "pump_flow" {
		t.Fatalf("second series %s/%s, want hlm-1/pump_flow", f.SourceID, f.Series.Channel)
	}
	// Minute 0: (4.0+4.2+4.4)/3 = 4.2; minute 1: (4.1+4.3)/2 = 4.2 (the
	// invalid reading left out); minute 2: 4.5.
	want := []float64{4.2, 4.2, 4.5}
	if len(f.Series.Values) != 3 || f.Series.Invalid != nil {
		t.Fatalf("pump flow %+v, want three valid slots", f.Series)
	}
	for i, w := range want {
		if d := f.Series.Values[i] - w; d > 1e-9 || d < -1e-9 {
			t.Errorf("pump flow slot %d = %v, want %v", i, f.Series.Values[i], w)
		}
	}
	if RegularTrends(series, nil, 0, nil) != nil {
		t.Error("a zero period must give nothing")
	}
}

// An out-of-range reading is stored as sent but left out of the exported
// mean, like an invalid one; a slot with nothing else says which side of
// the range its readings were on.
func TestRegularTrendsLeavesOutOfRangeOut(t *testing.T) {
	ms := func(min float64) int64 { return at(min).UnixMilli() }
	series := []SourcedSeries{{SourceID: "hlm-1", Series: Series{Channel: "pump_flow",
		TimesMs: []int64{ms(0), ms(0.5), ms(1), ms(2), ms(3)},
		Values:  []float64{4.0, 70, 4.4, 12, -1}}}}
	got := RegularTrends(series, nil, 60_000, DefaultCatalogue())
	if len(got) != 1 {
		t.Fatalf("got %d series, want 1", len(got))
	}
	f := got[0]
	if f.Series.Values[0] != 4.0 || f.Series.Values[1] != 4.4 {
		t.Errorf("values %v: want 4.0 (70 L/min left out) and 4.4", f.Series.Values)
	}
	if want := []bool{false, false, true, true}; !slices.Equal(f.Series.Invalid, want) {
		t.Errorf("invalid %v, want %v", f.Series.Invalid, want)
	}
	if want := []int8{0, 0, 1, -1}; !slices.Equal(f.OutOfRange, want) {
		t.Errorf("out of range %v, want %v", f.OutOfRange, want)
	}
}
