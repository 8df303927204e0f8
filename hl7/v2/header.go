package v2

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Version is the HL7 version this package writes (MSH-12). IHE PCD is
// based on v2.6.
const Version = "2.6"

// ProcessingID is MSH-11 (HL7 table 0103).
type ProcessingID string

// Processing IDs.
const (
	Production ProcessingID = "P"
	Training   ProcessingID = "T"
	Debugging  ProcessingID = "D"
)

// Header is what the sender supplies for MSH: who sends to whom, the
// message control ID and the time. It is configuration plus one ID per
// message; the builders fill in everything else.
type Header struct {
	SendingApplication   HD // MSH-3, required
	SendingFacility      HD // MSH-4
	ReceivingApplication HD // MSH-5
	ReceivingFacility    HD // MSH-6
	// ControlID is MSH-10. Receivers echo it in MSA-2 and deduplicate by it
	// (with MSH-3), so a resend of the same content must reuse it and a new
	// version must not: derive it with ControlID.
	ControlID string
	// Time is MSH-7, the time the message was made (not when anything was
	// observed).
	Time time.Time
	// ProcessingID is MSH-11; empty means Production.
	ProcessingID ProcessingID
	// Location is the zone every time in the message is written in, with
	// its offset. Nil means UTC (+0000). The record keeps UTC; a site may
	// prefer local time for its EHR.
	Location *time.Location
}

// MaxControlIDLen is the longest MSH-10 accepted. HL7 v2.6 allows 199, but
// the IHE PCD MSA-2 (which echoes it) is 20 long, so ControlID makes 20.
const MaxControlIDLen = 199

// ControlID derives a message control ID that is stable for one message
// kind (e.g. "oru-summary"), case and version: resending the same version
// yields the same ID, so the receiver recognises the duplicate, while an
// amendment (a new version) gets a new one. It is 20 characters of base32
// from SHA-256 (96 bits), short enough for every receiver's MSA-2, and
// reveals nothing about the case.
func ControlID(kind string, caseID uuid.UUID, version int64) string {
	h := sha256.New()
	h.Write([]byte("perfusion.hl7.control-id.v1\x00"))
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(caseID[:])
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(version)))
	sum := h.Sum(nil)
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:12])
}

func (h Header) validate() error {
	if h.SendingApplication == (HD{}) {
		return errors.New("hl7: header: sending application (MSH-3) is required")
	}
	if h.ControlID == "" || len(h.ControlID) > MaxControlIDLen {
		return errors.New("hl7: header: control ID (MSH-10) is required, at most 199 characters")
	}
	for i := 0; i < len(h.ControlID); i++ {
		c := h.ControlID[i]
		if !isAlnum(c) && c != '.' && c != '-' && c != '_' {
			return errors.New("hl7: header: control ID may hold only letters, digits, '.', '-' and '_'")
		}
	}
	if h.Time.IsZero() {
		return errors.New("hl7: header: message time (MSH-7) is required")
	}
	switch h.ProcessingID {
	case "", Production, Training, Debugging:
	default:
		return errors.New("hl7: header: processing ID must be P, T or D")
	}
	return nil
}

// msh builds the MSH segment. Messages that expect an answer ask for an
// accept acknowledgement always and no application acknowledgement
// (MSH-15 AL, MSH-16 NE, as IHE PCD requires); an ACK asks for none.
// MSH-18 is filled later by finish, once the whole message is known.
func (h Header) msh(msgType Field, profile Field, expectAck bool) Segment {
	pid := h.ProcessingID
	if pid == "" {
		pid = Production
	}
	s := Segment{ID: "MSH"}
	d := StdDelimiters()
	s.SetField(1, Text(string(d.Field)))
	s.SetField(2, Text(d.EncodingCharacters()))
	s.SetField(3, h.SendingApplication.field())
	s.SetField(4, h.SendingFacility.field())
	s.SetField(5, h.ReceivingApplication.field())
	s.SetField(6, h.ReceivingFacility.field())
	s.SetField(7, Text(FormatDTM(h.Time, h.Location)))
	s.SetField(9, msgType)
	s.SetField(10, Text(h.ControlID))
	s.SetField(11, Text(string(pid)))
	s.SetField(12, Text(Version))
	if expectAck {
		s.SetField(15, Text("AL"))
		s.SetField(16, Text("NE"))
	}
	s.SetField(21, profile)
	return s
}

// finish sets MSH-18 to "UNICODE UTF-8" when any value is not plain ASCII,
// after checking that all text is valid UTF-8 (the message claims it is).
func finish(m *Message) error {
	ascii := true
	for _, s := range m.Segments {
		for _, f := range s.Fields {
			for _, r := range f {
				for _, c := range r {
					for _, v := range c {
						if !utf8.ValidString(v) {
							return errors.New("hl7: text is not valid UTF-8")
						}
						for i := 0; i < len(v) && ascii; i++ {
							ascii = v[i] < utf8.RuneSelf
						}
					}
				}
			}
		}
	}
	if !ascii {
		m.Segments[0].SetField(18, Text("UNICODE UTF-8"))
	}
	return nil
}
