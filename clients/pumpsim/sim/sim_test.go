package sim

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"perfusion/charting"
)

func runAll(cfg Config) []Tick {
	s := New(cfg)
	var out []Tick
	for !s.Done() {
		out = append(out, s.Step())
	}
	return out
}

func TestDeterministic(t *testing.T) {
	cfg := Config{Seed: 7, Duration: 30 * time.Minute}
	a, b := runAll(cfg), runAll(cfg)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different runs")
	}
	c := runAll(Config{Seed: 8, Duration: 30 * time.Minute})
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds, same run")
	}
}

func onGrid(v, res float64) bool {
	x := v / res
	return math.Abs(x-math.Round(x)) < 1e-6
}

func TestValuesInRangeAndAtResolution(t *testing.T) {
	cat := charting.DefaultCatalogue()
	for _, cfg := range []Config{
		{Seed: 1},
		{Seed: 2, HeightCm: 50, WeightKg: 3.2},
		{Seed: 3, ECMO: true, Duration: 2 * time.Hour},
		{Seed: 4, Arrest: 30 * time.Minute},
	} {
		invalid := 0
		for _, tk := range runAll(cfg) {
			for _, r := range append(append([]Reading(nil), tk.Numerics...), tk.Gases...) {
				ch, ok := cat.Lookup(r.Channel)
				if !ok {
					t.Fatalf("unknown channel %q", r.Channel)
				}
				if _, ok := SourceOf[r.Channel]; !ok {
					t.Fatalf("channel %q has no source", r.Channel)
				}
				if math.IsNaN(r.Value) || r.Value < ch.Min || r.Value > ch.Max {
					t.Fatalf("%s=%v outside [%v,%v] at %v", r.Channel, r.Value, ch.Min, ch.Max, tk.At)
				}
				if ch.Resolution > 0 && !onGrid(r.Value, ch.Resolution) {
					t.Fatalf("%s=%v not at resolution %v", r.Channel, r.Value, ch.Resolution)
				}
				if r.Invalid {
					invalid++
				}
			}
		}
		if invalid == 0 {
			t.Errorf("%+v: no invalid readings", cfg)
		}
	}
}

func TestPhasesInOrderAndEvents(t *testing.T) {
	ticks := runAll(Config{Seed: 4})
	last := PreBypass
	seen := map[Phase]bool{}
	var types []string
	var cpg []time.Duration
	artifacts := 0
	for _, tk := range ticks {
		if tk.Phase < last {
			t.Fatalf("phase went back from %v to %v at %v", last, tk.Phase, tk.At)
		}
		last = tk.Phase
		seen[tk.Phase] = true
		for _, e := range tk.Events {
			switch e.Kind {
			case KindEvent:
				types = append(types, e.Type)
			case KindCardioplegia:
				cpg = append(cpg, e.At)
			case KindArtifact:
				artifacts++
			case KindLab:
				for _, l := range e.Labs {
					a, ok := charting.Analytes()[l.Analyte]
					if !ok || a.Unit != l.Unit || l.Value < a.Min || l.Value > a.Max {
						t.Errorf("bad lab %+v", l)
					}
				}
			}
		}
	}
	for p := PreBypass; p <= PostBypass; p++ {
		if !seen[p] {
			t.Errorf("phase %v never reached", p)
		}
	}
	want := []string{"heparin_given", "act_adequate", "bypass_on", "full_flow", "cooling_start", "cross_clamp_on",
		"rewarming_start", "cross_clamp_off", "weaning_start", "bypass_off", "suckers_stopped", "protamine_given"}
	if !reflect.DeepEqual(types, want) {
		t.Errorf("events %v, want %v", types, want)
	}
	if len(cpg) < 5 {
		t.Fatalf("%d cardioplegia doses in a 4 h case", len(cpg))
	}
	for i := 1; i < len(cpg); i++ {
		if d := cpg[i] - cpg[i-1]; d < 18*time.Minute || d > 22*time.Minute {
			t.Errorf("cardioplegia interval %v", d)
		}
	}
	if artifacts == 0 {
		t.Error("no line flush artifacts in 4 h")
	}
}

func TestDO2iHandChecked(t *testing.T) {
	// Hb 9 g/dL, SaO2 99 %, PaO2 200 mmHg: CaO2 = 1.34×9×0.99 + 0.003×200
	// = 11.9394 + 0.6 = 12.5394 mL/dL; flow 4.8 L/min, BSA 2.0 m²:
	// DO2i = 2.4 × 12.5394 × 10 = 300.9456 mL/min/m².
	if c := CaO2(9, 0.99, 200); math.Abs(c-12.5394) > 1e-9 {
		t.Fatalf("CaO2 %v", c)
	}
	if d := DO2i(4.8, 2.0, CaO2(9, 0.99, 200)); math.Abs(d-300.9456) > 1e-9 {
		t.Fatalf("DO2i %v", d)
	}
	// and the model uses it
	s := New(Config{Seed: 5})
	for !s.Done() {
		tk := s.Step()
		st := tk.State
		if st.FlowLmin > 0 {
			want := st.FlowLmin / st.BSA * (1.34*st.HbGdl*st.SaO2Pct/100 + 0.003*st.PaO2) * 10
			if math.Abs(st.DO2i-want) > 1e-9 {
				t.Fatalf("state DO2i %v, want %v", st.DO2i, want)
			}
		}
	}
}

func TestFlowsFollowIndexAndTemperature(t *testing.T) {
	s := New(Config{Seed: 6})
	var minCore = 99.0
	maxRise := 0.0
	prevCore := math.NaN()
	for !s.Done() {
		tk := s.Step()
		st := tk.State
		minCore = math.Min(minCore, st.CoreC)
		if !math.IsNaN(prevCore) {
			maxRise = math.Max(maxRise, (st.CoreC-prevCore)*60)
		}
		prevCore = st.CoreC
		if tk.Phase == Bypass && tk.At > s.tFullFlow {
			if idx := st.FlowLmin / st.BSA; math.Abs(idx-2.4) > 0.01 {
				t.Fatalf("normothermic index %v", idx)
			}
		}
		if tk.Phase == CrossClamp && st.CoreC <= 32 {
			if idx := st.FlowLmin / st.BSA; math.Abs(idx-1.8) > 0.01 {
				t.Fatalf("hypothermic index %v at %.1f °C", idx, st.CoreC)
			}
		}
		if st.ArterialC > 37.0001 {
			t.Fatalf("arterial outlet %v > 37", st.ArterialC)
		}
	}
	if minCore > 32.5 {
		t.Errorf("never cooled: min core %.1f", minCore)
	}
	if maxRise > 0.5001 {
		t.Errorf("rewarming %.2f °C/min", maxRise)
	}
}

func TestNeonateFlowsSmall(t *testing.T) {
	s := New(Config{Seed: 9, HeightCm: 50, WeightKg: 3.2})
	if s.BSA() > 0.25 {
		t.Fatalf("neonate BSA %v", s.BSA())
	}
	maxFlow, minHct := 0.0, 100.0
	for !s.Done() {
		tk := s.Step()
		maxFlow = math.Max(maxFlow, tk.State.FlowLmin)
		if tk.Phase != PreBypass && tk.Phase != PostBypass && tk.At > s.tFullFlow+5*time.Minute {
			minHct = math.Min(minHct, tk.State.HctPct)
		}
	}
	if maxFlow > 0.7 || maxFlow < 0.2 {
		t.Fatalf("neonate max flow %v L/min", maxFlow)
	}
	if perKg := maxFlow * 1000 / 3.2; perKg < 100 || perKg > 200 {
		t.Errorf("neonate flow %v mL/kg/min", perKg)
	}
	if minHct < 20 {
		t.Errorf("neonate Hct fell to %.1f despite blood prime", minHct)
	}
}

func TestEBVAndDilution(t *testing.T) {
	if EBVmL(80) != 5600 || EBVmL(3) != 255 {
		t.Fatal("EBV")
	}
	s := New(Config{Seed: 10})
	want := s.hct0 * 5600 / (5600 + 1500)
	if math.Abs(s.hctTarget-want) > 1e-9 {
		t.Fatalf("diluted Hct %v want %v", s.hctTarget, want)
	}
}

func TestECMONoClampSteadyFlow(t *testing.T) {
	s := New(Config{Seed: 11, ECMO: true, Duration: 2 * time.Hour})
	var flows []float64
	for !s.Done() {
		tk := s.Step()
		for _, e := range tk.Events {
			if e.Kind == KindCardioplegia || e.Type == "cross_clamp_on" || e.Type == "cooling_start" {
				t.Fatalf("ECMO run charted %+v", e)
			}
		}
		if tk.Phase != PreBypass && tk.Phase != Bypass {
			t.Fatalf("ECMO phase %v", tk.Phase)
		}
		for _, e := range tk.Events {
			if e.Kind == KindNote && strings.HasPrefix(e.Note, "ECMO check") && !strings.Contains(e.Note, "sweep") {
				t.Errorf("ECMO check without gas settings: %q", e.Note)
			}
		}
		if tk.At > s.tFullFlow {
			flows = append(flows, tk.State.FlowLmin)
		}
	}
	for _, f := range flows {
		if math.Abs(f-flows[0]) > 0.2 {
			t.Fatalf("ECMO flow not steady: %v vs %v", f, flows[0])
		}
	}
}

func TestBSAFormula(t *testing.T) {
	// Haycock for a 3.2 kg, 50 cm neonate: 0.024265 × 3.2^0.5378 × 50^0.3964
	// = 0.024265 × 1.8693 × 4.7148 = 0.2139 m²; Mosteller √(50 × 3.2 / 3600)
	// = 0.2108 m².
	for _, tc := range []struct {
		f    charting.BSAFormula
		want float64
	}{{charting.BSAHaycock, 0.2139}, {"", 0.2108}, {charting.BSAMosteller, 0.2108}} {
		s := New(Config{Seed: 9, HeightCm: 50, WeightKg: 3.2, BSAFormula: tc.f})
		if got := s.BSA(); math.Abs(got-tc.want) > 0.0005 {
			t.Errorf("%q: BSA %.4f, want %.4f", tc.f, got, tc.want)
		}
	}
}
