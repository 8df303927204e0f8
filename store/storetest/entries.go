package storetest

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

func testEntryIdempotent(t *testing.T, h *Harness) {
	s, _, _ := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	e := drugEntry(c.ID, time.Now(), "heparin", 30000, "[iU]")
	first, dup, err := s.RecordEntry(ctx, actor, e)
	if err != nil || dup {
		t.Fatalf("first: %v dup=%v", err, dup)
	}
	before := head(t, s, c.ID)
	again, dup, err := s.RecordEntry(ctx, actor, e)
	if err != nil || !dup || again.ID != first.ID || !again.RecordedAt.Equal(first.RecordedAt) {
		t.Fatalf("resend: %v dup=%v", err, dup)
	}
	if after := head(t, s, c.ID); after != before {
		t.Fatalf("resend appended to the ledger: %d → %d", before.Seq, after.Seq)
	}
	e.Detail.Drug.Dose = 20000
	if _, _, err := s.RecordEntry(ctx, actor, e); !errors.Is(err, charting.ErrConflict) {
		t.Fatalf("same id, different dose: %v, want conflict", err)
	}
	all, _ := s.ListEntries(ctx, c.ID, true)
	if len(all) != 1 || all[0].Detail.Drug.Dose != 30000 || all[0].Author != actor {
		t.Fatalf("entries after resends: %+v", all)
	}
}

func testLateEntry(t *testing.T, h *Harness) {
	s, _, clk := newStore(t, h)
	c := createCase(t, s, "OR-1")
	at := clk.now()
	onTime := record(t, s, eventEntry(c.ID, at, charting.EventBypassOn))
	clk.advance(25 * time.Minute)
	late := record(t, s, eventEntry(c.ID, at.Add(time.Minute), charting.EventCrossClampOn))
	if onTime.Late || !late.Late {
		t.Fatalf("late flags: on time %v, 24 min late %v", onTime.Late, late.Late)
	}
	if !late.OccurredAt.Equal(at.Add(time.Minute)) || !late.RecordedAt.Equal(clk.now()) {
		t.Fatalf("late entry re-timed: occurred %v recorded %v", late.OccurredAt, late.RecordedAt)
	}
}

func testCorrections(t *testing.T, h *Harness) {
	s, _, _ := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	now := time.Now()
	dose := record(t, s, drugEntry(c.ID, now, "protamine", 300, "mg"))
	note := record(t, s, noteEntry(c.ID, now, "wrong patient note"))
	fixed := drugEntry(c.ID, now, "protamine", 250, "mg")
	corr, dup, err := s.CorrectEntry(ctx, actor, store.Correction{CaseID: c.ID, EntryID: fixed.ID, Supersedes: dose.ID, Reason: "dose mis-keyed", Replacement: &fixed})
	if err != nil || dup || corr.Supersedes != dose.ID || corr.Reason != "dose mis-keyed" {
		t.Fatalf("correct: %v %+v", err, corr)
	}
	voidID := uuid.New()
	void, _, err := s.CorrectEntry(ctx, actor, store.Correction{CaseID: c.ID, EntryID: voidID, Supersedes: note.ID, Reason: "charted on the wrong case"})
	if err != nil || !void.Void || void.Kind != charting.EntryNote || !void.OccurredAt.Equal(note.OccurredAt) {
		t.Fatalf("void: %v %+v", err, void)
	}
	if _, dup, err := s.CorrectEntry(ctx, actor, store.Correction{CaseID: c.ID, EntryID: voidID, Supersedes: note.ID, Reason: "charted on the wrong case"}); err != nil || !dup {
		t.Fatalf("void resend: %v dup=%v", err, dup)
	}
	current, _ := s.ListEntries(ctx, c.ID, false)
	if len(current) != 1 || current[0].ID != fixed.ID || current[0].Detail.Drug.Dose != 250 {
		t.Fatalf("current view: %+v", current)
	}
	history, _ := s.ListEntries(ctx, c.ID, true)
	if len(history) != 4 {
		t.Fatalf("history has %d entries, want 4", len(history))
	}
	for _, e := range history {
		switch e.ID {
		case dose.ID:
			if e.SupersededBy != fixed.ID || e.Detail.Drug.Dose != 300 {
				t.Fatalf("superseded dose lost its value or link: %+v", e)
			}
		case note.ID:
			if e.SupersededBy != voidID || e.Detail.Note.Text != "wrong patient note" {
				t.Fatalf("voided note: %+v", e)
			}
		}
	}
	again := drugEntry(c.ID, now, "protamine", 200, "mg")
	_, _, err = s.CorrectEntry(ctx, actor, store.Correction{CaseID: c.ID, EntryID: again.ID, Supersedes: dose.ID, Reason: "x", Replacement: &again})
	wantPrecondition(t, "correct a superseded entry", err)
	other := noteEntry(c.ID, now, "not a drug")
	_, _, err = s.CorrectEntry(ctx, actor, store.Correction{CaseID: c.ID, EntryID: other.ID, Supersedes: fixed.ID, Reason: "x", Replacement: &other})
	wantInvalid(t, "replacement of another kind", err, "replacement")
	_, _, err = s.CorrectEntry(ctx, actor, store.Correction{CaseID: c.ID, EntryID: uuid.New(), Supersedes: fixed.ID})
	wantInvalid(t, "correction without reason", err, "reason")
	_, _, err = s.CorrectEntry(ctx, actor, store.Correction{CaseID: c.ID, EntryID: uuid.New(), Supersedes: uuid.New(), Reason: "x"})
	wantPrecondition(t, "correct an unknown entry", err)
	verifyOK(t, s, c.ID)
}

func testInvalidInputStoresNothing(t *testing.T, h *Harness) {
	s, b, _ := newStore(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	now := time.Now()
	before := head(t, s, c.ID)
	entries := []struct {
		name  string
		e     charting.Entry
		field string
	}{
		{"no id", charting.Entry{CaseID: c.ID, OccurredAt: now, Detail: charting.EntryDetail{Note: &charting.Note{Text: "x"}}}, "entry.entry_id"},
		{"no time", charting.Entry{ID: uuid.New(), CaseID: c.ID, Detail: charting.EntryDetail{Note: &charting.Note{Text: "x"}}}, "entry.occurred_at"},
		{"future", noteEntry(c.ID, now.Add(time.Hour), "x"), "entry.occurred_at"},
		{"no detail", charting.Entry{ID: uuid.New(), CaseID: c.ID, OccurredAt: now}, "entry.detail"},
		{"two details", charting.Entry{ID: uuid.New(), CaseID: c.ID, OccurredAt: now, Detail: charting.EntryDetail{Note: &charting.Note{Text: "x"}, Event: &charting.Event{Type: charting.EventBypassOn}}}, "entry.detail"},
		{"unknown event", eventEntry(c.ID, now, "coffee_break"), "entry.event.type"},
		{"zero dose", drugEntry(c.ID, now, "heparin", 0, "[iU]"), "entry.drug.dose"},
		{"NaN dose", drugEntry(c.ID, now, "heparin", math.NaN(), "[iU]"), "entry.drug.dose"},
		{"lab wrong unit", charting.Entry{ID: uuid.New(), CaseID: c.ID, OccurredAt: now, Detail: charting.EntryDetail{LabResult: &charting.LabResult{Analyte: "hct", Value: 24, Unit: "g/dL"}}}, "entry.lab_result.unit"},
		{"lab out of range", charting.Entry{ID: uuid.New(), CaseID: c.ID, OccurredAt: now, Detail: charting.EntryDetail{LabResult: &charting.LabResult{Analyte: "ph", Value: 9.1, Unit: "[pH]"}}}, "entry.lab_result.value"},
		{"unknown analyte", charting.Entry{ID: uuid.New(), CaseID: c.ID, OccurredAt: now, Detail: charting.EntryDetail{LabResult: &charting.LabResult{Analyte: "unobtainium", Value: 1, Unit: "%"}}}, "entry.lab_result.analyte"},
		{"artifact backwards", charting.Entry{ID: uuid.New(), CaseID: c.ID, OccurredAt: now, Detail: charting.EntryDetail{ArtifactMark: &charting.ArtifactMark{Channel: "pump_flow", Start: now, End: now.Add(-time.Second), Reason: "flush"}}}, "entry.artifact_mark.end"},
	}
	for _, tc := range entries {
		_, _, err := s.RecordEntry(ctx, actor, tc.e)
		wantInvalid(t, tc.name, err, tc.field)
	}
	ms := now.UnixMilli()
	one := func(ch string, v float64) *charting.SampleBatch {
		return &charting.SampleBatch{CaseID: c.ID, SourceID: "hlm", Seq: 1, Series: []charting.Series{{Channel: ch, TimesMs: []int64{ms}, Values: []float64{v}}}}
	}
	big := batch(c.ID, "hlm", 1, ms-6_000_000, 5001)
	batches := []struct {
		name  string
		b     *charting.SampleBatch
		field string
	}{
		{"unknown channel", one("warp_drive", 1), "batch.series[0].channel"},
		{"NaN", one("pump_flow", math.NaN()), "batch.series[0].values[0]"},
		{"Inf", one("pump_flow", math.Inf(1)), "batch.series[0].values[0]"},
		// Out-of-range values and far-off device times are stored and
		// flagged (testSamplesImplausible); only malformed batches refuse.
		{"too large", big, "batch.series"},
		{"before 1970", &charting.SampleBatch{CaseID: c.ID, SourceID: "hlm", Seq: 1, Series: []charting.Series{{Channel: "pump_flow", TimesMs: []int64{-1000}, Values: []float64{4}}}}, "batch.series[0].occurred_at_unix_ms[0]"},
		{"not increasing", &charting.SampleBatch{CaseID: c.ID, SourceID: "hlm", Seq: 1, Series: []charting.Series{{Channel: "pump_flow", TimesMs: []int64{ms, ms}, Values: []float64{4, 4}}}}, "batch.series[0].occurred_at_unix_ms[1]"},
		{"length mismatch", &charting.SampleBatch{CaseID: c.ID, SourceID: "hlm", Seq: 1, Series: []charting.Series{{Channel: "pump_flow", TimesMs: []int64{ms}, Values: []float64{4, 5}}}}, "batch.series[0].values"},
		{"no source", &charting.SampleBatch{CaseID: c.ID, Seq: 1, Series: []charting.Series{{Channel: "pump_flow", TimesMs: []int64{ms}, Values: []float64{4}}}}, "batch.source_id"},
		{"sequence 0", &charting.SampleBatch{CaseID: c.ID, SourceID: "hlm", Seq: 0, Series: []charting.Series{{Channel: "pump_flow", TimesMs: []int64{ms}, Values: []float64{4}}}}, "batch.sequence"},
	}
	// One bad series spoils the whole batch, even after a good one.
	mixed := batch(c.ID, "hlm", 1, ms-10_000, 3)
	mixed.Series[1].Values[2] = math.Inf(-1)
	batches = append(batches, struct {
		name  string
		b     *charting.SampleBatch
		field string
	}{"one bad value in a good batch", mixed, "batch.series[1].values[2]"})
	for _, tc := range batches {
		r := s.AppendSamples(ctx, "gw", []*charting.SampleBatch{tc.b})[0]
		wantInvalid(t, tc.name, r.Err, tc.field)
	}
	if after := head(t, s, c.ID); after != before {
		t.Fatalf("invalid input changed the ledger: %d → %d links", before.Seq, after.Seq)
	}
	got, _ := s.GetCase(ctx, c.ID)
	if got.Status != charting.StatusPlanned {
		t.Fatalf("invalid input started the case: %s", got.Status)
	}
	n := 0
	if err := b.ScanSampleBatches(ctx, c.ID, store.SampleFilter{}, func(*store.SampleBatchRow) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("invalid batches stored: %d, %v", n, err)
	}
	if es, _ := s.ListEntries(ctx, c.ID, true); len(es) != 0 {
		t.Fatalf("invalid entries stored: %d", len(es))
	}
}
