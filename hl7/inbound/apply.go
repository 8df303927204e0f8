package inbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	"perfusion/charting"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
)

// Triggers this receiver knows. Others of a known message type are a
// content error (AE, table 0357 code 201); other message types 200.
var (
	adtPatient = []string{"A01", "A04", "A05", "A08", "A28", "A31"}
	adtMerge   = []string{"A34", "A40", "A47"}
	adtCancel  = []string{"A11", "A13"}
	// ADT events that carry nothing this record keeps: accepted, noted.
	adtUnused = []string{"A02", "A03", "A06", "A07", "A09", "A10", "A12", "A14", "A15", "A16", "A17", "A20",
		"A21", "A22", "A23", "A24", "A25", "A26", "A27", "A29", "A32", "A33", "A37", "A38", "A52", "A53", "A54", "A55", "A60", "A61", "A62"}
	siuBook   = []string{"S12", "S13", "S14"}
	siuCancel = []string{"S15", "S17"}
	// SIU events about other parts of the schedule: accepted, noted.
	siuUnused = []string{"S16", "S18", "S19", "S20", "S21", "S22", "S23", "S24", "S26"}
)

// caseNamespace derives the ids of the cases the schedule plans from the
// message that planned them, so a resent message plans the same case.
var caseNamespace = uuid.MustParse("1b0f0d6e-57a4-4bde-9a0b-4f3c1d0a9e21")

// run is the processing of one message.
type run struct {
	h      *Handler
	ctx    context.Context
	st     *store.Store
	sender string
	actor  string
	key    store.InboundKey
	label  string // "SIU^S12 message C123", for ledger reasons
	res    *result
}

// process decides what a parsed message does and does it.
func (h *Handler) process(ctx context.Context, sender string, key store.InboundKey, msg *v2.Message) *result {
	typ, trig := strings.ToUpper(msg.Get("MSH-9")), strings.ToUpper(msg.Get("MSH-9.2"))
	if p := msg.Get("MSH-11"); !slices.Contains(h.cfg.ProcessingIDs, p) {
		return contentError(problem(v2.ErrUnsupportedProcessingID, "MSH-11", "processing id %q is not accepted here (accepted: %s)", p, strings.Join(h.cfg.ProcessingIDs, ", ")))
	}
	if ver := msg.Get("MSH-12"); ver != "" && !strings.HasPrefix(ver, "2.") {
		return contentError(problem(v2.ErrUnsupportedVersionID, "MSH-12", "only HL7 version 2 messages are accepted"))
	}
	r := &run{h: h, ctx: ctx, st: h.cfg.Store, sender: sender, actor: "interface:" + sender, key: key,
		label: typ + "^" + trig + " message " + key.ControlID, res: accept()}
	switch typ {
	case "ADT":
		switch {
		case slices.Contains(adtPatient, trig):
			r.adtPatient(msg)
		case slices.Contains(adtMerge, trig):
			r.adtMerge(msg)
		case slices.Contains(adtCancel, trig):
			r.adtVisitCancelled(msg, trig)
		case slices.Contains(adtUnused, trig):
			r.res.note("ADT^%s carries nothing this record keeps: accepted, nothing changed", trig)
		default:
			return contentError(problem(v2.ErrUnsupportedEventCode, "MSH-9.2", "ADT trigger %q is not supported", trig))
		}
	case "SIU":
		switch {
		case slices.Contains(siuBook, trig) || slices.Contains(siuCancel, trig):
			r.siu(msg, trig)
		case slices.Contains(siuUnused, trig):
			r.res.note("SIU^%s is not about a booking this record plans: accepted, nothing changed", trig)
		default:
			return contentError(problem(v2.ErrUnsupportedEventCode, "MSH-9.2", "SIU trigger %q is not supported", trig))
		}
	default:
		return contentError(problem(v2.ErrUnsupportedMessageType, "MSH-9", "message type %q is not supported (ADT and SIU are)", typ))
	}
	return r.res
}

// fail ends the run with err: a content problem, a refusal by the
// record's rules (AE), or a failure of the database (AR).
func (r *run) fail(err error) {
	var p *Problem
	var inv *charting.InvalidError
	var pre *charting.PreconditionError
	var refused *store.RefusedError
	switch {
	case errors.As(err, &p):
		r.res.code, r.res.problem = v2.AE, p
	case errors.As(err, &inv):
		var parts []string
		for _, v := range inv.Violations {
			d := v.Description
			if strings.HasSuffix(v.Field, "birth_date") {
				d = "not a plausible birth date for the case" // the value is patient data
			}
			parts = append(parts, hl7Field(v.Field)+" ("+v.Field+"): "+d)
		}
		r.res.code, r.res.problem = v2.AE, problem(v2.ErrDataType, "", "refused by the record's rules: %s", strings.Join(parts, "; "))
	case errors.As(err, &pre):
		r.res.code, r.res.problem = v2.AE, problem(v2.ErrApplicationRecordLocked, "", "%s", pre.Reason)
	case errors.As(err, &refused):
		r.res.code, r.res.problem = v2.AE, problem(v2.ErrDataType, "", "the database refused the data: %s", refused.Reason)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		r.res.code, r.res.problem = v2.AR, problem(v2.ErrApplicationInternal, "", "the receiver is stopping; resend later")
	default:
		r.h.log.Error("inbound: processing failed", "sender", r.sender, "control_id", r.key.ControlID, "error", err.Error())
		r.res.code, r.res.problem = v2.AR, problem(v2.ErrApplicationInternal, "", "the record cannot be written now; resend later")
	}
}

// hl7Field names where a details field comes from in the messages.
func hl7Field(f string) string {
	switch {
	case strings.HasSuffix(f, "patient.mrn"), strings.HasSuffix(f, "mrn_assigning_authority"):
		return "PID-3"
	case strings.HasSuffix(f, "family_name"), strings.HasSuffix(f, "given_name"):
		return "PID-5"
	case strings.HasSuffix(f, "birth_date"):
		return "PID-7"
	case strings.HasSuffix(f, "height_cm"), strings.HasSuffix(f, "weight_kg"), strings.HasSuffix(f, "bsa_m2"):
		return "OBX"
	case strings.Contains(f, "team."):
		return "AIP-3"
	case strings.HasSuffix(f, "encounter_id"):
		return "PV1-19"
	case strings.Contains(f, "procedure."):
		return "AIS-3"
	case strings.HasSuffix(f, "scheduled_start"):
		return "AIS-4"
	case f == "room" || f == "site":
		return "AIL-3"
	}
	return "message"
}

func (r *run) reason() string { return "EHR: " + r.label }

func (r *run) change(c store.InboundChange) {
	r.res.outcome.Changes = append(r.res.outcome.Changes, c)
}

// keptOut records what the record's rules kept out of a case, and says so
// in the ACK (ERR severity W).
func (r *run) keptOut(c *charting.Case, fields []string, why string) {
	r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundNotApplied, Fields: fields, Detail: why})
	w := fmt.Sprintf("case %s: %s not changed: %s", c.ID, strings.Join(fields, ", "), why)
	if r.res.warn != "" {
		w = r.res.warn + "; " + w
	}
	r.res.warn = w
}

// updateDetails writes a new details version made by fn from the case's
// current details, retrying when the case moved on meanwhile. It returns
// the fields changed (none: nothing written).
func (r *run) updateDetails(c *charting.Case, fn func(d *charting.Details) []string) (*charting.Case, []string, error) {
	for attempt := 0; ; attempt++ {
		d := cloneDetails(c.Details)
		changed := fn(&d)
		if len(changed) == 0 {
			return c, nil, nil
		}
		out, err := r.st.UpdateCaseDetails(r.ctx, r.actor, c.ID, c.DetailsVersion, d, r.reason())
		if errors.Is(err, charting.ErrStale) && attempt < 3 {
			if c, err = r.st.GetCase(r.ctx, c.ID); err != nil {
				return nil, nil, err
			}
			continue
		}
		return out, changed, err
	}
}

func cloneDetails(d charting.Details) charting.Details {
	b, err := json.Marshal(d)
	if err != nil {
		panic("inbound: details do not encode: " + err.Error()) // plain structs: cannot happen
	}
	var out charting.Details
	if err := json.Unmarshal(b, &out); err != nil {
		panic("inbound: details do not decode: " + err.Error())
	}
	return out
}

// applyPatient sets the patient fields p gives (identity, sex, and with
// measures its height and weight) and returns the fields that changed.
func applyPatient(d *charting.Details, p *PatientInfo, measures bool) []string {
	var ch []string
	set := func(field string, dst *string, v string) {
		if v != "" && *dst != v {
			*dst = v
			ch = append(ch, field)
		}
	}
	set("patient.mrn", &d.Patient.MRN, p.ID.MRN)
	set("patient.mrn_assigning_authority", &d.Patient.MRNAssigningAuthority, p.ID.Authority)
	set("patient.family_name", &d.Patient.FamilyName, p.FamilyName)
	set("patient.given_name", &d.Patient.GivenName, p.GivenName)
	set("patient.birth_date", &d.Patient.BirthDate, p.BirthDate)
	set("patient.sex", &d.Patient.Sex, p.Sex)
	if measures {
		if p.HasHeight && d.Patient.HeightCm != p.HeightCm {
			d.Patient.HeightCm = p.HeightCm
			ch = append(ch, "patient.height_cm")
		}
		if p.HasWeight && d.Patient.WeightKg != p.WeightKg {
			d.Patient.WeightKg = p.WeightKg
			ch = append(ch, "patient.weight_kg")
		}
	}
	return ch
}

// measuresDiffer names the body measures p gives that differ from d's.
func measuresDiffer(d charting.Details, p *PatientInfo) []string {
	var out []string
	if p.HasHeight && d.Patient.HeightCm != p.HeightCm {
		out = append(out, "patient.height_cm")
	}
	if p.HasWeight && d.Patient.WeightKg != p.WeightKg {
		out = append(out, "patient.weight_kg")
	}
	return out
}

// identityDiffers reports whether p names an identity other than eff's.
func identityDiffers(eff charting.Patient, p *PatientInfo) bool {
	return p.ID.MRN != "" && (p.ID.MRN != eff.MRN || p.ID.Authority != eff.MRNAssigningAuthority) ||
		p.FamilyName != "" && p.FamilyName != eff.FamilyName ||
		p.GivenName != "" && p.GivenName != eff.GivenName ||
		p.BirthDate != "" && p.BirthDate != eff.BirthDate
}

// reconcile appends an identity link to a case that has started
// charting, when p names another identity than its effective one.
func (r *run) reconcile(c *charting.Case, eff charting.Patient, p *PatientInfo) error {
	if !identityDiffers(eff, p) {
		return nil
	}
	u := store.IdentityUpdate{MRN: p.ID.MRN, AssigningAuthority: p.ID.Authority, FamilyName: p.FamilyName,
		GivenName: p.GivenName, BirthDate: p.BirthDate, Reason: r.reason()}
	if u.MRN == "" {
		u.MRN, u.AssigningAuthority = eff.MRN, eff.MRNAssigningAuthority
	}
	if u.MRN == "" || u.AssigningAuthority == "" {
		r.keptOut(c, []string{"patient identity"}, "a name or birth date without a medical record number cannot be reconciled")
		return nil
	}
	rec, err := r.st.ReconcileIdentity(r.ctx, r.actor, c.ID, u)
	if err != nil {
		return err
	}
	r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundIdentity, LedgerSeq: rec.Seq, Fields: []string{"patient identity"}})
	return nil
}

// applyToCase brings what an ADT message says about the patient into one
// case: a planned case gets a details version (identity, sex, body
// measures); a case that has started charting an identity link when the
// identity differs, and keeps its body measures (they feed its BSA, flows
// and metrics, measured in the room).
func (r *run) applyToCase(c *charting.Case, eff charting.Patient, p *PatientInfo) error {
	if c.Status == charting.StatusPlanned {
		out, fields, err := r.updateDetails(c, func(d *charting.Details) []string { return applyPatient(d, p, true) })
		if err != nil {
			return err
		}
		if len(fields) == 0 {
			r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundUnchanged})
			return nil
		}
		r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundDetails, LedgerSeq: out.Head.Seq, Fields: fields})
		return nil
	}
	before := len(r.res.outcome.Changes)
	if err := r.reconcile(c, eff, p); err != nil {
		return err
	}
	if f := measuresDiffer(c.Details, p); len(f) > 0 {
		r.keptOut(c, f, fmt.Sprintf("the case is %s: its body measures stay as charted", c.Status))
	}
	if len(r.res.outcome.Changes) == before {
		r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundUnchanged})
	}
	return nil
}

// checkPatient applies the record's own rules for patient details (text,
// birth date format, the widest body-measure limits) before anything of
// the message is kept, in the patient index included.
func checkPatient(p *PatientInfo) error {
	d := charting.Details{Patient: charting.Patient{MRN: p.ID.MRN, MRNAssigningAuthority: p.ID.Authority, FamilyName: p.FamilyName,
		GivenName: p.GivenName, BirthDate: p.BirthDate, Sex: p.Sex, HeightCm: p.HeightCm, WeightKg: p.WeightKg}}
	var v charting.Violations
	d.Validate("details.", &v)
	return v.Err()
}

// loadCase reads a case and its effective identity.
func (r *run) loadCase(id uuid.UUID) (*charting.Case, charting.Patient, error) {
	c, err := r.st.GetCase(r.ctx, id)
	if err != nil {
		return nil, charting.Patient{}, err
	}
	eff, _, err := r.st.EffectiveIdentity(r.ctx, c)
	return c, eff, err
}

// indexPatient merges p into the patient index row of its identifier and
// queues the write.
func (r *run) indexPatient(p *PatientInfo) {
	if p.ID.MRN == "" {
		return
	}
	row := r.indexed(p.ID)
	if row == nil {
		row = &store.InboundPatient{AssigningAuthority: p.ID.Authority, MRN: p.ID.MRN}
	}
	for _, f := range []struct {
		dst *string
		v   string
	}{{&row.FamilyName, p.FamilyName}, {&row.GivenName, p.GivenName}, {&row.BirthDate, p.BirthDate}, {&row.Sex, p.Sex}, {&row.EncounterID, p.VisitNumber}} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	if p.HasHeight {
		row.HeightCm = p.HeightCm
	}
	if p.HasWeight {
		row.WeightKg = p.WeightKg
	}
	row.UpdatedAt = charting.NormTime(r.h.now())
	r.queuePatient(*row)
}

// indexed returns the patient index row of an identifier as this message
// has left it so far, or nil.
func (r *run) indexed(id PatientID) *store.InboundPatient {
	for i := len(r.res.writes.Patients) - 1; i >= 0; i-- {
		if w := r.res.writes.Patients[i]; w.AssigningAuthority == id.Authority && w.MRN == id.MRN {
			return &w
		}
	}
	row, err := r.h.ib.InboundPatient(r.ctx, id.Authority, id.MRN)
	if err != nil {
		return nil // not known yet (or unreadable: the message's own data still applies)
	}
	return row
}

func (r *run) queuePatient(p store.InboundPatient) {
	ws := r.res.writes.Patients[:0]
	for _, w := range r.res.writes.Patients {
		if w.AssigningAuthority != p.AssigningAuthority || w.MRN != p.MRN {
			ws = append(ws, w)
		}
	}
	r.res.writes.Patients = append(ws, p)
}

// withIndex completes what a schedule message says about its patient with
// what the ADT feed said before: the surviving identifier of a merged one,
// and names, birth date, sex and body measures the message leaves out.
func (r *run) withIndex(p *PatientInfo) *PatientInfo {
	if p == nil || p.ID.MRN == "" {
		return p
	}
	out := *p
	row := r.indexed(p.ID)
	if row != nil && row.MergedIntoMRN != "" {
		out.ID = PatientID{MRN: row.MergedIntoMRN, Authority: row.MergedIntoAuthority}
		row = r.indexed(out.ID)
	}
	if row == nil {
		return &out
	}
	for _, f := range []struct {
		dst *string
		v   string
	}{{&out.FamilyName, row.FamilyName}, {&out.GivenName, row.GivenName}, {&out.BirthDate, row.BirthDate}, {&out.Sex, row.Sex}} {
		if *f.dst == "" {
			*f.dst = f.v
		}
	}
	if !out.HasHeight && row.HeightCm > 0 {
		out.HeightCm, out.HasHeight = row.HeightCm, true
	}
	if !out.HasWeight && row.WeightKg > 0 {
		out.WeightKg, out.HasWeight = row.WeightKg, true
	}
	return &out
}

// adtPatient: A01, A04, A05, A08, A28, A31. The patient index takes the
// news; the cases of the configured sites whose identity is this patient
// get it (planned: a details version; charting or signed: an identity
// link when it differs); and a case without an MRN whose visit number is
// this message's visit gets the identity, which releases its held
// deliveries.
func (r *run) adtPatient(m *v2.Message) {
	p, prob := patientFrom(m, r.h.opts, true)
	if prob != nil {
		r.fail(prob)
		return
	}
	if err := checkPatient(p); err != nil {
		r.fail(err)
		return
	}
	r.indexPatient(p)
	handled := map[uuid.UUID]bool{}
	ids, err := r.h.ib.CasesByMRN(r.ctx, r.h.sites, p.ID.MRN)
	if err != nil {
		r.fail(err)
		return
	}
	for _, id := range ids {
		c, eff, err := r.loadCase(id)
		if err != nil {
			r.fail(err)
			return
		}
		if eff.MRN != p.ID.MRN || eff.MRNAssigningAuthority != p.ID.Authority {
			continue // a former MRN of the case, or another authority's number
		}
		handled[id] = true
		if err := r.applyToCase(c, eff, p); err != nil {
			r.fail(err)
			return
		}
	}
	if p.VisitNumber == "" {
		if len(handled) == 0 {
			r.res.note("no case of the configured sites names this patient: the patient index was updated")
		}
		return
	}
	ids, err = r.h.ib.CasesByEncounter(r.ctx, r.h.sites, p.VisitNumber)
	if err != nil {
		r.fail(err)
		return
	}
	for _, id := range ids {
		if handled[id] {
			continue
		}
		c, eff, err := r.loadCase(id)
		if err != nil {
			r.fail(err)
			return
		}
		switch {
		case eff.MRN == "":
			// The late MRN: a case charted before the patient was
			// registered, found by its visit number.
			if err := r.applyToCase(c, eff, p); err != nil {
				r.fail(err)
				return
			}
		case eff.MRN != p.ID.MRN || eff.MRNAssigningAuthority != p.ID.Authority:
			r.keptOut(c, []string{"patient identity"}, "the case names another patient for this visit number; check it by hand")
		}
		handled[id] = true
	}
	if len(handled) == 0 {
		r.res.note("no case of the configured sites names this patient or visit: the patient index was updated")
	}
}

// adtMerge: A40 (merge patient identifier list), A34, A47. Every case whose
// identity is a prior identifier gets the surviving one (planned: a
// details version; otherwise an identity link, covered by the ledger and
// shown in the exports), and the patient index remembers the merge.
func (r *run) adtMerge(m *v2.Message) {
	merges, prob := mergesFrom(m, r.h.opts)
	if prob != nil {
		r.fail(prob)
		return
	}
	for _, mg := range merges {
		if err := checkPatient(mg.Surviving); err != nil {
			r.fail(err)
			return
		}
	}
	found := 0
	for _, mg := range merges {
		ids, err := r.h.ib.CasesByMRN(r.ctx, r.h.sites, mg.Prior.MRN)
		if err != nil {
			r.fail(err)
			return
		}
		for _, id := range ids {
			c, eff, err := r.loadCase(id)
			if err != nil {
				r.fail(err)
				return
			}
			if eff.MRN != mg.Prior.MRN || eff.MRNAssigningAuthority != mg.Prior.Authority {
				continue
			}
			found++
			if err := r.applyToCase(c, eff, mg.Surviving); err != nil {
				r.fail(err)
				return
			}
		}
		r.indexPatient(mg.Surviving)
		prior := r.indexed(mg.Prior)
		if prior == nil {
			prior = &store.InboundPatient{AssigningAuthority: mg.Prior.Authority, MRN: mg.Prior.MRN}
		}
		prior.MergedIntoAuthority, prior.MergedIntoMRN, prior.UpdatedAt = mg.Surviving.ID.Authority, mg.Surviving.ID.MRN, charting.NormTime(r.h.now())
		r.queuePatient(*prior)
	}
	if found == 0 {
		r.res.note("no case of the configured sites names a prior identifier: the merge was kept in the patient index")
	}
}

// adtVisitCancelled: A11 (cancel admit/visit), A13 (cancel discharge). The
// record keeps what happened: the cases naming the visit are listed in
// the outcome, not changed.
func (r *run) adtVisitCancelled(m *v2.Message, trig string) {
	p, prob := patientFrom(m, r.h.opts, false)
	if prob != nil {
		r.fail(prob)
		return
	}
	if p.VisitNumber == "" {
		r.res.note("ADT^%s without a visit number (PV1-19): nothing to look up", trig)
		return
	}
	ids, err := r.h.ib.CasesByEncounter(r.ctx, r.h.sites, p.VisitNumber)
	if err != nil {
		r.fail(err)
		return
	}
	for _, id := range ids {
		r.change(store.InboundChange{CaseID: id, Action: store.InboundNoted, Detail: "ADT^" + trig + " for this case's visit: the record is not changed"})
	}
	if len(ids) == 0 {
		r.res.note("no case of the configured sites names this visit")
	}
}

// siu: S12 (new booking), S13 (rescheduled), S14 (modified), S15
// (cancelled), S17 (deleted), for the configured rooms.
func (r *run) siu(m *v2.Message, trig string) {
	a, prob := appointmentFrom(m, r.h.opts, trig == "S12" || trig == "S13")
	if prob != nil {
		r.fail(prob)
		return
	}
	r.schedule(a, trig != "S15" && trig != "S17", cancelReason(a, trig), "AIL-3")
}

// schedule applies a booking (book) or its cancellation to the case that
// holds it; the SIU and FHIR Appointment paths share it. where names the
// field of the location for errors.
func (r *run) schedule(a *Appointment, book bool, cancelWhy, where string) {
	site, room := r.h.configuredPlace(a.Places)
	bk, err := r.booking(site, a.ID)
	if err != nil {
		r.fail(err)
		return
	}
	if bk == nil {
		switch {
		case !book:
			r.res.note("unknown appointment: nothing to cancel")
		case room != "":
			r.plan(a, site, room, nil)
		case len(a.Places) == 0:
			r.fail(problem(v2.ErrRequiredFieldMissing, where, "the location of a booking this receiver does not know is required"))
		default:
			r.res.note("the booking's room is not one this server keeps: ignored")
		}
		return
	}
	c, err := r.current(bk.CaseID)
	if err != nil {
		r.fail(err)
		return
	}
	cancelled := c.Details.Booking != nil && c.Details.Booking.Cancelled
	switch {
	case !book:
		r.cancel(c, cancelWhy)
	case cancelled && room != "":
		r.plan(a, site, room, nil) // booked again after a cancellation
	case cancelled:
		r.res.note("the booking was cancelled and its new room is not one this server keeps: ignored")
	case room == "" && len(a.Places) > 0:
		// Moved to a room this server does not keep.
		r.cancel(c, "moved to a room this server does not keep")
	default:
		r.update(c, a, site, room)
	}
}

func cancelReason(a *Appointment, trig string) string {
	what := map[string]string{"S15": "cancelled", "S17": "deleted"}[trig]
	if a.Reason != "" {
		return what + ": " + a.Reason
	}
	return what
}

// configuredPlace returns the first place of the message that is a
// configured room.
func (h *Handler) configuredPlace(places [][2]string) (site, room string) {
	for _, p := range places {
		if h.rooms[p] {
			return p[0], p[1]
		}
	}
	return "", ""
}

// booking returns the booking of an appointment: at site first (the
// configured room the message names), then at the other configured sites
// (a booking moved between sites, or a message naming no room); nil when
// none.
func (r *run) booking(site, appointmentID string) (*store.InboundBooking, error) {
	sites := r.h.sites
	if site != "" {
		sites = append([]string{site}, slices.DeleteFunc(slices.Clone(r.h.sites), func(s string) bool { return s == site })...)
	}
	for _, s := range sites {
		for i := len(r.res.writes.Bookings) - 1; i >= 0; i-- {
			if w := r.res.writes.Bookings[i]; w.Site == s && w.AppointmentID == appointmentID {
				return &w, nil
			}
		}
		bk, err := r.h.ib.InboundBooking(r.ctx, s, appointmentID)
		if errors.Is(err, charting.ErrNotFound) {
			continue
		}
		return bk, err
	}
	return nil, nil
}

// current follows a booking's case to the case that replaced it, if it was
// moved (a resent reschedule finds the move already made).
func (r *run) current(id uuid.UUID) (*charting.Case, error) {
	c, err := r.st.GetCase(r.ctx, id)
	for i := 0; err == nil && i < 100 && c.Details.Booking != nil && c.Details.Booking.ReplacedBy != ""; i++ {
		next, perr := uuid.Parse(c.Details.Booking.ReplacedBy)
		if perr != nil {
			break
		}
		c, err = r.st.GetCase(r.ctx, next)
	}
	return c, err
}

// caseID derives the id of a case planned by this message.
func (r *run) caseID(appointmentID, what string) uuid.UUID {
	k := r.key
	return uuid.NewSHA1(caseNamespace, []byte(strings.Join([]string{k.Sender, k.SendingApplication, k.SendingFacility, k.ControlID, appointmentID, what}, "\x00")))
}

// scheduleDetails sets what an appointment says about the team, the
// procedure and the visit; planned cases also take its perfusionists.
func scheduleDetails(d *charting.Details, a *Appointment, planned bool) []string {
	var ch []string
	staff := func(field string, dst *charting.StaffMember, v charting.StaffMember) {
		if v != (charting.StaffMember{}) && *dst != v {
			*dst = v
			ch = append(ch, field)
		}
	}
	staff("team.surgeon", &d.Team.Surgeon, a.Surgeon)
	staff("team.anesthesiologist", &d.Team.Anesthesiologist, a.Anesthesiologist)
	if planned && len(a.Perfusionists) > 0 && !slices.Equal(d.Team.Perfusionists, a.Perfusionists) {
		d.Team.Perfusionists = slices.Clone(a.Perfusionists)
		ch = append(ch, "team.perfusionists")
	}
	set := func(field string, dst *string, v string) {
		if v != "" && *dst != v {
			*dst = v
			ch = append(ch, field)
		}
	}
	set("procedure.description", &d.Procedure.Description, a.Procedure.Description)
	set("procedure.snomed_code", &d.Procedure.SnomedCode, a.Procedure.SnomedCode)
	set("procedure.encounter_id", &d.Procedure.EncounterID, a.Procedure.EncounterID)
	return ch
}

// plan creates the planned case of a booking: from the appointment, its
// patient (completed from the patient index), and — when it replaces a
// moved booking's case — that case's details (the circuit and prime a
// perfusionist prepared stay with the booking).
func (r *run) plan(a *Appointment, site, room string, from *charting.Case) *charting.Case {
	var d charting.Details
	kind, what := charting.KindCPB, "planned"
	if from != nil {
		d, kind, what = cloneDetails(from.Details), from.Kind, "moved from "+from.ID.String()
	}
	if a.ECMO {
		kind = charting.KindECMO
	}
	d.Booking = &charting.Booking{AppointmentID: a.ID, Sender: r.sender}
	scheduleDetails(&d, a, true)
	if p := r.withIndex(a.Patient); p != nil && p.ID.MRN != "" {
		applyPatient(&d, p, true)
	}
	start := a.Start
	if start.IsZero() && from != nil {
		start = from.ScheduledStart
	}
	if start.IsZero() {
		r.fail(problem(v2.ErrRequiredFieldMissing, "AIS-4", "the scheduled start of a booking this receiver does not know is required (AIS-4, TQ1-7 or SCH-11.4)"))
		return nil
	}
	id := r.caseID(a.ID, what)
	if c, err := r.st.GetCase(r.ctx, id); err == nil {
		// Planned by this message before (a resend after a lost ACK, a
		// replay): the booking is its.
		r.res.writes.Bookings = append(r.res.writes.Bookings, store.InboundBooking{Site: c.Site, AppointmentID: a.ID, CaseID: c.ID, UpdatedAt: charting.NormTime(r.h.now())})
		r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundUnchanged, Detail: "planned by this message before"})
		return c
	} else if !errors.Is(err, charting.ErrNotFound) {
		r.fail(err)
		return nil
	}
	c, err := r.st.CreateCase(r.ctx, r.actor, store.NewCase{ID: id, Kind: kind, Site: site, Room: room, ScheduledStart: start, Details: d})
	if errors.Is(err, charting.ErrConflict) {
		// This message planned it before, from other news (a replay after
		// the patient index moved on): keep that case and bring it up to
		// date.
		if c, err = r.st.GetCase(r.ctx, id); err == nil {
			r.res.writes.Bookings = append(r.res.writes.Bookings, store.InboundBooking{Site: site, AppointmentID: a.ID, CaseID: id, UpdatedAt: charting.NormTime(r.h.now())})
			r.update(c, a, site, room)
			return c
		}
	}
	if err != nil {
		r.fail(err)
		return nil
	}
	r.res.writes.Bookings = append(r.res.writes.Bookings, store.InboundBooking{Site: site, AppointmentID: a.ID, CaseID: c.ID, UpdatedAt: charting.NormTime(r.h.now())})
	r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundCreated, LedgerSeq: c.Head.Seq})
	return c
}

// update brings a booked case up to date with an S12/S13/S14. A planned
// case moved to another room or start is planned again as a new case (the
// header of a case, its room and start, is part of its first ledger link
// and never changes); otherwise a planned case gets a details version.
// A case that has started charting gets an identity link when the patient
// differs and, unless signed, a details version for the team, procedure
// and visit, with the reason; its room, start and body measures stay as
// charted, and the ACK says so.
func (r *run) update(c *charting.Case, a *Appointment, site, room string) {
	moved := room != "" && (room != c.Room || site != c.Site) || !a.Start.IsZero() && !a.Start.Equal(c.ScheduledStart)
	p := r.withIndex(a.Patient)
	if c.Status == charting.StatusPlanned {
		if moved {
			if room == "" {
				site, room = c.Site, c.Room
			}
			next := r.plan(a, site, room, c)
			if next == nil {
				return
			}
			out, fields, err := r.updateDetails(c, func(d *charting.Details) []string {
				b := charting.Booking{AppointmentID: a.ID, Sender: r.sender, Cancelled: true, Reason: "rescheduled", ReplacedBy: next.ID.String()}
				if d.Booking != nil && *d.Booking == b {
					return nil
				}
				d.Booking = &b
				return []string{"booking"}
			})
			if err != nil {
				r.fail(err)
				return
			}
			if len(fields) > 0 {
				r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundReplaced, LedgerSeq: out.Head.Seq, Fields: fields,
					Detail: "moved to another room or start: case " + next.ID.String() + " holds the booking"})
			}
			return
		}
		out, fields, err := r.updateDetails(c, func(d *charting.Details) []string {
			ch := scheduleDetails(d, a, true)
			if p != nil && p.ID.MRN != "" {
				ch = append(ch, applyPatient(d, p, true)...)
			}
			return ch
		})
		if err != nil {
			r.fail(err)
			return
		}
		if len(fields) == 0 {
			r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundUnchanged})
		} else {
			r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundDetails, LedgerSeq: out.Head.Seq, Fields: fields})
		}
		r.res.writes.Bookings = append(r.res.writes.Bookings, store.InboundBooking{Site: c.Site, AppointmentID: a.ID, CaseID: c.ID, UpdatedAt: charting.NormTime(r.h.now())})
		return
	}

	// The case has started charting.
	before, applied := len(r.res.outcome.Changes), 0
	if p != nil && p.ID.MRN != "" {
		eff, _, err := r.st.EffectiveIdentity(r.ctx, c)
		if err != nil {
			r.fail(err)
			return
		}
		if err := r.reconcile(c, eff, p); err != nil {
			r.fail(err)
			return
		}
		applied = len(r.res.outcome.Changes) - before
	}
	var kept []string
	if c.Status == charting.StatusSigned {
		d := cloneDetails(c.Details)
		kept = scheduleDetails(&d, a, false)
	} else {
		out, fields, err := r.updateDetails(c, func(d *charting.Details) []string { return scheduleDetails(d, a, false) })
		if err != nil {
			r.fail(err)
			return
		}
		if len(fields) > 0 {
			applied++
			r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundDetails, LedgerSeq: out.Head.Seq, Fields: fields})
		}
	}
	if moved {
		kept = append(kept, "room", "scheduled_start")
	}
	if p != nil {
		kept = append(kept, measuresDiffer(c.Details, p)...)
	}
	switch {
	case len(kept) > 0 && applied == 0:
		// Nothing of what the message asks could be done: a content error
		// the interface team must see, naming the case and why.
		r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundNotApplied, Fields: kept, Detail: whyKept(c)})
		r.res.code, r.res.problem = v2.AE, problem(v2.ErrApplicationRecordLocked, "", "case %s: %s not changed: %s", c.ID, strings.Join(kept, ", "), whyKept(c))
	case len(kept) > 0:
		r.keptOut(c, kept, whyKept(c))
	case len(r.res.outcome.Changes) == before:
		r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundUnchanged})
	}
	r.res.writes.Bookings = append(r.res.writes.Bookings, store.InboundBooking{Site: c.Site, AppointmentID: a.ID, CaseID: c.ID, UpdatedAt: charting.NormTime(r.h.now())})
}

func whyKept(c *charting.Case) string {
	if c.Status == charting.StatusSigned {
		return "the case is signed: its details no longer change (an addendum can say what the schedule changed)"
	}
	return fmt.Sprintf("the case is %s: its room, start and body measures stay as charted", strings.ReplaceAll(string(c.Status), "_", " "))
}

// cancel cancels a planned case's booking: a details version marks it
// cancelled (the case stays planned, with nothing charted). A case that
// has started charting is not cancelled: AE, naming it.
func (r *run) cancel(c *charting.Case, why string) {
	if c.Status != charting.StatusPlanned {
		r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundNotApplied, Fields: []string{"booking"}, Detail: "not cancelled: the case has started charting"})
		r.res.code, r.res.problem = v2.AE, problem(v2.ErrApplicationRecordLocked, "", "case %s is %s: a case that has started charting is not cancelled from the schedule; the perfusionist closes it",
			c.ID, strings.ReplaceAll(string(c.Status), "_", " "))
		return
	}
	out, fields, err := r.updateDetails(c, func(d *charting.Details) []string {
		if d.Booking != nil && d.Booking.Cancelled {
			return nil
		}
		b := charting.Booking{Sender: r.sender, Cancelled: true, Reason: why}
		if d.Booking != nil {
			b.AppointmentID = d.Booking.AppointmentID
		}
		d.Booking = &b
		return []string{"booking"}
	})
	if err != nil {
		r.fail(err)
		return
	}
	if len(fields) == 0 {
		r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundUnchanged, Detail: "already cancelled"})
		return
	}
	r.change(store.InboundChange{CaseID: c.ID, Action: store.InboundCancelled, LedgerSeq: out.Head.Seq, Fields: fields})
}
