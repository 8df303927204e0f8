package charting

import (
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// EntryKind is the kind of an operator entry.
type EntryKind string

// Entry kinds, stored as these strings.
const (
	EntryEvent         EntryKind = "event"
	EntryDrug          EntryKind = "drug"
	EntryFluid         EntryKind = "fluid"
	EntryBloodProduct  EntryKind = "blood_product"
	EntryLabResult     EntryKind = "lab_result"
	EntryChecklistItem EntryKind = "checklist_item"
	EntryNote          EntryKind = "note"
	EntryArtifactMark  EntryKind = "artifact_mark"
	EntryCardioplegia  EntryKind = "cardioplegia"
	EntryAddendum      EntryKind = "addendum"
)

// DefaultLateAfter is how long after it occurred an entry counts as late.
// Late entries are common (51 % of OR event times in one study) and error
// prone, so they are flagged, never re-timed.
const DefaultLateAfter = 10 * time.Minute

// Entry is one operator entry. JSON tags define its canonical encoding on
// the ledger and never change.
type Entry struct {
	ID         uuid.UUID   `json:"entry_id"`
	CaseID     uuid.UUID   `json:"case_id"`
	Kind       EntryKind   `json:"kind"`
	OccurredAt time.Time   `json:"occurred_at"`
	RecordedAt time.Time   `json:"recorded_at"`
	Late       bool        `json:"late,omitempty"`
	Author     string      `json:"author"`
	Supersedes uuid.UUID   `json:"supersedes,omitzero"`
	Reason     string      `json:"reason,omitempty"`
	Void       bool        `json:"void,omitempty"`
	Detail     EntryDetail `json:"detail"`

	// SupersededBy is filled by history views; it is not part of the entry.
	SupersededBy uuid.UUID `json:"-"`
}

// EntryDetail holds exactly one detail (none on a void).
type EntryDetail struct {
	Event         *Event            `json:"event,omitempty"`
	Drug          *DrugDose         `json:"drug,omitempty"`
	Fluid         *Fluid            `json:"fluid,omitempty"`
	BloodProduct  *BloodProduct     `json:"blood_product,omitempty"`
	LabResult     *LabResult        `json:"lab_result,omitempty"`
	ChecklistItem *ChecklistItem    `json:"checklist_item,omitempty"`
	Note          *Note             `json:"note,omitempty"`
	ArtifactMark  *ArtifactMark     `json:"artifact_mark,omitempty"`
	Cardioplegia  *CardioplegiaDose `json:"cardioplegia,omitempty"`
	Addendum      *Addendum         `json:"addendum,omitempty"`
}

// Kinds returns the kinds of the details that are set.
func (d EntryDetail) Kinds() []EntryKind {
	var k []EntryKind
	add := func(set bool, kind EntryKind) {
		if set {
			k = append(k, kind)
		}
	}
	add(d.Event != nil, EntryEvent)
	add(d.Drug != nil, EntryDrug)
	add(d.Fluid != nil, EntryFluid)
	add(d.BloodProduct != nil, EntryBloodProduct)
	add(d.LabResult != nil, EntryLabResult)
	add(d.ChecklistItem != nil, EntryChecklistItem)
	add(d.Note != nil, EntryNote)
	add(d.ArtifactMark != nil, EntryArtifactMark)
	add(d.Cardioplegia != nil, EntryCardioplegia)
	add(d.Addendum != nil, EntryAddendum)
	return k
}

// Event is a timed event. Type is one of EventTypes.
type Event struct {
	Type    string `json:"type"`
	Comment string `json:"comment,omitempty"`
}

// DrugDose is a drug given. Unit is UCUM.
type DrugDose struct {
	Drug  string  `json:"drug"`
	Dose  float64 `json:"dose"`
	Unit  string  `json:"unit"`
	Route string  `json:"route,omitempty"` // intravenous, circuit, other
}

// Fluid is a volume in or out. Kind is one of FluidKinds.
type Fluid struct {
	Kind     string  `json:"kind"`
	Name     string  `json:"name,omitempty"`
	VolumeML float64 `json:"volume_ml"`
}

// FluidKinds lists fluid entry kinds.
var FluidKinds = []string{"crystalloid", "colloid", "ultrafiltration_removed", "cell_saver_returned", "urine_output"}

// BloodProduct is a blood product given. Type is one of BloodProductTypes.
type BloodProduct struct {
	Type     string  `json:"type"`
	Units    int32   `json:"units"`
	VolumeML float64 `json:"volume_ml,omitempty"`
	Route    string  `json:"route,omitempty"`
}

// BloodProductTypes lists blood product types.
var BloodProductTypes = []string{"prbc", "ffp", "platelets", "cryoprecipitate", "whole_blood"}

// LabResult is one analyte of a blood sample. Analyte is a key of Analytes.
type LabResult struct {
	Analyte               string  `json:"analyte"`
	Value                 float64 `json:"value"`
	Unit                  string  `json:"unit"`
	Site                  string  `json:"site,omitempty"`                   // arterial, venous, mixed_venous, capillary
	TemperatureCorrection string  `json:"temperature_correction,omitempty"` // alpha_stat, ph_stat
	Device                string  `json:"device,omitempty"`
}

// ChecklistItem is one pre-bypass checklist item. State is checked or
// not_applicable.
type ChecklistItem struct {
	Section string `json:"section"`
	Item    string `json:"item"`
	State   string `json:"state"`
}

// Note is free text.
type Note struct {
	Text string `json:"text"`
}

// ArtifactMark marks device data in [Start, End) as artifact.
type ArtifactMark struct {
	Channel  string    `json:"channel"`
	SourceID string    `json:"source_id,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Reason   string    `json:"reason"`
}

// CardioplegiaDose is one cardioplegia dose.
type CardioplegiaDose struct {
	Solution     string  `json:"solution"`
	Route        string  `json:"route,omitempty"` // antegrade, retrograde, ostial
	VolumeML     float64 `json:"volume_ml"`
	TemperatureC float64 `json:"temperature_c,omitempty"`
	Phase        string  `json:"phase,omitempty"` // induction, maintenance
}

// Addendum is a note added after signing.
type Addendum struct {
	Text   string `json:"text"`
	Reason string `json:"reason"`
}

// ValidateEntry checks an entry's client-supplied content. The kind is
// derived from the detail, which must be exactly one (none on a void).
func ValidateEntry(cat *Catalogue, e *Entry, now time.Time) error {
	var v Violations
	if e.ID == uuid.Nil {
		v.Add("entry.entry_id", "required: a client-made UUID")
	}
	if e.CaseID == uuid.Nil {
		v.Add("entry.case_id", "required")
	}
	if e.OccurredAt.IsZero() {
		v.Add("entry.occurred_at", "required")
	} else if e.OccurredAt.After(now.Add(MaxFutureSkew)) {
		v.Add("entry.occurred_at", "is more than %s in the future", MaxFutureSkew)
	}
	kinds := e.Detail.Kinds()
	switch {
	case e.Void && len(kinds) != 0:
		v.Add("entry.detail", "a void carries no detail")
	case !e.Void && len(kinds) != 1:
		v.Add("entry.detail", "exactly one detail is required")
	case !e.Void:
		e.Kind = kinds[0]
		validateDetail(cat, e.Detail, &v)
	}
	checkAllText(&v, "entry", e.Detail)
	return v.Err()
}

func oneOf(v *Violations, field, s string, allowed []string, required bool) {
	if s == "" && !required {
		return
	}
	if !slices.Contains(allowed, s) {
		v.Add(field, "must be one of %v", allowed)
	}
}

func required(v *Violations, field, s string, max int) {
	if s == "" {
		v.Add(field, "required")
		return
	}
	checkLen(v, field, s, max)
}

func positive(v *Violations, field string, x, max float64, unit string) {
	if nonFinite(v, field, x) {
		return
	}
	if x <= 0 || x > max {
		v.Add(field, "%g is not a dose or volume: must be greater than 0 and at most %g %s", x, max, unit)
	}
}

// nonFinite adds a violation naming NaN or an infinity for what it is.
func nonFinite(v *Violations, field string, x float64) bool {
	switch {
	case math.IsNaN(x):
		v.Add(field, "must be a number, not NaN")
	case math.IsInf(x, 0):
		v.Add(field, "must be a finite number, not %g", x)
	default:
		return false
	}
	return true
}

// inRange adds a violation when x is not a finite number within [lo, hi].
func inRange(v *Violations, field string, x, lo, hi float64, unit string) {
	if !nonFinite(v, field, x) && (x < lo || x > hi) {
		v.Add(field, "%g is outside %g to %g %s", x, lo, hi, unit)
	}
}

// DrugUnits are the UCUM units a drug dose may be charted in: amounts,
// amounts per kilogram and rates. A closed list, because a dose in an
// unknown unit cannot be totalled, exported or checked by anyone.
var DrugUnits = []string{
	"mg", "g", "ug", "ng", "[iU]", "mmol", "meq", "mL",
	"mg/kg", "ug/kg", "[iU]/kg", "mL/kg",
	"mg/h", "mg/min", "ug/min", "ug/kg/min", "ug/kg/h", "mg/kg/h", "[iU]/h", "mL/h",
}

func validateDetail(cat *Catalogue, d EntryDetail, v *Violations) {
	switch {
	case d.Event != nil:
		oneOf(v, "entry.event.type", d.Event.Type, EventTypes, true)
		checkLen(v, "entry.event.comment", d.Event.Comment, MaxTextLen)
	case d.Drug != nil:
		required(v, "entry.drug.drug", d.Drug.Drug, 200)
		positive(v, "entry.drug.dose", d.Drug.Dose, 1e7, d.Drug.Unit)
		if d.Drug.Unit == "" || !slices.Contains(DrugUnits, d.Drug.Unit) {
			v.Add("entry.drug.unit", "must be a UCUM unit, one of %s", strings.Join(DrugUnits, " "))
		}
		oneOf(v, "entry.drug.route", d.Drug.Route, []string{"intravenous", "circuit", "other"}, false)
	case d.Fluid != nil:
		oneOf(v, "entry.fluid.kind", d.Fluid.Kind, FluidKinds, true)
		checkLen(v, "entry.fluid.name", d.Fluid.Name, 200)
		positive(v, "entry.fluid.volume_ml", d.Fluid.VolumeML, 100000, "mL")
	case d.BloodProduct != nil:
		oneOf(v, "entry.blood_product.type", d.BloodProduct.Type, BloodProductTypes, true)
		if d.BloodProduct.Units < 1 || d.BloodProduct.Units > 100 {
			v.Add("entry.blood_product.units", "must be 1 to 100")
		}
		inRange(v, "entry.blood_product.volume_ml", d.BloodProduct.VolumeML, 0, 100000, "mL")
		oneOf(v, "entry.blood_product.route", d.BloodProduct.Route, []string{"intravenous", "circuit", "other"}, false)
	case d.LabResult != nil:
		validateLab(d.LabResult, v)
	case d.ChecklistItem != nil:
		required(v, "entry.checklist_item.section", d.ChecklistItem.Section, 200)
		required(v, "entry.checklist_item.item", d.ChecklistItem.Item, 500)
		oneOf(v, "entry.checklist_item.state", d.ChecklistItem.State, []string{"checked", "not_applicable"}, true)
	case d.Note != nil:
		required(v, "entry.note.text", d.Note.Text, MaxTextLen)
	case d.ArtifactMark != nil:
		m := d.ArtifactMark
		if _, ok := cat.Lookup(m.Channel); !ok {
			v.Add("entry.artifact_mark.channel", "unknown channel %q", m.Channel)
		}
		checkLen(v, "entry.artifact_mark.source_id", m.SourceID, MaxSourceIDLen)
		if m.Start.IsZero() || m.End.IsZero() || !m.End.After(m.Start) {
			v.Add("entry.artifact_mark.end", "start and end are required, end after start")
		}
		required(v, "entry.artifact_mark.reason", m.Reason, 1000)
	case d.Cardioplegia != nil:
		c := d.Cardioplegia
		required(v, "entry.cardioplegia.solution", c.Solution, 200)
		positive(v, "entry.cardioplegia.volume_ml", c.VolumeML, 10000, "mL")
		inRange(v, "entry.cardioplegia.temperature_c", c.TemperatureC, 0, 42, "Cel")
		oneOf(v, "entry.cardioplegia.route", c.Route, []string{"antegrade", "retrograde", "ostial"}, false)
		oneOf(v, "entry.cardioplegia.phase", c.Phase, []string{"induction", "maintenance"}, false)
	case d.Addendum != nil:
		required(v, "entry.addendum.text", d.Addendum.Text, MaxTextLen)
		required(v, "entry.addendum.reason", d.Addendum.Reason, 1000)
	}
}

func validateLab(l *LabResult, v *Violations) {
	a, ok := Analytes()[l.Analyte]
	if !ok {
		v.Add("entry.lab_result.analyte", "unknown analyte %q", l.Analyte)
		return
	}
	if l.Unit != a.Unit {
		v.Add("entry.lab_result.unit", "must be %q for %s", a.Unit, a.Key)
	}
	inRange(v, "entry.lab_result.value", l.Value, a.Min, a.Max, a.Unit)
	oneOf(v, "entry.lab_result.site", l.Site, []string{"arterial", "venous", "mixed_venous", "capillary"}, false)
	oneOf(v, "entry.lab_result.temperature_correction", l.TemperatureCorrection, []string{"alpha_stat", "ph_stat"}, false)
	checkLen(v, "entry.lab_result.device", l.Device, 200)
}

// Stamp sets the server's fields of a new entry: recorded-at, author and the
// late flag. Times are normalised to the record's precision.
func (e *Entry) Stamp(author string, now time.Time, lateAfter time.Duration) {
	e.RecordedAt = NormTime(now)
	e.OccurredAt = NormTime(e.OccurredAt)
	if m := e.Detail.ArtifactMark; m != nil {
		m.Start, m.End = NormTime(m.Start), NormTime(m.End)
	}
	e.Author = author
	e.Late = e.RecordedAt.Sub(e.OccurredAt) > lateAfter
}

// SameContent reports whether two entries carry the same client content, so
// a resend is recognised as a duplicate rather than a conflict.
func SameContent(a, b *Entry) bool {
	ca, cb := *a, *b
	for _, c := range []*Entry{&ca, &cb} {
		c.RecordedAt, c.Late, c.Author, c.SupersededBy = time.Time{}, false, "", uuid.Nil
	}
	ja, errA := canonicalJSON(ca)
	jb, errB := canonicalJSON(cb)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// CurrentView returns the entries that are in force: not superseded and not
// voids, in occurred-at order. With history, every entry is returned with
// SupersededBy filled in.
func CurrentView(all []Entry, history bool) []Entry {
	by := make(map[uuid.UUID]uuid.UUID)
	for _, e := range all {
		if e.Supersedes != uuid.Nil {
			by[e.Supersedes] = e.ID
		}
	}
	out := make([]Entry, 0, len(all))
	for _, e := range all {
		e.SupersededBy = by[e.ID]
		if !history && (e.SupersededBy != uuid.Nil || e.Void) {
			continue
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b Entry) int {
		if c := a.OccurredAt.Compare(b.OccurredAt); c != 0 {
			return c
		}
		return a.RecordedAt.Compare(b.RecordedAt)
	})
	return out
}
