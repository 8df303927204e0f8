package v2

import (
	"encoding/base64"
	"errors"
	"strconv"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

// Document triggers (MSH-9.2, EVN-1): T02 carries a new document, T10 a
// new version that replaces the document named in TXA-13.
const (
	TriggerOriginal    = "T02" // original document notification and content
	TriggerReplacement = "T10" // document replacement notification and content
)

// DocumentTypeLOINC is OBX-3 of the document: LOINC 28570-0, procedure note.
var DocumentTypeLOINC = Code{Code: "28570-0", Text: "Procedure note", System: SystemLOINC}

// RenderedDocument is the content of an MDM message: one signed version of
// the perfusion record, rendered as a PDF.
type RenderedDocument struct {
	CaseID  uuid.UUID
	Patient charting.Patient // PID
	Visit   Visit            // PV1
	// Version is the ledger sequence of the signed version the PDF shows
	// (the signature's, or the addendum's); it makes TXA-12.
	Version int64
	// Replaces is the version this one replaces (TXA-13), 0 for the first
	// signed version. Non-zero makes the message a T10.
	Replaces int64
	// Activity is TXA-4, when the documented activity began (bypass start).
	Activity time.Time
	// Origination is TXA-6, when this version came to be (the signature's
	// or the addendum's time). Required.
	Origination time.Time
	// Signatures are the record's sign-offs up to this version, first
	// first: the first signer is TXA-9 (originator), and each is a
	// repetition of TXA-22 (authentication person and time).
	Signatures []charting.Signature
	// ChangeReason is TXA-21 of a replacement, e.g. "Addendum" or
	// "Additional signature"; empty means "Addendum".
	ChangeReason string
	// PDF is the rendered record, sent base64 in OBX-5. Required.
	PDF []byte
}

// DocumentNumber is TXA-12 of a version: the case ID and the version's
// ledger sequence, under the sending application. It is stable (a resend
// carries the same number) and unique (each version has its own), and
// TXA-13 of the next version names it.
func DocumentNumber(h Header, caseID uuid.UUID, version int64) EI {
	a := h.SendingApplication
	return EI{EntityID: caseID.String() + "-" + strconv.FormatInt(version, 10), NamespaceID: a.NamespaceID,
		UniversalID: a.UniversalID, UniversalIDType: a.UniversalIDType}
}

// BuildDocument builds MDM^T02 (first version) or MDM^T10 (a later version
// replacing the previous one): MSH, EVN, PID, PV1, TXA, and one OBX of type
// ED holding the PDF as ^AP^PDF^Base64^<data> (HL7 tables 0191 and 0291,
// the IHE PCD-09 form). Standard base64 uses none of the delimiters, so the
// data needs no escaping, and it is written without line breaks.
func BuildDocument(h Header, d *RenderedDocument) (*Message, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	switch {
	case d.CaseID == uuid.Nil:
		return nil, errors.New("hl7: document: case_id is required")
	case d.Version <= 0:
		return nil, errors.New("hl7: document: version must be positive")
	case d.Replaces < 0 || d.Replaces >= d.Version:
		return nil, errors.New("hl7: document: replaces must be an earlier version")
	case d.Origination.IsZero():
		return nil, errors.New("hl7: document: origination time is required")
	case len(d.PDF) == 0:
		return nil, errors.New("hl7: document: the PDF is empty")
	}
	pidSeg, err := pid(d.Patient)
	if err != nil {
		return nil, err
	}
	trigger := TriggerOriginal
	if d.Replaces > 0 {
		trigger = TriggerReplacement
	}
	evn := Segment{ID: "EVN"}
	evn.SetField(1, Text(trigger))
	evn.SetField(2, Text(h.formatTime(h.Time)))

	txa := Segment{ID: "TXA"}
	txa.SetField(1, Text("1"))
	txa.SetField(2, Text("PN")) // table 0270: procedure note
	txa.SetField(3, Text("AP")) // table 0191: application data (the PDF)
	if !d.Activity.IsZero() {
		txa.SetField(4, Text(h.formatTime(d.Activity)))
	}
	txa.SetField(6, Text(h.formatTime(d.Origination)))
	if len(d.Signatures) > 0 {
		// XCN: ID ^ family name. The record has one display name.
		first := d.Signatures[0]
		txa.SetField(9, Comps(SignerID(first), first.DisplayName))
		// PPN: ID ^ family name, component 15 the time of the action.
		var auth Field
		for _, sig := range d.Signatures {
			ppn := make(Repetition, 15)
			ppn[0], ppn[1] = Component{SignerID(sig)}, Component{sig.DisplayName}
			ppn[14] = Component{h.formatTime(sig.SignedAt)}
			auth = append(auth, ppn)
		}
		txa.SetField(22, auth)
	}
	txa.SetField(12, DocumentNumber(h, d.CaseID, d.Version).field())
	if d.Replaces > 0 {
		txa.SetField(13, DocumentNumber(h, d.CaseID, d.Replaces).field())
		reason := d.ChangeReason
		if reason == "" {
			reason = "Addendum"
		}
		txa.SetField(21, Text(reason))
	}
	txa.SetField(17, Text("AU")) // table 0271: authenticated (signed)
	txa.SetField(19, Text("AV")) // table 0275: available for patient care

	obxSeg := Segment{ID: "OBX"}
	obxSeg.SetField(1, Text("1"))
	obxSeg.SetField(2, Text("ED"))
	obxSeg.SetField(3, DocumentTypeLOINC.field())
	obxSeg.SetField(5, Comps("", "AP", "PDF", "Base64", base64.StdEncoding.EncodeToString(d.PDF)))
	obxSeg.SetField(11, Text("F"))
	obxSeg.SetField(14, Text(h.formatTime(d.Origination)))

	m := Message{Segments: []Segment{h.msh(Comps("MDM", trigger, "MDM_T02"), nil, true), evn, pidSeg, pv1(d.Visit), txa, obxSeg}}
	if err := finish(&m); err != nil {
		return nil, err
	}
	return Canonical(&m), nil
}

// DocumentPDF returns the PDF an MDM message carries: OBX-5 of its ED
// OBX, base64-decoded. Receivers and tests use it to check that what was
// sent is exactly the rendered record.
func DocumentPDF(m *Message) ([]byte, error) {
	for _, s := range m.All("OBX") {
		if s.Field(2).Value() != "ED" {
			continue
		}
		f := s.Field(5)
		if f.Component(4) != "Base64" {
			return nil, errors.New("hl7: document: OBX-5 is not Base64")
		}
		b, err := base64.StdEncoding.Strict().DecodeString(f.Component(5))
		if err != nil {
			return nil, errors.New("hl7: document: OBX-5 is not valid base64")
		}
		return b, nil
	}
	return nil, errors.New("hl7: document: no ED OBX")
}
