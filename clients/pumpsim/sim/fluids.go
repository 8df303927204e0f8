package sim

import (
	"math"
	"time"

	"perfusion/charting"
)

// planChecklist charts the AmSECT pre-bypass checklist one item a few
// seconds apart, ending at end, as a perfusionist ticks it on the tablet.
// ECMO circuits carry no volatile agent, and a pure ECMO run no
// cardioplegia: those items are not applicable.
func (s *Sim) planChecklist(end time.Duration, add func(time.Duration, Event, string)) {
	var items []ChecklistItem
	for _, sec := range PreBypassChecklist {
		for _, it := range sec.Items {
			state := "checked"
			if s.cfg.ECMO && (it == "volatile scavenge line" || sec.Section == "cardioplegia") {
				state = "not_applicable"
			}
			items = append(items, ChecklistItem{Section: sec.Section, Item: it, State: state})
		}
	}
	at := end - time.Duration(len(items))*5*time.Second
	if at < 0 {
		at = 0
	}
	for i := range items {
		add(at+time.Duration(i)*5*time.Second, Event{Kind: KindChecklist, Check: &items[i]}, "")
	}
}

// planFluids charts a CPB case's volumes in and out (inferred, typical
// adult practice scaled by weight): a crystalloid top-up to the reservoir
// early on bypass, ultrafiltration during rewarming to concentrate after
// haemodilution, cell-saver blood returned after bypass, and urine output
// from the monitor's cumulative channel at bypass off and at the end.
func (s *Sim) planFluids(add func(time.Duration, Event, string)) {
	kg := s.cfg.WeightKg
	d := s.cfg.Duration
	topUp := math.Round(math.Min(500, 5*kg)/10) * 10
	add(s.tFullFlow+10*time.Minute, Event{Kind: KindFluid, Fluid: &Fluid{Kind: "crystalloid", Name: "Plasma-Lyte A", VolumeML: topUp}}, "")
	uf := math.Round(math.Min(1500, 12*kg)/50) * 50
	add(s.tRewarm+10*time.Minute, Event{Kind: KindFluid, Fluid: &Fluid{Kind: "ultrafiltration_removed", Name: "conventional UF", VolumeML: uf}}, "")
	add(s.tBypassOff, Event{Kind: KindFluid}, "urine")
	cs := math.Round(math.Min(500, 4*kg)/10) * 10
	add(frac(d, 0.93), Event{Kind: KindFluid, Fluid: &Fluid{Kind: "cell_saver_returned", Name: "washed red cells", VolumeML: cs}}, "")
	add(d-time.Minute, Event{Kind: KindFluid}, "urine")
}

// planArrest places the circulatory arrest at the end of the cross-clamp's
// cold part, ending 5 minutes before rewarming starts, so the patient has
// had the whole cooling time to reach the deep target first; it is cut
// short if the clamp is too brief to hold it.
func (s *Sim) planArrest(event func(time.Duration, string, string)) {
	if s.cfg.Arrest <= 0 {
		s.tArrestStart, s.tArrestEnd = s.cfg.Duration, s.cfg.Duration
		return
	}
	end := s.tRewarm - 5*time.Minute
	start := max(end-s.cfg.Arrest, s.tClampOn+5*time.Minute)
	if end <= start {
		s.tArrestStart, s.tArrestEnd = s.cfg.Duration, s.cfg.Duration
		return
	}
	s.tArrestStart, s.tArrestEnd = start, end
	event(start, charting.EventCirculatoryArrestStart, "")
	event(end, charting.EventCirculatoryArrestEnd, "")
}
