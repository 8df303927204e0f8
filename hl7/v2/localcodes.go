package v2

import (
	"sort"
	"sync"

	"perfusion/charting"
)

// Where a local code appears in a message.
const (
	UseObservation = "OBX-3"  // identifies an observation
	UseValue       = "OBX-5"  // a coded value (OBX-2 CWE)
	UseMethod      = "OBX-17" // how a value was obtained
	UseSite        = "OBX-20" // the channel a value was taken from
	UseCommentType = "NTE-4"  // the kind of a note
	UseDevice      = "OBX-3 device row"
)

// LocalCode is one code of the local coding system 99PERF, with what the
// interface specification says about it. Local codes exist only where no
// standard code was found (see docs/domain.md, "Interoperability"): perfusion
// parameters have no MDC terms, and summary metrics have no LOINC codes.
type LocalCode struct {
	Code    string // the code, unique within 99PERF
	Display string // the display text sent with it (CWE component 2)
	Use     string // one of the Use constants
	// Group sorts the codes for the specification: metric, lab, administration,
	// event, value, method, comment, device or channel.
	Group string
	// ValueType is OBX-2 for observation codes (NM, DTM, ST, CWE).
	ValueType string
	// Unit is the UCUM unit of a numeric observation; "*" when it comes with
	// the value (drug doses).
	Unit       string
	Definition string // what the code means, for the specification
}

// Metric keys: the local observation codes of the case summary's
// metrics. The caller computes the values; see Summary.Metrics.
const (
	MetricCPBDuration                        = "cpb_duration"
	MetricCrossClampDuration                 = "cross_clamp_duration"
	MetricCPBOutsideCrossClampDuration       = "cpb_outside_cross_clamp_duration"
	MetricCirculatoryArrestDuration          = "circulatory_arrest_duration"
	MetricSelectiveCerebralPerfusionDuration = "selective_cerebral_perfusion_duration"
	MetricECMODuration                       = "ecmo_duration"
	MetricLowestTemperature                  = "lowest_temperature"
	MetricHighestTemperature                 = "highest_temperature"
	MetricLowestHct                          = "lowest_hct"
	MetricLowestHb                           = "lowest_hb"
	MetricLowestMAP                          = "lowest_map"
	MetricLowestSvO2                         = "lowest_svo2"
	MetricLowestDO2i                         = "lowest_do2i"
	MetricDO2iThreshold                      = "do2i_threshold"
	MetricDO2iBelowThresholdDuration         = "do2i_below_threshold_duration"
	MetricDO2iBelowThresholdArea             = "do2i_below_threshold_area"
	MetricArtifactExcludedDuration           = "artifact_excluded_duration"
	MetricBSA                                = "bsa"
	MetricPrimeVolume                        = "prime_volume"
	MetricRAPVolume                          = "rap_volume"
	MetricNetPrimeVolumeIndex                = "net_prime_volume_index"
	MetricFullFlowDuration                   = "full_flow_duration"
)

// Method codes (OBX-17) of the full-flow window: how the window of the
// DO2i metrics and full_flow_duration was found.
const (
	MethodFullFlowCharted     = "full_flow_charted"
	MethodFullFlowFlowRule    = "full_flow_flow_rule"
	MethodFullFlowMinutesRule = "full_flow_minutes_rule"
)

// Observation codes for administrations, events and device rows.
const (
	CodeDrug               = "drug"
	CodeLedgerHead         = "ledger_head"
	CodeDrugTotalDose      = "drug_total_dose"
	CodeFluid              = "fluid"
	CodeFluidTotalVolume   = "fluid_total_volume"
	CodeBloodProduct       = "blood_product"
	CodeBloodProductUnits  = "blood_product_units"
	CodeBloodProductVolume = "blood_product_volume"
	// CodeEventPrefix + an event type (charting.EventTypes) is the code of
	// that event's time, e.g. event_cross_clamp_on.
	CodeEventPrefix = "event_"
	// CodeFluidKindPrefix + a fluid kind (charting.FluidKinds) is the coded
	// value of a fluid row, e.g. fluid_crystalloid.
	CodeFluidKindPrefix = "fluid_"
	// CodeBloodProductTypePrefix + a blood product type
	// (charting.BloodProductTypes) is the coded value of a blood product
	// row, e.g. blood_prbc.
	CodeBloodProductTypePrefix = "blood_"
	CodeDeviceMDS              = "device_mds"
	CodeDeviceVMD              = "device_vmd"
	CodeDeviceChannel          = "device_channel"
	CodeNote                   = "note"
	CodeAddendum               = "addendum"
)

func localCodeTable() []LocalCode {
	dur := func(code, display, def string) LocalCode {
		return LocalCode{code, display, UseObservation, "metric", "NM", "min", def}
	}
	nm := func(code, display, unit, def string) LocalCode {
		return LocalCode{code, display, UseObservation, "metric", "NM", unit, def}
	}
	t := []LocalCode{
		dur(MetricCPBDuration, "Cardiopulmonary bypass time", "Minutes on bypass, bypass on to bypass off, summed over all runs."),
		dur(MetricCrossClampDuration, "Aortic cross-clamp time", "Minutes with the aorta cross-clamped, summed over all clamp periods."),
		dur(MetricCPBOutsideCrossClampDuration, "Bypass time outside cross-clamp", "Bypass time minus cross-clamp time (more than 30 min is associated with stroke and reoperation)."),
		dur(MetricCirculatoryArrestDuration, "Circulatory arrest time", "Minutes of circulatory arrest."),
		dur(MetricSelectiveCerebralPerfusionDuration, "Selective cerebral perfusion time", "Minutes of selective cerebral perfusion."),
		dur(MetricECMODuration, "ECMO run time", "Minutes of extracorporeal membrane oxygenation support."),
		nm(MetricLowestTemperature, "Lowest temperature", "Cel", "Lowest temperature; OBX-20 names the channel (site), OBX-14 the time."),
		nm(MetricHighestTemperature, "Highest temperature", "Cel", "Highest temperature; OBX-20 names the channel (site), OBX-14 the time."),
		nm(MetricLowestHct, "Lowest haematocrit", "%", "Lowest haematocrit on bypass (lab or in-line; OBX-20 names the channel when in-line)."),
		nm(MetricLowestHb, "Lowest haemoglobin", "g/dL", "Lowest haemoglobin on bypass."),
		nm(MetricLowestMAP, "Lowest mean arterial pressure", "mm[Hg]", "Lowest mean arterial pressure on bypass, artifact excluded."),
		nm(MetricLowestSvO2, "Lowest venous saturation", "%", "Lowest SvO2 on bypass, artifact excluded."),
		nm(MetricLowestDO2i, "Lowest indexed oxygen delivery", "mL/(min.m2)", "Nadir of DO2i = pump flow / BSA x CaO2 x 10 on full-flow bypass (full_flow_duration); OBX-17 says how that window was found."),
		nm(MetricDO2iThreshold, "DO2i threshold", "mL/(min.m2)", "The threshold the two DO2i metrics below were computed against (site setting)."),
		dur(MetricDO2iBelowThresholdDuration, "Time below DO2i threshold", "Minutes on full-flow bypass with DO2i below the threshold, artifact excluded; OBX-17 as for lowest_do2i."),
		nm(MetricDO2iBelowThresholdArea, "Area below DO2i threshold", "mL/m2", "Integral of (threshold - DO2i) over the time on full-flow bypass below the threshold; OBX-17 as for lowest_do2i."),
		dur(MetricFullFlowDuration, "Full-flow bypass time", "Minutes of established bypass, full flow to weaning in each run, less circulatory arrest: the window of the DO2i metrics. OBX-17 says how it was found."),
		dur(MetricArtifactExcludedDuration, "Time excluded as artifact", "Minutes of device data marked as artifact and left out of the threshold metrics."),
		nm(MetricBSA, "Body surface area", "m2", "BSA used for indexing; OBX-17 names the formula."),
		nm(MetricPrimeVolume, "Total prime volume", "mL", "Sum of the circuit prime components."),
		nm(MetricRAPVolume, "Retrograde autologous priming volume", "mL", "Prime volume removed by retrograde autologous priming."),
		nm(MetricNetPrimeVolumeIndex, "Net prime volume index", "mL/m2", "(Total prime - RAP volume) / BSA."),

		{CodeDrug, "Drug", UseObservation, "administration", "ST", "", "Name of a drug as charted; OBX-4 groups it with its total dose."},
		{CodeLedgerHead, "Ledger head signed", UseObservation, "record", "ST", "", "The position and SHA-256 of the record's hash chain that the reported signature covers, as sequence:hex. The receiver keeps it as a witness: VerifyRecord against it proves the record was not truncated or rewritten since."},
		{CodeDrugTotalDose, "Total dose of drug", UseObservation, "administration", "NM", "*", "Total dose of the drug with the same OBX-4; the UCUM unit is in OBX-6."},
		{CodeFluid, "Fluid", UseObservation, "administration", "CWE", "", "Kind of fluid volume (a 99PERF value code); OBX-4 groups it with its total."},
		{CodeFluidTotalVolume, "Total fluid volume", UseObservation, "administration", "NM", "mL", "Total volume of the fluid kind with the same OBX-4."},
		{CodeBloodProduct, "Blood product", UseObservation, "administration", "CWE", "", "Blood product type (a 99PERF value code); OBX-4 groups it with its totals."},
		{CodeBloodProductUnits, "Blood product units", UseObservation, "administration", "NM", "{unit}", "Number of units of the blood product with the same OBX-4."},
		{CodeBloodProductVolume, "Blood product volume", UseObservation, "administration", "NM", "mL", "Volume of the blood product with the same OBX-4."},

		{CodeFluidKindPrefix + "crystalloid", "Crystalloid added", UseValue, "value", "", "", "Crystalloid added to the circuit."},
		{CodeFluidKindPrefix + "colloid", "Colloid added", UseValue, "value", "", "", "Colloid (e.g. albumin) added to the circuit."},
		{CodeFluidKindPrefix + "ultrafiltration_removed", "Ultrafiltration removed", UseValue, "value", "", "", "Volume removed by ultrafiltration."},
		{CodeFluidKindPrefix + "cell_saver_returned", "Cell saver returned", UseValue, "value", "", "", "Processed cell-saver volume returned to the patient."},
		{CodeFluidKindPrefix + "urine_output", "Urine output", UseValue, "value", "", "", "Urine output during the case."},
		{CodeBloodProductTypePrefix + "prbc", "Packed red blood cells", UseValue, "value", "", "", "Packed red blood cells."},
		{CodeBloodProductTypePrefix + "ffp", "Fresh frozen plasma", UseValue, "value", "", "", "Fresh frozen plasma."},
		{CodeBloodProductTypePrefix + "platelets", "Platelets", UseValue, "value", "", "", "Platelets."},
		{CodeBloodProductTypePrefix + "cryoprecipitate", "Cryoprecipitate", UseValue, "value", "", "", "Cryoprecipitate."},
		{CodeBloodProductTypePrefix + "whole_blood", "Whole blood", UseValue, "value", "", "", "Whole blood."},

		{"alpha_stat", "Alpha-stat", UseMethod, "method", "", "", "Blood gas corrected to 37 °C (alpha-stat management)."},
		{"ph_stat", "pH-stat", UseMethod, "method", "", "", "Blood gas at patient temperature (pH-stat management)."},
		{"mosteller", "Mosteller formula", UseMethod, "method", "", "", "BSA = sqrt(height cm x weight kg / 3600)."},
		{"dubois", "DuBois formula", UseMethod, "method", "", "", "BSA = 0.007184 x W^0.425 x H^0.725."},
		{"haycock", "Haycock formula", UseMethod, "method", "", "", "BSA = 0.024265 x W^0.5378 x H^0.3964 (children)."},
		{MethodFullFlowCharted, "Full flow and weaning as charted", UseMethod, "method", "", "", "The full-flow window runs from the charted full flow event to the charted weaning event of each bypass run."},
		{MethodFullFlowFlowRule, "Full flow from pump flow (site rule)", UseMethod, "method", "", "", "At least one end of a full-flow window was not charted and was found from the pump flow by the site's rule (flow held at a set share of the run's median flow)."},
		{MethodFullFlowMinutesRule, "Full flow from bypass times (site rule)", UseMethod, "method", "", "", "At least one end of a full-flow window was taken a set number of minutes after bypass on or before bypass off, the run having no usable pump flow."},

		{CodeNote, "Note", UseCommentType, "comment", "", "", "A free-text note charted during the case."},
		{CodeAddendum, "Addendum", UseCommentType, "comment", "", "", "A note added after sign-off, with its reason."},

		{CodeDeviceMDS, "Perfusion data source", UseDevice, "device", "", "", "PCD-01 MDS row for one data source (source ID), when the caller gives no MDC device code."},
		{CodeDeviceVMD, "Perfusion data source module", UseDevice, "device", "", "", "PCD-01 VMD row under a data source."},
		{CodeDeviceChannel, "Perfusion data source channel", UseDevice, "device", "", "", "PCD-01 channel row holding the source's metrics."},
	}
	for _, e := range charting.EventTypes {
		t = append(t, LocalCode{CodeEventPrefix + e, eventDisplay(e), UseObservation, "event", "DTM", "",
			"Time of the event (" + e + "); an event comment follows as NTE; OBX-4 numbers repeats."})
	}
	return t
}

// eventDisplay names each event type of charting.EventTypes; a test
// checks that none is missing.
func eventDisplay(e string) string {
	switch e {
	case charting.EventHeparinGiven:
		return "Heparin given"
	case charting.EventACTAdequate:
		return "ACT adequate for bypass"
	case charting.EventBypassOn:
		return "Bypass on"
	case charting.EventFullFlow:
		return "Full flow reached"
	case charting.EventCoolingStart:
		return "Cooling started"
	case charting.EventCrossClampOn:
		return "Aortic cross-clamp on"
	case charting.EventCrossClampOff:
		return "Aortic cross-clamp off"
	case charting.EventCirculatoryArrestStart:
		return "Circulatory arrest started"
	case charting.EventCirculatoryArrestEnd:
		return "Circulatory arrest ended"
	case charting.EventSelectiveCerebralPerfusionStart:
		return "Selective cerebral perfusion started"
	case charting.EventSelectiveCerebralPerfusionEnd:
		return "Selective cerebral perfusion ended"
	case charting.EventRewarmingStart:
		return "Rewarming started"
	case charting.EventWeaningStart:
		return "Weaning started"
	case charting.EventBypassOff:
		return "Bypass off"
	case charting.EventProtamineGiven:
		return "Protamine given"
	case charting.EventSuckersStopped:
		return "Pump suckers stopped"
	case charting.EventDecannulation:
		return "Decannulation"
	case charting.EventConversionToOnPump:
		return "Conversion to on-pump"
	case charting.EventAlarm:
		return "Alarm"
	case charting.EventDeviceMark:
		return "Device mark"
	case charting.EventPerfusionistHandoff:
		return "Perfusionist hand-off"
	case charting.EventCannulation:
		return "Cannulation"
	case charting.EventComplication:
		return "Complication"
	}
	return ""
}

var localIndex = sync.OnceValue(func() map[string]LocalCode {
	m := make(map[string]LocalCode)
	for _, c := range localCodeTable() {
		m[c.Code] = c
	}
	return m
})

// lookupLocal returns the static local code (not channel codes).
func lookupLocal(code string) (LocalCode, bool) {
	c, ok := localIndex()[code]
	return c, ok
}

// LocalCodes returns every 99PERF code this package can emit: the static
// table above, then the catalogue's channels with a local code (used in
// PCD-01 OBX-3 and as OBX-20 of summary metrics). The interface
// specification is generated from this list; a test checks that every
// local code in the golden messages is in it.
func LocalCodes(cat *charting.Catalogue) []LocalCode {
	if cat == nil {
		cat = charting.DefaultCatalogue()
	}
	out := localCodeTable()
	analytes := charting.Analytes()
	keys := make([]string, 0, len(analytes))
	for k := range analytes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a := analytes[k]
		for _, site := range charting.SampleSites {
			if lc, _ := a.Code(site); lc.LOINC == "" {
				out = append(out, LocalCode{a.LocalCode(site), lc.Name, UseObservation, "lab", "NM", a.Unit,
					"Lab result " + a.Key + " of a " + site + " sample: the data dictionary gives no LOINC code for this site, and the arterial code would misstate the sample."})
			}
		}
	}
	for _, ch := range cat.Channels() {
		if ch.CodeSystem == SystemLocal {
			out = append(out, LocalCode{ch.Code, ch.Name, UseObservation + ", " + UseSite, "channel", "NM", ch.Unit,
				"Device channel " + ch.Key + " (usual source: " + ch.Source + ")."})
		}
	}
	return out
}

// localCode returns the coded form of a static local code. Callers pass
// only codes from the table; a test checks every local code in the golden
// messages against LocalCodes.
func localCode(code string) Code {
	c, _ := lookupLocal(code)
	return Code{Code: code, Text: c.Display, System: SystemLocal}
}
