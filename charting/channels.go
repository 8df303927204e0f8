package charting

import "math"

// Channel describes one continuous device channel: its stable key, its
// code, its UCUM unit, its plausible range, and the resolution at which
// devices report it. Ranges and units are those of the data dictionary
// (../shared/domain/perfusion.md); where the dictionary gives none, the
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
	Source     string // usual device: HLM, blender, monitor, in-line monitor
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

// DefaultCatalogue returns the channels of the data dictionary.
func DefaultCatalogue() *Catalogue {
	const (
		hlm     = "HLM"
		blender = "gas blender"
		monitor = "patient monitor"
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
		mdc("heart_rate", "Heart rate", "/min", 0, 250, 1, "147842", monitor),
		mdc("spo2", "SpO2", "%", 0, 100, 1, "150456", monitor),
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

// Analyte is a lab result the record accepts, with its unit and LOINC code
// (../shared/domain/interop.md).
type Analyte struct {
	Key      string
	Name     string
	Unit     string
	Min, Max float64
	LOINC    string
}

// Analytes returns the lab analytes by key.
func Analytes() map[string]Analyte {
	list := []Analyte{
		{"ph", "pH, arterial", "[pH]", 6.8, 7.8, "2744-1"},
		{"pco2", "pCO2, arterial", "mm[Hg]", 0, inf, "2019-8"},
		{"po2", "pO2, arterial", "mm[Hg]", 0, 700, "2703-7"},
		{"hco3", "HCO3, arterial", "mmol/L", 0, inf, "1960-4"},
		{"be", "Base excess, arterial", "mmol/L", -inf, inf, "1925-7"},
		{"sao2", "SaO2", "%", 0, 100, "2708-6"},
		{"svo2", "SvO2, mixed venous", "%", 0, 100, "19224-5"},
		{"hct", "Haematocrit", "%", 0, 100, "20570-8"},
		{"hb", "Haemoglobin", "g/dL", 0, inf, "718-7"},
		{"k", "Potassium, blood", "mmol/L", 0, inf, "6298-4"},
		{"na", "Sodium, blood", "mmol/L", 0, inf, "2947-0"},
		{"ica", "Ionised calcium, blood", "mmol/L", 0, inf, "47596-2"},
		{"glucose", "Glucose, blood", "mmol/L", 0, inf, "2339-0"},
		{"lactate", "Lactate, blood", "mmol/L", 0, inf, "32693-4"},
		{"act", "Activated clotting time", "s", 0, inf, "3184-9"},
	}
	m := make(map[string]Analyte, len(list))
	for _, a := range list {
		m[a.Key] = a
	}
	return m
}
