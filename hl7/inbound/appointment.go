package inbound

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"perfusion/charting"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
)

// The FHIR twin of SIU: an R4 Appointment, submitted over gRPC by the
// interface engine (InboundService.SubmitAppointment) for one of its
// sites, plans, updates or cancels a case with the same rules as S12, S14
// and S15. It is journaled like an HL7 message: type "FHIR^Appointment",
// sending application "FHIR", sending facility the site, control id
// "Appointment/<id>/_history/<versionId>" (or the content's hash when the
// resource has no version), so a resubmitted version changes nothing.

// AppointmentMessageType is the journal's type of a FHIR Appointment.
const AppointmentMessageType = "FHIR^Appointment"

// MaxAppointmentBytes bounds a submitted Appointment.
const MaxAppointmentBytes = 256 << 10

type fhirReference struct {
	Reference  string `json:"reference"`
	Display    string `json:"display"`
	Identifier struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
}

type fhirCodeable struct {
	Text   string `json:"text"`
	Coding []struct {
		System  string `json:"system"`
		Code    string `json:"code"`
		Display string `json:"display"`
	} `json:"coding"`
}

type fhirAppointment struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         struct {
		VersionID string `json:"versionId"`
	} `json:"meta"`
	Identifier []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
	Status            string         `json:"status"`
	CancelationReason *fhirCodeable  `json:"cancelationReason"`
	ServiceType       []fhirCodeable `json:"serviceType"`
	Description       string         `json:"description"`
	Start             string         `json:"start"`
	Participant       []struct {
		Type  []fhirCodeable `json:"type"`
		Actor fhirReference  `json:"actor"`
	} `json:"participant"`
}

const snomedSystem = "http://snomed.info/sct"

// appointmentFromFHIR reads an R4 Appointment. book is false for a
// cancelled (or no-show, or entered-in-error) one.
func appointmentFromFHIR(raw []byte, o extractOptions, systems map[string]string) (*Appointment, bool, string, *Problem) {
	var f fhirAppointment
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&f); err != nil || dec.More() {
		return nil, false, "", problem(v2.ErrDataType, "Appointment", "not a FHIR JSON resource")
	}
	if f.ResourceType != "Appointment" {
		return nil, false, "", problem(v2.ErrUnsupportedMessageType, "Appointment.resourceType", "must be Appointment")
	}
	a := &Appointment{Patient: &PatientInfo{}}
	for _, id := range f.Identifier {
		if v := strings.TrimSpace(id.Value); v != "" {
			a.ID = v
			break
		}
	}
	if a.ID == "" {
		a.ID = strings.TrimSpace(f.ID)
	}
	if a.ID == "" || len([]rune(a.ID)) > 200 {
		return nil, false, "", problem(v2.ErrRequiredFieldMissing, "Appointment.identifier", "an identifier (or id) of at most 200 characters is required")
	}
	book := true
	switch f.Status {
	case "proposed", "pending", "booked", "arrived", "checked-in", "waitlist":
	case "cancelled", "noshow", "entered-in-error":
		book = false
	case "fulfilled":
		return nil, false, "", problem(v2.ErrTableValueNotFound, "Appointment.status", "a fulfilled appointment changes no planned case")
	default:
		return nil, false, "", problem(v2.ErrTableValueNotFound, "Appointment.status", "not an R4 appointment status")
	}
	why := map[bool]string{true: "", false: f.Status}[book]
	if f.CancelationReason != nil {
		if t := codeableText(*f.CancelationReason); t != "" && !book {
			why += ": " + t
		}
	}
	if s := strings.TrimSpace(f.Start); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return nil, false, "", problem(v2.ErrDataType, "Appointment.start", "must be an instant with its zone (RFC 3339)")
		}
		a.Start = t.UTC()
	}
	if book && a.Start.IsZero() {
		return nil, false, "", problem(v2.ErrRequiredFieldMissing, "Appointment.start", "the scheduled start is required")
	}
	var descs []string
	for _, st := range f.ServiceType {
		if t := codeableText(st); t != "" {
			descs = append(descs, t)
		}
		for _, c := range st.Coding {
			if c.System == snomedSystem && c.Code != "" {
				if a.Procedure.SnomedCode == "" {
					a.Procedure.SnomedCode = c.Code
				}
				if c.Code == "233573008" {
					a.ECMO = true
				}
			}
		}
	}
	if len(descs) == 0 && f.Description != "" {
		descs = append(descs, strings.TrimSpace(f.Description))
	}
	a.Procedure.Description = strings.Join(descs, "; ")
	if strings.Contains(strings.ToUpper(a.Procedure.Description), "ECMO") {
		a.ECMO = true
	}
	reverse := map[string]string{}
	for auth, sys := range systems {
		reverse[sys] = auth
	}
	for i, p := range f.Participant {
		where := fmt.Sprintf("Appointment.participant[%d]", i)
		kind, _, _ := strings.Cut(p.Actor.Reference, "/")
		switch kind {
		case "Patient":
			id := p.Actor.Identifier
			if id.Value == "" {
				continue // a bare reference: the EHR's id, not an MRN
			}
			auth := o.DefaultAuthority
			if id.System != "" {
				var ok bool
				if auth, ok = reverse[id.System]; !ok {
					return nil, false, "", problem(v2.ErrUnknownKeyIdentifier, where+".actor.identifier.system", "no assigning authority is configured for this identifier system (--fhir-mrn-systems)")
				}
			}
			if auth == "" {
				return nil, false, "", problem(v2.ErrRequiredFieldMissing, where+".actor.identifier.system", "the MRN's identifier system is required (no default authority is configured)")
			}
			if len([]rune(id.Value)) > 64 {
				return nil, false, "", problem(v2.ErrDataType, where+".actor.identifier.value", "longer than 64 characters")
			}
			a.Patient.ID, a.Patient.HasPID = PatientID{MRN: strings.TrimSpace(id.Value), Authority: auth}, true
		case "Location":
			room := strings.TrimSpace(p.Actor.Identifier.Value)
			if room == "" {
				room = strings.TrimSpace(p.Actor.Display)
			}
			if room != "" {
				a.Places = append(a.Places, [2]string{"", room})
			}
		case "Practitioner", "PractitionerRole":
			s := charting.StaffMember{StaffID: strings.TrimSpace(p.Actor.Identifier.Value), DisplayName: strings.TrimSpace(p.Actor.Display)}
			if s == (charting.StaffMember{}) {
				continue
			}
			var role []string
			for _, t := range p.Type {
				role = append(role, codeableText(t))
				for _, c := range t.Coding {
					role = append(role, c.Code)
				}
			}
			r := strings.ToUpper(strings.Join(role, " "))
			switch {
			case strings.Contains(r, "SURG") || strings.Contains(r, "PPRF") && a.Surgeon == (charting.StaffMember{}):
				if a.Surgeon == (charting.StaffMember{}) {
					a.Surgeon = s
				}
			case strings.Contains(r, "ANES") || strings.Contains(r, "ANAES"):
				if a.Anesthesiologist == (charting.StaffMember{}) {
					a.Anesthesiologist = s
				}
			case strings.Contains(r, "PERF"):
				a.Perfusionists = append(a.Perfusionists, s)
			}
		}
	}
	return a, book, why, nil
}

func codeableText(c fhirCodeable) string {
	if t := strings.TrimSpace(c.Text); t != "" {
		return t
	}
	for _, cd := range c.Coding {
		if t := strings.TrimSpace(cd.Display); t != "" {
			return t
		}
	}
	for _, cd := range c.Coding {
		if t := strings.TrimSpace(cd.Code); t != "" {
			return t
		}
	}
	return ""
}

// appointmentKey is the journal key of an Appointment submitted by sender
// for site: its id and version, or its content's hash.
func appointmentKey(sender, site string, raw []byte) store.InboundKey {
	var head struct {
		ID   string `json:"id"`
		Meta struct {
			VersionID string `json:"versionId"`
		} `json:"meta"`
	}
	_ = json.Unmarshal(raw, &head)
	ctl := ""
	if head.ID != "" && head.Meta.VersionID != "" && len(head.ID)+len(head.Meta.VersionID) < 150 {
		ctl = "Appointment/" + head.ID + "/_history/" + head.Meta.VersionID
	} else {
		sum := sha256.Sum256(raw)
		ctl = "Appointment/sha256:" + hex.EncodeToString(sum[:12])
	}
	return store.InboundKey{Sender: sender, SendingApplication: "FHIR", SendingFacility: site, ControlID: ctl}
}

// AppointmentAck reads the ACK line of a journaled Appointment: the ACK
// code, the table 0357 code ("" for a plain AA) and the text.
func AppointmentAck(row *store.InboundMessage) (v2.AckCode, v2.ErrorCode, string) {
	parts := strings.SplitN(string(row.Ack), " ", 3)
	code := v2.AckCode(parts[0])
	if len(parts) < 3 {
		return code, "", ""
	}
	return code, v2.ErrorCode(parts[1]), parts[2]
}

// ErrAppointmentReused: the same Appointment id and version came before
// with other content.
var ErrAppointmentReused = errors.New("inbound: this Appointment version was submitted before with different content")

// SubmitAppointment applies a FHIR R4 Appointment submitted by sender (an
// interface principal's name) for site, and returns its journal row: its
// AckCode says what became of it (AA, AE with Error, AR), its Outcome what
// it changed. A resubmission of the same version is answered from the
// journal. An error is returned only when nothing could be journaled.
func (h *Handler) SubmitAppointment(ctx context.Context, sender, site string, raw []byte) (*store.InboundMessage, error) {
	if len(raw) > MaxAppointmentBytes {
		return nil, &Problem{Code: v2.ErrDataType, Where: "Appointment", Text: fmt.Sprintf("larger than %d bytes", MaxAppointmentBytes)}
	}
	if _, ok := h.cfg.Rooms[site]; !ok {
		return nil, &Problem{Code: v2.ErrUnknownKeyIdentifier, Where: "site", Text: "this server keeps no schedule of the site (--hl7-inbound-rooms)"}
	}
	key := appointmentKey(sender, site, raw)
	sum := sha256.Sum256(raw)
	h.mu.Lock()
	defer h.mu.Unlock()
	row := &store.InboundMessage{InboundKey: key, MessageType: AppointmentMessageType, ReceivedAt: charting.NormTime(h.now()), Content: raw, ContentSHA256: sum, Attempts: 1}
	prev, err := h.ib.InboundMessageByKey(ctx, key)
	switch {
	case errors.Is(err, charting.ErrNotFound):
	case err != nil:
		return nil, err
	case prev.ContentSHA256 != sum:
		return nil, ErrAppointmentReused
	case prev.AckCode != string(v2.AR):
		return prev, nil
	default:
		row.ID, row.ReceivedAt, row.Attempts, row.Outcome.Replays = prev.ID, prev.ReceivedAt, prev.Attempts+1, prev.Outcome.Replays
	}
	res := h.processAppointment(ctx, key, raw)
	if err := h.finishAppointment(ctx, row, res); err != nil {
		return nil, err
	}
	return h.ib.InboundMessageByKey(ctx, key)
}

// processAppointment applies an Appointment of key's site.
func (h *Handler) processAppointment(ctx context.Context, key store.InboundKey, raw []byte) *result {
	r := &run{h: h, ctx: ctx, st: h.cfg.Store, sender: key.Sender, actor: "interface:" + key.Sender, key: key,
		label: AppointmentMessageType + " " + key.ControlID, res: accept()}
	a, book, why, prob := appointmentFromFHIR(raw, h.opts, h.cfg.MRNSystems)
	if prob != nil {
		return contentError(prob)
	}
	for i := range a.Places {
		a.Places[i][0] = key.SendingFacility
	}
	r.schedule(a, book, why, "Appointment.participant (Location)")
	return r.res
}

// finishAppointment journals an Appointment's result. The "ACK" kept is a
// line of text: the ACK code, the table 0357 code and the error text
// ("AE 206 case …: …"), read back by AppointmentAck.
func (h *Handler) finishAppointment(ctx context.Context, row *store.InboundMessage, res *result) error {
	row.AckCode, row.Outcome.Changes, row.Outcome.Notes, row.Error = string(res.code), res.outcome.Changes, res.outcome.Notes, ""
	if res.problem != nil {
		row.Error = res.problem.Error()
	} else if res.warn != "" {
		row.Error = res.warn
	}
	ack := string(res.code)
	switch {
	case res.problem != nil:
		ack += " " + string(res.problem.Code) + " " + row.Error
	case res.warn != "":
		ack += " " + string(v2.ErrMessageAccepted) + " " + row.Error
	}
	row.Ack = []byte(ack)
	row.ProcessedAt = charting.NormTime(h.now())
	if res.code != v2.AA {
		res.writes.Patients = nil
	}
	_, err := h.ib.RecordInbound(ctx, row, res.writes)
	if err != nil {
		h.log.Error("inbound journal not written", "sender", row.Sender, "type", row.MessageType, "control_id", row.ControlID, "error", err.Error())
		return err
	}
	h.log.Info("inbound message", "sender", row.Sender, "type", row.MessageType, "control_id", row.ControlID, "ack", row.AckCode, "cases", len(res.outcome.CaseIDs()))
	return nil
}
