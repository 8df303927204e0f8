package export

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/charting/samplecodec"
	"perfusion/hl7/fhir"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
)

// HL7Config is the site's HL7 v2 header settings.
type HL7Config struct {
	SendingApplication   v2.HD // MSH-3, required
	SendingFacility      v2.HD // MSH-4
	ReceivingApplication v2.HD // MSH-5
	ReceivingFacility    v2.HD // MSH-6
	// ProcessingID is MSH-11; empty means production.
	ProcessingID v2.ProcessingID
	// Location is the zone message times are written in; nil means UTC.
	Location *time.Location
	// PointOfCare is PV1-3.1, e.g. "CARDIAC OR".
	PointOfCare string
}

// Renderer renders case versions.
type Renderer struct {
	b    store.Backend
	hl7  HL7Config
	fhir fhir.Options
	cat  *charting.Catalogue
	mcfg charting.MetricsConfig
	docs bool
}

// NewRenderer returns a Renderer reading from b. cat nil means the default
// catalogue.
func NewRenderer(b store.Backend, h HL7Config, f fhir.Options, cat *charting.Catalogue) *Renderer {
	if cat == nil {
		cat = charting.DefaultCatalogue()
	}
	return &Renderer{b: b, hl7: h, fhir: f, cat: cat, mcfg: charting.DefaultMetricsConfig()}
}

// RendererFor returns a renderer of st's record with st's catalogue and
// metric thresholds, so exports and review queries compute metrics from
// one configuration.
func RendererFor(st *store.Store, h HL7Config, f fhir.Options) *Renderer {
	return NewRenderer(st.Backend(), h, f, st.Catalogue()).WithMetricsConfig(st.MetricsConfig())
}

// WithMetricsConfig makes the renderer compute the exported quality
// metrics with the site's thresholds, the ones review queries use
// (perfusiond's --metrics-* flags), instead of the defaults; it returns r.
func (r *Renderer) WithMetricsConfig(cfg charting.MetricsConfig) *Renderer {
	r.mcfg = cfg
	return r
}

// WithDocuments makes every delivery carry the rendered record too: the
// HL7 delivery sends the MDM (T02, or T10 for a later version) after the
// ORU, and the FHIR transaction Bundle includes a DocumentReference with
// the PDF (perfusiond --deliver-document). It returns r.
func (r *Renderer) WithDocuments(on bool) *Renderer {
	r.docs = on
	return r
}

// ControlIDKind is the message kind of the summary's MSH-10
// (v2.ControlID).
const ControlIDKind = "oru-summary"

// MessageID is the id a receiver deduplicates on for a delivery of
// (case, version) to dest: MSH-10 for HL7, the transaction Bundle's
// identifier value for FHIR. It is what store.OutboxConfig.MessageID
// should be.
func MessageID(dest store.Destination, caseID uuid.UUID, version int64) string {
	if dest == store.DestinationFHIR {
		return fhir.TransactionIdentifier(caseID, version)
	}
	return v2.ControlID(ControlIDKind, caseID, version)
}

// Rendered is one rendered message.
type Rendered struct {
	Payload     []byte
	MessageID   string
	ContentType string
	// Then are further messages of the same delivery, sent in order after
	// this one is accepted (the MDM after the ORU). The delivery is
	// delivered when all of them are; a retry sends all again under the
	// same control IDs, and the receiver drops what it already has.
	Then []*Rendered
}

// ErrContent marks a record the message builders refuse (or options they
// lack): rendering it again gives the same error. Its text names fields,
// never their content.
var ErrContent = errors.New("export: the record cannot be rendered")

// ErrFHIRNotConfigured is FHIR rendering without the options a server
// must be given (the staff identifier system): the operator's to fix, not
// the record's. It matches ErrContent too, as rendering again fails alike.
var ErrFHIRNotConfigured = fmt.Errorf("%w: the FHIR staff identifier system is not configured", ErrContent)

// ErrIdentityIncomplete is a record whose patient identity (as reconciled)
// lacks what the message needs: the MRN for HL7 PID-3, the MRN and its
// assigning authority for the FHIR Patient identifier. It matches
// ErrContent too. The worker holds such a delivery (store.DeliveryHeld)
// until an identity reconciliation completes the case. Its text names
// fields, never values.
var ErrIdentityIncomplete = fmt.Errorf("%w: the patient identity is incomplete", ErrContent)

// ErrNotAVersion reports a version that is not a signature or addendum of
// the case.
var ErrNotAVersion = errors.New("export: the version is not a signature or addendum of the case")

// Version is a case as it stood at one of its versions.
type Version struct {
	Case    *charting.Case // signatures cut at the version
	Number  int64
	At      time.Time        // the version link's time
	All     []charting.Entry // every entry at the version, history included
	Current []charting.Entry // the entries in force
	First   bool             // the first signature: not an amendment
	// Link is the version's own ledger link (at Number); Previous is the
	// sequence of the version before it (0 for the first): the document
	// this version's rendered record replaces.
	Link     charting.Link
	Previous int64
	// Identity is the case's latest identity reconciliation, already
	// applied to Case.Details.Patient; nil when there is none. A version's
	// message is the record at the version plus its identity
	// reconciliations, whenever they were made: a reconciliation is not a
	// version of its own.
	Identity *charting.IdentityReconciliation
	// Series are the case's device data. Samples are accepted only while a
	// case is charted, so every version has all of them. Samples timed
	// outside the case's device window (Case.DeviceWindow of their batch's
	// receipt: a device clock reset to 1970, or far ahead) are left out:
	// the record keeps them (QuerySamples over their range), but they must
	// not drive an export's time span, its one-minute grid or a metric.
	Series []charting.SourcedSeries
}

// Load reads the case as it stood at version (a signature's or addendum's
// ledger sequence; 0 for the latest) from one consistent snapshot. charting.ErrNotFound when
// the case does not exist; ErrNotAVersion when version names no signature or
// addendum; a precondition failure when the case is not signed.
func (r *Renderer) Load(ctx context.Context, caseID uuid.UUID, version int64) (*Version, error) {
	var v *Version
	err := r.b.Snapshot(ctx, func(ctx context.Context, rd store.Reader) error {
		c, err := rd.GetCase(ctx, caseID)
		if err != nil {
			return err
		}
		if c.Status != charting.StatusSigned {
			return charting.Preconditionf("case is %s: only signed cases are exported", c.Status)
		}
		if version < 0 || version > c.Head.Seq {
			return ErrNotAVersion
		}
		links, err := rd.Links(ctx, caseID, 0, int(version))
		if err != nil {
			return err
		}
		if version == 0 { // the latest: the last signature or addendum
			for _, l := range links {
				if l.Kind == charting.LinkSignature || l.Kind == charting.LinkAddendum {
					version = l.Seq
				}
			}
			if version == 0 {
				return ErrNotAVersion
			}
			links = links[:version]
		}
		if int64(len(links)) != version {
			return fmt.Errorf("export: ledger of the case is short: %d links", len(links))
		}
		last := links[version-1]
		if last.Kind != charting.LinkSignature && last.Kind != charting.LinkAddendum {
			return ErrNotAVersion
		}
		var previous int64
		for _, l := range links[:version-1] {
			if l.Kind == charting.LinkSignature || l.Kind == charting.LinkAddendum {
				previous = l.Seq
			}
		}
		ids := map[string]bool{}
		for _, l := range links {
			switch l.Kind {
			case charting.LinkEntry, charting.LinkCorrection, charting.LinkAddendum:
				ids[l.Ref] = true
			}
		}
		all, err := rd.Entries(ctx, caseID)
		if err != nil {
			return err
		}
		all = slices.DeleteFunc(all, func(e charting.Entry) bool { return !ids[e.ID.String()] })
		sigs := slices.DeleteFunc(slices.Clone(c.Signatures), func(s charting.Signature) bool { return s.Number > version })
		if len(sigs) == 0 {
			return ErrNotAVersion
		}
		series, err := caseSeries(ctx, rd, c)
		if err != nil {
			return err
		}
		cc := *c
		cc.Signatures = sigs
		identity, err := applyIdentity(ctx, rd, &cc)
		if err != nil {
			return err
		}
		v = &Version{Case: &cc, Number: version, At: last.RecordedAt, All: all,
			Current: charting.CurrentView(all, false), First: version == sigs[0].Number, Series: series,
			Link: last, Previous: previous, Identity: identity}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("export: load case version: %w", err)
	}
	return v, nil
}

// caseSeries reads every device sample of c that lies within the case's
// device window of its batch: a version has all of them, since samples are
// accepted only while a case is charted.
func caseSeries(ctx context.Context, rd store.Reader, c *charting.Case) ([]charting.SourcedSeries, error) {
	var series []charting.SourcedSeries
	err := rd.ScanSampleBatches(ctx, c.ID, store.SampleFilter{}, func(b *store.SampleBatchRow) error {
		ss, err := samplecodec.DecodeBlock(b.Block)
		if err != nil {
			return fmt.Errorf("export: decode samples: %w", err)
		}
		w := c.DeviceWindow(b.RecordedAt)
		for _, x := range ss {
			if x = x.Within(w); x.Len() > 0 {
				series = append(series, charting.SourcedSeries{SourceID: b.SourceID, Series: x, RecordedAt: b.RecordedAt})
			}
		}
		return nil
	})
	return series, err
}

// applyIdentity applies the case's latest identity reconciliation to c's
// patient and returns it; nil when there is none.
func applyIdentity(ctx context.Context, rd store.Reader, c *charting.Case) (*charting.IdentityReconciliation, error) {
	recs, err := rd.IdentityReconciliations(ctx, c.ID)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	identity := &recs[len(recs)-1]
	identity.Apply(&c.Details.Patient)
	return identity, nil
}

// bypass returns the bypass (or ECMO support) period: first bypass_on to
// last bypass_off, else the case's start. An ECMO run often charts no
// bypass on/off (pumpsim --ecmo charts cannulation and nothing at the
// end), so for ECMO the run starts at the first cannulation and ends at the
// last decannulation when bypass on/off are missing, and ends when the case
// was closed when no end was charted: the record covers the run up to then
// (docs/interface-spec.md, ECMO run times).
func bypass(v *Version) (start, end time.Time) {
	first := map[string]time.Time{}
	last := map[string]time.Time{}
	for _, e := range v.Current {
		ev := e.Detail.Event
		if ev == nil {
			continue
		}
		if f, ok := first[ev.Type]; !ok || e.OccurredAt.Before(f) {
			first[ev.Type] = e.OccurredAt
		}
		if e.OccurredAt.After(last[ev.Type]) {
			last[ev.Type] = e.OccurredAt
		}
	}
	start, end = first[charting.EventBypassOn], last[charting.EventBypassOff]
	if v.Case.Kind == charting.KindECMO {
		if start.IsZero() {
			start = first[charting.EventCannulation]
		}
		if end.IsZero() {
			end = last[charting.EventDecannulation]
		}
		if end.IsZero() {
			end = v.Case.ClosedAt
		}
	}
	if start.IsZero() {
		start = v.Case.StartedAt
	}
	if !end.IsZero() && !end.After(start) {
		end = time.Time{}
	}
	return start, end
}

// metricMap maps charting metric names to the summary's metric keys.
var metricMap = map[string]string{
	"cpb_minutes":                v2.MetricCPBDuration,
	"cross_clamp_minutes":        v2.MetricCrossClampDuration,
	"cpb_minus_clamp_minutes":    v2.MetricCPBOutsideCrossClampDuration,
	"circulatory_arrest_minutes": v2.MetricCirculatoryArrestDuration,
	"bsa_m2":                     v2.MetricBSA,
	"net_prime_volume_index":     v2.MetricNetPrimeVolumeIndex,
	"nadir_temp_c":               v2.MetricLowestTemperature,
	"max_arterial_outlet_c":      v2.MetricHighestTemperature,
	"nadir_hct_pct":              v2.MetricLowestHct,
	"nadir_do2i":                 v2.MetricLowestDO2i,
	"minutes_do2i_below":         v2.MetricDO2iBelowThresholdDuration,
	"area_do2i_below":            v2.MetricDO2iBelowThresholdArea,
	"full_flow_minutes":          v2.MetricFullFlowDuration,
}

// fullFlowMethods name, in OBX-17, how the full-flow window of the DO2i
// metrics was found (the metric full_flow_window_source).
var fullFlowMethods = map[float64]string{
	charting.WindowCharted.Code():     v2.MethodFullFlowCharted,
	charting.WindowFlowRule.Code():    v2.MethodFullFlowFlowRule,
	charting.WindowMinutesRule.Code(): v2.MethodFullFlowMinutesRule,
}

// metrics computes the entry-derived metrics of the version, in a fixed
// order.
func (r *Renderer) metrics(v *Version) []v2.Metric {
	m := charting.ComputeMetricsWith(v.Case, v.All, v.Series, r.mcfg, r.cat)
	methods := map[string]bool{}
	for _, lc := range v2.LocalCodes(r.cat) {
		if lc.Use == v2.UseMethod {
			methods[lc.Code] = true
		}
	}
	names := make([]string, 0, len(metricMap))
	for n := range metricMap {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []v2.Metric
	for _, n := range names {
		val, ok := m.Values[n]
		if !ok {
			continue
		}
		key := metricMap[n]
		if key == v2.MetricCPBDuration && v.Case.Kind == charting.KindECMO {
			key = v2.MetricECMODuration
		}
		mt := v2.Metric{Key: key, Value: round(val, 3), At: m.At[n]}
		switch key {
		case v2.MetricBSA:
			if methods[string(m.BSAFormula)] {
				mt.Method = string(m.BSAFormula)
			}
		case v2.MetricLowestTemperature:
			mt.Channel = r.knownChannel(m.NadirTempSite)
		case v2.MetricHighestTemperature:
			mt.Channel = r.knownChannel("temp_arterial_outlet")
		case v2.MetricFullFlowDuration, v2.MetricLowestDO2i, v2.MetricDO2iBelowThresholdDuration, v2.MetricDO2iBelowThresholdArea:
			mt.Method = fullFlowMethods[m.Values["full_flow_window_source"]]
		}
		out = append(out, mt)
	}
	if v.Case.Kind == charting.KindECMO && !slices.ContainsFunc(out, func(mt v2.Metric) bool { return mt.Key == v2.MetricECMODuration }) {
		// No bypass on/off pair was charted (the usual ECMO record): the
		// run time is the run period the export sends as OBR-7/8 and
		// Procedure.performedPeriod.
		if start, end := bypass(v); !end.IsZero() {
			out = append([]v2.Metric{{Key: v2.MetricECMODuration, Value: round(end.Sub(start).Minutes(), 3)}}, out...)
		}
	}
	_, below := m.Values["minutes_do2i_below"]
	if below {
		// The threshold the DO2i minutes and area were computed against.
		out = append(out, v2.Metric{Key: v2.MetricDO2iThreshold, Value: m.Thresholds().DO2iThreshold})
	}
	return out
}

// knownChannel returns key when the catalogue names it, else "" (OBX-20 is
// then left out rather than failing the message).
func (r *Renderer) knownChannel(key string) string {
	if _, ok := r.cat.Lookup(key); ok {
		return key
	}
	return ""
}

// round keeps metric values readable (a duration of 97.00000001 minutes
// is 97).
func round(x float64, digits int) float64 {
	s := strconv.FormatFloat(x, 'f', digits, 64)
	y, _ := strconv.ParseFloat(s, 64)
	return y
}

// Summary builds the HL7 v2 summary of a version.
func (r *Renderer) Summary(v *Version) (*v2.Summary, error) {
	start, end := bypass(v)
	if start.IsZero() {
		return nil, fmt.Errorf("%w: the case has no bypass start or start time", ErrContent)
	}
	c := v.Case
	visit := v2.VisitFromCase(c)
	visit.PointOfCare = r.hl7.PointOfCare
	s := &v2.Summary{CaseID: c.ID, Kind: c.Kind, Patient: c.Details.Patient, Visit: visit, Status: v2.StatusFinal,
		BypassStart: start, BypassEnd: end, Signature: c.Signatures[len(c.Signatures)-1],
		Metrics: r.metrics(v), Catalogue: r.cat}
	if !v.First {
		s.Status = v2.StatusCorrected
	}
	type drugKey struct{ name, unit string }
	drugs := map[drugKey]*v2.DrugTotal{}
	fluids := map[string]*v2.FluidTotal{}
	blood := map[string]*v2.BloodProductTotal{}
	for _, e := range v.Current {
		corrected := e.Supersedes != uuid.Nil
		d := e.Detail
		switch {
		case d.Event != nil:
			if slices.Contains(charting.EventTypes, d.Event.Type) {
				s.Events = append(s.Events, e)
			}
		case d.LabResult != nil:
			s.Labs = append(s.Labs, e)
		case d.Note != nil, d.Addendum != nil:
			s.Notes = append(s.Notes, e)
		case d.Drug != nil:
			k := drugKey{d.Drug.Drug, d.Drug.Unit}
			if drugs[k] == nil {
				drugs[k] = &v2.DrugTotal{Drug: k.name, Unit: k.unit}
			}
			drugs[k].Dose += d.Drug.Dose
			drugs[k].Corrected = drugs[k].Corrected || corrected
		case d.Fluid != nil:
			if fluids[d.Fluid.Kind] == nil {
				fluids[d.Fluid.Kind] = &v2.FluidTotal{Kind: d.Fluid.Kind}
			}
			fluids[d.Fluid.Kind].VolumeML += d.Fluid.VolumeML
			fluids[d.Fluid.Kind].Corrected = fluids[d.Fluid.Kind].Corrected || corrected
		case d.BloodProduct != nil:
			if blood[d.BloodProduct.Type] == nil {
				blood[d.BloodProduct.Type] = &v2.BloodProductTotal{Type: d.BloodProduct.Type}
			}
			b := blood[d.BloodProduct.Type]
			b.Units += int(d.BloodProduct.Units)
			b.VolumeML += d.BloodProduct.VolumeML
			b.Corrected = b.Corrected || corrected
		}
	}
	// Totals in a fixed order: drugs by name and unit, fluids and blood
	// products in the dictionary's order.
	dk := make([]drugKey, 0, len(drugs))
	for k := range drugs {
		dk = append(dk, k)
	}
	slices.SortFunc(dk, func(a, b drugKey) int {
		if a.name != b.name {
			return cmp.Compare(a.name, b.name)
		}
		return cmp.Compare(a.unit, b.unit)
	})
	for _, k := range dk {
		s.Drugs = append(s.Drugs, *drugs[k])
	}
	for _, k := range charting.FluidKinds {
		if f := fluids[k]; f != nil {
			s.Fluids = append(s.Fluids, *f)
		}
	}
	for _, k := range charting.BloodProductTypes {
		if b := blood[k]; b != nil {
			s.BloodProducts = append(s.BloodProducts, *b)
		}
	}
	return s, nil
}

// Record builds the FHIR record of a version.
func (r *Renderer) Record(v *Version) (*fhir.Record, error) {
	start, end := bypass(v)
	if start.IsZero() {
		return nil, fmt.Errorf("%w: the case has no bypass start or start time", ErrContent)
	}
	devices, trends := r.fhirDevices(r.trends(v))
	return &fhir.Record{Case: v.Case, Version: v.Number, Timestamp: v.At, BypassStart: start, BypassEnd: end,
		Entries: v.Current, Originals: originals(v.All), Metrics: r.metrics(v), Devices: devices, Trends: trends,
		Catalogue: r.cat}, nil
}

// originals maps each correction to the first entry of its chain.
func originals(all []charting.Entry) map[uuid.UUID]uuid.UUID {
	sup := map[uuid.UUID]uuid.UUID{}
	for _, e := range all {
		if e.Supersedes != uuid.Nil {
			sup[e.ID] = e.Supersedes
		}
	}
	out := map[uuid.UUID]uuid.UUID{}
	for id, prev := range sup {
		first := prev
		for range len(sup) { // bounded: a chain cannot be longer than the corrections
			p, ok := sup[first]
			if !ok {
				break
			}
			first = p
		}
		out[id] = first
	}
	return out
}

// Header is the MSH of a version's summary.
func (r *Renderer) Header(v *Version) v2.Header {
	return v2.Header{SendingApplication: r.hl7.SendingApplication, SendingFacility: r.hl7.SendingFacility,
		ReceivingApplication: r.hl7.ReceivingApplication, ReceivingFacility: r.hl7.ReceivingFacility,
		ControlID: v2.ControlID(ControlIDKind, v.Case.ID, v.Number), Time: v.At, ProcessingID: r.hl7.ProcessingID,
		Location: r.hl7.Location}
}

// HL7 renders a loaded version as the encoded ORU^R01.
func (r *Renderer) HL7(v *Version) (*Rendered, error) {
	if v.Case.Details.Patient.MRN == "" {
		return nil, fmt.Errorf("%w: PID-3 needs the MRN", ErrIdentityIncomplete)
	}
	s, err := r.Summary(v)
	if err != nil {
		return nil, err
	}
	h := r.Header(v)
	m, err := v2.BuildSummary(h, s)
	return encodeHL7(h, m, err)
}

// changeReason is TXA-21 of a later version: what made it.
func changeReason(k charting.LinkKind) string {
	if k == charting.LinkSignature {
		return "Additional signature"
	}
	return "Addendum"
}

// DocumentControlIDKind is the message kind of the MDM's MSH-10.
const DocumentControlIDKind = "mdm-document"

// MDM renders a loaded version's record as a PDF in an MDM message: T02
// for the first version, T10 replacing the previous version's document
// (TXA-13) for each later one.
func (r *Renderer) MDM(v *Version) (*Rendered, error) {
	start, _ := bypass(v)
	pdf, err := r.DocumentOf(v, v.Link)
	if err != nil {
		return nil, err
	}
	c := v.Case
	visit := v2.VisitFromCase(c)
	visit.PointOfCare = r.hl7.PointOfCare
	h := r.Header(v)
	h.ControlID = v2.ControlID(DocumentControlIDKind, c.ID, v.Number)
	m, err := v2.BuildDocument(h, &v2.RenderedDocument{CaseID: c.ID, Patient: c.Details.Patient, Visit: visit,
		Version: v.Number, Replaces: v.Previous, Activity: start, Origination: v.At,
		Signatures: c.Signatures, ChangeReason: changeReason(v.Link.Kind), PDF: pdf})
	return encodeHL7(h, m, err)
}

// encodeHL7 encodes a built message; a builder's refusal is ErrContent.
func encodeHL7(h v2.Header, m *v2.Message, buildErr error) (*Rendered, error) {
	if buildErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrContent, buildErr)
	}
	b, err := m.Encode()
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return &Rendered{Payload: b, MessageID: h.ControlID, ContentType: "x-application/hl7-v2+er7"}, nil
}

// FHIR renders a loaded version as the encoded transaction Bundle.
func (r *Renderer) FHIR(v *Version) (*Rendered, error) {
	return r.fhirBundle(v, fhir.BuildTransaction)
}

// FHIRDocument renders a loaded version as the encoded FHIR document
// (fhir.BuildDocument): rendered on request, never delivered.
func (r *Renderer) FHIRDocument(v *Version) (*Rendered, error) {
	return r.fhirBundle(v, fhir.BuildDocument)
}

func (r *Renderer) fhirBundle(v *Version, build func(*fhir.Record, fhir.Options) (*fhir.Bundle, error)) (*Rendered, error) {
	if r.fhir.StaffSystem == "" {
		return nil, ErrFHIRNotConfigured
	}
	// An MRN without an authority is complete only where the renderer maps
	// the empty authority to an identifier system (fhir.Options.MRNSystems
	// of ""; perfusiond's flag always names one); a system missing for a
	// named authority is configuration, refused by the builder, not an
	// incomplete identity.
	if p := v.Case.Details.Patient; p.MRN == "" || p.MRNAssigningAuthority == "" && r.fhir.MRNSystems[""] == "" {
		return nil, fmt.Errorf("%w: the Patient identifier needs the MRN and its assigning authority", ErrIdentityIncomplete)
	}
	rec, err := r.Record(v)
	if err != nil {
		return nil, err
	}
	if r.docs {
		pdf, err := r.DocumentOf(v, v.Link)
		if err != nil {
			return nil, err
		}
		rec.Document = &fhir.RenderedPDF{Version: v.Number, Replaces: v.Previous, At: v.At, PDF: pdf}
	}
	bundle, err := build(rec, r.fhir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrContent, err)
	}
	b, err := fhir.Encode(bundle)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return &Rendered{Payload: b, MessageID: bundle.Identifier.Value, ContentType: "application/fhir+json"}, nil
}

// Render loads and renders (case, version) for dest.
func (r *Renderer) Render(ctx context.Context, dest store.Destination, caseID uuid.UUID, version int64) (*Rendered, error) {
	v, err := r.Load(ctx, caseID, version)
	if err != nil {
		return nil, err
	}
	if dest == store.DestinationFHIR {
		return r.FHIR(v)
	}
	out, err := r.HL7(v)
	if err != nil || !r.docs {
		return out, err
	}
	// The document follows the summary in the same delivery, so it keeps
	// the summary's place in the case's order.
	doc, err := r.MDM(v)
	if err != nil {
		return nil, err
	}
	out.Then = append(out.Then, doc)
	return out, nil
}
