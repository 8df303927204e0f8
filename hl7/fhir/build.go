package fhir

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	v2 "perfusion/hl7/v2"
)

// Code systems. Standard ones are the canonical URIs of the FHIR R4
// specification; LocalSystem is this service's own.
const (
	SystemSNOMED = "http://snomed.info/sct"
	SystemLOINC  = "http://loinc.org"
	SystemUCUM   = "http://unitsofmeasure.org"
	SystemMDC    = "urn:iso:std:iso:11073:10101"
	// LocalSystem is the FHIR code system of the local codes that HL7 v2
	// messages send as "99PERF" (v2.LocalCodes lists them). A URN rather
	// than an http URL because nothing resolves it today; the interface
	// specification publishes the table under this name. It must never
	// change: receivers store codes by system.
	LocalSystem = "urn:perfusion:codes:99perf"
	// SystemRFC3986 is the identifier system for identifiers that are
	// URIs themselves: here urn:uuid values.
	SystemRFC3986        = "urn:ietf:rfc:3986"
	systemObsCategory    = "http://terminology.hl7.org/CodeSystem/observation-category"
	systemIdentifierType = "http://terminology.hl7.org/CodeSystem/v2-0203"
	systemParticipant    = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
	systemV3Participant  = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	systemActCode        = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	// SystemSignatureType is the ASTM E1762 code system of
	// Provenance.signature.type (R4 value set signature-type).
	SystemSignatureType = "urn:iso-astm:E1762-95:2013"
	// ProvenanceTagSystem is the meta.tag system of a Provenance's stable
	// identity (code: urn:uuid:ResourceUUID(case, "provenance/N")). R4
	// Provenance has no identifier element, so the identity that makes a
	// resend a conditional create (ifNoneExist on _tag, a search parameter
	// of every resource) is a tag. It must never change: servers hold it.
	ProvenanceTagSystem = "urn:perfusion:provenance-id"
)

// SNOMED CT codes of the procedures (docs/domain.md, "Interoperability").
const (
	codeCrossClampPlacement = "301882004" // Placement of aortic cross clamp
	codeCrossClampRemoval   = "301884003" // Removal of aortic cross clamp
	codeCardioplegia        = "8290005"   // Induced cardioplegia
	codeProcedureNote       = "28570-0"   // LOINC: Procedure note
)

// Options are the identifier systems of things this system refers to but
// does not own. They are deployment settings, not constants: each site's
// EHR defines its own.
type Options struct {
	// MRNSystems maps an MRN assigning authority (Patient.MRNAssigningAuthority,
	// the HL7 v2 PID-3.4 namespace) to the FHIR identifier system URI of
	// that authority's MRNs. An authority with no entry is an error: a
	// Patient identifier without a system cannot be matched.
	MRNSystems map[string]string
	// EncounterSystem is the identifier system of the EHR's encounter
	// (visit) numbers, Details.Procedure.EncounterID.
	EncounterSystem string
	// StaffSystem is the identifier system of staff IDs (signers,
	// perfusionists, entry authors).
	StaffSystem string
	// DeviceSystem is the identifier system of device source IDs (the
	// source_id a gateway streams under), used for the Devices of exported
	// trends when the hospital has no better identifier for them. Empty
	// means DefaultDeviceSystem.
	DeviceSystem string
}

// DefaultDeviceSystem is the identifier system of device source IDs when
// Options.DeviceSystem is empty. Source IDs are unique within one
// perfusion server's gateways, not beyond it: a hospital with several
// servers should configure a system per server.
const DefaultDeviceSystem = "urn:perfusion:device-source"

// Record is a signed case as the bundles report it. Metrics are computed
// by the caller, as for v2.Summary, so FHIR and HL7 v2 report the same
// numbers.
type Record struct {
	// Case is the signed case: ID, Kind, Site, Details, Signatures.
	Case *charting.Case
	// Version numbers the exports of the case: 1 at sign-off, then one
	// more per amendment. The document bundle's identifier is derived from
	// (case, version), so a receiver can discard a resend of the same
	// version and must keep a new one.
	Version int64
	// Timestamp is when the bundle was assembled (Bundle.timestamp,
	// Composition.date). Passed in, not read from the clock, so output is
	// reproducible.
	Timestamp time.Time
	// BypassStart and BypassEnd are the bypass (or ECMO support) period.
	BypassStart, BypassEnd time.Time
	// Entries are the entries in force (charting.CurrentView without
	// history): events (cross-clamp on/off become Procedures), labs,
	// drugs, fluids, blood products, cardioplegia doses. Other kinds are
	// not exported yet.
	Entries []charting.Entry
	// Originals maps the ID of a correction to the ID of the first entry of
	// its correction chain (from charting.CurrentView with history). A
	// corrected value is sent under the resource identity of the entry it
	// corrects, so a receiver replaces the old value instead of keeping
	// both. Without an entry here, a correction is keyed by the entry it
	// directly supersedes, which is right for the first correction only.
	Originals map[uuid.UUID]uuid.UUID
	// Metrics are the case metrics, keys and units as in v2.LocalCodes.
	Metrics []v2.Metric
	// Devices are the devices that produced Trends, and the heart-lung
	// machine. The oxygenator and arterial filter come from
	// Case.Details.Circuit.
	Devices []DeviceInfo
	// Trends are device channels sent as sampled data.
	Trends []Trend
	// Catalogue names the channels; nil means charting.DefaultCatalogue.
	Catalogue *charting.Catalogue
	// Document, when set, adds the rendered record as a DocumentReference
	// (see documentRef).
	Document *RenderedPDF
}

// DeviceInfo is a device that sent samples.
type DeviceInfo struct {
	// SourceID is the sample source ID the device's batches carry.
	SourceID string
	// Identifier identifies the physical device (e.g. its EUI-64 or serial
	// number); transactions create the Device only if none with this
	// identifier exists, so it must be stable across cases.
	Identifier   Identifier
	Name         string // user-friendly name
	Manufacturer string
	Model        string
	// HeartLungMachine marks the heart-lung machine (or ECMO console): the
	// Procedure's focal device and the Provenance's device agent.
	HeartLungMachine bool
}

// Trend is one channel of one source, regularly sampled.
type Trend struct {
	SourceID string
	Series   charting.Series
	// PeriodMs is the sampling period. Every sample time must fall on
	// Series.TimesMs[0] + k × PeriodMs; slots with no sample are sent as
	// "E", like device-invalid readings, since SampledData has no other
	// way to say "no value".
	PeriodMs int64
	// OutOfRange is nil or as long as Series: -1 (or +1) at a slot without
	// a value whose readings all lay below (or above) the channel's
	// plausible range. Such a slot is sent as "L" (or "U") with
	// SampledData.lowerLimit (upperLimit) the range's end, R4's way of
	// saying the reading lay beyond a limit; the values sent are computed
	// from readings within the range only, so they all lie within it.
	OutOfRange []int8
}

// circuitKeyPrefix starts the keys of the circuit's disposables.
const circuitKeyPrefix = "device/circuit/"

var namespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("urn:perfusion:fhir"))

// ResourceUUID returns the deterministic UUID of a resource of a case:
// a name-based (SHA-1) UUID of the case ID and the resource's key, so that
// every export of the same case names the same resource the same way and
// golden files are reproducible.
func ResourceUUID(caseID uuid.UUID, key string) uuid.UUID {
	return uuid.NewSHA1(namespace, []byte(caseID.String()+"/"+key))
}

// item is a resource before it goes into a bundle.
type item struct {
	key      string
	uuid     uuid.UUID
	resource any
	typ      string
	section  string
	// ifNoneExist, when set, makes a transaction create the resource only
	// if none matches (shared things: Patient, Device).
	ifNoneExist string
	// identified resources are sent as conditional updates on their
	// urn:uuid identifier, so a resend after an amendment replaces them.
	identified bool
}

func (it *item) ref() Reference { return Reference{Reference: "urn:uuid:" + it.uuid.String()} }

// Section titles of the document, in order.
var sections = []string{
	"Procedure", "Equipment", "Laboratory results", "Perfusion measurements",
	"Medications, fluids and blood products", "Signatures",
}

type builder struct {
	rec     *Record
	opts    Options
	doc     bool
	cat     *charting.Catalogue
	items   []*item
	patient Reference
	enc     *Reference
	bypass  *item
	hlm     *item
	devices map[string]*item // by source ID
	// practitioners are the document's Practitioner entries by key.
	practitioners map[string]*item
	metrics       map[string]*item // DeviceMetric by channel
	local         map[string]v2.LocalCode
}

func (b *builder) add(key, typ, section string, r any) *item {
	it := &item{key: key, uuid: ResourceUUID(b.rec.Case.ID, key), resource: r, typ: typ, section: section}
	b.items = append(b.items, it)
	return it
}

// id returns the resource id for the document (the fullUrl's UUID) and ""
// for transactions, where the server assigns ids.
func (b *builder) id(key string) string {
	if !b.doc {
		return ""
	}
	return ResourceUUID(b.rec.Case.ID, key).String()
}

func (b *builder) ident(key string) []Identifier {
	return []Identifier{{System: SystemRFC3986, Value: "urn:uuid:" + ResourceUUID(b.rec.Case.ID, key).String()}}
}

func fhirTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func num(v float64) *float64 { return &v }

func ucum(v float64, unit string) *Quantity {
	return &Quantity{Value: num(v), Unit: unit, System: SystemUCUM, Code: unit}
}

func category(code, display string) []CodeableConcept {
	return []CodeableConcept{{Coding: []Coding{{System: systemObsCategory, Code: code, Display: display}}}}
}

func (b *builder) localCode(code string) CodeableConcept {
	c := b.local[code]
	return CodeableConcept{Coding: []Coding{{System: LocalSystem, Code: code, Display: c.Display}}, Text: c.Display}
}

// staff references a staff member by staff ID. A transaction sends a
// logical reference (the Practitioner is the EHR's, and creating one here
// would fork its directory); a document must be complete in itself, so
// there the reference also points at a Practitioner entry of the bundle,
// added on first use and carrying only the identifier and the name.
func (b *builder) staff(id, display string) Reference {
	ident := Identifier{System: b.opts.StaffSystem, Value: id}
	ref := Reference{Type: "Practitioner", Identifier: &ident, Display: display}
	if !b.doc {
		return ref
	}
	key := "practitioner/" + id
	it := b.practitioners[key]
	if it == nil {
		p := &Practitioner{ResourceType: "Practitioner", ID: b.id(key), Identifier: []Identifier{ident}}
		if display != "" {
			p.Name = []HumanName{{Text: display}}
		}
		it = b.add(key, "Practitioner", "", p)
		b.practitioners[key] = it
	}
	ref.Reference = it.ref().Reference
	return ref
}

func resultStatus(e *charting.Entry) string {
	if e.Supersedes != uuid.Nil {
		return "corrected"
	}
	return "final"
}

// BuildDocument builds the FHIR document of a signed case: a Bundle of
// type document whose first entry is the Composition, every resource
// with a urn:uuid fullUrl and a matching id.
func BuildDocument(rec *Record, opts Options) (*Bundle, error) {
	b, err := build(rec, opts, true)
	if err != nil {
		return nil, err
	}
	comp := b.composition()
	out := &Bundle{
		ResourceType: "Bundle",
		Identifier:   &Identifier{System: SystemRFC3986, Value: "urn:uuid:" + ResourceUUID(rec.Case.ID, "document/v"+strconv.FormatInt(rec.Version, 10)).String()},
		Type:         "document",
		Timestamp:    fhirTime(rec.Timestamp),
	}
	out.Entry = append(out.Entry, BundleEntry{FullURL: "urn:uuid:" + comp.uuid.String(), Resource: comp.resource})
	for _, it := range b.items {
		out.Entry = append(out.Entry, BundleEntry{FullURL: "urn:uuid:" + it.uuid.String(), Resource: it.resource})
	}
	return out, nil
}

// BuildTransaction builds the same content as a transaction Bundle for a
// FHIR server: Patient and Devices are created only if no resource with
// their identifier exists (they are shared with other cases and owned
// elsewhere); the case's own resources are conditional updates on their
// urn:uuid identifier, so a resend after an amendment replaces rather
// than duplicates them; Provenance, which has no identifier in R4, is a
// conditional create on its stable tag (ProvenanceTagSystem), so a
// resend does not create it again. There is no Composition: a server is not a document store.
func BuildTransaction(rec *Record, opts Options) (*Bundle, error) {
	b, err := build(rec, opts, false)
	if err != nil {
		return nil, err
	}
	out := &Bundle{
		ResourceType: "Bundle",
		Identifier:   &Identifier{System: SystemRFC3986, Value: TransactionIdentifier(rec.Case.ID, rec.Version)},
		Type:         "transaction",
		Timestamp:    fhirTime(rec.Timestamp),
	}
	for _, it := range b.items {
		req := &BundleRequest{Method: "POST", URL: it.typ}
		switch {
		case it.ifNoneExist != "":
			req.IfNoneExist = it.ifNoneExist
		case it.identified:
			req.Method = "PUT"
			req.URL = it.typ + "?" + tokenQuery(SystemRFC3986, "urn:uuid:"+it.uuid.String())
		}
		out.Entry = append(out.Entry, BundleEntry{FullURL: "urn:uuid:" + it.uuid.String(), Resource: it.resource, Request: req})
	}
	return out, nil
}

// TransactionIdentifier is the Bundle.identifier value of the transaction
// of (case, version): stable, so a receiver deduplicates resends by it.
func TransactionIdentifier(caseID uuid.UUID, version int64) string {
	return "urn:uuid:" + ResourceUUID(caseID, "transaction/v"+strconv.FormatInt(version, 10)).String()
}

// tokenQuery is an identifier search, system|value, with FHIR's escapes
// for the token separators and then URL encoding.
func tokenQuery(system, value string) string { return tokenSearch("identifier", system, value) }

// tokenSearch is a token search on param, system|value, escaped as
// tokenQuery.
func tokenSearch(param, system, value string) string {
	esc := strings.NewReplacer(`\`, `\\`, `|`, `\|`, `,`, `\,`, `$`, `\$`)
	return param + "=" + url.QueryEscape(esc.Replace(system)+"|"+esc.Replace(value))
}

// Encode writes a bundle as indented JSON without HTML escaping (so "<"
// in a note stays readable), ending in a newline.
func Encode(bundle *Bundle) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(bundle); err != nil {
		return nil, fmt.Errorf("fhir: encode: %w", err)
	}
	return buf.Bytes(), nil
}

func errf(format string, args ...any) error { return fmt.Errorf("fhir: "+format, args...) }

// build makes every resource but the Composition. Errors name the input
// by field and position, never by content: the content is patient data.
func build(rec *Record, opts Options, doc bool) (*builder, error) {
	if rec == nil || rec.Case == nil || rec.Case.ID == uuid.Nil {
		return nil, errors.New("fhir: a case with an ID is required")
	}
	c := rec.Case
	if c.Status != charting.StatusSigned || len(c.Signatures) == 0 {
		return nil, errors.New("fhir: only signed cases are exported")
	}
	if rec.Version < 1 {
		return nil, errors.New("fhir: version must be at least 1")
	}
	if rec.Timestamp.IsZero() || rec.BypassStart.IsZero() || !rec.BypassEnd.IsZero() && rec.BypassEnd.Before(rec.BypassStart) {
		return nil, errors.New("fhir: timestamp and bypass start are required, and bypass end must not be before start")
	}
	if opts.StaffSystem == "" {
		return nil, errors.New("fhir: options: staff identifier system is required")
	}
	b := &builder{rec: rec, opts: opts, doc: doc, cat: rec.Catalogue, devices: map[string]*item{}, practitioners: map[string]*item{}, metrics: map[string]*item{}, local: map[string]v2.LocalCode{}}
	if b.cat == nil {
		b.cat = charting.DefaultCatalogue()
	}
	for _, lc := range v2.LocalCodes(b.cat) {
		b.local[lc.Code] = lc
	}
	steps := []func() error{b.patientRes, b.encounter, b.deviceRes, b.procedures, b.entries, b.metricObs, b.trends, b.provenance, b.documentRef}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (b *builder) patientRes() error {
	p := b.rec.Case.Details.Patient
	if p.MRN == "" {
		return errors.New("fhir: patient: the MRN is required")
	}
	sys := b.opts.MRNSystems[p.MRNAssigningAuthority]
	if sys == "" {
		return errors.New("fhir: patient: no identifier system is configured for the MRN's assigning authority")
	}
	switch p.Sex {
	case "", "female", "male", "other", "unknown":
	default:
		return errors.New("fhir: patient: sex must be female, male, other or unknown")
	}
	if p.BirthDate != "" {
		if _, err := time.Parse("2006-01-02", p.BirthDate); err != nil {
			return errors.New("fhir: patient: birth date must be YYYY-MM-DD")
		}
	}
	id := Identifier{Use: "usual",
		Type:   &CodeableConcept{Coding: []Coding{{System: systemIdentifierType, Code: "MR", Display: "Medical record number"}}},
		System: sys, Value: p.MRN}
	if p.MRNAssigningAuthority != "" {
		id.Assigner = &Reference{Display: p.MRNAssigningAuthority}
	}
	r := &Patient{ResourceType: "Patient", ID: b.id("patient"), Identifier: []Identifier{id}, Gender: p.Sex, BirthDate: p.BirthDate}
	if p.FamilyName != "" || p.GivenName != "" {
		n := HumanName{Use: "official", Family: p.FamilyName}
		if p.GivenName != "" {
			n.Given = []string{p.GivenName}
		}
		r.Name = []HumanName{n}
	}
	it := b.add("patient", "Patient", "", r)
	it.ifNoneExist = tokenQuery(sys, p.MRN)
	b.patient = it.ref()
	return nil
}

// encounter is a logical reference in a transaction: the encounter is the
// EHR's, and creating a stub Encounter on a server would fork its record.
// A document must resolve its references inside itself, so there the
// reference also points at an Encounter entry holding what the record
// knows: the identifier, the patient, the class of PV1-2 (inpatient). Its
// status is "unknown": the record does not know the encounter's state.
func (b *builder) encounter() error {
	e := b.rec.Case.Details.Procedure.EncounterID
	if e == "" {
		return nil
	}
	if b.opts.EncounterSystem == "" {
		return errors.New("fhir: options: encounter identifier system is required when the case has an encounter")
	}
	ident := Identifier{System: b.opts.EncounterSystem, Value: e}
	b.enc = &Reference{Type: "Encounter", Identifier: &ident}
	if b.doc {
		it := b.add("encounter", "Encounter", "", &Encounter{ResourceType: "Encounter", ID: b.id("encounter"),
			Identifier: []Identifier{ident}, Status: "unknown",
			Class:   Coding{System: systemActCode, Code: "IMP", Display: "inpatient encounter"},
			Subject: &b.patient})
		b.enc.Reference = it.ref().Reference
	}
	return nil
}

func (b *builder) deviceRes() error {
	for i, d := range b.rec.Devices {
		if d.SourceID == "" || d.Identifier.System == "" || d.Identifier.Value == "" {
			return errf("devices[%d]: source ID and identifier (system and value) are required", i)
		}
		if b.devices[d.SourceID] != nil {
			return errf("devices[%d]: source ID appears twice", i)
		}
		key := "device/" + d.SourceID
		r := &Device{ResourceType: "Device", ID: b.id(key), Identifier: []Identifier{d.Identifier}, Status: "active",
			Manufacturer: d.Manufacturer, ModelNumber: d.Model}
		if d.Name != "" {
			r.DeviceName = []DeviceName{{Name: d.Name, Type: "user-friendly-name"}}
		}
		if d.HeartLungMachine {
			if b.hlm != nil {
				return errf("devices[%d]: only one heart-lung machine", i)
			}
			r.Type = &CodeableConcept{Text: "Heart-lung machine"}
			if b.rec.Case.Kind == charting.KindECMO {
				r.Type.Text = "ECMO console"
			}
		}
		it := b.add(key, "Device", "Equipment", r)
		it.ifNoneExist = tokenQuery(d.Identifier.System, d.Identifier.Value)
		b.devices[d.SourceID] = it
		if d.HeartLungMachine {
			b.hlm = it
		}
	}
	// Disposables of the circuit: one per case, so their identifier is the
	// case-scoped urn:uuid; lot and UDI are what a recall needs.
	circuit := b.rec.Case.Details.Circuit
	for _, comp := range []struct {
		key, text string
		c         charting.Component
	}{{"oxygenator", "Oxygenator", circuit.Oxygenator}, {"arterial_filter", "Arterial filter", circuit.ArterialFilter}} {
		if comp.c == (charting.Component{}) {
			continue
		}
		key := circuitKeyPrefix + comp.key
		r := &Device{ResourceType: "Device", ID: b.id(key), Identifier: b.ident(key), LotNumber: comp.c.Lot,
			Type: &CodeableConcept{Text: comp.text}}
		if comp.c.UDI != "" {
			r.UDICarrier = []UDICarrier{{CarrierHRF: comp.c.UDI}}
		}
		if comp.c.Model != "" {
			r.DeviceName = []DeviceName{{Name: comp.c.Model, Type: "model-name"}}
		}
		if b.hlm != nil {
			p := b.hlm.ref()
			r.Parent = &p
		}
		it := b.add(key, "Device", "Equipment", r)
		it.ifNoneExist = tokenQuery(SystemRFC3986, r.Identifier[0].Value)
	}
	return nil
}

func (b *builder) procedures() error {
	c := b.rec.Case
	code, ok := v2.ProcedureCode(c.Kind)
	if !ok {
		return errors.New("fhir: case kind must be cpb or ecmo")
	}
	r := &Procedure{ResourceType: "Procedure", ID: b.id("procedure"), Identifier: b.ident("procedure"), Status: "completed",
		Code:            &CodeableConcept{Coding: []Coding{{System: SystemSNOMED, Code: code.Code, Display: code.Text}}, Text: code.Text},
		Subject:         b.patient,
		Encounter:       b.enc,
		PerformedPeriod: &Period{Start: fhirTime(b.rec.BypassStart), End: fhirTime(b.rec.BypassEnd)},
	}
	for i, p := range c.Details.Team.Perfusionists {
		if p.StaffID == "" {
			return errf("details.team.perfusionists[%d]: staff ID is required", i)
		}
		r.Performer = append(r.Performer, ProcedurePerformer{Function: &CodeableConcept{Text: "Perfusionist"}, Actor: b.staff(p.StaffID, p.DisplayName)})
	}
	if d := c.Details.Procedure.Description; d != "" {
		r.Note = []Annotation{{Text: "Surgical procedure: " + d}}
	}
	for _, it := range b.items {
		if it == b.hlm || it.typ == "Device" && strings.HasPrefix(it.key, circuitKeyPrefix) {
			r.FocalDevice = append(r.FocalDevice, FocalDevice{Manipulated: it.ref()})
		}
	}
	b.bypass = b.add("procedure", "Procedure", "Procedure", r)
	b.bypass.identified = true
	return nil
}

func (b *builder) partOf() []Reference { return []Reference{b.bypass.ref()} }

func (b *builder) entries() error {
	analytes := charting.Analytes()
	for i := range b.rec.Entries {
		e := &b.rec.Entries[i]
		if e.Void || e.ID == uuid.Nil || e.OccurredAt.IsZero() {
			return errf("entries[%d]: must be an entry in force with an ID and a time", i)
		}
		key := "entry/" + b.original(e).String()
		at := fhirTime(e.OccurredAt)
		d := e.Detail
		var it *item
		switch {
		case d.Event != nil:
			var code, display string
			switch d.Event.Type {
			case charting.EventCrossClampOn:
				code, display = codeCrossClampPlacement, "Placement of aortic cross clamp"
			case charting.EventCrossClampOff:
				code, display = codeCrossClampRemoval, "Removal of aortic cross clamp"
			default:
				continue // other events: not exported yet (see the package doc)
			}
			it = b.add(key, "Procedure", "Procedure", &Procedure{ResourceType: "Procedure", ID: b.id(key), Identifier: b.ident(key),
				PartOf: b.partOf(), Status: "completed",
				Code:    &CodeableConcept{Coding: []Coding{{System: SystemSNOMED, Code: code, Display: display}}, Text: display},
				Subject: b.patient, Encounter: b.enc, PerformedDateTime: at})
		case d.Cardioplegia != nil:
			cp := d.Cardioplegia
			parts := []string{cp.Solution}
			for _, s := range []string{cp.Route, cp.Phase} {
				if s != "" {
					parts = append(parts, s)
				}
			}
			parts = append(parts, strconv.FormatFloat(cp.VolumeML, 'f', -1, 64)+" mL")
			if cp.TemperatureC != 0 {
				parts = append(parts, strconv.FormatFloat(cp.TemperatureC, 'f', -1, 64)+" °C")
			}
			it = b.add(key, "Procedure", "Procedure", &Procedure{ResourceType: "Procedure", ID: b.id(key), Identifier: b.ident(key),
				PartOf: b.partOf(), Status: "completed",
				Code:    &CodeableConcept{Coding: []Coding{{System: SystemSNOMED, Code: codeCardioplegia, Display: "Induced cardioplegia"}}, Text: "Cardioplegia dose"},
				Subject: b.patient, Encounter: b.enc, PerformedDateTime: at,
				Note: []Annotation{{Text: strings.Join(parts, ", ")}}})
		case d.LabResult != nil:
			l := d.LabResult
			a, ok := analytes[l.Analyte]
			if !ok {
				return errf("entries[%d]: unknown analyte", i)
			}
			// The code follows analyte and sample site, as in the v2
			// summary: LOINC, or the local code where the dictionary has
			// none for the site.
			lc, ok := v2.LabCode(a, l.Site)
			if !ok {
				return errf("entries[%d]: unknown sample site", i)
			}
			sys := SystemLOINC
			if lc.System == v2.SystemLocal {
				sys = LocalSystem
			}
			o := &Observation{ResourceType: "Observation", ID: b.id(key), Identifier: b.ident(key), Status: resultStatus(e),
				Category: category("laboratory", "Laboratory"),
				Code:     CodeableConcept{Coding: []Coding{{System: sys, Code: lc.Code, Display: lc.Text}}, Text: lc.Text},
				Subject:  b.patient, Encounter: b.enc, EffectiveDateTime: at, ValueQuantity: ucum(l.Value, a.Unit)}
			if tc := l.TemperatureCorrection; tc != "" {
				m := b.localCode(tc)
				o.Method = &m
			}
			it = b.add(key, "Observation", "Laboratory results", o)
		case d.Drug != nil:
			dr := d.Drug
			ma := b.administration(key, at, dr.Drug, ucum(dr.Dose, dr.Unit), dr.Route, "")
			it = b.add(key, "MedicationAdministration", "Medications, fluids and blood products", ma)
		case d.Fluid != nil:
			f := d.Fluid
			kind := v2.CodeFluidKindPrefix + f.Kind
			if _, ok := b.local[kind]; !ok {
				return errf("entries[%d]: unknown fluid kind", i)
			}
			switch f.Kind {
			case "ultrafiltration_removed", "urine_output":
				// Volumes out of the patient are measurements, not
				// administrations.
				it = b.add(key, "Observation", "Perfusion measurements", &Observation{ResourceType: "Observation", ID: b.id(key),
					Identifier: b.ident(key), PartOf: b.partOf(), Status: resultStatus(e), Category: category("procedure", "Procedure"),
					Code: b.localCode(kind), Subject: b.patient, Encounter: b.enc, EffectiveDateTime: at, ValueQuantity: ucum(f.VolumeML, "mL")})
			default:
				name := f.Name
				if name == "" {
					name = b.local[kind].Display
				}
				it = b.add(key, "MedicationAdministration", "Medications, fluids and blood products",
					b.administration(key, at, name, ucum(f.VolumeML, "mL"), "circuit", b.local[kind].Display))
			}
		case d.BloodProduct != nil:
			bp := d.BloodProduct
			kind := v2.CodeBloodProductTypePrefix + bp.Type
			lc, ok := b.local[kind]
			if !ok {
				return errf("entries[%d]: unknown blood product type", i)
			}
			dose := ucum(float64(bp.Units), "{unit}")
			if bp.VolumeML > 0 {
				dose = ucum(bp.VolumeML, "mL")
			}
			ma := b.administration(key, at, lc.Display, dose, bp.Route, "")
			ma.Dosage.Text = strconv.Itoa(int(bp.Units)) + " unit(s)"
			it = b.add(key, "MedicationAdministration", "Medications, fluids and blood products", ma)
		default:
			continue // notes, checklist, artifact marks, addenda: not exported yet
		}
		it.identified = true
	}
	return nil
}

// original is the entry whose resource identity e carries: the first of
// its correction chain.
func (b *builder) original(e *charting.Entry) uuid.UUID {
	if o, ok := b.rec.Originals[e.ID]; ok && o != uuid.Nil {
		return o
	}
	if e.Supersedes != uuid.Nil {
		return e.Supersedes
	}
	return e.ID
}

func (b *builder) administration(key, at, name string, dose *Quantity, route, note string) *MedicationAdministration {
	ma := &MedicationAdministration{ResourceType: "MedicationAdministration", ID: b.id(key), Identifier: b.ident(key),
		PartOf: b.partOf(), Status: "completed", MedicationCodeableConcept: &CodeableConcept{Text: name},
		Subject: b.patient, Context: b.enc, EffectiveDateTime: at, Dosage: &Dosage{Dose: dose}}
	if route != "" {
		ma.Dosage.Route = &CodeableConcept{Text: route}
	}
	if note != "" {
		ma.Note = []Annotation{{Text: note}}
	}
	return ma
}

func (b *builder) metricObs() error {
	// DeviceMetrics are made by trends; metrics refer to them, so make the
	// trend metrics first.
	if err := b.deviceMetrics(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, m := range b.rec.Metrics {
		lc, ok := b.local[m.Key]
		if !ok || lc.Group != "metric" {
			return errf("metrics[%d]: unknown metric key", i)
		}
		if seen[m.Key] {
			return errf("metrics[%d]: key appears twice", i)
		}
		seen[m.Key] = true
		key := "metric/" + m.Key
		status := "final"
		if m.Corrected {
			status = "corrected"
		}
		o := &Observation{ResourceType: "Observation", ID: b.id(key), Identifier: b.ident(key), PartOf: b.partOf(), Status: status,
			Category: category("procedure", "Procedure"), Code: b.localCode(m.Key), Subject: b.patient, Encounter: b.enc,
			ValueQuantity: ucum(m.Value, lc.Unit)}
		if m.At.IsZero() {
			// A duration or setting covers the run: say which interval.
			o.EffectivePeriod = &Period{Start: fhirTime(b.rec.BypassStart), End: fhirTime(b.rec.BypassEnd)}
		} else {
			o.EffectiveDateTime = fhirTime(m.At)
		}
		if m.Method != "" {
			if mc, ok := b.local[m.Method]; !ok || mc.Use != v2.UseMethod {
				return errf("metrics[%d]: unknown method", i)
			}
			mm := b.localCode(m.Method)
			o.Method = &mm
		}
		if m.Channel != "" {
			ch, ok := b.cat.Lookup(m.Channel)
			if !ok {
				return errf("metrics[%d]: unknown channel", i)
			}
			if dm := b.metrics[m.Channel]; dm != nil {
				r := dm.ref()
				o.Device = &r
			}
			o.Note = []Annotation{{Text: "Channel: " + ch.Name}}
		}
		b.add(key, "Observation", "Perfusion measurements", o).identified = true
	}
	return nil
}

func (b *builder) channelCode(ch charting.Channel) CodeableConcept {
	sys := LocalSystem
	if ch.CodeSystem == "MDC" {
		sys = SystemMDC
	}
	return CodeableConcept{Coding: []Coding{{System: sys, Code: ch.Code, Display: ch.Name}}, Text: ch.Name}
}

func (b *builder) deviceMetrics() error {
	for i, t := range b.rec.Trends {
		ch, ok := b.cat.Lookup(t.Series.Channel)
		if !ok {
			return errf("trends[%d]: unknown channel", i)
		}
		dev := b.devices[t.SourceID]
		if dev == nil {
			return errf("trends[%d]: source is not among the devices", i)
		}
		if b.metrics[ch.Key] != nil {
			return errf("trends[%d]: channel appears twice", i)
		}
		key := "devicemetric/" + t.SourceID + "/" + ch.Key
		src := dev.ref()
		r := &DeviceMetric{ResourceType: "DeviceMetric", ID: b.id(key), Identifier: b.ident(key), Type: b.channelCode(ch),
			Unit:   &CodeableConcept{Coding: []Coding{{System: SystemUCUM, Code: ch.Unit, Display: ch.Unit}}},
			Source: &src, Category: "measurement"}
		it := b.add(key, "DeviceMetric", "Equipment", r)
		it.identified = true
		b.metrics[ch.Key] = it
	}
	return nil
}

func (b *builder) trends() error {
	for i, t := range b.rec.Trends {
		s := t.Series
		n := s.Len()
		if n == 0 || len(s.Values) != n || s.Invalid != nil && len(s.Invalid) != n || t.PeriodMs <= 0 {
			return errf("trends[%d]: needs samples, matching values and a period", i)
		}
		t0 := s.TimesMs[0]
		last := (s.TimesMs[n-1] - t0) / t.PeriodMs
		if last > charting.MaxSamplesPerBatch*100 {
			return errf("trends[%d]: too many samples", i)
		}
		slots := make([]string, last+1)
		for j := range slots {
			slots[j] = "E"
		}
		below, above := false, false
		for j := 0; j < n; j++ {
			off := s.TimesMs[j] - t0
			if off%t.PeriodMs != 0 || (j > 0 && s.TimesMs[j] <= s.TimesMs[j-1]) {
				return errf("trends[%d]: sample %d is not on the sampling grid", i, j)
			}
			switch {
			case t.OutOfRange != nil && t.OutOfRange[j] < 0:
				slots[off/t.PeriodMs], below = "L", true
			case t.OutOfRange != nil && t.OutOfRange[j] > 0:
				slots[off/t.PeriodMs], above = "U", true
			case !s.IsInvalid(j):
				slots[off/t.PeriodMs] = strconv.FormatFloat(s.Values[j], 'f', -1, 64)
			}
		}
		ch, _ := b.cat.Lookup(s.Channel)
		if t.OutOfRange != nil && len(t.OutOfRange) != n {
			return errf("trends[%d]: out-of-range flags do not match the samples", i)
		}
		key := "trend/" + t.SourceID + "/" + ch.Key
		dm := b.metrics[ch.Key].ref()
		o := &Observation{ResourceType: "Observation", ID: b.id(key), Identifier: b.ident(key), PartOf: b.partOf(), Status: "final",
			Category: category("procedure", "Procedure"), Code: b.channelCode(ch), Subject: b.patient, Encounter: b.enc,
			EffectivePeriod: &Period{Start: fhirTime(time.UnixMilli(t0)), End: fhirTime(time.UnixMilli(s.TimesMs[n-1]))},
			ValueSampledData: &SampledData{Origin: Quantity{Value: num(0), Unit: ch.Unit, System: SystemUCUM, Code: ch.Unit},
				Period: float64(t.PeriodMs), Dimensions: 1, Data: strings.Join(slots, " ")},
			Device: &dm}
		if below && !math.IsInf(ch.Min, 0) {
			o.ValueSampledData.LowerLimit = num(ch.Min)
		}
		if above && !math.IsInf(ch.Max, 0) {
			o.ValueSampledData.UpperLimit = num(ch.Max)
		}
		b.add(key, "Observation", "Perfusion measurements", o).identified = true
	}
	return nil
}

// SignatureType is how a signature meaning is sent: the ASTM E1762 code of
// Provenance.signature.type and the Provenance agent role. Codes and
// displays are those of the R4 CodeSystem urn:iso-astm:E1762-95:2013 (as
// shipped in the R4 definitions the validator loads).
type SignatureType struct {
	Code, Display       string // ASTM E1762
	AgentRole, RoleName string // provenance-participant-type
}

// SignatureTypes maps the record's signature meanings to FHIR. Authored
// is the Author's Signature (.1); reviewed is the Verification Signature
// (.5, "verifying the information contained in a document"), not the
// Review Signature (.13), which ASTM defines for reviewing or filtering
// data, e.g. by a device; approved is the Validation Signature (.6,
// "validating a document for inclusion in the patient record").
var SignatureTypes = map[charting.SignatureMeaning]SignatureType{
	charting.MeaningAuthored: {"1.2.840.10065.1.12.1.1", "Author's Signature", "author", "Author"},
	charting.MeaningReviewed: {"1.2.840.10065.1.12.1.5", "Verification Signature", "verifier", "Verifier"},
	charting.MeaningApproved: {"1.2.840.10065.1.12.1.6", "Validation Signature", "attester", "Attester"},
}

// SignatureStatement is the text a signature attests, sent base64-encoded
// as Provenance.signature.data: the ledger position and hash the signature
// covers, so a receiver holding the statement can ask this system to
// verify the record it describes. No patient data is in it.
func SignatureStatement(s charting.Signature) string {
	return fmt.Sprintf("perfusion.ledger.v1 case=%s seq=%d hash=%s signer=%s meaning=%s signed_at=%s",
		s.CaseID, s.CoversSeq, s.CoversHash, s.Signer, s.Meaning, fhirTime(s.SignedAt))
}

func (b *builder) provenance() error {
	sigs := slices.Clone(b.rec.Case.Signatures)
	slices.SortStableFunc(sigs, func(x, y charting.Signature) int { return int(x.Number - y.Number) })
	for i, s := range sigs {
		st, ok := SignatureTypes[s.Meaning]
		if !ok || s.Signer == "" || s.SignedAt.IsZero() {
			return errf("signatures[%d]: needs a known meaning, a signer and a time", i)
		}
		key := "provenance/" + strconv.FormatInt(s.Number, 10)
		who := b.staff(v2.SignerID(s), s.DisplayName)
		target := []Reference{b.bypass.ref()}
		if b.doc {
			target = append(target, Reference{Reference: "urn:uuid:" + ResourceUUID(b.rec.Case.ID, "composition").String()})
		}
		// A signature is never changed, so a resend (of this version or a
		// later one) must not create its Provenance again: the stable tag
		// makes it a conditional create.
		tag := Coding{System: ProvenanceTagSystem, Code: "urn:uuid:" + ResourceUUID(b.rec.Case.ID, key).String()}
		r := &Provenance{ResourceType: "Provenance", ID: b.id(key), Meta: &Meta{Tag: []Coding{tag}}, Target: target, Recorded: fhirTime(s.SignedAt),
			Agent: []ProvenanceAgent{{Type: &CodeableConcept{Coding: []Coding{{System: systemParticipant, Code: st.AgentRole, Display: st.RoleName}}}, Who: who}},
			Signature: []Signature{{Type: []Coding{{System: SystemSignatureType, Code: st.Code, Display: st.Display}},
				When: fhirTime(s.SignedAt), Who: who, SigFormat: "text/plain",
				Data: base64.StdEncoding.EncodeToString([]byte(SignatureStatement(s)))}}}
		if b.hlm != nil {
			r.Agent = append(r.Agent, ProvenanceAgent{Type: &CodeableConcept{Coding: []Coding{{System: systemV3Participant, Code: "DEV", Display: "device"}}}, Who: b.hlm.ref()})
		}
		b.add(key, "Provenance", "Signatures", r).ifNoneExist = tokenSearch("_tag", tag.System, tag.Code)
	}
	return nil
}

// composition makes the document's Composition: authored by the first
// signer, one section per kind of content that has entries.
func (b *builder) composition() *item {
	c := b.rec.Case
	first := c.Signatures[0]
	for _, s := range c.Signatures {
		if s.Number < first.Number {
			first = s
		}
	}
	comp := &Composition{ResourceType: "Composition", ID: b.id("composition"),
		Identifier: &b.ident("composition")[0], Status: "final",
		Type:    CodeableConcept{Coding: []Coding{{System: SystemLOINC, Code: codeProcedureNote, Display: "Procedure note"}}, Text: "Perfusion record"},
		Subject: &b.patient, Encounter: b.enc, Date: fhirTime(b.rec.Timestamp),
		Author: []Reference{b.staff(v2.SignerID(first), first.DisplayName)},
		Title:  "Perfusion record",
	}
	if c.Kind == charting.KindECMO {
		comp.Title = "ECMO record"
	}
	for _, title := range sections {
		var refs []Reference
		for _, it := range b.items {
			if it.section == title {
				refs = append(refs, it.ref())
			}
		}
		if len(refs) > 0 {
			comp.Section = append(comp.Section, Section{Title: title, Entry: refs})
		}
	}
	comp.Text = b.narrative(comp, first)
	return &item{key: "composition", uuid: ResourceUUID(c.ID, "composition"), resource: comp, typ: "Composition"}
}

// narrative is the Composition's generated text (R4 requires a narrative
// of a document's Composition for the document to be readable as is): the
// title, the run period, the first signer, and what each section holds.
// Everything taken from the record is XHTML-escaped.
func (b *builder) narrative(comp *Composition, first charting.Signature) *Narrative {
	esc := html.EscapeString
	var d strings.Builder
	d.WriteString(`<div xmlns="http://www.w3.org/1999/xhtml">`)
	d.WriteString("<p><b>" + esc(comp.Title) + "</b></p>")
	run := "Start " + esc(fhirTime(b.rec.BypassStart))
	if !b.rec.BypassEnd.IsZero() {
		run += ", end " + esc(fhirTime(b.rec.BypassEnd))
	}
	d.WriteString("<p>" + run + ".</p>")
	signer := first.DisplayName
	if signer == "" {
		signer = v2.SignerID(first)
	}
	d.WriteString("<p>Signed by " + esc(signer) + " at " + esc(fhirTime(first.SignedAt)) + "; version " + strconv.FormatInt(b.rec.Version, 10) + ".</p>")
	d.WriteString("<ul>")
	for _, s := range comp.Section {
		n := strconv.Itoa(len(s.Entry)) + " entries"
		if len(s.Entry) == 1 {
			n = "1 entry"
		}
		d.WriteString("<li>" + esc(s.Title) + ": " + n + "</li>")
	}
	d.WriteString("</ul></div>")
	return &Narrative{Status: "generated", Div: d.String()}
}
