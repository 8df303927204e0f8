package charting

import (
	"strings"
	"time"
)

// Details is the descriptive part of a case, versioned as a whole. JSON tags
// define its canonical encoding on the ledger: renaming a tag would break
// verification of stored records, so tags never change and new fields are
// added with omitempty.
type Details struct {
	Patient   Patient   `json:"patient"`
	Team      Team      `json:"team"`
	Procedure Procedure `json:"procedure"`
	Circuit   Circuit   `json:"circuit"`
	Prime     Prime     `json:"prime"`
	// Booking is the OR-schedule appointment the case was planned from,
	// set only by the inbound HL7 feed (hl7/inbound); nil for a case typed
	// in by hand.
	Booking *Booking `json:"booking,omitempty"`
}

// Booking is the EHR's appointment behind a planned case (HL7 SIU). The
// case header (room, scheduled start) is the booking as it stood when the
// case was planned and never changes; a booking moved to another room or
// start is planned again as a new case, and this one then says so
// (Cancelled, ReplacedBy). A cancelled booking leaves a planned case with
// nothing charted: its status stays planned (lifecycle states only move
// forward), and whoever lists the day's cases shows it as cancelled.
type Booking struct {
	// AppointmentID is the scheduling system's id of the appointment
	// (SIU SCH-2, else SCH-1).
	AppointmentID string `json:"appointment_id"`
	// Sender is the interface that booked it (the inbound allowlist name).
	Sender string `json:"sender,omitempty"`
	// Cancelled: the EHR cancelled or deleted the appointment (SIU S15,
	// S17), or moved it to another room or start (ReplacedBy).
	Cancelled bool `json:"cancelled,omitempty"`
	// Reason says why it was cancelled, as the schedule gave it (SCH-6) or
	// "rescheduled".
	Reason string `json:"reason,omitempty"`
	// ReplacedBy is the case id of the planned case that holds the booking
	// now that it moved to another room or start.
	ReplacedBy string `json:"replaced_by,omitempty"`
}

// Patient identifies the patient. Every field is protected health
// information: it lives in the database only and is never logged.
type Patient struct {
	MRN                   string     `json:"mrn,omitempty"`
	MRNAssigningAuthority string     `json:"mrn_assigning_authority,omitempty"`
	FamilyName            string     `json:"family_name,omitempty"`
	GivenName             string     `json:"given_name,omitempty"`
	BirthDate             string     `json:"birth_date,omitempty"` // YYYY-MM-DD
	Sex                   string     `json:"sex,omitempty"`        // female, male, other, unknown
	HeightCm              float64    `json:"height_cm,omitempty"`
	WeightKg              float64    `json:"weight_kg,omitempty"`
	BloodType             string     `json:"blood_type,omitempty"`
	Allergies             []string   `json:"allergies,omitempty"`
	BSAFormula            BSAFormula `json:"bsa_formula,omitempty"`
	BSAM2                 float64    `json:"bsa_m2,omitempty"`
}

// StaffMember is a member of the team.
type StaffMember struct {
	StaffID     string `json:"staff_id,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
}

// Team is the clinical team.
type Team struct {
	Surgeon          StaffMember   `json:"surgeon"`
	Anesthesiologist StaffMember   `json:"anesthesiologist"`
	Perfusionists    []StaffMember `json:"perfusionists,omitempty"`
}

// Procedure describes what is done.
type Procedure struct {
	Description string `json:"description,omitempty"`
	SnomedCode  string `json:"snomed_code,omitempty"`
	EncounterID string `json:"encounter_id,omitempty"`
}

// Component is a traceable disposable.
type Component struct {
	Model string `json:"model,omitempty"`
	Lot   string `json:"lot,omitempty"`
	UDI   string `json:"udi,omitempty"`
}

// Cannula is one cannula.
type Cannula struct {
	Site   string  `json:"site,omitempty"`
	SizeFr float64 `json:"size_fr,omitempty"`
	Model  string  `json:"model,omitempty"`
}

// Circuit is the circuit as set up.
type Circuit struct {
	ArterialPump       string    `json:"arterial_pump,omitempty"` // roller, centrifugal
	Oxygenator         Component `json:"oxygenator"`
	Reservoir          string    `json:"reservoir,omitempty"` // hard_shell, soft_bag
	ArterialFilter     Component `json:"arterial_filter"`
	Cannulae           []Cannula `json:"cannulae,omitempty"`
	CardioplegiaSystem string    `json:"cardioplegia_system,omitempty"`
	CellSalvage        bool      `json:"cell_salvage,omitempty"`
	Ultrafiltration    bool      `json:"ultrafiltration,omitempty"`
}

// PrimeComponent is one fluid of the prime.
type PrimeComponent struct {
	Name     string  `json:"name,omitempty"`
	VolumeML float64 `json:"volume_ml,omitempty"`
}

// Prime is the circuit prime.
type Prime struct {
	Components  []PrimeComponent `json:"components,omitempty"`
	RAPVolumeML float64          `json:"rap_volume_ml,omitempty"`
}

// TotalVolumeML is the sum of the prime components.
func (p Prime) TotalVolumeML() float64 {
	var t float64
	for _, c := range p.Components {
		t += c.VolumeML
	}
	return t
}

// DetailsVersion is one stored version of a case's details.
type DetailsVersion struct {
	Version    int64     `json:"version"`
	Details    Details   `json:"details"`
	Reason     string    `json:"reason,omitempty"`
	Actor      string    `json:"actor"`
	RecordedAt time.Time `json:"recorded_at"`
}

// Normalize fills derived fields (BSA) so that what is stored is what the
// client will read back.
func (d *Details) Normalize() {
	p := &d.Patient
	if p.BSAFormula == "" {
		p.BSAFormula = BSAMosteller
	}
	p.BSAM2 = BSA(p.BSAFormula, p.HeightCm, p.WeightKg)
}

// Validate checks details on their own: formats, physical limits, text.
// Patients of every age are expected (weights from about 1.5 kg), so the
// limits here are wide; ValidateForCase adds the age band once the case's
// date is known.
func (d *Details) Validate(prefix string, v *Violations) {
	p := d.Patient
	if p.BirthDate != "" {
		if _, err := time.Parse(time.DateOnly, p.BirthDate); err != nil {
			v.Add(prefix+"patient.birth_date", "must be a date as YYYY-MM-DD")
		}
	}
	checkBody(v, prefix, p, bodyLimits[bandUnknown])
	switch p.BSAFormula {
	case "", BSAMosteller, BSADuBois, BSAHaycock:
	default:
		v.Add(prefix+"patient.bsa_formula", "unknown formula")
	}
	for i, c := range d.Prime.Components {
		inRange(v, prefix+fieldIndex("prime.components", i)+".volume_ml", c.VolumeML, 0, 10000, "mL")
	}
	inRange(v, prefix+"prime.rap_volume_ml", d.Prime.RAPVolumeML, 0, 10000, "mL")
	for i, c := range d.Circuit.Cannulae {
		inRange(v, prefix+fieldIndex("circuit.cannulae", i)+".size_fr", c.SizeFr, 0, 60, "Fr")
	}
	checkLen(v, prefix+"procedure.description", d.Procedure.Description, 1000)
	checkAllText(v, strings.TrimSuffix(prefix, "."), d)
}

// Age bands of the body-measure plausibility limits.
const (
	bandUnknown = iota
	bandInfant  // under 1 year
	bandChild   // 1 to 17 years
	bandAdult   // 18 years and over
)

// bodyLimit is a plausible range of height, weight and BMI for an age band.
// The limits are wide on purpose: they refuse typing errors (a height in
// metres, a weight in grams, a 5 cm patient) and never a real patient,
// whose size may be far from the average — premature neonates, children
// with obesity, adults with dwarfism. (inferred: the data dictionary gives
// only "weights from about 1.5 kg, BSA from about 0.1 m²".)
type bodyLimit struct {
	name                 string
	minHeight, maxHeight float64 // cm
	minWeight, maxWeight float64 // kg
	minBMI, maxBMI       float64 // kg/m²
	minBSA, maxBSA       float64 // m²
}

var bodyLimits = [...]bodyLimit{
	bandUnknown: {"", 25, 260, 0.4, 400, 4, 200, 0.05, 4},
	bandInfant:  {"a patient under 1 year", 25, 100, 0.4, 20, 4, 40, 0.05, 0.8},
	bandChild:   {"a patient aged 1 to 17 years", 45, 230, 3, 250, 6, 100, 0.2, 3.5},
	bandAdult:   {"an adult", 50, 260, 10, 400, 8, 200, 0.3, 4},
}

func checkBody(v *Violations, prefix string, p Patient, l bodyLimit) {
	before, who := len(*v), ""
	if l.name != "" {
		who = " for " + l.name
	}
	if p.HeightCm != 0 {
		inRange(v, prefix+"patient.height_cm", p.HeightCm, l.minHeight, l.maxHeight, "cm"+who)
	}
	if p.WeightKg != 0 {
		inRange(v, prefix+"patient.weight_kg", p.WeightKg, l.minWeight, l.maxWeight, "kg"+who)
	}
	if len(*v) > before || p.HeightCm <= 0 || p.WeightKg <= 0 {
		return // unknown or already refused: nothing to combine
	}
	if bmi := p.WeightKg / (p.HeightCm * p.HeightCm / 10000); bmi < l.minBMI || bmi > l.maxBMI {
		v.Add(prefix+"patient.weight_kg", "%g kg at %g cm (BMI %.1f) is not a plausible build%s", p.WeightKg, p.HeightCm, bmi, who)
		return
	}
	if bsa := BSA(p.BSAFormula, p.HeightCm, p.WeightKg); bsa < l.minBSA || bsa > l.maxBSA {
		v.Add(prefix+"patient.bsa_m2", "%g m² from %g cm and %g kg is outside %g to %g m²%s", bsa, p.HeightCm, p.WeightKg, l.minBSA, l.maxBSA, who)
	}
}

// ValidateForCase checks what depends on the case's date: the birth date
// is not after the case nor implausibly long before it, and height, weight
// and BSA fit the patient's age band at the scheduled start.
func (d *Details) ValidateForCase(prefix string, scheduledStart time.Time, v *Violations) {
	born, err := time.Parse(time.DateOnly, d.Patient.BirthDate)
	if d.Patient.BirthDate == "" || err != nil || scheduledStart.IsZero() {
		return // format errors are Validate's
	}
	before := len(*v)
	ValidateBirthDate(v, prefix+"patient.birth_date", born, scheduledStart)
	if len(*v) > before {
		return
	}
	band := bandAdult
	switch age := ageYears(born, scheduledStart); {
	case age < 1:
		band = bandInfant
	case age < 18:
		band = bandChild
	}
	var own Violations
	checkBody(&own, prefix, d.Patient, bodyLimits[band])
	*v = append(*v, own...)
}

// ageYears returns completed years from born to at.
func ageYears(born, at time.Time) int {
	y := at.Year() - born.Year()
	if at.YearDay() < born.YearDay() {
		y--
	}
	return y
}
