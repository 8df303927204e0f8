package sim

import (
	"math"
	"slices"
	"testing"
	"time"

	"perfusion/charting"
)

// TestChecklistAndFluids: a CPB case charts every checklist item before
// bypass, and volumes in and out whose kinds charting accepts; the charted
// urine adds up to the monitor's cumulative urine channel at the moment
// of the last charting.
func TestChecklistAndFluids(t *testing.T) {
	s := New(Config{Seed: 11, WeightKg: 80, HeightCm: 175})
	var items, notApplicable int
	fluids := map[string]float64{}
	var lastUrineReading, urineChartedAt float64
	for !s.Done() {
		tk := s.Step()
		for _, r := range tk.Numerics {
			if r.Channel == "urine_output" {
				lastUrineReading = r.Value
			}
		}
		for _, ev := range tk.Events {
			switch ev.Kind {
			case KindChecklist:
				if tk.At >= s.tBypassOn {
					t.Fatalf("checklist item at %v, after bypass on at %v", tk.At, s.tBypassOn)
				}
				items++
				if ev.Check.State == "not_applicable" {
					notApplicable++
				}
			case KindFluid:
				if !slices.Contains(charting.FluidKinds, ev.Fluid.Kind) || ev.Fluid.VolumeML <= 0 {
					t.Fatalf("fluid %+v: not a charting kind or not positive", ev.Fluid)
				}
				fluids[ev.Fluid.Kind] += ev.Fluid.VolumeML
				if ev.Fluid.Kind == "urine_output" {
					urineChartedAt = lastUrineReading
				}
			}
		}
	}
	want := 0
	for _, sec := range PreBypassChecklist {
		want += len(sec.Items)
	}
	if items != want || notApplicable != 0 {
		t.Fatalf("%d checklist items (%d not applicable), want %d all checked", items, notApplicable, want)
	}
	// 80 kg: top-up min(500, 400) = 400; UF min(1500, 960) → 950 (50 mL
	// steps); cell saver min(500, 320) = 320.
	if fluids["crystalloid"] != 400 || fluids["ultrafiltration_removed"] != 950 || fluids["cell_saver_returned"] != 320 {
		t.Fatalf("fluids %v", fluids)
	}
	// Charted urine is rounded to whole mL at each charting; the monitor's
	// reading is quantised to its own resolution.
	if math.Abs(fluids["urine_output"]-urineChartedAt) > 2 || fluids["urine_output"] <= 0 {
		t.Fatalf("charted urine %v mL, monitor showed %v mL when last charted", fluids["urine_output"], urineChartedAt)
	}

	ecmo := New(Config{Seed: 11, ECMO: true, Duration: time.Hour})
	notApplicable = 0
	for !ecmo.Done() {
		for _, ev := range ecmo.Step().Events {
			if ev.Kind == KindFluid {
				t.Fatalf("ECMO run charted fluid %+v", ev.Fluid)
			}
			if ev.Kind == KindChecklist && ev.Check.State == "not_applicable" {
				notApplicable++
			}
		}
	}
	if notApplicable != 2 { // volatile scavenge line, cardioplegia
		t.Fatalf("ECMO: %d not-applicable items, want 2", notApplicable)
	}
}

// TestCirculatoryArrest: with --arrest the case cools to the deep target,
// charts the arrest's start and end inside the cross-clamp, and the pump
// gives no flow in between, and full flow again after.
func TestCirculatoryArrest(t *testing.T) {
	s := New(Config{Seed: 5, Arrest: 30 * time.Minute})
	if s.Config().TargetTempC != DeepHypothermiaC {
		t.Fatalf("target %v °C, want the deep default %v", s.Config().TargetTempC, DeepHypothermiaC)
	}
	var start, end time.Duration
	var coreAtStart, flowAfter float64
	flowDuring := -1.0
	for !s.Done() {
		tk := s.Step()
		for _, ev := range tk.Events {
			switch ev.Type {
			case "circulatory_arrest_start":
				start, coreAtStart = tk.At, tk.State.CoreC
			case "circulatory_arrest_end":
				end = tk.At
			}
		}
		if start > 0 && end == 0 && tk.At > start {
			flowDuring = math.Max(flowDuring, tk.State.FlowLmin)
		}
		if end > 0 && tk.At == end+5*time.Minute {
			flowAfter = tk.State.FlowLmin
		}
	}
	if end-start != 30*time.Minute || s.PhaseAt(start) != CrossClamp || s.PhaseAt(end) != CrossClamp {
		t.Fatalf("arrest %v–%v (%v), phases %v/%v; want 30 min inside the cross-clamp", start, end, end-start, s.PhaseAt(start), s.PhaseAt(end))
	}
	if coreAtStart > 20 {
		t.Fatalf("core %.1f °C at arrest, want deep hypothermia (≤ 20)", coreAtStart)
	}
	if flowDuring != 0 || flowAfter < 1.5*s.BSA() {
		t.Fatalf("flow during arrest max %v, 5 min after %v L/min; want 0, then the hypothermic index or more", flowDuring, flowAfter)
	}
}
