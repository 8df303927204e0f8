package charting

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestBSA(t *testing.T) {
	tests := []struct {
		f      BSAFormula
		h, w   float64
		wantM2 float64
	}{
		{BSAMosteller, 170, 70, 1.818}, // sqrt(170·70/3600) = 1.8181
		{BSADuBois, 170, 70, 1.810},    // 0.007184·70^0.425·170^0.725 = 1.8097
		{BSAHaycock, 170, 70, 1.826},   // 0.024265·70^0.5378·170^0.3964 = 1.8257
		{BSAMosteller, 50, 3.5, 0.22},  // neonate: sqrt(50·3.5/3600) = 0.2205
		{BSAMosteller, 0, 70, 0},
	}
	for _, tc := range tests {
		if got := BSA(tc.f, tc.h, tc.w); got != tc.wantM2 {
			t.Errorf("BSA(%s, %v cm, %v kg) = %v, want %v", tc.f, tc.h, tc.w, got, tc.wantM2)
		}
	}
}

func TestLifecycleRules(t *testing.T) {
	type rule struct {
		name string
		f    func(*Case) error
	}
	rules := []rule{{"chart", (*Case).CanChart}, {"details", (*Case).CanUpdateDetails}, {"close", (*Case).CanClose},
		{"sign", (*Case).CanSign}, {"addendum", (*Case).CanAddAddendum}}
	allowed := map[Status]map[string]bool{
		StatusPlanned:    {"chart": true, "details": true, "close": true},
		StatusInProgress: {"chart": true, "details": true, "close": true},
		StatusClosed:     {"details": true, "sign": true},
		StatusSigned:     {"sign": true, "addendum": true},
	}
	for st, ok := range allowed {
		for _, r := range rules {
			err := r.f(&Case{Status: st})
			if (err == nil) != ok[r.name] {
				t.Errorf("%s on a %s case: err = %v, want allowed=%v", r.name, st, err, ok[r.name])
			}
		}
	}
}

func TestValidateBatch(t *testing.T) {
	cat := DefaultCatalogue()
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	ms := now.UnixMilli()
	good := func() *SampleBatch {
		return &SampleBatch{SourceID: "hlm", Seq: 1, Series: []Series{
			{Channel: "pump_flow", TimesMs: []int64{ms - 2000, ms - 1000}, Values: []float64{4.2, 4.3}},
			{Channel: "inline_svo2", TimesMs: []int64{ms - 1000}, Values: []float64{math.NaN()}, Invalid: []bool{true}},
		}}
	}
	b := good()
	if err := ValidateBatch(cat, b, now); err != nil {
		t.Fatalf("good batch: %v", err)
	}
	if b.Series[1].Values[0] != 0 {
		t.Fatal("value at an invalid index must be stored as 0, not as the device's placeholder")
	}
	bad := map[string]func(b *SampleBatch){
		"batch.series[0].channel":                 func(b *SampleBatch) { b.Series[0].Channel = "x" },
		"batch.series[1].channel":                 func(b *SampleBatch) { b.Series[1].Channel = "pump_flow" },
		"batch.series[0].values[1]":               func(b *SampleBatch) { b.Series[0].Values[1] = math.Inf(1) },
		"batch.series[0].values[0]":               func(b *SampleBatch) { b.Series[0].Values[0] = math.NaN() },
		"batch.series[0].values":                  func(b *SampleBatch) { b.Series[0].Values = b.Series[0].Values[:1] },
		"batch.series[1].invalid_indexes":         func(b *SampleBatch) { b.Series[1].Invalid = []bool{true, false} },
		"batch.sequence":                          func(b *SampleBatch) { b.Seq = -1 },
		"batch.source_id":                         func(b *SampleBatch) { b.SourceID = "" },
		"batch.series[0].occurred_at_unix_ms[0]":  func(b *SampleBatch) { b.Series[0].TimesMs[0] = -5 },
		"batch.series[0].occurred_at_unix_ms[1] ": func(b *SampleBatch) { b.Series[0].TimesMs[1] = b.Series[0].TimesMs[0] },
	}
	for field, mutate := range bad {
		b := good()
		mutate(b)
		err := ValidateBatch(cat, b, now)
		ie, ok := err.(*InvalidError)
		if !ok || len(ie.Violations) == 0 {
			t.Errorf("%s: got %v, want invalid", field, err)
			continue
		}
		want := field
		if want[len(want)-1] == ' ' {
			want = want[:len(want)-1]
		}
		if ie.Violations[0].Field != want {
			t.Errorf("violation names %q, want %q", ie.Violations[0].Field, want)
		}
	}
}

// Readings are refused only for being malformed, never for what they say:
// a value outside the plausible range, a time far behind or ahead of the
// server clock are stored as sent (and flagged or kept out of trends by
// their readers).
func TestValidateBatchAcceptsImplausibleReadings(t *testing.T) {
	cat := DefaultCatalogue()
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	ms := now.UnixMilli()
	for name, s := range map[string]Series{
		"adult ECMO flow":       {Channel: "pump_flow", TimesMs: []int64{ms}, Values: []float64{7.5}},
		"flow beyond 0-10":      {Channel: "pump_flow", TimesMs: []int64{ms}, Values: []float64{12}},
		"negative flow":         {Channel: "pump_flow", TimesMs: []int64{ms}, Values: []float64{-0.3}},
		"NIRS below 15":         {Channel: "nirs_left", TimesMs: []int64{ms}, Values: []float64{9}},
		"clock reset to 1970":   {Channel: "pump_flow", TimesMs: []int64{0, 1000}, Values: []float64{4, 4}},
		"clock a year ahead":    {Channel: "pump_flow", TimesMs: []int64{ms + 365*24*3600*1000}, Values: []float64{4}},
		"clock 6 minutes ahead": {Channel: "pump_flow", TimesMs: []int64{ms + 6*60*1000}, Values: []float64{4}},
	} {
		b := &SampleBatch{SourceID: "hlm", Seq: 1, Series: []Series{s}}
		if err := ValidateBatch(cat, b, now); err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
	}
}

func TestChannelPlausible(t *testing.T) {
	cat := DefaultCatalogue()
	flow, _ := cat.Lookup("pump_flow")
	if flow.Min != 0 || flow.Max != 10 {
		t.Errorf("pump_flow range %g-%g, want 0-10 L/min (data dictionary)", flow.Min, flow.Max)
	}
	for x, want := range map[float64]bool{0: true, 7.5: true, 10: true, 10.01: false, -0.01: false, math.NaN(): false} {
		if got := flow.Plausible(x); got != want {
			t.Errorf("Plausible(%g) = %v, want %v", x, got, want)
		}
	}
	if ch := cat.Flagging("not_in_catalogue"); !ch.Plausible(1e300) || !ch.Plausible(-1e300) {
		t.Error("a channel of an older catalogue must flag nothing")
	}
}

func TestSeriesWithin(t *testing.T) {
	w := TimeWindow{From: time.UnixMilli(1000), To: time.UnixMilli(2000)}
	s := Series{Channel: "x", TimesMs: []int64{5, 1000, 1500, 2000, 2001}, Values: []float64{1, 2, 3, 4, 5},
		Invalid: []bool{false, false, true, false, false}}
	got := s.Within(w)
	if !slices.Equal(got.TimesMs, []int64{1000, 1500, 2000}) || !slices.Equal(got.Values, []float64{2, 3, 4}) ||
		!slices.Equal(got.Invalid, []bool{false, true, false}) {
		t.Fatalf("Within = %+v", got)
	}
	in := Series{TimesMs: []int64{1000, 2000}, Values: []float64{1, 2}}
	if got := in.Within(w); &got.TimesMs[0] != &in.TimesMs[0] {
		t.Error("a series wholly inside must come back as is, without a copy")
	}
}

func TestCurrentView(t *testing.T) {
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	a := Entry{ID: uuid.New(), Kind: EntryNote, OccurredAt: at.Add(time.Minute)}
	b := Entry{ID: uuid.New(), Kind: EntryNote, OccurredAt: at}
	a2 := Entry{ID: uuid.New(), Kind: EntryNote, OccurredAt: at.Add(2 * time.Minute), Supersedes: a.ID}
	v := Entry{ID: uuid.New(), Kind: EntryNote, OccurredAt: at, Supersedes: b.ID, Void: true}
	all := []Entry{a, b, a2, v}
	cur := CurrentView(all, false)
	if len(cur) != 1 || cur[0].ID != a2.ID {
		t.Fatalf("current view = %v", cur)
	}
	hist := CurrentView(all, true)
	if len(hist) != 4 || hist[0].SupersededBy == uuid.Nil {
		t.Fatalf("history = %+v", hist)
	}
}

func TestDownsampler(t *testing.T) {
	d := NewDownsampler(0, 10_000, 5)
	d.Add(Series{Channel: "x", TimesMs: []int64{0, 1000, 2500, 9999, 10_000, -1}, Values: []float64{1, 3, 7, 9, 100, 100}, Invalid: []bool{false, false, true, false, false, false}})
	got := d.Buckets()
	if d.WidthMs() != 2000 || len(got) != 3 {
		t.Fatalf("width %d, %d buckets", d.WidthMs(), len(got))
	}
	if got[0].StartMs != 0 || got[0].Count != 2 || got[0].Mean != 2 || got[0].Min != 1 || got[0].Max != 3 {
		t.Fatalf("bucket 0 = %+v", got[0])
	}
	if got[1].StartMs != 2000 || got[1].Count != 0 || got[1].InvalidCount != 1 {
		t.Fatalf("bucket 1 = %+v", got[1])
	}
	if got[2].StartMs != 8000 || got[2].Count != 1 || got[2].Max != 9 {
		t.Fatalf("bucket 4 = %+v", got[2])
	}
}

func TestDownsamplerFlagsOutOfRange(t *testing.T) {
	flow, _ := DefaultCatalogue().Lookup("pump_flow")
	d := NewDownsampler(0, 2000, 2).Flagging(flow)
	d.Add(Series{Channel: "pump_flow", TimesMs: []int64{0, 10, 20, 1000}, Values: []float64{4, 70, 5, -2}})
	got := d.Buckets()
	if len(got) != 2 {
		t.Fatalf("%d buckets, want 2: %+v", len(got), got)
	}
	if b := got[0]; b.Count != 2 || b.Min != 4 || b.Max != 5 || b.Mean != 4.5 || b.OutOfRangeCount != 1 {
		t.Errorf("bucket 0 = %+v: want the statistics of 4 and 5 only, one out of range", b)
	}
	if b := got[1]; b.Count != 0 || b.OutOfRangeCount != 1 {
		t.Errorf("bucket 1 = %+v: a bucket of out-of-range readings only is kept, with its count", b)
	}
	tr := NewTrend(1000).Flagging(flow)
	tr.Add(Series{Channel: "pump_flow", TimesMs: []int64{0, 10}, Values: []float64{7.5, 11}})
	if b := tr.Buckets(); len(b) != 1 || b[0].Count != 1 || b[0].Mean != 7.5 || b[0].OutOfRangeCount != 1 {
		t.Errorf("trend buckets %+v", b)
	}
	if m := MergeBucket(Bucket{OutOfRangeCount: 2}, Bucket{Count: 1, Min: 3, Max: 3, Mean: 3, OutOfRangeCount: 1}); m.OutOfRangeCount != 3 || m.Count != 1 {
		t.Errorf("merged %+v", m)
	}
}

func TestNULRejected(t *testing.T) {
	e := Entry{ID: uuid.New(), CaseID: uuid.New(), OccurredAt: time.Now(), Detail: EntryDetail{Note: &Note{Text: "a\x00b"}}}
	if err := ValidateEntry(DefaultCatalogue(), &e, time.Now()); err == nil {
		t.Fatal("a note with NUL was accepted")
	}
	d := Details{Patient: Patient{FamilyName: "x\x00"}}
	var v Violations
	d.Validate("details.", &v)
	if len(v) != 1 || v[0].Field != "details.patient.family_name" {
		t.Fatalf("details with NUL: %+v", v)
	}
}
