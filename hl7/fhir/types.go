package fhir

// The FHIR R4 elements this package writes, and nothing more. Field order
// is the order of the R4 element definitions, so output reads like the
// specification's examples; every optional element is omitempty so that
// nothing empty ("", [], {}) reaches the wire, which R4 forbids (ele-1).

// Coding is a code from a code system.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// CodeableConcept is one or more codings plus text.
type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Identifier is a business identifier.
type Identifier struct {
	Use      string           `json:"use,omitempty"`
	Type     *CodeableConcept `json:"type,omitempty"`
	System   string           `json:"system,omitempty"`
	Value    string           `json:"value,omitempty"`
	Assigner *Reference       `json:"assigner,omitempty"`
}

// Reference points at a resource: Reference (a fullUrl in the bundle) or,
// for things this system does not own (encounter, staff), a logical
// reference by Identifier with the target Type.
type Reference struct {
	Reference  string      `json:"reference,omitempty"`
	Type       string      `json:"type,omitempty"`
	Identifier *Identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

// Period is a start and an optional end.
type Period struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

// Quantity is a UCUM quantity.
type Quantity struct {
	Value  *float64 `json:"value,omitempty"`
	Unit   string   `json:"unit,omitempty"`
	System string   `json:"system,omitempty"`
	Code   string   `json:"code,omitempty"`
}

// SampledData is a regularly sampled series (PoCD's "sample array").
type SampledData struct {
	Origin Quantity `json:"origin"`
	Period float64  `json:"period"` // milliseconds between samples
	// LowerLimit and UpperLimit are set when Data holds "L" or "U": the
	// channel's plausible range, beyond which those slots' readings lay.
	LowerLimit *float64 `json:"lowerLimit,omitempty"`
	UpperLimit *float64 `json:"upperLimit,omitempty"`
	Dimensions int      `json:"dimensions"`
	Data       string   `json:"data,omitempty"`
}

// HumanName is a person's name.
type HumanName struct {
	Use    string   `json:"use,omitempty"`
	Text   string   `json:"text,omitempty"`
	Family string   `json:"family,omitempty"`
	Given  []string `json:"given,omitempty"`
}

// Annotation is a note.
type Annotation struct {
	Text string `json:"text"`
}

// Signature is Provenance.signature.
type Signature struct {
	Type      []Coding  `json:"type"`
	When      string    `json:"when"`
	Who       Reference `json:"who"`
	SigFormat string    `json:"sigFormat,omitempty"`
	Data      string    `json:"data,omitempty"` // base64
}

// Patient is the R4 Patient resource.
type Patient struct {
	ResourceType string       `json:"resourceType"`
	ID           string       `json:"id,omitempty"`
	Identifier   []Identifier `json:"identifier,omitempty"`
	Name         []HumanName  `json:"name,omitempty"`
	Gender       string       `json:"gender,omitempty"`
	BirthDate    string       `json:"birthDate,omitempty"`
}

// ProcedurePerformer is Procedure.performer.
type ProcedurePerformer struct {
	Function *CodeableConcept `json:"function,omitempty"`
	Actor    Reference        `json:"actor"`
}

// FocalDevice is Procedure.focalDevice.
type FocalDevice struct {
	Action      *CodeableConcept `json:"action,omitempty"`
	Manipulated Reference        `json:"manipulated"`
}

// Procedure is the R4 Procedure resource.
type Procedure struct {
	ResourceType      string               `json:"resourceType"`
	ID                string               `json:"id,omitempty"`
	Identifier        []Identifier         `json:"identifier,omitempty"`
	PartOf            []Reference          `json:"partOf,omitempty"`
	Status            string               `json:"status"`
	Code              *CodeableConcept     `json:"code,omitempty"`
	Subject           Reference            `json:"subject"`
	Encounter         *Reference           `json:"encounter,omitempty"`
	PerformedDateTime string               `json:"performedDateTime,omitempty"`
	PerformedPeriod   *Period              `json:"performedPeriod,omitempty"`
	Performer         []ProcedurePerformer `json:"performer,omitempty"`
	Location          *Reference           `json:"location,omitempty"`
	Note              []Annotation         `json:"note,omitempty"`
	FocalDevice       []FocalDevice        `json:"focalDevice,omitempty"`
}

// Observation is the R4 Observation resource.
type Observation struct {
	ResourceType      string            `json:"resourceType"`
	ID                string            `json:"id,omitempty"`
	Identifier        []Identifier      `json:"identifier,omitempty"`
	PartOf            []Reference       `json:"partOf,omitempty"`
	Status            string            `json:"status"`
	Category          []CodeableConcept `json:"category,omitempty"`
	Code              CodeableConcept   `json:"code"`
	Subject           Reference         `json:"subject"`
	Encounter         *Reference        `json:"encounter,omitempty"`
	EffectiveDateTime string            `json:"effectiveDateTime,omitempty"`
	EffectivePeriod   *Period           `json:"effectivePeriod,omitempty"`
	ValueQuantity     *Quantity         `json:"valueQuantity,omitempty"`
	ValueSampledData  *SampledData      `json:"valueSampledData,omitempty"`
	Note              []Annotation      `json:"note,omitempty"`
	Method            *CodeableConcept  `json:"method,omitempty"`
	Device            *Reference        `json:"device,omitempty"`
}

// MedicationAdministrationPerformer is MedicationAdministration.performer.
type MedicationAdministrationPerformer struct {
	Actor Reference `json:"actor"`
}

// Dosage is MedicationAdministration.dosage.
type Dosage struct {
	Text  string           `json:"text,omitempty"`
	Route *CodeableConcept `json:"route,omitempty"`
	Dose  *Quantity        `json:"dose,omitempty"`
}

// MedicationAdministration is the R4 MedicationAdministration resource.
type MedicationAdministration struct {
	ResourceType              string                              `json:"resourceType"`
	ID                        string                              `json:"id,omitempty"`
	Identifier                []Identifier                        `json:"identifier,omitempty"`
	PartOf                    []Reference                         `json:"partOf,omitempty"`
	Status                    string                              `json:"status"`
	Category                  *CodeableConcept                    `json:"category,omitempty"`
	MedicationCodeableConcept *CodeableConcept                    `json:"medicationCodeableConcept,omitempty"`
	Subject                   Reference                           `json:"subject"`
	Context                   *Reference                          `json:"context,omitempty"`
	EffectiveDateTime         string                              `json:"effectiveDateTime,omitempty"`
	Performer                 []MedicationAdministrationPerformer `json:"performer,omitempty"`
	Note                      []Annotation                        `json:"note,omitempty"`
	Dosage                    *Dosage                             `json:"dosage,omitempty"`
}

// UDICarrier is Device.udiCarrier.
type UDICarrier struct {
	CarrierHRF string `json:"carrierHRF,omitempty"`
}

// DeviceName is Device.deviceName.
type DeviceName struct {
	Name string `json:"name"`
	Type string `json:"type"` // udi-label-name | user-friendly-name | patient-reported-name | manufacturer-name | model-name | other
}

// Device is the R4 Device resource.
type Device struct {
	ResourceType string           `json:"resourceType"`
	ID           string           `json:"id,omitempty"`
	Identifier   []Identifier     `json:"identifier,omitempty"`
	UDICarrier   []UDICarrier     `json:"udiCarrier,omitempty"`
	Status       string           `json:"status,omitempty"`
	Manufacturer string           `json:"manufacturer,omitempty"`
	LotNumber    string           `json:"lotNumber,omitempty"`
	DeviceName   []DeviceName     `json:"deviceName,omitempty"`
	ModelNumber  string           `json:"modelNumber,omitempty"`
	Type         *CodeableConcept `json:"type,omitempty"`
	Parent       *Reference       `json:"parent,omitempty"`
}

// DeviceMetric is the R4 DeviceMetric resource.
type DeviceMetric struct {
	ResourceType string           `json:"resourceType"`
	ID           string           `json:"id,omitempty"`
	Identifier   []Identifier     `json:"identifier,omitempty"`
	Type         CodeableConcept  `json:"type"`
	Unit         *CodeableConcept `json:"unit,omitempty"`
	Source       *Reference       `json:"source,omitempty"`
	Category     string           `json:"category"`
}

// ProvenanceAgent is Provenance.agent.
type ProvenanceAgent struct {
	Type *CodeableConcept `json:"type,omitempty"`
	Who  Reference        `json:"who"`
}

// Provenance is the R4 Provenance resource.
type Provenance struct {
	ResourceType string            `json:"resourceType"`
	ID           string            `json:"id,omitempty"`
	Meta         *Meta             `json:"meta,omitempty"`
	Target       []Reference       `json:"target"`
	Recorded     string            `json:"recorded"`
	Activity     *CodeableConcept  `json:"activity,omitempty"`
	Agent        []ProvenanceAgent `json:"agent"`
	Signature    []Signature       `json:"signature,omitempty"`
}

// Section is Composition.section.
type Section struct {
	Title string           `json:"title,omitempty"`
	Code  *CodeableConcept `json:"code,omitempty"`
	Entry []Reference      `json:"entry,omitempty"`
}

// Meta is Resource.meta; only its tags are written.
type Meta struct {
	Tag []Coding `json:"tag,omitempty"`
}

// Narrative is a resource's human-readable text: status and an XHTML div.
type Narrative struct {
	Status string `json:"status"`
	Div    string `json:"div"`
}

// Practitioner is the R4 Practitioner resource: in a document, the staff
// member a reference names, so the document's references resolve inside it.
type Practitioner struct {
	ResourceType string       `json:"resourceType"`
	ID           string       `json:"id,omitempty"`
	Identifier   []Identifier `json:"identifier,omitempty"`
	Name         []HumanName  `json:"name,omitempty"`
}

// Encounter is the R4 Encounter resource: in a document, the EHR's
// encounter as the record knows it (its identifier), so the document's
// references resolve inside it.
type Encounter struct {
	ResourceType string       `json:"resourceType"`
	ID           string       `json:"id,omitempty"`
	Identifier   []Identifier `json:"identifier,omitempty"`
	Status       string       `json:"status"`
	Class        Coding       `json:"class"`
	Subject      *Reference   `json:"subject,omitempty"`
}

// Composition is the R4 Composition resource, the first entry of a
// document bundle.
type Composition struct {
	ResourceType string          `json:"resourceType"`
	ID           string          `json:"id,omitempty"`
	Text         *Narrative      `json:"text,omitempty"`
	Identifier   *Identifier     `json:"identifier,omitempty"`
	Status       string          `json:"status"`
	Type         CodeableConcept `json:"type"`
	Subject      *Reference      `json:"subject,omitempty"`
	Encounter    *Reference      `json:"encounter,omitempty"`
	Date         string          `json:"date"`
	Author       []Reference     `json:"author"`
	Title        string          `json:"title"`
	Section      []Section       `json:"section,omitempty"`
}

// BundleRequest is Bundle.entry.request (transactions).
type BundleRequest struct {
	Method      string `json:"method"`
	URL         string `json:"url"`
	IfNoneExist string `json:"ifNoneExist,omitempty"`
}

// BundleEntry is one entry of a Bundle.
type BundleEntry struct {
	FullURL  string         `json:"fullUrl,omitempty"`
	Resource any            `json:"resource,omitempty"`
	Request  *BundleRequest `json:"request,omitempty"`
}

// Bundle is the R4 Bundle resource.
type Bundle struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id,omitempty"`
	Identifier   *Identifier   `json:"identifier,omitempty"`
	Type         string        `json:"type"`
	Timestamp    string        `json:"timestamp,omitempty"`
	Entry        []BundleEntry `json:"entry,omitempty"`
}

// Attachment is R4 Attachment: the PDF inline (data) with its size and
// SHA-1 hash, both of the decoded bytes.
type Attachment struct {
	ContentType string `json:"contentType,omitempty"`
	Data        string `json:"data,omitempty"` // base64
	Size        int    `json:"size,omitempty"`
	Hash        string `json:"hash,omitempty"` // base64 SHA-1
	Title       string `json:"title,omitempty"`
	Creation    string `json:"creation,omitempty"`
}

// DocumentReferenceRelatesTo is DocumentReference.relatesTo.
type DocumentReferenceRelatesTo struct {
	Code   string    `json:"code"`
	Target Reference `json:"target"`
}

// DocumentReferenceContent is DocumentReference.content.
type DocumentReferenceContent struct {
	Attachment Attachment `json:"attachment"`
}

// DocumentReferenceContext is DocumentReference.context.
type DocumentReferenceContext struct {
	Encounter []Reference `json:"encounter,omitempty"`
	Period    *Period     `json:"period,omitempty"`
	Related   []Reference `json:"related,omitempty"`
}

// DocumentReference is the R4 DocumentReference resource: the rendered
// record.
type DocumentReference struct {
	ResourceType     string                       `json:"resourceType"`
	ID               string                       `json:"id,omitempty"`
	MasterIdentifier *Identifier                  `json:"masterIdentifier,omitempty"`
	Identifier       []Identifier                 `json:"identifier,omitempty"`
	Status           string                       `json:"status"`
	DocStatus        string                       `json:"docStatus,omitempty"`
	Type             *CodeableConcept             `json:"type,omitempty"`
	Subject          *Reference                   `json:"subject,omitempty"`
	Date             string                       `json:"date,omitempty"`
	Author           []Reference                  `json:"author,omitempty"`
	Authenticator    *Reference                   `json:"authenticator,omitempty"`
	RelatesTo        []DocumentReferenceRelatesTo `json:"relatesTo,omitempty"`
	Description      string                       `json:"description,omitempty"`
	Content          []DocumentReferenceContent   `json:"content"`
	Context          *DocumentReferenceContext    `json:"context,omitempty"`
}
