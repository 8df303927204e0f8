package charting

// Event types: the timed events of a CPB or ECMO case (docs/domain.md,
// "Timed events"). They are hashed into the record as these exact
// strings, so they are named here once and never spelt out elsewhere;
// TestEventTypesMatchAPIAndDictionary holds them to the API's EventType
// enum and to the dictionary's table of identifiers.
const (
	EventHeparinGiven                    = "heparin_given"
	EventACTAdequate                     = "act_adequate"
	EventBypassOn                        = "bypass_on"
	EventFullFlow                        = "full_flow"
	EventCoolingStart                    = "cooling_start"
	EventCrossClampOn                    = "cross_clamp_on"
	EventCrossClampOff                   = "cross_clamp_off"
	EventCirculatoryArrestStart          = "circulatory_arrest_start"
	EventCirculatoryArrestEnd            = "circulatory_arrest_end"
	EventSelectiveCerebralPerfusionStart = "selective_cerebral_perfusion_start"
	EventSelectiveCerebralPerfusionEnd   = "selective_cerebral_perfusion_end"
	EventRewarmingStart                  = "rewarming_start"
	EventWeaningStart                    = "weaning_start"
	EventBypassOff                       = "bypass_off"
	EventProtamineGiven                  = "protamine_given"
	EventSuckersStopped                  = "suckers_stopped"
	EventDecannulation                   = "decannulation"
	EventConversionToOnPump              = "conversion_to_on_pump"
	EventAlarm                           = "alarm"
	EventDeviceMark                      = "device_mark"
	EventPerfusionistHandoff             = "perfusionist_handoff"
	EventCannulation                     = "cannulation"
	EventComplication                    = "complication"
)

// EventTypes lists the timed events of a CPB or ECMO case.
var EventTypes = []string{
	EventHeparinGiven, EventACTAdequate, EventBypassOn, EventFullFlow, EventCoolingStart,
	EventCrossClampOn, EventCrossClampOff, EventCirculatoryArrestStart, EventCirculatoryArrestEnd,
	EventSelectiveCerebralPerfusionStart, EventSelectiveCerebralPerfusionEnd,
	EventRewarmingStart, EventWeaningStart, EventBypassOff, EventProtamineGiven, EventSuckersStopped,
	EventDecannulation, EventConversionToOnPump, EventAlarm, EventDeviceMark, EventPerfusionistHandoff,
	EventCannulation, EventComplication,
}
