package inbound

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"perfusion/charting"
	v2 "perfusion/hl7/v2"
)

// Problem is a content error of a message: an HL7 table 0357 code, where it
// is (a segment-field location such as "PID-7") and what is wrong. It never
// holds a value of the message.
type Problem struct {
	Code  v2.ErrorCode
	Where string
	Text  string
}

func (p *Problem) Error() string {
	if p.Where == "" {
		return p.Text
	}
	return p.Where + ": " + p.Text
}

func problem(code v2.ErrorCode, where, format string, args ...any) *Problem {
	return &Problem{Code: code, Where: where, Text: fmt.Sprintf(format, args...)}
}

// PatientID is a patient identifier: the medical record number and its
// assigning authority.
type PatientID struct {
	MRN, Authority string
}

// PatientInfo is what PID, PV1 and the body-measure OBX rows of a message
// say about the patient. Every field is patient data.
type PatientInfo struct {
	ID                PatientID
	FamilyName        string
	GivenName         string
	BirthDate         string // YYYY-MM-DD
	Sex               string // female, male, other, unknown
	HeightCm          float64
	WeightKg          float64
	VisitNumber       string // PV1-19
	VisitSite, Room   string // PV1-3: PL-4 and PL-2 (else PL-1)
	HasPID, HasHeight bool
	HasWeight         bool
}

// extractOptions carry what the site configured for reading identifiers
// and times.
type extractOptions struct {
	// DefaultAuthority is the assigning authority of an identifier that
	// names none (CX-4 empty); "" makes such an identifier an error.
	DefaultAuthority string
	// Authorities, when not empty, are the assigning authorities whose
	// medical record numbers are taken, in order of preference.
	Authorities []string
	// Location is the zone of times without an offset.
	Location *time.Location
}

// chooseID picks the medical record number among a CX list (PID-3, MRG-1):
// an identifier of type MR (CX-5) of a configured authority, in the
// configured order; else the first of type MR; else, when no repetition
// names a type, the first. where names the field for errors.
func chooseID(f v2.Field, o extractOptions, where string) (PatientID, *Problem) {
	type cand struct {
		id, auth, typ string
	}
	var cands []cand
	for r := 1; r <= len(f); r++ {
		c := cand{id: strings.TrimSpace(f.Get(r, 1, 1)), auth: strings.TrimSpace(f.Get(r, 4, 1)), typ: strings.ToUpper(strings.TrimSpace(f.Get(r, 5, 1)))}
		if c.id == "" {
			continue
		}
		if c.auth == "" {
			c.auth = o.DefaultAuthority
		}
		cands = append(cands, c)
	}
	if len(cands) == 0 {
		return PatientID{}, problem(v2.ErrRequiredFieldMissing, where, "a patient identifier is required")
	}
	pick := func(c cand) (PatientID, *Problem) {
		if c.auth == "" {
			return PatientID{}, problem(v2.ErrRequiredFieldMissing, where+".4", "the identifier's assigning authority is required (no default authority is configured)")
		}
		return PatientID{MRN: c.id, Authority: c.auth}, nil
	}
	for _, a := range o.Authorities {
		for _, c := range cands {
			if c.typ == "MR" && c.auth == a {
				return pick(c)
			}
		}
	}
	if len(o.Authorities) > 0 {
		return PatientID{}, problem(v2.ErrUnknownKeyIdentifier, where, "no medical record number (type MR) of a configured assigning authority")
	}
	typed := false
	for _, c := range cands {
		if c.typ == "MR" {
			return pick(c)
		}
		typed = typed || c.typ != ""
	}
	if typed {
		return PatientID{}, problem(v2.ErrRequiredFieldMissing, where+".5", "no medical record number (identifier type MR)")
	}
	return pick(cands[0])
}

// patientFrom reads PID (and the PV1 and OBX rows of the message) into a
// PatientInfo. requireID makes a missing PID or MRN an error.
func patientFrom(m *v2.Message, o extractOptions, requireID bool) (*PatientInfo, *Problem) {
	p := &PatientInfo{}
	pid := m.Segment("PID")
	if pid == nil {
		if requireID {
			return nil, problem(v2.ErrSegmentSequence, "PID", "the PID segment is required")
		}
	} else {
		p.HasPID = true
		id, prob := chooseID(pid.Field(3), o, "PID-3")
		if prob != nil && (requireID || prob.Code != v2.ErrRequiredFieldMissing || len(pid.Field(3)) > 0) {
			return nil, prob
		}
		p.ID = id
		p.FamilyName, p.GivenName = personName(pid.Field(5))
		if dob := pid.Field(7).Value(); dob != "" {
			d, prob := parseDate(dob, "PID-7")
			if prob != nil {
				return nil, prob
			}
			p.BirthDate = d
		}
		p.Sex = sexOf(pid.Field(8).Value())
	}
	if pv1 := m.Segment("PV1"); pv1 != nil {
		p.VisitNumber = strings.TrimSpace(pv1.Field(19).Value())
		p.VisitSite, p.Room = placeOf(pv1.Field(3))
	}
	if prob := bodyMeasures(m, p); prob != nil {
		return nil, prob
	}
	for _, c := range []struct{ where, s string }{{"PID-3", p.ID.MRN}, {"PID-3.4", p.ID.Authority}} {
		if len([]rune(c.s)) > 64 {
			return nil, problem(v2.ErrDataType, c.where, "longer than 64 characters")
		}
	}
	return p, nil
}

// personName reads an XPN list: the legal name (XPN-7 "L") if there is
// one, else the first; given names joined with the middle ones.
func personName(f v2.Field) (family, given string) {
	r := 1
	for i := 1; i <= len(f); i++ {
		if strings.EqualFold(f.Get(i, 7, 1), "L") {
			r = i
			break
		}
	}
	family = strings.TrimSpace(f.Get(r, 1, 1))
	given = strings.TrimSpace(strings.Join(nonEmpty(f.Get(r, 2, 1), f.Get(r, 3, 1)), " "))
	return family, given
}

// staffOf reads an XCN (AIP-3): id, and a display name from prefix,
// given and family name.
func staffOf(f v2.Field) charting.StaffMember {
	id := strings.TrimSpace(f.Get(1, 1, 1))
	name := strings.Join(nonEmpty(f.Get(1, 6, 1), f.Get(1, 3, 1), f.Get(1, 4, 1), f.Get(1, 2, 1)), " ")
	return charting.StaffMember{StaffID: id, DisplayName: name}
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// placeOf reads a PL (PV1-3, AIL-3): the site is the facility (PL-4), the
// room PL-2, else the point of care PL-1, as the outbound messages write
// them (hl7/v2 pv1).
func placeOf(f v2.Field) (site, room string) {
	site = strings.TrimSpace(f.Get(1, 4, 1))
	room = strings.TrimSpace(f.Get(1, 2, 1))
	if room == "" {
		room = strings.TrimSpace(f.Get(1, 1, 1))
	}
	return site, room
}

// sexOf maps HL7 table 0001 to the record's values; anything else is
// left out ("").
func sexOf(s string) string {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "F":
		return "female"
	case "M":
		return "male"
	case "O", "A", "X":
		return "other"
	case "U", "N":
		return "unknown"
	}
	return ""
}

// Body measures by LOINC (OBX-3 with coding system LN).
var (
	heightCodes = map[string]bool{"8302-2": true, "8306-3": true, "3137-7": true, "8308-9": true}
	weightCodes = map[string]bool{"29463-7": true, "3141-9": true, "8335-2": true}
)

// bodyMeasures reads height and weight from the message's OBX rows coded
// in LOINC: the last final, corrected or preliminary value of each,
// converted to cm and kg from its OBX-6 unit. A value in a unit it does not
// know, or that is not a number, is a content error: guessing the unit of
// a weight is how doses go wrong.
func bodyMeasures(m *v2.Message, p *PatientInfo) *Problem {
	for i, obx := range m.All("OBX") {
		where := fmt.Sprintf("OBX[%d]", i+1)
		code := strings.TrimSpace(obx.Field(3).Component(1))
		sys := strings.ToUpper(strings.TrimSpace(obx.Field(3).Component(3)))
		if sys != "LN" && sys != "LOINC" {
			continue
		}
		height, weight := heightCodes[code], weightCodes[code]
		if !height && !weight {
			continue
		}
		switch strings.ToUpper(obx.Field(11).Value()) {
		case "", "F", "C", "R", "P":
		default:
			continue // deleted, wrong, cannot be obtained
		}
		raw := strings.TrimSpace(obx.Field(5).Value())
		if raw == "" {
			continue
		}
		v, err := strconv.ParseFloat(raw, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
			return problem(v2.ErrDataType, where+"-5", "the body measure is not a positive number")
		}
		unit := strings.TrimSpace(obx.Field(6).Component(1))
		if height {
			f, ok := map[string]float64{"cm": 1, "m": 100, "mm": 0.1, "[in_i]": 2.54, "in": 2.54, "[in_us]": 2.54}[unit]
			if !ok {
				return problem(v2.ErrDataType, where+"-6", "height unit must be cm, m, mm or [in_i]")
			}
			p.HeightCm, p.HasHeight = math.Round(v*f*10)/10, true
		} else {
			f, ok := map[string]float64{"kg": 1, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237}[unit]
			if !ok {
				return problem(v2.ErrDataType, where+"-6", "weight unit must be kg, g or [lb_av]")
			}
			p.WeightKg, p.HasWeight = math.Round(v*f*1000)/1000, true
		}
	}
	return nil
}

// parseDate reads the date of an HL7 DT/DTM
// (YYYYMMDD[HH[MM[SS[.S…]]]][+/-ZZZZ]; the time, if any, is not kept) as
// YYYY-MM-DD. Anything else is a content error.
func parseDate(s, where string) (string, *Problem) {
	bad := problem(v2.ErrDataType, where, "must be a date of at least YYYYMMDD")
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		z := s[i+1:]
		if len(z) != 4 || strings.Trim(z, "0123456789") != "" {
			return "", bad
		}
		s = s[:i]
	}
	if i := strings.IndexByte(s, '.'); i >= 0 {
		if f := s[i+1:]; f == "" || len(f) > 4 || strings.Trim(f, "0123456789") != "" || len(s[:i]) != 14 {
			return "", bad
		}
		s = s[:i]
	}
	switch len(s) {
	case 8, 10, 12, 14:
	default:
		return "", bad
	}
	if strings.Trim(s, "0123456789") != "" {
		return "", bad
	}
	d, err := time.Parse("20060102", s[:8])
	if err != nil {
		return "", bad
	}
	return d.Format(time.DateOnly), nil
}

// parseDTM reads an HL7 DTM: YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ], to
// the minute at least (a schedule needs a time), in loc when it has no
// offset.
func parseDTM(s string, loc *time.Location, where string) (time.Time, *Problem) {
	bad := problem(v2.ErrDataType, where, "must be a date and time of at least YYYYMMDDHHMM")
	s = strings.TrimSpace(s)
	zone := ""
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		s, zone = s[:i], s[i:]
	}
	if i := strings.IndexByte(s, '.'); i >= 0 {
		frac := s[i+1:]
		if frac == "" || len(frac) > 4 || strings.Trim(frac, "0123456789") != "" {
			return time.Time{}, bad
		}
		s = s[:i]
	}
	if len(s) != 12 && len(s) != 14 || strings.Trim(s, "0123456789") != "" {
		return time.Time{}, bad
	}
	if len(s) == 12 {
		s += "00"
	}
	if loc == nil {
		loc = time.UTC
	}
	if zone != "" {
		if len(zone) != 5 || strings.Trim(zone[1:], "0123456789") != "" {
			return time.Time{}, bad
		}
		h, _ := strconv.Atoi(zone[1:3])
		m, _ := strconv.Atoi(zone[3:5])
		if h > 14 || m > 59 {
			return time.Time{}, bad
		}
		off := (h*60 + m) * 60
		if zone[0] == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
	}
	t, err := time.ParseInLocation("20060102150405", s, loc)
	if err != nil {
		return time.Time{}, bad
	}
	return t.UTC(), nil
}

// Merge is one patient identifier merged into another (ADT A40, A34, A47:
// PID the surviving identifier, MRG-1 the prior one).
type Merge struct {
	Prior     PatientID
	Surviving *PatientInfo
}

// mergesFrom reads the PID/MRG pairs of a merge message.
func mergesFrom(m *v2.Message, o extractOptions) ([]Merge, *Problem) {
	var out []Merge
	var cur *v2.Segment
	for i := range m.Segments {
		s := &m.Segments[i]
		switch s.ID {
		case "PID":
			cur = s
		case "MRG":
			if cur == nil {
				return nil, problem(v2.ErrSegmentSequence, "MRG", "an MRG segment must follow its PID")
			}
			prior, prob := chooseID(s.Field(1), o, "MRG-1")
			if prob != nil {
				return nil, prob
			}
			// The PID of this pair only (a message with several pairs).
			one := &v2.Message{Segments: []v2.Segment{m.Segments[0], *cur}}
			surv, prob := patientFrom(one, o, true)
			if prob != nil {
				return nil, prob
			}
			if surv.ID == prior {
				return nil, problem(v2.ErrDataType, "MRG-1", "the prior identifier is the surviving one")
			}
			out = append(out, Merge{Prior: prior, Surviving: surv})
			cur = nil
		}
	}
	if len(out) == 0 {
		return nil, problem(v2.ErrSegmentSequence, "MRG", "a merge needs a PID and an MRG segment")
	}
	return out, nil
}

// Appointment is what an SIU message says about one OR booking.
type Appointment struct {
	// ID is the scheduling system's id: SCH-2 (filler), else SCH-1
	// (placer), with its namespace when one is given ("id^namespace").
	ID string
	// Places are the locations the message names (AIL-3, else PV1-3), as
	// (site, room).
	Places [][2]string
	// Start is the scheduled start (AIS-4, TQ1-7, SCH-11.4, AIL-6 or
	// AIP-6, the first given); zero when none is.
	Start time.Time
	// Reason is SCH-6's text (or code), e.g. why it was cancelled.
	Reason string
	// Procedure from AIS-3 (several joined with "; ").
	Procedure charting.Procedure
	// ECMO when a service is ECMO (SNOMED CT 233573008 or its name).
	ECMO bool
	// Team from AIP: roles containing SURG, ANES/ANAES, PERF.
	Surgeon, Anesthesiologist charting.StaffMember
	Perfusionists             []charting.StaffMember
	// Patient from PID/PV1 (HasPID false when the message has none).
	Patient *PatientInfo
}

// appointmentFrom reads an SIU message. needStart makes a missing start an
// error (a new or rescheduled booking).
func appointmentFrom(m *v2.Message, o extractOptions, needStart bool) (*Appointment, *Problem) {
	sch := m.Segment("SCH")
	if sch == nil {
		return nil, problem(v2.ErrSegmentSequence, "SCH", "the SCH segment is required")
	}
	a := &Appointment{}
	for _, n := range []int{2, 1} {
		f := sch.Field(n)
		if id := strings.TrimSpace(f.Get(1, 1, 1)); id != "" {
			a.ID = id
			if ns := strings.TrimSpace(f.Get(1, 2, 1)); ns != "" {
				a.ID += "^" + ns
			}
			break
		}
	}
	if a.ID == "" {
		return nil, problem(v2.ErrRequiredFieldMissing, "SCH-2", "the appointment id (SCH-2, or SCH-1) is required")
	}
	if len([]rune(a.ID)) > 200 {
		return nil, problem(v2.ErrDataType, "SCH-2", "longer than 200 characters")
	}
	a.Reason = strings.TrimSpace(sch.Field(6).Component(2))
	if a.Reason == "" {
		a.Reason = strings.TrimSpace(sch.Field(6).Component(1))
	}
	for _, ail := range m.All("AIL") {
		if site, room := placeOf(ail.Field(3)); room != "" {
			a.Places = append(a.Places, [2]string{site, room})
		}
	}
	p, prob := patientFrom(m, o, false)
	if prob != nil {
		return nil, prob
	}
	a.Patient = p
	if len(a.Places) == 0 && p.Room != "" {
		a.Places = append(a.Places, [2]string{p.VisitSite, p.Room})
	}
	var descs []string
	for _, ais := range m.All("AIS") {
		code, text, sys := strings.TrimSpace(ais.Field(3).Component(1)), strings.TrimSpace(ais.Field(3).Component(2)), strings.ToUpper(strings.TrimSpace(ais.Field(3).Component(3)))
		snomed := sys == "SCT" || sys == "SNM" || sys == "SNM3" || sys == "SNOMED" || sys == "SNOMEDCT"
		if snomed && code == "233573008" || strings.Contains(strings.ToUpper(text), "ECMO") {
			a.ECMO = true
		}
		if d := text; d != "" || code != "" {
			if d == "" {
				d = code
			}
			descs = append(descs, d)
		}
		if snomed && a.Procedure.SnomedCode == "" && code != "" {
			a.Procedure.SnomedCode = code
		}
		if s := ais.Field(4).Value(); s != "" && a.Start.IsZero() {
			t, prob := parseDTM(s, o.Location, "AIS-4")
			if prob != nil {
				return nil, prob
			}
			a.Start = t
		}
	}
	a.Procedure.Description = strings.Join(descs, "; ")
	a.Procedure.EncounterID = p.VisitNumber
	for _, src := range []struct {
		seg, where  string
		field, comp int
	}{{"TQ1", "TQ1-7", 7, 1}, {"SCH", "SCH-11.4", 11, 4}, {"AIL", "AIL-6", 6, 1}, {"AIP", "AIP-6", 6, 1}} {
		if !a.Start.IsZero() {
			break
		}
		seg := m.Segment(src.seg)
		if seg == nil {
			continue
		}
		if s := seg.Field(src.field).Component(src.comp); s != "" {
			t, prob := parseDTM(s, o.Location, src.where)
			if prob != nil {
				return nil, prob
			}
			a.Start = t
		}
	}
	if needStart && a.Start.IsZero() {
		return nil, problem(v2.ErrRequiredFieldMissing, "AIS-4", "the scheduled start (AIS-4, TQ1-7 or SCH-11.4) is required")
	}
	for _, aip := range m.All("AIP") {
		role := strings.ToUpper(aip.Field(4).Component(1) + " " + aip.Field(4).Component(2))
		s := staffOf(aip.Field(3))
		if s.StaffID == "" && s.DisplayName == "" {
			continue
		}
		switch {
		case strings.Contains(role, "SURG"):
			if a.Surgeon == (charting.StaffMember{}) {
				a.Surgeon = s
			}
		case strings.Contains(role, "ANES") || strings.Contains(role, "ANAES"):
			if a.Anesthesiologist == (charting.StaffMember{}) {
				a.Anesthesiologist = s
			}
		case strings.Contains(role, "PERF"):
			a.Perfusionists = append(a.Perfusionists, s)
		}
	}
	return a, nil
}
