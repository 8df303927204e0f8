package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"perfusion/charting"
)

// numericChannels is the fixed order of 1 Hz channels (determinism: never
// iterate a map while drawing random numbers).
var numericChannels = []string{
	"pump_flow", "pump_speed", "cardioplegia_flow", "cardioplegia_pressure", "arterial_line_pressure",
	"venous_line_pressure", "reservoir_level", "temp_arterial_outlet", "temp_venous_inlet", "temp_cardioplegia",
	"temp_heater_cooler_water", "sweep_flow", "sweep_o2_flow", "sweep_air_flow", "sweep_co2_flow", "fio2",
	"volatile_agent", "map", "sbp", "dbp", "cvp", "pap", "heart_rate", "spo2", "nirs_left", "nirs_right",
	"nirs_site3", "nirs_site4", "temp_nasopharyngeal", "temp_bladder", "temp_rectal", "urine_output",
}

var gasChannels = []string{
	"inline_ph", "inline_pco2", "inline_po2", "inline_k", "inline_hco3", "inline_be",
	"inline_sao2", "inline_svo2", "inline_hct", "inline_hb",
}

// Channels returns every channel the simulator emits, numerics first.
func Channels() []string { return append(append([]string(nil), numericChannels...), gasChannels...) }

// noise is the per-reading Gaussian standard deviation (device noise,
// inferred), in channel units.
var noise = map[string]float64{
	"pump_flow": 0.02, "pump_speed": 8, "cardioplegia_flow": 3, "cardioplegia_pressure": 3,
	"arterial_line_pressure": 3, "venous_line_pressure": 2, "reservoir_level": 8,
	"temp_arterial_outlet": 0.05, "temp_venous_inlet": 0.05, "temp_cardioplegia": 0.1, "temp_heater_cooler_water": 0.05,
	"sweep_flow": 0.01, "sweep_o2_flow": 0.01, "sweep_air_flow": 0.01, "fio2": 0.3, "volatile_agent": 0.02,
	"map": 1.5, "sbp": 2, "dbp": 1.5, "cvp": 0.8, "pap": 1, "heart_rate": 1.5, "spo2": 0.5,
	"nirs_left": 1, "nirs_right": 1, "nirs_site3": 1, "nirs_site4": 1,
	"temp_nasopharyngeal": 0.05, "temp_bladder": 0.05, "temp_rectal": 0.05,
	"inline_ph": 0.01, "inline_pco2": 1, "inline_po2": 5, "inline_k": 0.05, "inline_hco3": 0.2, "inline_be": 0.2,
	"inline_sao2": 0.3, "inline_svo2": 0.8, "inline_hct": 0.4, "inline_hb": 0.1,
}

type sched struct {
	at  time.Duration
	ev  Event
	lab string // "act", "abg": labs filled from the state when emitted
}

// Sim is one simulated case. Step it once per simulated second.
type Sim struct {
	cfg  Config
	cat  *charting.Catalogue
	rng  *rand.Rand
	t    time.Duration // time of the next tick
	bsa  float64
	ebv  float64
	prim float64

	// phase boundaries
	tBypassOn, tFullFlow, tCool, tClampOn, tRewarm, tClampOff, tWean, tBypassOff time.Duration
	tArrestStart, tArrestEnd                                                     time.Duration // equal when there is no arrest
	schedule                                                                     []sched
	next                                                                         int

	// state
	core, bladder, rectal, art, water float64
	hct0, hct, hctTarget              float64
	mapOU, resOU                      float64
	sweep, fio2                       float64
	hco3, kExtra, lactate, glucose    float64
	urine, urineCharted               float64
	cpgLeft                           float64 // mL left of the dose being delivered
	cpgRate                           float64
	flushLeft                         int // seconds of a line-flush spike left
	flushStart                        time.Duration
	invalidLeft                       map[string]int
	last                              map[string]float64
	nextFlush                         time.Duration
	state                             State
	neonatal                          bool
	lastSweepAdj                      time.Duration
}

// New makes a simulation. Zero fields of cfg get defaults: a 175 cm,
// 80 kg adult, 4 hours, cooling to 32 °C.
func New(cfg Config) *Sim {
	if cfg.HeightCm <= 0 {
		cfg.HeightCm = 175
	}
	if cfg.WeightKg <= 0 {
		cfg.WeightKg = 80
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 4 * time.Hour
	}
	if cfg.TargetTempC <= 0 {
		cfg.TargetTempC = 32
		if cfg.Arrest > 0 && !cfg.ECMO {
			cfg.TargetTempC = DeepHypothermiaC
		}
	}
	if cfg.PrimeML <= 0 {
		cfg.PrimeML = DefaultPrimeML(cfg.WeightKg)
	}
	s := &Sim{cfg: cfg, cat: charting.DefaultCatalogue(), rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		invalidLeft: map[string]int{}, last: map[string]float64{}}
	if cfg.BSAFormula == "" {
		cfg.BSAFormula = charting.BSAMosteller
	}
	s.cfg.BSAFormula = cfg.BSAFormula
	s.bsa = charting.BSA(cfg.BSAFormula, cfg.HeightCm, cfg.WeightKg)
	s.ebv = EBVmL(cfg.WeightKg)
	s.prim = cfg.PrimeML
	s.neonatal = cfg.WeightKg < 10
	s.core = 36.2 + s.rng.NormFloat64()*0.2
	s.bladder, s.rectal, s.art, s.water = s.core, s.core-0.1, s.core, 37
	// Pre-operative Hct (inferred): higher in neonates.
	s.hct0 = 38 + s.rng.NormFloat64()*2
	if cfg.WeightKg < 5 {
		s.hct0 = 45 + s.rng.NormFloat64()*2
	}
	s.hct = s.hct0
	// Haemodilution on bypass: Hct × EBV / (EBV + prime). Below 21 %
	// (inferred trigger) red cells are added to the prime to reach ~26 %.
	s.hctTarget = s.hct0 * s.ebv / (s.ebv + s.prim)
	s.hco3, s.lactate, s.glucose = 24, 0.9, 6.0
	s.fio2 = 21
	s.plan()
	return s
}

// BSA is the patient's body surface area by Config.BSAFormula, m².
func (s *Sim) BSA() float64 { return s.bsa }

// Config returns the configuration with defaults filled in.
func (s *Sim) Config() Config { return s.cfg }

// Done reports whether the case is over.
func (s *Sim) Done() bool { return s.t >= s.cfg.Duration }

func frac(d time.Duration, f float64) time.Duration {
	return (time.Duration(float64(d)*f) / time.Second) * time.Second
}

// plan lays out the phases and the operator's entries. Phase times are
// fractions of the case length (inferred, a typical 4-hour CABG/valve).
func (s *Sim) plan() {
	d := s.cfg.Duration
	kg := s.cfg.WeightKg
	add := func(at time.Duration, ev Event, lab string) {
		ev.At = at
		s.schedule = append(s.schedule, sched{at: at, ev: ev, lab: lab})
	}
	event := func(at time.Duration, typ, comment string) {
		add(at, Event{Kind: KindEvent, Type: typ, Comment: comment}, "")
	}
	perKg := 300.0 // IU/kg for CPB
	if s.cfg.ECMO {
		perKg = 100 // cannulation bolus for ECMO (inferred)
	}
	heparin := math.Round(perKg*kg/100) * 100 // rounded to 100 IU
	if heparin < 100 {
		heparin = 100
	}
	s.planChecklist(frac(d, 0.01), add)
	add(frac(d, 0.01), Event{Kind: KindNote, Note: "Pre-bypass checklist completed; circuit primed and de-aired."}, "")
	add(frac(d, 0.02), Event{Kind: KindLab}, "act")
	add(frac(d, 0.03), Event{Kind: KindDrug, Drug: &Drug{Name: "heparin", Dose: heparin, Unit: "[iU]", Route: "intravenous"}}, "")
	event(frac(d, 0.03), charting.EventHeparinGiven, "")
	add(frac(d, 0.06), Event{Kind: KindLab}, "act")
	event(frac(d, 0.06), charting.EventACTAdequate, "")

	if s.cfg.ECMO {
		s.tBypassOn = frac(d, 0.08)
		s.tFullFlow = s.tBypassOn + min(3*time.Minute, frac(d, 0.03))
		s.tCool, s.tClampOn, s.tRewarm, s.tClampOff, s.tWean, s.tBypassOff = d, d, d, d, d, d
		event(s.tBypassOn-time.Second, charting.EventCannulation, "")
		event(s.tFullFlow, charting.EventFullFlow, "")
		for i, f := range []float64{0.35, 0.75} {
			add(frac(d, f), Event{Kind: KindLab}, "abg")
			add(frac(d, f)+time.Minute, Event{Kind: KindNote, Note: fmt.Sprintf("ECMO check %d", i+1)}, "ecmo_check")
		}
	} else {
		s.tBypassOn = frac(d, 0.10)
		s.tFullFlow = s.tBypassOn + min(2*time.Minute, frac(d, 0.01))
		s.tCool = frac(d, 0.12)
		s.tClampOn = frac(d, 0.18)
		s.tRewarm = frac(d, 0.60)
		s.tClampOff = frac(d, 0.72)
		s.tWean = frac(d, 0.82)
		s.tBypassOff = frac(d, 0.88)
		if s.hctTarget < 21 {
			vol := math.Min(s.prim, (26*(s.ebv+s.prim)-s.hct0*s.ebv)/(60-0))
			vol = math.Max(10, math.Round(vol))
			s.hctTarget = (s.hct0*s.ebv + 60*vol) / (s.ebv + s.prim)
			add(s.tBypassOn-2*time.Minute, Event{Kind: KindBloodProduct, Blood: &BloodProduct{Type: "prbc", Units: 1, VolumeML: vol}}, "")
		}
		event(s.tBypassOn, charting.EventBypassOn, "")
		event(s.tFullFlow, charting.EventFullFlow, "")
		event(s.tCool, charting.EventCoolingStart, fmt.Sprintf("target %.0f °C", s.cfg.TargetTempC))
		event(s.tClampOn, charting.EventCrossClampOn, "")
		// Cardioplegia: cold blood 4:1, antegrade; induction at clamp, then
		// maintenance every ~20 min while the clamp is on and not about
		// to come off (inferred volumes: adult 1000/500 mL, children 30/15 mL/kg).
		ind, maint := math.Min(1000, 30*kg), math.Min(500, 15*kg)
		dose := func(at time.Duration, vol float64, phase string) {
			add(at, Event{Kind: KindCardioplegia, CPG: &Cardioplegia{Solution: "blood 4:1", Route: "antegrade", Phase: phase, VolumeML: vol, TempC: 6}}, "")
		}
		dose(s.tClampOn+30*time.Second, ind, "induction")
		for at := s.tClampOn + 30*time.Second + CardioplegiaInterval; at < s.tClampOff-5*time.Minute; at += CardioplegiaInterval {
			dose(at, maint, "maintenance")
		}
		add(frac(d, 0.30), Event{Kind: KindLab}, "abg")
		s.planArrest(event)
		event(s.tRewarm, charting.EventRewarmingStart, "")
		add(frac(d, 0.65), Event{Kind: KindLab}, "abg")
		event(s.tClampOff, charting.EventCrossClampOff, "")
		event(s.tWean, charting.EventWeaningStart, "")
		event(s.tBypassOff, charting.EventBypassOff, "")
		event(frac(d, 0.89), charting.EventSuckersStopped, "")
		prot := math.Round(heparin/100*1.0*10) / 10 // 1 mg per 100 IU heparin (common ratio)
		add(frac(d, 0.90), Event{Kind: KindDrug, Drug: &Drug{Name: "protamine", Dose: prot, Unit: "mg", Route: "intravenous"}}, "")
		event(frac(d, 0.90), charting.EventProtamineGiven, "")
		add(frac(d, 0.95), Event{Kind: KindLab}, "act")
		add(frac(d, 0.96), Event{Kind: KindNote, Note: "Off bypass uneventfully; circuit blood returned."}, "")
		s.planFluids(add)
	}
	sort.SliceStable(s.schedule, func(i, j int) bool { return s.schedule[i].at < s.schedule[j].at })
	s.nextFlush = s.flushGap()
}

// flushGap is the time to the next line flush (mean 45 min, inferred).
func (s *Sim) flushGap() time.Duration {
	return time.Duration((5 + s.rng.ExpFloat64()*40) * float64(time.Minute)).Truncate(time.Second)
}

// PhaseAt is the phase at simulated time t.
func (s *Sim) PhaseAt(t time.Duration) Phase {
	switch {
	case t < s.tBypassOn:
		return PreBypass
	case t < s.tCool:
		return Bypass
	case t < s.tClampOn:
		return Cooling
	case t < s.tRewarm:
		return CrossClamp
	case t < s.tClampOff:
		return Rewarming
	case t < s.tWean:
		return ClampOff
	case t < s.tBypassOff:
		return Weaning
	}
	return PostBypass
}

func (s *Sim) onPump(p Phase) bool { return p != PreBypass && p != PostBypass }

func approach(x, target, tau, dt float64) float64 { return x + (target-x)*(1-math.Exp(-dt/tau)) }

// flowIndex is the target index for the core temperature: 2.4 at or
// above 35 °C, 1.8 at or below 32 °C, linear between (inferred blend).
func flowIndex(core float64, ecmo bool) float64 {
	if ecmo {
		return 2.2 // steady VA-ECMO support (inferred)
	}
	switch {
	case core >= 35:
		return FlowIndexNormothermic
	case core <= 32:
		return FlowIndexHypothermic
	}
	return FlowIndexHypothermic + (core-32)/3*(FlowIndexNormothermic-FlowIndexHypothermic)
}

// Step advances one simulated second and returns its readings and events.
func (s *Sim) Step() Tick {
	t := s.t
	s.t += time.Second
	p := s.PhaseAt(t)
	const dt = 1.0 // s
	r := s.rng
	on := s.onPump(p)

	// --- flow -----------------------------------------------------------
	target := flowIndex(s.core, s.cfg.ECMO) * s.bsa
	flow := 0.0
	arrested := t >= s.tArrestStart && t < s.tArrestEnd
	switch {
	case !on, arrested:
	case t < s.tFullFlow:
		flow = target * float64(t-s.tBypassOn+time.Second) / float64(s.tFullFlow-s.tBypassOn+time.Second)
	case p == Weaning:
		flow = target * (1 - float64(t-s.tWean)/float64(s.tBypassOff-s.tWean))
	default:
		flow = target
	}

	// --- temperatures ---------------------------------------------------
	tgt := s.cfg.TargetTempC
	switch p {
	case Cooling, CrossClamp:
		s.water = approach(s.water, math.Max(tgt-3, 10), 60, dt)
	case Rewarming, ClampOff:
		// keep arterial ≤ 37 and the arterial-core gradient ≤ 4 °C
		s.water = approach(s.water, math.Min(37.5, s.core+4), 60, dt)
	default:
		s.water = approach(s.water, 37, 120, dt)
	}
	tauCore := 60 * (3 + 5*math.Min(1, s.cfg.WeightKg/70)) // s; small patients cool faster
	if on && flow > 0 {
		s.art = approach(s.art, math.Min(37, s.water-0.4), 45, dt)
		// core follows the arterial blood, by at most 0.5 °C/min
		dc := (s.art - s.core) * (1 - math.Exp(-dt/tauCore)) * math.Min(1, flow/math.Max(target, 0.01))
		s.core += math.Max(-0.5/60, math.Min(0.5/60, dc))
	} else {
		if p == PreBypass {
			s.art = approach(s.art, s.water-0.4, 600, dt) // prime recirculating on the heater-cooler
		} else {
			s.art = approach(s.art, 22, 1800, dt) // static circuit towards room temperature
		}
		if arrested {
			s.core = approach(s.core, 22, 7200, dt) // no flow: slow passive warming towards the room (inferred)
		} else {
			s.core = approach(s.core, 36.4, 3600, dt)
		}
	}
	s.bladder = approach(s.bladder, s.core, 900, dt)
	s.rectal = approach(s.rectal, s.core, 1200, dt)
	metab := math.Pow(2, (s.core-37)/10) // Q10 ≈ 2

	// --- haematocrit ----------------------------------------------------
	switch {
	case on:
		tgtHct := s.hctTarget + 0.5*float64(t-s.tBypassOn)/float64(time.Hour) // slow haemoconcentration
		s.hct = approach(s.hct, tgtHct, 30, dt)
	case p == PostBypass:
		s.hct = approach(s.hct, s.hctTarget+3, 600, dt) // residual volume returned / MUF (inferred)
	}
	hb := s.hct / 3 // rule of three (inferred)

	// --- gas exchange ---------------------------------------------------
	if on && flow > 0 {
		want := flow * 0.9 * metab
		if t-s.lastSweepAdj >= 5*time.Minute || s.sweep == 0 ||
			(t-s.lastSweepAdj >= 20*time.Second && math.Abs(want-s.sweep) > 0.25*want) {
			// the perfusionist retunes the blender every ~5 min (alpha-stat:
			// pCO2 ~40 uncorrected); gas:blood about 0.9 × metabolic rate
			s.lastSweepAdj = t
			s.sweep = math.Max(0.1, math.Round(want*(1+0.05*r.NormFloat64())*10)/10)
			s.fio2 = math.Round(math.Min(90, math.Max(40, 60+2*r.NormFloat64())))
		}
	} else if !s.cfg.ECMO || p == PreBypass {
		s.sweep, s.fio2 = 0, 21
	}
	pco2 := 40.0
	if on && s.sweep > 0 && flow > 0 {
		pco2 = 40 * metab * (0.9 * flow) / s.sweep
	}
	pco2 = math.Max(20, math.Min(80, pco2))
	pao2 := 200.0 // ventilated, FiO2 ~0.5 (inferred)
	if on && flow > 0 {
		pao2 = (s.fio2/100*713 - pco2/0.8) * 0.55 // oxygenator efficiency (inferred)
	}
	pao2 = math.Max(60, math.Min(650, pao2))
	sao2 := 100 / (1 + 23400/(pao2*pao2*pao2+150*pao2)) // Severinghaus
	if on {
		s.hco3 = approach(s.hco3, 22.5, 1800, dt)
		s.lactate = math.Min(4, s.lactate+0.4/3600)
		s.glucose = math.Min(10, s.glucose+1.0/3600)
	} else {
		s.hco3 = approach(s.hco3, 24, 3600, dt)
	}
	ph := 6.1 + math.Log10(s.hco3/(0.0307*pco2))
	be := 0.93 * (s.hco3 - 24.4 + 14.8*(ph-7.4))
	s.kExtra = approach(s.kExtra, 0, 1800, dt)
	cao2 := CaO2(hb, sao2/100, pao2)
	do2i := DO2i(flow, s.bsa, cao2)
	svo2 := 72.0
	if on && do2i > 0 {
		vo2i := 110 * metab // mL/min/m² anaesthetised (inferred)
		svo2 = sao2 * (1 - math.Min(0.8, vo2i/do2i))
	}
	svo2 = math.Max(35, math.Min(92, svo2))

	// --- pressures ------------------------------------------------------
	base := struct{ mapv, pp, hr, cvp, pap, onMap float64 }{78, 55, 72, 8, 18, 62}
	if s.neonatal {
		base = struct{ mapv, pp, hr, cvp, pap, onMap float64 }{45, 28, 140, 6, 16, 40}
	}
	s.mapOU += -s.mapOU/300*dt + r.NormFloat64()*0.4
	mapv, pp, hr, cvp, pap := base.mapv, base.pp, base.hr, base.cvp, base.pap
	switch p {
	case Bypass, Cooling:
		mapv, pp, hr, cvp, pap = base.onMap, 6, base.hr*0.9, 3, 7
		if t < s.tFullFlow {
			w := float64(t-s.tBypassOn) / float64(s.tFullFlow-s.tBypassOn+time.Second)
			mapv, pp = base.mapv+(base.onMap-base.mapv)*w, base.pp+(6-base.pp)*w
		}
	case CrossClamp, Rewarming:
		mapv, pp, hr, cvp, pap = base.onMap, 3, 0, 3, 6
		if arrested {
			mapv, pp, cvp, pap = 4, 0, 2, 3 // no flow: pressures fall to near zero
		}
	case ClampOff:
		mapv, pp, hr, cvp, pap = base.onMap+3, 8, base.hr*1.2, 4, 8
	case Weaning:
		w := float64(t-s.tWean) / float64(s.tBypassOff-s.tWean)
		mapv, pp, hr, cvp, pap = base.onMap+(base.mapv-base.onMap)*w, 8+(base.pp-8)*w, base.hr*1.2, 4+6*w, 8+12*w
	case PostBypass:
		hr, cvp, pap = base.hr*1.15, base.cvp+2, base.pap+2
	}
	if s.cfg.ECMO && on {
		mapv, pp, hr, cvp, pap = base.onMap+8, 15, base.hr*1.1, 8, 18 // VA-ECMO with some native ejection
	}
	mapv += s.mapOU
	sbp, dbp := mapv+pp*2/3, mapv-pp/3
	spo2Valid := pp >= 15

	alp, vlp := 0.0, 0.0
	if flow > 0 {
		alp = mapv + 50*flow/s.bsa // cannula and oxygenator drop (inferred)
		vlp = -40
		if s.neonatal {
			vlp = -20
		}
	}
	speed := 0.0
	if flow > 0 {
		if s.neonatal {
			speed = flow / 0.013 // roller pump, 1/4" tubing ≈ 13 mL/rev (inferred)
		} else {
			speed = 1200 + 520*flow // centrifugal (inferred)
		}
	}
	s.resOU += -s.resOU/600*dt + r.NormFloat64()*s.prim*0.004
	res := s.prim*0.7 + s.resOU
	if on {
		res = s.prim*0.5 + 0.2*s.prim + s.resOU
	}

	// cardioplegia delivery
	if s.cpgLeft > 0 {
		s.cpgLeft -= s.cpgRate / 60 * dt
	}
	cpgFlow, cpgPress := 0.0, 0.0
	if s.cpgLeft > 0 {
		cpgFlow = s.cpgRate
		cpgPress = 150
		if s.neonatal {
			cpgPress = 80
		}
	}
	cpgTemp := 22.0
	if p == CrossClamp || p == Rewarming || (p == Cooling && t >= s.tClampOn-5*time.Minute) {
		cpgTemp = 6
	}
	volatile := 0.0
	if on && p != Weaning && !s.cfg.ECMO {
		volatile = 1.0 // isoflurane via the oxygenator (inferred)
	}
	o2 := 0.0
	if s.sweep > 0 {
		o2 = s.sweep * (s.fio2 - 21) / 79
	}
	air := math.Max(0, s.sweep-o2)

	ukg := 1.0
	if on {
		ukg = 2.0
	}
	s.urine += ukg * s.cfg.WeightKg / 3600 * dt

	nirsBase := 25 + 0.55*svo2
	values := map[string]float64{
		"pump_flow": flow, "pump_speed": speed, "cardioplegia_flow": cpgFlow, "cardioplegia_pressure": cpgPress,
		"arterial_line_pressure": alp, "venous_line_pressure": vlp, "reservoir_level": res,
		"temp_arterial_outlet": s.art, "temp_venous_inlet": s.core - 0.3, "temp_cardioplegia": cpgTemp,
		"temp_heater_cooler_water": s.water, "sweep_flow": s.sweep, "sweep_o2_flow": o2, "sweep_air_flow": air,
		"sweep_co2_flow": 0, "fio2": s.fio2, "volatile_agent": volatile,
		"map": mapv, "sbp": sbp, "dbp": dbp, "cvp": cvp, "pap": pap, "heart_rate": hr, "spo2": 99,
		"nirs_left": nirsBase + 2, "nirs_right": nirsBase - 1, "nirs_site3": 35 + 0.55*svo2, "nirs_site4": 33 + 0.55*svo2,
		"temp_nasopharyngeal": s.core, "temp_bladder": s.bladder, "temp_rectal": s.rectal, "urine_output": s.urine,
	}
	if !on {
		values["temp_venous_inlet"] = s.art
	}

	tick := Tick{At: t, Phase: p}

	// line flush spike on the arterial line (monitor)
	if s.flushLeft == 0 && t >= s.nextFlush {
		s.flushLeft = 4 + r.IntN(5)
		s.flushStart = t
	}
	flushing := s.flushLeft > 0
	if flushing {
		v := 280 + 15*r.Float64()
		values["map"], values["sbp"], values["dbp"] = v, v+3, v-3
		s.flushLeft--
		if s.flushLeft == 0 {
			tick.Events = append(tick.Events, Event{At: t, Kind: KindArtifact, Artifact: &Artifact{
				Channels: []string{"map", "sbp", "dbp"}, Source: Monitor, Start: s.flushStart, End: t + time.Second,
				Reason: "arterial line flush"}})
			s.nextFlush = t + s.flushGap()
		}
	}

	for _, ch := range numericChannels {
		v := values[ch]
		exact := ch == "pump_flow" && flow == 0 || ch == "pump_speed" && speed == 0 ||
			(ch == "cardioplegia_flow" || ch == "cardioplegia_pressure") && cpgFlow == 0 ||
			(ch == "arterial_line_pressure" || ch == "venous_line_pressure") && flow == 0 ||
			strings0(ch) && v == 0 || ch == "urine_output" || ch == "volatile_agent" && v == 0 ||
			ch == "heart_rate" && v == 0 || ch == "fio2" && v == 21 && s.sweep == 0
		if !exact && !(flushing && (ch == "map" || ch == "sbp" || ch == "dbp")) {
			v += r.NormFloat64() * noise[ch]
		}
		invalid := s.dropout(ch)
		if ch == "spo2" && !spo2Valid {
			invalid = true // no pulsatile signal on full bypass: the monitor shows dashes
		}
		tick.Numerics = append(tick.Numerics, s.reading(ch, v, invalid))
	}

	// in-line blood gases every 6 s, only with blood through the circuit
	if t%GasInterval == 0 {
		gas := map[string]float64{
			"inline_ph": ph, "inline_pco2": pco2, "inline_po2": pao2, "inline_k": 4.1 + s.kExtra, "inline_hco3": s.hco3,
			"inline_be": be, "inline_sao2": sao2, "inline_svo2": svo2, "inline_hct": s.hct, "inline_hb": hb,
		}
		for _, ch := range gasChannels {
			v := gas[ch] + r.NormFloat64()*noise[ch]
			tick.Gases = append(tick.Gases, s.reading(ch, v, !on || flow == 0 || s.dropout(ch)))
		}
	}

	s.state = State{FlowLmin: flow, BSA: s.bsa, HctPct: s.hct, HbGdl: hb, SaO2Pct: sao2, PaO2: pao2, CaO2: cao2, DO2i: do2i,
		CoreC: s.core, ArterialC: s.art, WaterC: s.water}
	tick.State = s.state

	// scheduled operator entries
	for s.next < len(s.schedule) && s.schedule[s.next].at <= t {
		sc := s.schedule[s.next]
		s.next++
		ev := sc.ev
		switch sc.lab {
		case "act":
			act := 125 + 10*r.NormFloat64()
			if t >= frac(s.cfg.Duration, 0.05) && t < frac(s.cfg.Duration, 0.9) {
				act = 520 + 40*r.NormFloat64() // heparinised for CPB (> 480 s)
				if s.cfg.ECMO {
					act = 200 + 15*r.NormFloat64() // ECMO target range (inferred)
				}
			}
			ev.Labs = []Lab{{Analyte: "act", Unit: "s", Site: "arterial", Value: math.Round(act)}}
		case "urine":
			// The charted urine output is what the monitor's cumulative
			// channel shows since the last charted value.
			vol := math.Round(s.urine - s.urineCharted)
			s.urineCharted += vol
			if vol <= 0 {
				continue
			}
			ev.Fluid = &Fluid{Kind: "urine_output", VolumeML: vol}
		case "ecmo_check":
			ev.Note = fmt.Sprintf("%s: flow %.2f L/min (%.1f L/min/m²), sweep %.1f L/min, FiO2 %.0f %%; oxygenator inspected, no clots seen.",
				ev.Note, flow, flow/s.bsa, s.sweep, s.fio2)
		case "abg":
			ev.Labs = []Lab{
				{"ph", "[pH]", "arterial", round(ph+0.01*r.NormFloat64(), 0.01)},
				{"pco2", "mm[Hg]", "arterial", round(pco2+r.NormFloat64(), 1)},
				{"po2", "mm[Hg]", "arterial", round(pao2+3*r.NormFloat64(), 1)},
				{"hct", "%", "arterial", round(s.hct+0.5*r.NormFloat64(), 1)},
				{"hb", "g/dL", "arterial", round(hb, 0.1)},
				{"k", "mmol/L", "arterial", round(4.1+s.kExtra, 0.1)},
				{"na", "mmol/L", "arterial", round(137+r.NormFloat64(), 1)},
				{"ica", "mmol/L", "arterial", round(1.1+0.05*r.NormFloat64(), 0.01)},
				{"glucose", "mmol/L", "arterial", round(s.glucose, 0.1)},
				{"lactate", "mmol/L", "arterial", round(s.lactate, 0.1)},
			}
		}
		if ev.Kind == KindCardioplegia {
			s.cpgLeft = ev.CPG.VolumeML
			s.cpgRate = math.Max(20, math.Min(300, 10*s.cfg.WeightKg))
			s.kExtra += 0.3
		}
		tick.Events = append(tick.Events, ev)
	}
	return tick
}

// strings0 lists channels whose zero means "off" and carries no noise.
func strings0(ch string) bool {
	switch ch {
	case "sweep_flow", "sweep_o2_flow", "sweep_air_flow", "sweep_co2_flow":
		return true
	}
	return false
}

func round(v, res float64) float64 { inv := math.Round(1 / res); return math.Round(v*inv) / inv }

// dropout makes a channel invalid now and then for 1–5 s (a device dash;
// rate about once per channel-hour, inferred).
func (s *Sim) dropout(ch string) bool {
	if n := s.invalidLeft[ch]; n > 0 {
		s.invalidLeft[ch] = n - 1
		return true
	}
	if s.rng.Float64() < 1.0/3600 {
		s.invalidLeft[ch] = s.rng.IntN(5)
		return true
	}
	return false
}

// reading quantizes a value; an invalid reading repeats the last valid
// value (any in-range value would do: the server ignores it).
func (s *Sim) reading(ch string, v float64, invalid bool) Reading {
	c, _ := s.cat.Lookup(ch)
	if invalid {
		lv, ok := s.last[ch]
		if !ok {
			lv = Quantize(c, math.Max(c.Min, 0))
		}
		return Reading{Channel: ch, Value: lv, Invalid: true}
	}
	q := Quantize(c, v)
	s.last[ch] = q
	return Reading{Channel: ch, Value: q}
}
