package server

import (
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/store/checkpoint"
)

// This file holds the primitives of proto ⇄ charting conversion: enum
// tables, ids, times and hashes. convert_case.go, convert_entry.go and
// convert_samples.go build the messages from them.
//
// Enum values map to the strings charting stores through explicit tables
// rather than by deriving them from the proto names: the strings are part
// of the hashed, legal record, so a renamed proto value must never change
// what is stored. convert_test.go checks that every proto value has a
// string and that each table matches charting's lists.

// enumTable maps one proto enum to charting's strings, both ways. The zero
// (UNSPECIFIED) value maps to "". Tables are built once and only read.
type enumTable[E ~int32] struct {
	names  map[E]string
	values map[string]E
}

func newEnumTable[E ~int32](names map[E]string) *enumTable[E] {
	t := &enumTable[E]{names: names, values: make(map[string]E, len(names))}
	for v, s := range names {
		t.values[s] = v
	}
	return t
}

// parse returns the string of v, "" for UNSPECIFIED. An enum number the
// server does not know (proto3 enums are open) is a violation on field.
func (t *enumTable[E]) parse(p *parser, field string, v E) string {
	if v == 0 {
		return ""
	}
	s, ok := t.names[v]
	if !ok {
		p.v.Add(field, "unknown enum value %d", int32(v))
	}
	return s
}

// enum returns the proto value of a stored string; UNSPECIFIED for "" and
// for any string this server version does not know.
func (t *enumTable[E]) enum(s string) E { return t.values[s] }

var (
	caseKinds = newEnumTable(map[pb.CaseKind]string{
		pb.CaseKind_CASE_KIND_CPB:  string(charting.KindCPB),
		pb.CaseKind_CASE_KIND_ECMO: string(charting.KindECMO),
	})
	caseStatuses = newEnumTable(map[pb.CaseStatus]string{
		pb.CaseStatus_CASE_STATUS_PLANNED:     string(charting.StatusPlanned),
		pb.CaseStatus_CASE_STATUS_IN_PROGRESS: string(charting.StatusInProgress),
		pb.CaseStatus_CASE_STATUS_CLOSED:      string(charting.StatusClosed),
		pb.CaseStatus_CASE_STATUS_SIGNED:      string(charting.StatusSigned),
	})
	sexes = newEnumTable(map[pb.Sex]string{
		pb.Sex_SEX_FEMALE:  "female",
		pb.Sex_SEX_MALE:    "male",
		pb.Sex_SEX_OTHER:   "other",
		pb.Sex_SEX_UNKNOWN: "unknown",
	})
	bsaFormulas = newEnumTable(map[pb.BsaFormula]string{
		pb.BsaFormula_BSA_FORMULA_MOSTELLER: string(charting.BSAMosteller),
		pb.BsaFormula_BSA_FORMULA_DUBOIS:    string(charting.BSADuBois),
		pb.BsaFormula_BSA_FORMULA_HAYCOCK:   string(charting.BSAHaycock),
	})
	pumpTypes = newEnumTable(map[pb.PumpType]string{
		pb.PumpType_PUMP_TYPE_ROLLER:      "roller",
		pb.PumpType_PUMP_TYPE_CENTRIFUGAL: "centrifugal",
	})
	reservoirTypes = newEnumTable(map[pb.ReservoirType]string{
		pb.ReservoirType_RESERVOIR_TYPE_HARD_SHELL: "hard_shell",
		pb.ReservoirType_RESERVOIR_TYPE_SOFT_BAG:   "soft_bag",
	})
	signatureMeanings = newEnumTable(map[pb.SignatureMeaning]string{
		pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED: string(charting.MeaningAuthored),
		pb.SignatureMeaning_SIGNATURE_MEANING_REVIEWED: string(charting.MeaningReviewed),
		pb.SignatureMeaning_SIGNATURE_MEANING_APPROVED: string(charting.MeaningApproved),
	})
	eventTypes = newEnumTable(map[pb.EventType]string{
		pb.EventType_EVENT_TYPE_HEPARIN_GIVEN:                      charting.EventHeparinGiven,
		pb.EventType_EVENT_TYPE_ACT_ADEQUATE:                       charting.EventACTAdequate,
		pb.EventType_EVENT_TYPE_BYPASS_ON:                          charting.EventBypassOn,
		pb.EventType_EVENT_TYPE_FULL_FLOW:                          charting.EventFullFlow,
		pb.EventType_EVENT_TYPE_COOLING_START:                      charting.EventCoolingStart,
		pb.EventType_EVENT_TYPE_CROSS_CLAMP_ON:                     charting.EventCrossClampOn,
		pb.EventType_EVENT_TYPE_CROSS_CLAMP_OFF:                    charting.EventCrossClampOff,
		pb.EventType_EVENT_TYPE_CIRCULATORY_ARREST_START:           charting.EventCirculatoryArrestStart,
		pb.EventType_EVENT_TYPE_CIRCULATORY_ARREST_END:             charting.EventCirculatoryArrestEnd,
		pb.EventType_EVENT_TYPE_SELECTIVE_CEREBRAL_PERFUSION_START: charting.EventSelectiveCerebralPerfusionStart,
		pb.EventType_EVENT_TYPE_SELECTIVE_CEREBRAL_PERFUSION_END:   charting.EventSelectiveCerebralPerfusionEnd,
		pb.EventType_EVENT_TYPE_REWARMING_START:                    charting.EventRewarmingStart,
		pb.EventType_EVENT_TYPE_WEANING_START:                      charting.EventWeaningStart,
		pb.EventType_EVENT_TYPE_BYPASS_OFF:                         charting.EventBypassOff,
		pb.EventType_EVENT_TYPE_PROTAMINE_GIVEN:                    charting.EventProtamineGiven,
		pb.EventType_EVENT_TYPE_SUCKERS_STOPPED:                    charting.EventSuckersStopped,
		pb.EventType_EVENT_TYPE_DECANNULATION:                      charting.EventDecannulation,
		pb.EventType_EVENT_TYPE_CONVERSION_TO_ON_PUMP:              charting.EventConversionToOnPump,
		pb.EventType_EVENT_TYPE_ALARM:                              charting.EventAlarm,
		pb.EventType_EVENT_TYPE_DEVICE_MARK:                        charting.EventDeviceMark,
		pb.EventType_EVENT_TYPE_PERFUSIONIST_HANDOFF:               charting.EventPerfusionistHandoff,
		pb.EventType_EVENT_TYPE_CANNULATION:                        charting.EventCannulation,
		pb.EventType_EVENT_TYPE_COMPLICATION:                       charting.EventComplication,
	})
	routes = newEnumTable(map[pb.Route]string{
		pb.Route_ROUTE_INTRAVENOUS: "intravenous",
		pb.Route_ROUTE_CIRCUIT:     "circuit",
		pb.Route_ROUTE_OTHER:       "other",
	})
	fluidKinds = newEnumTable(map[pb.FluidKind]string{
		pb.FluidKind_FLUID_KIND_CRYSTALLOID:             "crystalloid",
		pb.FluidKind_FLUID_KIND_COLLOID:                 "colloid",
		pb.FluidKind_FLUID_KIND_ULTRAFILTRATION_REMOVED: "ultrafiltration_removed",
		pb.FluidKind_FLUID_KIND_CELL_SAVER_RETURNED:     "cell_saver_returned",
		pb.FluidKind_FLUID_KIND_URINE_OUTPUT:            "urine_output",
	})
	bloodProductTypes = newEnumTable(map[pb.BloodProductType]string{
		pb.BloodProductType_BLOOD_PRODUCT_TYPE_PRBC:            "prbc",
		pb.BloodProductType_BLOOD_PRODUCT_TYPE_FFP:             "ffp",
		pb.BloodProductType_BLOOD_PRODUCT_TYPE_PLATELETS:       "platelets",
		pb.BloodProductType_BLOOD_PRODUCT_TYPE_CRYOPRECIPITATE: "cryoprecipitate",
		pb.BloodProductType_BLOOD_PRODUCT_TYPE_WHOLE_BLOOD:     "whole_blood",
	})
	sampleSites = newEnumTable(map[pb.SampleSite]string{
		pb.SampleSite_SAMPLE_SITE_ARTERIAL:     "arterial",
		pb.SampleSite_SAMPLE_SITE_VENOUS:       "venous",
		pb.SampleSite_SAMPLE_SITE_MIXED_VENOUS: "mixed_venous",
		pb.SampleSite_SAMPLE_SITE_CAPILLARY:    "capillary",
	})
	temperatureCorrections = newEnumTable(map[pb.TemperatureCorrection]string{
		pb.TemperatureCorrection_TEMPERATURE_CORRECTION_ALPHA_STAT: "alpha_stat",
		pb.TemperatureCorrection_TEMPERATURE_CORRECTION_PH_STAT:    "ph_stat",
	})
	checklistStates = newEnumTable(map[pb.ChecklistItemState]string{
		pb.ChecklistItemState_CHECKLIST_ITEM_STATE_CHECKED:        "checked",
		pb.ChecklistItemState_CHECKLIST_ITEM_STATE_NOT_APPLICABLE: "not_applicable",
	})
	cardioplegiaRoutes = newEnumTable(map[pb.CardioplegiaRoute]string{
		pb.CardioplegiaRoute_CARDIOPLEGIA_ROUTE_ANTEGRADE:  "antegrade",
		pb.CardioplegiaRoute_CARDIOPLEGIA_ROUTE_RETROGRADE: "retrograde",
		pb.CardioplegiaRoute_CARDIOPLEGIA_ROUTE_OSTIAL:     "ostial",
	})
	cardioplegiaPhases = newEnumTable(map[pb.CardioplegiaPhase]string{
		pb.CardioplegiaPhase_CARDIOPLEGIA_PHASE_INDUCTION:   "induction",
		pb.CardioplegiaPhase_CARDIOPLEGIA_PHASE_MAINTENANCE: "maintenance",
	})
	verificationProblems = newEnumTable(map[pb.VerificationProblem]string{
		pb.VerificationProblem_VERIFICATION_PROBLEM_CONTENT_ALTERED:    string(charting.ProblemContentAltered),
		pb.VerificationProblem_VERIFICATION_PROBLEM_CONTENT_MISSING:    string(charting.ProblemContentMissing),
		pb.VerificationProblem_VERIFICATION_PROBLEM_CHAIN_BROKEN:       string(charting.ProblemChainBroken),
		pb.VerificationProblem_VERIFICATION_PROBLEM_UNCOVERED_CONTENT:  string(charting.ProblemUncoveredContent),
		pb.VerificationProblem_VERIFICATION_PROBLEM_HEAD_MISMATCH:      string(charting.ProblemHeadMismatch),
		pb.VerificationProblem_VERIFICATION_PROBLEM_CONTENT_UNREADABLE: string(charting.ProblemContentUnreadable),
		pb.VerificationProblem_VERIFICATION_PROBLEM_ANCHOR_MISMATCH:    string(checkpoint.ProblemAnchorMismatch),
	})
)

// parser converts one request, collecting every field violation so the
// client learns all it got wrong at once.
type parser struct {
	v charting.Violations
}

// err returns the collected violations as a *charting.InvalidError, or nil.
func (p *parser) err() error { return p.v.Err() }

// id parses a UUID in its canonical 36-character form. An empty string is
// a violation when required and uuid.Nil otherwise. Other spellings (braces,
// urn:uuid:) are refused so each id has one textual form on the record.
func (p *parser) id(field, s string, required bool) uuid.UUID {
	if s == "" {
		if required {
			p.v.Add(field, "required: a UUID")
		}
		return uuid.Nil
	}
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		p.v.Add(field, "must be a UUID such as 123e4567-e89b-12d3-a456-426614174000")
		return uuid.Nil
	}
	if u == uuid.Nil {
		p.v.Add(field, "must not be the nil UUID")
	}
	return u
}

// time converts a timestamp; unset is the zero time, which the domain
// rejects where a time is required.
func (p *parser) time(field string, ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	if err := ts.CheckValid(); err != nil {
		p.v.Add(field, "must be a valid timestamp between years 1 and 9999")
		return time.Time{}
	}
	t := ts.AsTime()
	if t.IsZero() {
		// 0001-01-01T00:00:00Z is Go's zero time, which the domain reads
		// as "unset": say what was sent instead of "required".
		p.v.Add(field, "%s is not a plausible time", t.Format(time.RFC3339))
	}
	return t
}

// hash parses a lowercase or uppercase hex SHA-256.
func (p *parser) hash(field, s string) charting.Hash {
	h, err := charting.ParseHash(s)
	if err != nil {
		p.v.Add(field, "must be a SHA-256 hash as 64 hex characters")
	}
	return h
}

// require adds a violation when a message the request needs is absent.
func (p *parser) require(field string, present bool) {
	if !present {
		p.v.Add(field, "required")
	}
}

// ts converts a time for a response; the zero time is left unset.
func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// idString renders an id for a response; uuid.Nil is left empty.
func idString(u uuid.UUID) string {
	if u == uuid.Nil {
		return ""
	}
	return u.String()
}

// headOut renders a ledger head; hashes are lowercase hex.
func headOut(h charting.Head) *pb.LedgerHead {
	if h.Seq == 0 {
		return &pb.LedgerHead{}
	}
	return &pb.LedgerHead{Sequence: h.Seq, Hash: h.Hash.String()}
}
