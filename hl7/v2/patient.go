package v2

import (
	"errors"
	"time"

	"perfusion/charting"
)

// Visit is what PV1 says about the encounter: the patient class and where
// the procedure took place.
type Visit struct {
	// PatientClass is PV1-2 (HL7 table 0004); empty means "I", inpatient,
	// which a patient on bypass or ECMO always is.
	PatientClass string
	// PointOfCare, Room, Bed and Facility are PV1-3 (PL), e.g. OR^3^^Site.
	PointOfCare string // PL-1, e.g. the OR suite
	Room        string // PL-2
	Bed         string // PL-3
	Facility    HD     // PL-4, the site
	// VisitNumber is PV1-19, the encounter's ID in the EHR.
	VisitNumber string
}

// VisitFromCase fills a Visit from a case: its room, its site as the
// facility and its encounter ID as the visit number.
func VisitFromCase(c *charting.Case) Visit {
	return Visit{
		Room:        c.Room,
		Facility:    HD{NamespaceID: c.Site},
		VisitNumber: c.Details.Procedure.EncounterID,
	}
}

// pid builds PID from the case's patient. PID-3 (the MRN with its
// assigning authority and type MR) is required: a result that cannot be
// matched to a patient must not be sent. The errors name the field, never
// its value.
func pid(p charting.Patient) (Segment, error) {
	if p.MRN == "" {
		return Segment{}, errors.New("hl7: PID-3: the patient's MRN is required")
	}
	s := Segment{ID: "PID"}
	s.SetField(3, Field{Repetition{Component{p.MRN}, nil, nil, Subs(p.MRNAssigningAuthority), Component{"MR"}}})
	// XPN: family^given^^^^^name type. "L" is the legal name; with no name
	// at all IHE PCD asks for type "U" and nothing else.
	if p.FamilyName == "" && p.GivenName == "" {
		s.SetField(5, Comps("", "", "", "", "", "", "U"))
	} else {
		s.SetField(5, Comps(p.FamilyName, p.GivenName, "", "", "", "", "L"))
	}
	dob, err := formatDate(p.BirthDate)
	if err != nil {
		return Segment{}, errors.New("hl7: PID-7: birth date must be YYYY-MM-DD")
	}
	s.SetField(7, Text(dob))
	sex, ok := administrativeSex(p.Sex)
	if !ok {
		return Segment{}, errors.New("hl7: PID-8: sex must be female, male, other or unknown")
	}
	s.SetField(8, Text(sex))
	return s, nil
}

// administrativeSex maps the record's values to HL7 table 0001.
func administrativeSex(s string) (string, bool) {
	switch s {
	case "":
		return "", true
	case "female":
		return "F", true
	case "male":
		return "M", true
	case "other":
		return "O", true
	case "unknown":
		return "U", true
	}
	return "", false
}

// pv1 builds PV1 from a Visit.
func pv1(v Visit) Segment {
	class := v.PatientClass
	if class == "" {
		class = "I"
	}
	s := Segment{ID: "PV1"}
	s.SetField(2, Text(class))
	s.SetField(3, Field{Repetition{Component{v.PointOfCare}, Component{v.Room}, Component{v.Bed}, v.Facility.component()}})
	s.SetField(19, Text(v.VisitNumber))
	return s
}

// formatTime is FormatDTM in the header's zone.
func (h Header) formatTime(t time.Time) string { return FormatDTM(t, h.Location) }
