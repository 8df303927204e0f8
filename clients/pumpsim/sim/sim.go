// Package sim is the physiology and device model behind pumpsim: a
// heart-lung machine (or ECMO circuit), gas blender, in-line blood-gas
// monitor (CDI-500-like) and patient monitor attached to one simulated
// patient. It is pure and deterministic: given a Config (including its
// seed) the sequence of Ticks is always the same. It does no I/O.
//
// Clinical quantities follow docs/domain.md (flow index,
// CaO2, DO2i, BSA). Everything else is a reasonable simulation, not a
// clinical claim; such choices are marked "(inferred)".
package sim

import (
	"math"
	"time"

	"perfusion/charting"
)

// Phase is a stage of the case.
type Phase int

// Phases, in the order a CPB case passes through them. An ECMO run uses
// PreBypass, Bypass and PostBypass only.
const (
	PreBypass Phase = iota
	Bypass          // on bypass, normothermic, before cooling
	Cooling
	CrossClamp // aorta clamped, heart arrested with cardioplegia
	Rewarming  // still clamped, rewarming
	ClampOff   // reperfusion, heart beating, on full flow
	Weaning
	PostBypass
)

var phaseNames = [...]string{"pre_bypass", "bypass", "cooling", "cross_clamp", "rewarming", "cross_clamp_off", "weaning", "post_bypass"}

func (p Phase) String() string { return phaseNames[p] }

// Flow indexes of the data dictionary, L/min/m².
const (
	FlowIndexNormothermic = 2.4
	FlowIndexHypothermic  = 1.8
	// CardioplegiaInterval is the maintenance dose interval (common
	// practice for cold blood cardioplegia, ~20 min).
	CardioplegiaInterval = 20 * time.Minute
	// GasInterval is how often the in-line monitor reports.
	GasInterval = 6 * time.Second
)

// Config describes the simulated case.
type Config struct {
	Seed     uint64
	HeightCm float64
	WeightKg float64
	ECMO     bool
	Duration time.Duration // simulated case length
	// TargetTempC is the cooling target (CPB only); default 32.
	TargetTempC float64
	// PrimeML is the circuit prime; 0 picks one from the weight (inferred).
	PrimeML float64
	// Arrest is the length of a deep hypothermic circulatory arrest during
	// the cross-clamp (CPB only; 0: none). With it, the default cooling
	// target is DeepHypothermiaC.
	Arrest time.Duration
	// BSAFormula computes the body surface area that flows are indexed to;
	// empty means Mosteller. Haycock is often used for children
	// (docs/domain.md "Patients of every age").
	BSAFormula charting.BSAFormula
}

// DeepHypothermiaC is the cooling target for a circulatory arrest when none
// is given (inferred: deep hypothermic arrest is commonly run at 18–20 °C).
const DeepHypothermiaC = 18

// Reading is one channel value of one tick. Invalid readings carry the
// device's last value and must be sent with the invalid flag.
type Reading struct {
	Channel string
	Value   float64
	Invalid bool
}

// Source groups channels by the device that reports them.
type Source string

// Device sources.
const (
	HLM     Source = "hlm-1"
	Blender Source = "blender-1"
	Monitor Source = "monitor-1"
	Inline  Source = "cdi-1"
)

// SourceOf maps each simulated channel to its device.
var SourceOf = map[string]Source{
	"pump_flow": HLM, "pump_speed": HLM, "cardioplegia_flow": HLM, "cardioplegia_pressure": HLM,
	"arterial_line_pressure": HLM, "venous_line_pressure": HLM, "reservoir_level": HLM,
	"temp_arterial_outlet": HLM, "temp_venous_inlet": HLM, "temp_cardioplegia": HLM, "temp_heater_cooler_water": HLM,
	"sweep_flow": Blender, "sweep_o2_flow": Blender, "sweep_air_flow": Blender, "sweep_co2_flow": Blender,
	"fio2": Blender, "volatile_agent": Blender,
	"map": Monitor, "sbp": Monitor, "dbp": Monitor, "cvp": Monitor, "pap": Monitor, "heart_rate": Monitor,
	"spo2": Monitor, "nirs_left": Monitor, "nirs_right": Monitor, "nirs_site3": Monitor, "nirs_site4": Monitor,
	"temp_nasopharyngeal": Monitor, "temp_bladder": Monitor, "temp_rectal": Monitor, "urine_output": Monitor,
	"inline_ph": Inline, "inline_pco2": Inline, "inline_po2": Inline, "inline_k": Inline, "inline_hco3": Inline,
	"inline_be": Inline, "inline_sao2": Inline, "inline_svo2": Inline, "inline_hct": Inline, "inline_hb": Inline,
}

// EventKind says which detail of an Event is set.
type EventKind int

// Event kinds.
const (
	KindEvent EventKind = iota
	KindDrug
	KindCardioplegia
	KindLab
	KindNote
	KindArtifact
	KindBloodProduct
	KindFluid
	KindChecklist
)

// Fluid is a volume in or out; Kind is a charting.FluidKinds value.
type Fluid struct {
	Kind, Name string
	VolumeML   float64
}

// ChecklistItem is one pre-bypass checklist item; State is "checked" or
// "not_applicable".
type ChecklistItem struct {
	Section, Item, State string
}

// PreBypassChecklist is the AmSECT pre-bypass checklist as
// docs/domain.md lists it: sections and their items.
var PreBypassChecklist = []struct {
	Section string
	Items   []string
}{
	{"patient", []string{"identity", "procedure", "blood type and antibodies", "allergies", "MRN", "chart reviewed"}},
	{"sterility", []string{"sterility"}},
	{"pump", []string{"occlusion", "flow-meter direction and calibration"}},
	{"electrical", []string{"electrical and batteries"}},
	{"cardioplegia", []string{"cardioplegia"}},
	{"gas supply", []string{"gas supply", "volatile scavenge line"}},
	{"components", []string{"tubing traced", "one-way valves"}},
	{"safety devices", []string{"alarms audible and engaged", "level and bubble detectors", "venous occluder tested"}},
	{"vacuum relief valves", []string{"vacuum relief valves"}},
	{"temperature probes", []string{"temperature probes"}},
	{"pressure transducers", []string{"pressure transducers"}},
}

// Drug is a drug dose; Unit is UCUM.
type Drug struct {
	Name, Unit, Route string // route: intravenous, circuit
	Dose              float64
}

// Cardioplegia is one dose.
type Cardioplegia struct {
	Solution, Route, Phase string
	VolumeML, TempC        float64
}

// Lab is one point-of-care analyte; Analyte is a key of charting.Analytes.
type Lab struct {
	Analyte, Unit, Site string
	Value               float64
}

// Artifact marks [Start, End) of Channels from Source as artifact.
type Artifact struct {
	Channels   []string
	Source     Source
	Start, End time.Duration
	Reason     string
}

// Event is an operator entry the perfusionist would chart.
type Event struct {
	At       time.Duration // simulated time since the case start
	Kind     EventKind
	Type     string // KindEvent: a charting.EventTypes value
	Comment  string
	Drug     *Drug
	CPG      *Cardioplegia
	Labs     []Lab
	Note     string
	Artifact *Artifact
	Blood    *BloodProduct
	Fluid    *Fluid
	Check    *ChecklistItem
}

// BloodProduct is a blood product added (to the prime for small patients).
type BloodProduct struct {
	Type     string
	Units    int32
	VolumeML float64
}

// Tick is one simulated second.
type Tick struct {
	At       time.Duration
	Phase    Phase
	Numerics []Reading // 1 Hz: HLM, blender, monitor
	Gases    []Reading // in-line monitor, every GasInterval (else nil)
	Events   []Event
	State    State
}

// State is the model's physiological state, for tests and progress.
type State struct {
	FlowLmin, BSA, HctPct, HbGdl, SaO2Pct, PaO2, CaO2, DO2i float64
	CoreC, ArterialC, WaterC                                float64
}

// EBVmL estimates blood volume (inferred, common paediatric/adult rules
// of thumb): 85 mL/kg under 5 kg, 80 under 10 kg, 75 under 40 kg, 70
// above.
func EBVmL(weightKg float64) float64 {
	switch {
	case weightKg < 5:
		return 85 * weightKg
	case weightKg < 10:
		return 80 * weightKg
	case weightKg < 40:
		return 75 * weightKg
	}
	return 70 * weightKg
}

// DefaultPrimeML picks a prime volume from the weight (inferred: small
// neonatal circuits ~200–300 mL, paediatric ~400–900, adult 1500).
func DefaultPrimeML(weightKg float64) float64 {
	return math.Min(1500, math.Max(200, 150+25*weightKg))
}

// CaO2 is arterial O2 content, mL/dL: 1.34 × Hb × SaO2 + 0.003 × PaO2
// (Hb g/dL, SaO2 fraction, PaO2 mmHg).
func CaO2(hbGdl, sao2Frac, pao2 float64) float64 { return 1.34*hbGdl*sao2Frac + 0.003*pao2 }

// DO2i is oxygen delivery index, mL/min/m²: (flow / BSA) × CaO2 × 10.
func DO2i(flowLmin, bsa, cao2 float64) float64 {
	if bsa <= 0 {
		return 0
	}
	return flowLmin / bsa * cao2 * 10
}

// Quantize clamps v into the channel's plausible range and rounds it to
// its resolution, so every value the simulator emits is storable.
func Quantize(ch charting.Channel, v float64) float64 {
	if math.IsNaN(v) {
		v = ch.Min
	}
	v = math.Max(ch.Min, math.Min(ch.Max, v))
	if ch.Resolution > 0 {
		inv := math.Round(1 / ch.Resolution)
		if inv >= 1 {
			v = math.Round(v*inv) / inv
		} else {
			v = math.Round(v/ch.Resolution) * ch.Resolution
		}
		// rounding may step past a bound that is not on the grid
		if v > ch.Max {
			v -= ch.Resolution
		} else if v < ch.Min {
			v += ch.Resolution
		}
	}
	return v
}
