// Package export renders a signed case version as the messages the
// hospital receives (an HL7 v2 ORU^R01 summary, a FHIR R4 transaction
// Bundle) and delivers the queued ones (store/outbox.go) over MLLP and
// FHIR REST.
//
// # Render at delivery time
//
// An outbox row holds only (case, version, destination) and the message id;
// the payload is rendered when it is sent, from the record as it stood at
// the version's ledger link: the entries, corrections and addenda whose
// links are at or before it, the signatures up to it, and the link's own
// time as the message time. The record up to a link never changes (append
// only, and a signed case's details are frozen), so rendering is
// deterministic: a resend carries the same bytes, and ExportService's
// preview is exactly what is (or was) sent. Rendering at enqueue instead
// would read every entry inside the signing transaction, lengthening the
// case lock on a clinical write, and store a copy of patient data in an
// operational table; a rendering fault would block signing. Rendering late
// costs one snapshot read per attempt, and a fix to a renderer applies to
// deliveries still queued.
//
// # Not exported yet
//
// Device trends and devices (FHIR valueSampledData, PCD-01 OBX) and the
// sample-derived metrics (temperatures, DO2i, MAP): they need the samples,
// which this renderer does not read yet. Sent metrics are those that
// charting.ComputeMetrics derives from entries and details: CPB (or ECMO),
// cross-clamp, CPB-outside-clamp and circulatory-arrest times, BSA and the
// net prime volume index.
//
// Nothing here logs patient data: log lines name case ids, versions,
// destinations and outcome classes only.
package export
