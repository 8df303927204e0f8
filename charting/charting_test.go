package charting

import (
	"math"
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
		"batch.series[0].values[1]":               func(b *SampleBatch) { b.Series[0].Values[1] = 7.5 },
		"batch.series[0].occurred_at_unix_ms[1]":  func(b *SampleBatch) { b.Series[0].TimesMs[1] = ms + 6*60*1000 },
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
