package charting

import "math"

// Channel describes one continuous device channel: its stable key, its
// code, its UCUM unit, its plausible range, and the resolution at which
// devices report it. Ranges and units are those of the data dictionary
// (docs/domain.md); where the dictionary gives none, the
// range is left open on that side.
//
// The plausible range flags readings, it never refuses them: a reading
// outside it is stored as the device sent it and shown as out of range
// (Plausible), because refusing it would lose every other reading of its
// batch and the device may be right (an adult ECMO flow, a neonate's
// values).
type Channel struct {
	Key        string
	Name       string
	Unit       string  // UCUM
	Min, Max   float64 // plausible range, inclusive; ±Inf when the dictionary gives none
	Resolution float64 // device resolution, used by the block codec; 0 = unknown
	// CodeSystem and Code identify the channel in exports: "MDC" (IEEE
	// 11073-10101) where a term exists, else the local system "99PERF".
	CodeSystem string
	Code       string
	// RefID is the MDC reference ID of Code (e.g. MDC_PULS_OXIM_SAT_O2),
	// OBX-3.2 of a PCD-01 row as IHE PCD TF-2 requires. Set only where a
	// source we hold gives it (the IHE PCD TF-2 text); empty otherwise, and
	// exports then send the channel's name instead (docs/interface-spec.md).
	RefID  string
	Source string // usual device: HLM, blender, monitor, in-line monitor
}

// Plausible reports whether a reading lies in the channel's plausible
// range. A reading outside it is "out of range": stored and returned as
// sent, flagged by queries, watches and exports, and left out of bucket
// statistics, exported means and metrics. The flag is derived from the
// value and the catalogue whenever it is needed, never stored, so stored
// batches and their ledger digests do not depend on the catalogue of the
// day; a deployment that widens a range changes what is flagged, not the
// record. NaN is not plausible (it is never stored as a reading: a batch
// carrying one outside invalid_indexes is refused).
func (ch Channel) Plausible(x float64) bool { return x >= ch.Min && x <= ch.Max }

// Catalogue is a set of channels by key. A deployment may build its own
// (for example with ranges for a neonatal programme); DefaultCatalogue
// follows the data dictionary.
type Catalogue struct {
	byKey map[string]Channel
	order []string
}

// NewCatalogue builds a catalogue from channels; later duplicates win.
func NewCatalogue(chs []Channel) *Catalogue {
	c := &Catalogue{byKey: make(map[string]Channel, len(chs))}
	for _, ch := range chs {
		if _, dup := c.byKey[ch.Key]; !dup {
			c.order = append(c.order, ch.Key)
		}
		c.byKey[ch.Key] = ch
	}
	return c
}

// Lookup returns the channel with key.
func (c *Catalogue) Lookup(key string) (Channel, bool) {
	ch, ok := c.byKey[key]
	return ch, ok
}

// Flagging returns the channel with key, or, for a key the catalogue does
// not know (data stored under an older catalogue), a channel of that key
// with an open range, so none of its readings is flagged.
func (c *Catalogue) Flagging(key string) Channel {
	if ch, ok := c.byKey[key]; ok {
		return ch
	}
	return Channel{Key: key, Min: -inf, Max: inf}
}

// Channels returns every channel in catalogue order.
func (c *Catalogue) Channels() []Channel {
	out := make([]Channel, 0, len(c.order))
	for _, k := range c.order {
		out = append(out, c.byKey[k])
	}
	return out
}

// Resolution returns the channel's resolution, 0 when unknown.
func (c *Catalogue) Resolution(key string) float64 { return c.byKey[key].Resolution }

var inf = math.Inf(1)

func local(key, name, unit string, lo, hi, res float64, src string) Channel {
	return Channel{Key: key, Name: name, Unit: unit, Min: lo, Max: hi, Resolution: res, CodeSystem: "99PERF", Code: key, Source: src}
}

func mdc(key, name, unit string, lo, hi, res float64, code, src string) Channel {
	return Channel{Key: key, Name: name, Unit: unit, Min: lo, Max: hi, Resolution: res, CodeSystem: "MDC", Code: code, Source: src}
}

// SourcePatientMonitor is Channel.Source of the channels a physiological
// patient monitor reports; a PCD-01 report gives a data source carrying
// only such channels the MDC monitor MDS code.
const SourcePatientMonitor = "patient monitor"

// withRefID sets the MDC reference ID of ch. Only IDs read in IHE PCD TF-2
// (Appendix E examples) are set: 150033/150034/150035, 150087 and 153144
// have no reference ID in our sources yet and go out by name.
func withRefID(ch Channel, ref string) Channel { ch.RefID = ref; return ch }

// DefaultCatalogue returns the channels of the data dictionary.
func DefaultCatalogue() *Catalogue {
	const (
		hlm     = "HLM"
		blender = "gas blender"
		monitor = SourcePatientMonitor
		inline  = "in-line blood gas monitor"
	)
	temp := func(key, name string) Channel { return local(key, name, "Cel", 4, 42, 0.1, hlm) }
	return NewCatalogue([]Channel{
		// 0–10 L/min: adult ECMO runs 4–7 and up to about 8 (data dictionary).
		local("pump_flow", "Arterial pump flow", "L/min", 0, 10, 0.01, hlm),
		local("pump_speed", "Arterial pump speed", "/min", 0, 5000, 1, hlm),
		local("cardioplegia_flow", "Cardioplegia flow", "mL/min", 0, 500, 1, hlm),
		local("cardioplegia_pressure", "Cardioplegia pressure", "mm[Hg]", 0, 400, 1, hlm),
		local("arterial_line_pressure", "Arterial line pressure (post-oxygenator)", "mm[Hg]", 0, 400, 1, hlm),
		local("venous_line_pressure", "Venous line / vacuum pressure", "mm[Hg]", -150, 50, 1, hlm),
		local("reservoir_level", "Venous reservoir level", "mL", 0, 5000, 1, hlm),
		local("sweep_flow", "Sweep gas flow", "L/min", 0, 10, 0.01, blender),
		local("sweep_o2_flow", "Sweep gas O2 flow", "L/min", 0, 10, 0.01, blender),
		local("sweep_air_flow", "Sweep gas air flow", "L/min", 0, 10, 0.01, blender),
		local("sweep_co2_flow", "Sweep gas CO2 flow", "L/min", 0, 10, 0.01, blender),
		mdc("fio2", "FiO2 (blender)", "%", 21, 100, 1, "153144", blender),
		local("volatile_agent", "Volatile agent", "%", 0, 5, 0.1, "vaporiser"),
		temp("temp_arterial_outlet", "Arterial outlet temperature"),
		temp("temp_venous_inlet", "Venous inlet temperature"),
		temp("temp_nasopharyngeal", "Nasopharyngeal temperature"),
		temp("temp_bladder", "Bladder temperature"),
		temp("temp_rectal", "Rectal temperature"),
		temp("temp_cardioplegia", "Cardioplegia temperature"),
		temp("temp_heater_cooler_water", "Heater-cooler water temperature"),
		mdc("map", "Mean arterial pressure", "mm[Hg]", 0, 300, 1, "150035", monitor),
		mdc("sbp", "Systolic arterial pressure", "mm[Hg]", 0, 300, 1, "150033", monitor),
		mdc("dbp", "Diastolic arterial pressure", "mm[Hg]", 0, 300, 1, "150034", monitor),
		mdc("cvp", "Central venous pressure (mean)", "mm[Hg]", 0, 300, 1, "150087", monitor),
		local("pap", "Pulmonary artery pressure (mean)", "mm[Hg]", 0, 300, 1, monitor),
		withRefID(mdc("heart_rate", "Heart rate", "/min", 0, 250, 1, "147842", monitor), "MDC_ECG_CARD_BEAT_RATE"),
		withRefID(mdc("spo2", "SpO2", "%", 0, 100, 1, "150456", monitor), "MDC_PULS_OXIM_SAT_O2"),
		local("nirs_left", "NIRS rSO2 left", "%", 15, 95, 1, "cerebral oximeter"),
		local("nirs_right", "NIRS rSO2 right", "%", 15, 95, 1, "cerebral oximeter"),
		local("nirs_site3", "NIRS rSO2 site 3", "%", 15, 95, 1, "cerebral oximeter"),
		local("nirs_site4", "NIRS rSO2 site 4", "%", 15, 95, 1, "cerebral oximeter"),
		local("inline_ph", "In-line arterial pH", "[pH]", 6.8, 7.8, 0.01, inline),
		local("inline_pco2", "In-line arterial pCO2", "mm[Hg]", 0, inf, 1, inline),
		local("inline_po2", "In-line arterial pO2", "mm[Hg]", 0, 700, 1, inline),
		local("inline_k", "In-line potassium", "mmol/L", 0, inf, 0.1, inline),
		local("inline_hco3", "In-line bicarbonate", "mmol/L", 0, inf, 0.1, inline),
		local("inline_be", "In-line base excess", "mmol/L", -inf, inf, 0.1, inline),
		local("inline_sao2", "In-line arterial saturation", "%", 0, 100, 1, inline),
		local("inline_svo2", "In-line venous saturation SvO2", "%", 0, 100, 1, inline),
		local("inline_hct", "In-line haematocrit", "%", 0, 100, 1, inline),
		local("inline_hb", "In-line haemoglobin", "g/dL", 0, inf, 0.1, inline),
		local("urine_output", "Urine output (cumulative)", "mL", 0, inf, 1, "scale"),
	})
}

// Sample sites of a lab result (LabResult.Site); "" is a sample charted
// without a site.
var SampleSites = []string{"", "arterial", "venous", "mixed_venous", "capillary"}

// LabCode is the code a lab result goes out with for one sample site.
// Codes come only from the data dictionary (docs/domain.md, "Interoperability");
// where it has none for the site, LOINC is empty and the exports send a
// local code (LocalCode) rather than borrow another site's code: a venous
// sample never goes out under an arterial code.
type LabCode struct {
	LOINC string // "" when the dictionary gives no code for this site
	Name  string // display text, naming the site the code means
	// Verified is true for codes the dictionary marks [R] (read in a
	// source); false for [V] codes still to be checked against the LOINC
	// table, which the interface specification lists as such.
	Verified bool
}

// Analyte is a lab result the record accepts, with its unit and its codes
// by sample site (docs/domain.md, "Interoperability"). The unit is fixed per
// analyte (validateLab), so the codes match it: glucose is molar (mmol/L,
// LOINC 15074-8), not mass per volume (2339-0).
type Analyte struct {
	Key      string
	Name     string
	Unit     string
	Min, Max float64
	// Codes by sample site, one for every entry of SampleSites. A sample
	// with no site takes the code of the analyte's name: arterial for the
	// blood-gas analytes named "…, arterial" (the point-of-care gas on
	// bypass), blood otherwise.
	Codes map[string]LabCode
}

// Code returns the code for a sample from site; ok is false for a site
// outside SampleSites.
func (a Analyte) Code(site string) (LabCode, bool) {
	c, ok := a.Codes[site]
	return c, ok
}

// LocalCode is the local (99PERF) code of the analyte at a site the
// dictionary has no LOINC code for, e.g. lab_ph_venous.
func (a Analyte) LocalCode(site string) string {
	if site == "" {
		return "lab_" + a.Key
	}
	return "lab_" + a.Key + "_" + site
}

// Analytes returns the lab analytes by key.
func Analytes() map[string]Analyte {
	r := func(code, name string) LabCode { return LabCode{code, name, true} }
	v := func(code, name string) LabCode { return LabCode{code, name, false} }
	none := func(name string) LabCode { return LabCode{Name: name} }
	// sites builds the code map: the arterial sample, the venous, mixed
	// venous and capillary samples, and the sample without a site.
	sites := func(art, ven, mv, capi, unsited LabCode) map[string]LabCode {
		return map[string]LabCode{"arterial": art, "venous": ven, "mixed_venous": mv, "capillary": capi, "": unsited}
	}
	// same: one code for every site (a whole-blood code the dictionary
	// gives without a site).
	same := func(c LabCode) map[string]LabCode { return sites(c, c, c, c, c) }
	// gas: an arterial code and no code for other sites in the dictionary.
	gas := func(art LabCode, what string) map[string]LabCode {
		return sites(art, none(what+", venous"), none(what+", mixed venous"), none(what+", capillary"), art)
	}
	list := []Analyte{
		{"ph", "pH, arterial", "[pH]", 6.8, 7.8, gas(r("2744-1", "pH, arterial"), "pH")},
		{"pco2", "pCO2, arterial", "mm[Hg]", 0, inf, gas(r("2019-8", "pCO2, arterial"), "pCO2")},
		{"po2", "pO2, arterial", "mm[Hg]", 0, 700, gas(r("2703-7", "pO2, arterial"), "pO2")},
		// HCO3: the dictionary has an arterial [V] and a blood [R] code.
		{"hco3", "HCO3, arterial", "mmol/L", 0, inf, func() map[string]LabCode {
			b := r("1959-6", "HCO3, blood")
			return sites(v("1960-4", "HCO3, arterial"), b, b, b, v("1960-4", "HCO3, arterial"))
		}()},
		{"be", "Base excess, arterial", "mmol/L", -inf, inf, func() map[string]LabCode {
			a, b := r("1925-7", "Base excess, arterial"), r("11555-0", "Base excess, blood")
			return sites(a, b, b, b, a)
		}()},
		// Oxygen saturation: the code follows the site the blood came from,
		// whichever analyte key the client used.
		{"sao2", "SaO2", "%", 0, 100, sites(r("2708-6", "SaO2, arterial"), r("2711-0", "O2 saturation, venous"),
			r("19224-5", "SvO2, mixed venous"), none("O2 saturation, capillary"), r("2708-6", "SaO2, arterial"))},
		{"svo2", "SvO2, mixed venous", "%", 0, 100, sites(r("2708-6", "SaO2, arterial"), r("2711-0", "O2 saturation, venous"),
			r("19224-5", "SvO2, mixed venous"), none("O2 saturation, capillary"), r("19224-5", "SvO2, mixed venous"))},
		{"hct", "Haematocrit", "%", 0, 100, same(v("20570-8", "Haematocrit, blood"))},
		{"hb", "Haemoglobin", "g/dL", 0, inf, func() map[string]LabCode {
			b := v("718-7", "Haemoglobin, blood")
			return sites(r("30313-1", "Haemoglobin, arterial"), b, b, b, b)
		}()},
		{"k", "Potassium, blood", "mmol/L", 0, inf, same(v("6298-4", "Potassium, blood"))},
		{"na", "Sodium, blood", "mmol/L", 0, inf, same(r("2947-0", "Sodium, blood"))},
		{"ica", "Ionised calcium, blood", "mmol/L", 0, inf, same(r("47596-2", "Ionised calcium, blood"))},
		// Molar glucose, as the unit is mmol/L; 15074-8 is named by issue
		// 18, not yet in the dictionary's table: [V].
		{"glucose", "Glucose, blood", "mmol/L", 0, inf, same(v("15074-8", "Glucose, blood (moles/volume)"))},
		{"lactate", "Lactate, blood", "mmol/L", 0, inf, func() map[string]LabCode {
			b := v("32693-4", "Lactate, blood")
			return sites(v("2518-9", "Lactate, arterial"), b, b, b, b)
		}()},
		{"act", "Activated clotting time", "s", 0, inf, same(r("3184-9", "Activated clotting time"))},
	}
	m := make(map[string]Analyte, len(list))
	for _, a := range list {
		m[a.Key] = a
	}
	return m
}
