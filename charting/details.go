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

// Validate checks details for plausibility. Patients of every age are
// expected: weights from about 1.5 kg, so only physical limits are enforced.
func (d *Details) Validate(prefix string, v *Violations) {
	p := d.Patient
	if p.BirthDate != "" {
		if _, err := time.Parse("2006-01-02", p.BirthDate); err != nil {
			v.Add(prefix+"patient.birth_date", "must be a date as YYYY-MM-DD")
		}
	}
	if !finiteIn(p.HeightCm, 0, 260) {
		v.Add(prefix+"patient.height_cm", "must be between 0 and 260 cm")
	}
	if !finiteIn(p.WeightKg, 0, 400) {
		v.Add(prefix+"patient.weight_kg", "must be between 0 and 400 kg")
	}
	switch p.BSAFormula {
	case "", BSAMosteller, BSADuBois, BSAHaycock:
	default:
		v.Add(prefix+"patient.bsa_formula", "unknown formula")
	}
	for i, c := range d.Prime.Components {
		if !finiteIn(c.VolumeML, 0, 10000) {
			v.Add(prefix+fieldIndex("prime.components", i)+".volume_ml", "must be between 0 and 10000 mL")
		}
	}
	if !finiteIn(d.Prime.RAPVolumeML, 0, 10000) {
		v.Add(prefix+"prime.rap_volume_ml", "must be between 0 and 10000 mL")
	}
	for i, c := range d.Circuit.Cannulae {
		if !finiteIn(c.SizeFr, 0, 60) {
			v.Add(prefix+fieldIndex("circuit.cannulae", i)+".size_fr", "must be between 0 and 60 Fr")
		}
	}
	checkLen(v, prefix+"procedure.description", d.Procedure.Description, 1000)
	rejectNUL(v, strings.TrimSuffix(prefix, "."), d)
}
