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
// # Device data
//
// The FHIR Bundle carries the case's device data resampled to one-minute
// means (TrendPeriodMs, charting.RegularTrends; runs of more than a day
// in periods of whole minutes, MaxTrendPoints at most): a Device per data source
// (the source of arterial pump flow typed as the heart-lung machine), a
// DeviceMetric and a SampledData trend Observation per channel. Invalid
// readings and artifact-marked samples are left out of the means, and a
// minute with none is "E". The HL7 v2 summary stays a summary; the same
// minutes are available as an IHE PCD-01 report (Renderer.DeviceReport),
// rendered on request and not queued: a second message per version would
// need its own outbox rows and acknowledgement, and an interface engine
// that wants device rows usually takes them live from the gateway.
// Samples are accepted only while a case is charted, so the device data
// of a version never changes and rendering stays deterministic.
//
// Metrics are those of charting.ComputeMetrics that the summary has codes
// for: CPB (or ECMO), cross-clamp, outside-clamp and circulatory-arrest
// times, BSA, net prime volume index, lowest core and highest arterial
// outlet temperature, lowest haematocrit, lowest DO2i and the time and
// area below the DO2i threshold (with the threshold). The lowest
// temperature, haematocrit and DO2i and the highest outlet temperature
// carry when they first occurred (OBX-14, effectiveDateTime).
//
// Nothing here logs patient data: log lines name case ids, versions,
// destinations and outcome classes only.
package export
