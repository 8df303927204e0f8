package v2

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

// ResultStatus is the status of a report (OBR-25, HL7 table 0123) or of
// one value (OBX-11, table 0085).
type ResultStatus string

// Result statuses used in the summary.
const (
	StatusFinal     ResultStatus = "F" // final: the case was signed
	StatusCorrected ResultStatus = "C" // a correction replacing a final result
)

// ProcedureCode returns the SNOMED CT code of a case kind, used in OBR-4:
// 63697000 Cardiopulmonary bypass operation, or 233573008 Extracorporeal
// membrane oxygenation.
func ProcedureCode(k charting.Kind) (Code, bool) {
	switch k {
	case charting.KindCPB:
		return Code{Code: "63697000", Text: "Cardiopulmonary bypass operation", System: SystemSNOMED}, true
	case charting.KindECMO:
		return Code{Code: "233573008", Text: "Extracorporeal membrane oxygenation", System: SystemSNOMED}, true
	}
	return Code{}, false
}

// Summary is the content of the ORU^R01 case summary sent to the EHR when
// a case is signed, and again (Status C) when an amendment changes it.
// Metrics are computed by the caller; this package only renders them, so
// the numbers in the message are exactly those the record reports.
type Summary struct {
	CaseID  uuid.UUID        // OBR-3: the report's identity across resends
	Kind    charting.Kind    // OBR-4: CPB or ECMO
	Patient charting.Patient // PID
	Visit   Visit            // PV1
	// Status is OBR-25: StatusFinal (the default) on the first send,
	// StatusCorrected when an amendment resends the summary. Values carry
	// their own OBX-11 (see Metric.Corrected, charting.Entry.Supersedes).
	Status ResultStatus
	// BypassStart and BypassEnd are OBR-7/OBR-8: first bypass on and last
	// bypass off (ECMO: support start and end). Start is required.
	BypassStart time.Time
	BypassEnd   time.Time // zero when not ended
	// Signature is the sign-off the summary reports: OBR-22 its time,
	// OBR-32 the signer.
	Signature charting.Signature
	// Metrics are durations (minutes), nadirs and other case metrics, one
	// per key (the Metric constants).
	Metrics []Metric
	// Events are the event entries to report (e.g. bypass on/off,
	// cross-clamp on/off), current view: corrections included, voids and
	// superseded entries left out.
	Events []charting.Entry
	// Labs are the lab_result entries, current view. Results taken at the
	// same time form one sample and share an OBX-4.
	Labs          []charting.Entry
	Drugs         []DrugTotal         // OBX pairs: name, total dose
	Fluids        []FluidTotal        // OBX pairs: kind, total volume
	BloodProducts []BloodProductTotal // OBX rows: type, units, volume
	// Notes are the note and addendum entries, sent as NTE after OBR.
	Notes []charting.Entry
	// Catalogue names the channels of Metric.Channel; nil means
	// charting.DefaultCatalogue.
	Catalogue *charting.Catalogue
}

// Metric is one computed value of the summary.
type Metric struct {
	Key   string  // one of the Metric constants
	Value float64 // in the unit LocalCodes gives for Key
	// At is when the value occurred (a nadir), written in OBX-14; zero for
	// values that cover the whole case (durations).
	At time.Time
	// Channel is the catalogue key of the channel the value came from, e.g.
	// temp_nasopharyngeal for the lowest temperature (OBX-20).
	Channel string
	// Method is a local method code (OBX-17), e.g. the BSA formula.
	Method string
	// Corrected marks a value that replaces one sent before (OBX-11 C).
	Corrected bool
}

// DrugTotal is the total of one drug given during the case.
type DrugTotal struct {
	Drug      string  // as charted
	Dose      float64 // total
	Unit      string  // UCUM, e.g. [iU], mg
	Corrected bool    // OBX-11 C: replaces a total sent before
}

// FluidTotal is the total volume of one fluid kind (charting.FluidKinds).
type FluidTotal struct {
	Kind      string  // one of charting.FluidKinds
	VolumeML  float64 // total, mL
	Corrected bool    // OBX-11 C
}

// BloodProductTotal is the total of one blood product type
// (charting.BloodProductTypes).
type BloodProductTotal struct {
	Type      string  // one of charting.BloodProductTypes
	Units     int     // number of units given
	VolumeML  float64 // 0 when not recorded
	Corrected bool    // OBX-11 C
}

// summaryMessageType is MSH-9 of the case summary.
func summaryMessageType() Field { return Comps("ORU", "R01", "ORU_R01") }

// BuildSummary builds the ORU^R01 case summary: MSH, PID, PV1, OBR (the
// procedure, bypass start and end, status), NTE for notes and addenda,
// then OBX rows for metrics, events, labs and administrations. The result
// is canonical; Encode writes it.
//
// Errors name the offending input by position (e.g. "labs[2]"), never by
// its content.
func BuildSummary(h Header, s *Summary) (*Message, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	b := &oruBuilder{h: h, cat: s.Catalogue}
	if b.cat == nil {
		b.cat = charting.DefaultCatalogue()
	}
	if s.CaseID == uuid.Nil {
		return nil, summaryErr("case_id", "is required")
	}
	proc, ok := ProcedureCode(s.Kind)
	if !ok {
		return nil, summaryErr("kind", "must be cpb or ecmo")
	}
	status := s.Status
	if status == "" {
		status = StatusFinal
	}
	if status != StatusFinal && status != StatusCorrected {
		return nil, summaryErr("status", "must be F or C")
	}
	if s.BypassStart.IsZero() || !s.BypassEnd.IsZero() && s.BypassEnd.Before(s.BypassStart) {
		return nil, summaryErr("bypass_start", "is required and must not be after bypass_end")
	}
	pidSeg, err := pid(s.Patient)
	if err != nil {
		return nil, err
	}
	b.m.Segments = []Segment{h.msh(summaryMessageType(), nil, true), pidSeg, pv1(s.Visit)}

	obr := Segment{ID: "OBR"}
	obr.SetField(1, Text("1"))
	// OBR-3 names the report by case, so an EHR files a corrected resend
	// over the first one.
	a := h.SendingApplication
	obr.SetField(3, Comps(s.CaseID.String(), a.NamespaceID, a.UniversalID, a.UniversalIDType))
	obr.SetField(4, proc.field())
	obr.SetField(7, Text(h.formatTime(s.BypassStart)))
	obr.SetField(8, Text(h.formatTime(s.BypassEnd)))
	obr.SetField(22, Text(h.formatTime(s.Signature.SignedAt)))
	obr.SetField(25, Text(string(status)))
	if s.Signature.Signer != "" {
		// OBR-32 (NDL): the signer as CNN subcomponents, ID & name. The
		// record has one display name, so it goes in the family-name slot.
		obr.SetField(32, Field{Repetition{Subs(SignerID(s.Signature), s.Signature.DisplayName)}})
	}
	b.m.Segments = append(b.m.Segments, obr)

	steps := []func(*Summary) error{b.notes, b.ledgerHead, b.metrics, b.events, b.labs, b.drugs, b.fluids, b.blood}
	for _, step := range steps {
		if err := step(s); err != nil {
			return nil, err
		}
	}
	if err := finish(&b.m); err != nil {
		return nil, err
	}
	return Canonical(&b.m), nil
}

func summaryErr(field, reason string) error {
	return fmt.Errorf("hl7: summary: %s %s", field, reason)
}

func itemErr(list string, i int, reason string) error {
	return fmt.Errorf("hl7: summary: %s[%d]: %s", list, i, reason)
}

// oruBuilder accumulates segments and numbers the OBX rows.
type oruBuilder struct {
	h      Header
	cat    *charting.Catalogue
	m      Message
	setID  int
	nteSet int
}

// obx is one observation row before encoding.
type obx struct {
	valueType string
	code      Code
	subID     string
	value     Field
	units     Field
	abnormal  Field // OBX-8
	status    string
	at        time.Time
	method    Field // OBX-17
	equipment Field // OBX-18
	site      Field // OBX-20
}

func (b *oruBuilder) addOBX(o obx) {
	b.setID++
	b.nteSet = 0
	s := Segment{ID: "OBX"}
	s.SetField(1, Text(strconv.Itoa(b.setID)))
	s.SetField(2, Text(o.valueType))
	s.SetField(3, o.code.field())
	s.SetField(4, Text(o.subID))
	s.SetField(5, o.value)
	s.SetField(6, o.units)
	s.SetField(8, o.abnormal)
	s.SetField(11, Text(o.status))
	s.SetField(14, Text(b.h.formatTime(o.at)))
	s.SetField(17, o.method)
	s.SetField(18, o.equipment)
	s.SetField(20, o.site)
	b.m.Segments = append(b.m.Segments, s)
}

// addNTE appends a note; NTE-1 counts the notes of the segment they follow.
func (b *oruBuilder) addNTE(text string, kind Field, author string, at time.Time) {
	b.nteSet++
	s := Segment{ID: "NTE"}
	s.SetField(1, Text(strconv.Itoa(b.nteSet)))
	s.SetField(2, Text("L")) // table 0105: the filler (this system) is the source
	s.SetField(3, Text(normalizeNewlines(text)))
	s.SetField(4, kind)
	s.SetField(5, Text(author))
	s.SetField(6, Text(b.h.formatTime(at)))
	b.m.Segments = append(b.m.Segments, s)
}

// normalizeNewlines turns CRLF and CR into LF, which escaping writes as
// \.br\ (a line break in HL7 formatted text).
func normalizeNewlines(s string) string {
	if strings.IndexByte(s, '\r') < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

func valueStatus(corrected bool) string {
	if corrected {
		return string(StatusCorrected)
	}
	return string(StatusFinal)
}

func (b *oruBuilder) notes(s *Summary) error {
	for _, i := range inTimeOrder(s.Notes) {
		e := &s.Notes[i]
		var text, kind string
		switch {
		case e.Void:
			return itemErr("notes", i, "is a void")
		case e.Detail.Note != nil:
			text, kind = e.Detail.Note.Text, CodeNote
		case e.Detail.Addendum != nil:
			text, kind = e.Detail.Addendum.Text+"\nReason for addendum: "+e.Detail.Addendum.Reason, CodeAddendum
		default:
			return itemErr("notes", i, "is neither a note nor an addendum")
		}
		at := e.RecordedAt
		if at.IsZero() {
			at = e.OccurredAt
		}
		b.addNTE(text, localCode(kind).field(), e.Author, at)
	}
	return nil
}

// ledgerHead reports the chain position the signature covers, so the EHR
// holds a witness of the record outside this service's database.
func (b *oruBuilder) ledgerHead(s *Summary) error {
	sig := s.Signature
	if sig.CoversSeq == 0 {
		return nil // unsigned (a preview of an open case)
	}
	b.addOBX(obx{valueType: "ST", code: localCode(CodeLedgerHead), value: Text(fmt.Sprintf("%d:%s", sig.CoversSeq, sig.CoversHash)), status: "F"})
	return nil
}

func (b *oruBuilder) metrics(s *Summary) error {
	seen := make(map[string]bool)
	for i, mt := range s.Metrics {
		c, ok := lookupLocal(mt.Key)
		if !ok || c.Group != "metric" {
			return itemErr("metrics", i, "unknown metric key")
		}
		if seen[mt.Key] {
			return itemErr("metrics", i, "key appears twice")
		}
		seen[mt.Key] = true
		v, err := formatNumber(mt.Value)
		if err != nil {
			return itemErr("metrics", i, err.Error())
		}
		o := obx{valueType: "NM", code: localCode(mt.Key), value: Text(v), units: ucum(c.Unit),
			status: valueStatus(mt.Corrected), at: mt.At}
		if mt.Method != "" {
			mc, ok := lookupLocal(mt.Method)
			if !ok || mc.Use != UseMethod {
				return itemErr("metrics", i, "unknown method")
			}
			o.method = localCode(mt.Method).field()
		}
		if mt.Channel != "" {
			ch, ok := b.cat.Lookup(mt.Channel)
			if !ok {
				return itemErr("metrics", i, "unknown channel")
			}
			o.site = Code{Code: ch.Code, Text: ch.Name, System: ch.CodeSystem}.field()
		}
		b.addOBX(o)
	}
	return nil
}

func (b *oruBuilder) events(s *Summary) error {
	count := make(map[string]int)
	for _, i := range inTimeOrder(s.Events) {
		e := &s.Events[i]
		ev := e.Detail.Event
		if e.Void || ev == nil || eventDisplay(ev.Type) == "" {
			return itemErr("events", i, "is not an event of a known type")
		}
		if e.OccurredAt.IsZero() {
			return itemErr("events", i, "has no time")
		}
		count[ev.Type]++
		t := Text(b.h.formatTime(e.OccurredAt))
		b.addOBX(obx{valueType: "DTM", code: localCode(CodeEventPrefix + ev.Type),
			subID: strconv.Itoa(count[ev.Type]), value: t, status: valueStatus(e.Supersedes != uuid.Nil), at: e.OccurredAt})
		if ev.Comment != "" {
			b.addNTE(ev.Comment, nil, e.Author, e.RecordedAt)
		}
	}
	return nil
}

func (b *oruBuilder) labs(s *Summary) error {
	analytes := charting.Analytes()
	sample := 0
	var sampleAt time.Time
	inSample := make(map[string]bool)
	for _, i := range inTimeOrder(s.Labs) {
		e := &s.Labs[i]
		l := e.Detail.LabResult
		if e.Void || l == nil {
			return itemErr("labs", i, "is not a lab result")
		}
		a, ok := analytes[l.Analyte]
		if !ok {
			return itemErr("labs", i, "unknown analyte")
		}
		if e.OccurredAt.IsZero() {
			return itemErr("labs", i, "has no time")
		}
		if sample == 0 || !e.OccurredAt.Equal(sampleAt) {
			sample++
			sampleAt = e.OccurredAt
			clear(inSample)
		}
		// An arterial and a venous sample drawn together are two results.
		if inSample[l.Analyte+"/"+l.Site] {
			return itemErr("labs", i, "analyte appears twice in one sample")
		}
		inSample[l.Analyte+"/"+l.Site] = true
		code, ok := LabCode(a, l.Site)
		if !ok {
			return itemErr("labs", i, "unknown sample site")
		}
		v, err := formatNumber(l.Value)
		if err != nil {
			return itemErr("labs", i, err.Error())
		}
		o := obx{valueType: "NM", code: code,
			subID: strconv.Itoa(sample), value: Text(v), units: ucum(a.Unit),
			status: valueStatus(e.Supersedes != uuid.Nil), at: e.OccurredAt}
		if tc := l.TemperatureCorrection; tc != "" {
			if mc, ok := lookupLocal(tc); !ok || mc.Use != UseMethod {
				return itemErr("labs", i, "unknown temperature correction")
			}
			o.method = localCode(tc).field()
		}
		b.addOBX(o)
	}
	return nil
}

func (b *oruBuilder) drugs(s *Summary) error {
	for i, d := range s.Drugs {
		dose, err := formatNumber(d.Dose)
		if d.Drug == "" || d.Unit == "" || err != nil || d.Dose < 0 {
			return itemErr("drugs", i, "needs a name, a finite dose of at least 0 and a unit")
		}
		g := strconv.Itoa(i + 1)
		st := valueStatus(d.Corrected)
		b.addOBX(obx{valueType: "ST", code: localCode(CodeDrug), subID: g, value: Text(d.Drug), status: st})
		b.addOBX(obx{valueType: "NM", code: localCode(CodeDrugTotalDose), subID: g, value: Text(dose), units: ucum(d.Unit), status: st})
	}
	return nil
}

func (b *oruBuilder) fluids(s *Summary) error {
	for i, f := range s.Fluids {
		vol, err := formatNumber(f.VolumeML)
		if !slices.Contains(charting.FluidKinds, f.Kind) || err != nil || f.VolumeML < 0 {
			return itemErr("fluids", i, "needs a known kind and a finite volume of at least 0")
		}
		g := strconv.Itoa(i + 1)
		st := valueStatus(f.Corrected)
		b.addOBX(obx{valueType: "CWE", code: localCode(CodeFluid), subID: g, value: localCode(CodeFluidKindPrefix + f.Kind).field(), status: st})
		b.addOBX(obx{valueType: "NM", code: localCode(CodeFluidTotalVolume), subID: g, value: Text(vol), units: ucum("mL"), status: st})
	}
	return nil
}

func (b *oruBuilder) blood(s *Summary) error {
	for i, p := range s.BloodProducts {
		vol, err := formatNumber(p.VolumeML)
		if !slices.Contains(charting.BloodProductTypes, p.Type) || p.Units < 0 || err != nil || p.VolumeML < 0 {
			return itemErr("blood_products", i, "needs a known type, units and a finite volume of at least 0")
		}
		g := strconv.Itoa(i + 1)
		st := valueStatus(p.Corrected)
		b.addOBX(obx{valueType: "CWE", code: localCode(CodeBloodProduct), subID: g, value: localCode(CodeBloodProductTypePrefix + p.Type).field(), status: st})
		b.addOBX(obx{valueType: "NM", code: localCode(CodeBloodProductUnits), subID: g, value: Text(strconv.Itoa(p.Units)), units: ucum("{unit}"), status: st})
		if p.VolumeML > 0 {
			b.addOBX(obx{valueType: "NM", code: localCode(CodeBloodProductVolume), subID: g, value: Text(vol), units: ucum("mL"), status: st})
		}
	}
	return nil
}

// inTimeOrder yields the indexes of entries in occurred-at order (then
// recorded-at), as the record shows them, without changing the caller's
// slice; errors then name the caller's index.
func inTimeOrder(es []charting.Entry) []int {
	idx := make([]int, len(es))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(i, j int) int {
		a, b := &es[i], &es[j]
		if c := a.OccurredAt.Compare(b.OccurredAt); c != 0 {
			return c
		}
		return a.RecordedAt.Compare(b.RecordedAt)
	})
	return idx
}

// LabCode returns the OBX-3 of a lab result: the LOINC code of the analyte
// at its sample site, or the local code where the data dictionary has none
// for the site (charting.LabCode); ok is false for an unknown site.
func LabCode(a charting.Analyte, site string) (Code, bool) {
	lc, ok := a.Code(site)
	if !ok {
		return Code{}, false
	}
	if lc.LOINC == "" {
		return Code{Code: a.LocalCode(site), Text: lc.Name, System: SystemLocal}, true
	}
	return Code{Code: lc.LOINC, Text: lc.Name, System: SystemLOINC}, true
}

// SignerID is the identifier a signature's signer is sent with: the staff
// id from the configured token claim when the signature has one, else the
// login name (sites whose login name is the staff id configure no claim).
func SignerID(s charting.Signature) string {
	if s.StaffID != "" {
		return s.StaffID
	}
	return s.Signer
}
