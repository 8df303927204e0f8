package v2

import "errors"

// AckCode is MSA-1 (HL7 table 0008).
type AckCode string

// Acknowledgement codes: original mode (A*) and enhanced mode commit (C*).
const (
	AA AckCode = "AA" // application accept
	AE AckCode = "AE" // application error
	AR AckCode = "AR" // application reject
	CA AckCode = "CA" // commit accept
	CE AckCode = "CE" // commit error
	CR AckCode = "CR" // commit reject
)

// AckClass is what a sender should do with an acknowledgement.
type AckClass int

// Acknowledgement classes.
const (
	// AckInvalid: not a known code; treat the exchange as failed.
	AckInvalid AckClass = iota
	// AckAccepted (AA, CA): done.
	AckAccepted
	// AckContentError (AE, CE): the receiver found an error in the message.
	// Resending it unchanged cannot help: surface it and fix the content.
	AckContentError
	// AckRejected (AR, CR): the receiver rejected or could not process the
	// message (unavailable, unsupported, internal error). Retry with back-off.
	AckRejected
)

// Class classifies the code.
func (c AckCode) Class() AckClass {
	switch c {
	case AA, CA:
		return AckAccepted
	case AE, CE:
		return AckContentError
	case AR, CR:
		return AckRejected
	}
	return AckInvalid
}

// ErrorCode is an HL7 table 0357 message error condition code, sent in
// ERR-3 with coding system HL70357.
type ErrorCode string

// Table 0357 codes.
const (
	ErrMessageAccepted         ErrorCode = "0"
	ErrSegmentSequence         ErrorCode = "100"
	ErrRequiredFieldMissing    ErrorCode = "101"
	ErrDataType                ErrorCode = "102"
	ErrTableValueNotFound      ErrorCode = "103"
	ErrUnsupportedMessageType  ErrorCode = "200"
	ErrUnsupportedEventCode    ErrorCode = "201"
	ErrUnsupportedProcessingID ErrorCode = "202"
	ErrUnsupportedVersionID    ErrorCode = "203"
	ErrUnknownKeyIdentifier    ErrorCode = "204"
	ErrDuplicateKeyIdentifier  ErrorCode = "205"
	ErrApplicationRecordLocked ErrorCode = "206"
	ErrApplicationInternal     ErrorCode = "207"
)

// Text returns the table 0357 description of the code, or "".
func (c ErrorCode) Text() string {
	switch c {
	case ErrMessageAccepted:
		return "Message accepted"
	case ErrSegmentSequence:
		return "Segment sequence error"
	case ErrRequiredFieldMissing:
		return "Required field missing"
	case ErrDataType:
		return "Data type error"
	case ErrTableValueNotFound:
		return "Table value not found"
	case ErrUnsupportedMessageType:
		return "Unsupported message type"
	case ErrUnsupportedEventCode:
		return "Unsupported event code"
	case ErrUnsupportedProcessingID:
		return "Unsupported processing id"
	case ErrUnsupportedVersionID:
		return "Unsupported version id"
	case ErrUnknownKeyIdentifier:
		return "Unknown key identifier"
	case ErrDuplicateKeyIdentifier:
		return "Duplicate key identifier"
	case ErrApplicationRecordLocked:
		return "Application record locked"
	case ErrApplicationInternal:
		return "Application internal error"
	}
	return ""
}

// Severity is ERR-4 (HL7 table 0516).
type Severity string

// Severities.
const (
	SeverityWarning     Severity = "W"
	SeverityInformation Severity = "I"
	SeverityError       Severity = "E"
	SeverityFatal       Severity = "F"
)

// Ack is a parsed acknowledgement.
type Ack struct {
	Code      AckCode // MSA-1
	ControlID string  // MSA-2: MSH-10 of the message acknowledged
	// ErrorCode and Severity are ERR-3.1 and ERR-4 of the first ERR, if any.
	ErrorCode ErrorCode
	Severity  Severity // ERR-4
	// Text is the receiver's explanation: ERR-8 (user message), else ERR-3
	// text, else MSA-3. It is the receiver's free text and may repeat
	// message content, patient data included: store it with the message,
	// never log it or put it in an error string.
	Text string
}

// AckError is the error an acknowledgement reports (ERR segment).
type AckError struct {
	Code     ErrorCode // ERR-3
	Severity Severity  // empty means SeverityError
	// Text is ERR-8, the user message. Do not put message content in it:
	// the sender may log it.
	Text string
}

// BuildAck builds the ACK for msg: MSH with sender and receiver swapped,
// MSH-9 ACK^<trigger of msg>^ACK, MSH-10 h.ControlID (the ACK's own ID),
// then MSA-1 code and MSA-2 the MSH-10 of msg, and an ERR when e is not
// nil. h supplies the ACK's sender, control ID and time; its receiver
// fields are ignored in favour of msg's sender.
func BuildAck(h Header, msg *Message, code AckCode, e *AckError) (*Message, error) {
	if code.Class() == AckInvalid {
		return nil, errors.New("hl7: ack: unknown acknowledgement code")
	}
	if msg == nil || len(msg.Segments) == 0 || msg.Segments[0].ID != "MSH" {
		return nil, errors.New("hl7: ack: the acknowledged message has no MSH")
	}
	in := &msg.Segments[0]
	h.ReceivingApplication = hdOf(in.Field(3))
	h.ReceivingFacility = hdOf(in.Field(4))
	if err := h.validate(); err != nil {
		return nil, err
	}
	trigger := in.Field(9).Component(2)
	ack := &Message{}
	mshSeg := h.msh(Comps("ACK", trigger, "ACK"), nil, false)
	// Echo the version and processing ID, so the receiver reads the ACK
	// the way it wrote its message.
	if v := in.Field(12).Value(); v != "" {
		mshSeg.SetField(12, Text(v))
	}
	if p := in.Field(11).Value(); p != "" {
		mshSeg.SetField(11, Text(p))
	}
	msa := Segment{ID: "MSA"}
	msa.SetField(1, Text(string(code)))
	msa.SetField(2, Text(in.Field(10).Value()))
	ack.Segments = []Segment{mshSeg, msa}
	if e != nil {
		sev := e.Severity
		if sev == "" {
			sev = SeverityError
		}
		errSeg := Segment{ID: "ERR"}
		errSeg.SetField(3, Code{Code: string(e.Code), Text: e.Code.Text(), System: SystemHL7357}.field())
		errSeg.SetField(4, Text(string(sev)))
		errSeg.SetField(8, Text(normalizeNewlines(e.Text)))
		ack.Segments = append(ack.Segments, errSeg)
	}
	if err := finish(ack); err != nil {
		return nil, err
	}
	return Canonical(ack), nil
}

func hdOf(f Field) HD {
	return HD{NamespaceID: f.Component(1), UniversalID: f.Component(2), UniversalIDType: f.Component(3)}
}

// ParseAck parses an acknowledgement message.
func ParseAck(b []byte) (Ack, error) {
	m, err := Parse(b)
	if err != nil {
		return Ack{}, err
	}
	return AckOf(m)
}

// AckOf reads the acknowledgement in a parsed message: MSA-1, MSA-2 and
// the first ERR. Any message type with an MSA is accepted (ACK, or an
// application acknowledgement such as RRG^O16).
func AckOf(m *Message) (Ack, error) {
	msa := m.Segment("MSA")
	if msa == nil {
		return Ack{}, errors.New("hl7: ack: no MSA segment")
	}
	a := Ack{Code: AckCode(msa.Field(1).Value()), ControlID: msa.Field(2).Value()}
	if a.Code.Class() == AckInvalid {
		return Ack{}, errors.New("hl7: ack: MSA-1 is not a known acknowledgement code")
	}
	a.Text = msa.Field(3).Value()
	if e := m.Segment("ERR"); e != nil {
		a.ErrorCode = ErrorCode(e.Field(3).Component(1))
		a.Severity = Severity(e.Field(4).Value())
		switch {
		case e.Field(8).Value() != "":
			a.Text = e.Field(8).Value()
		case e.Field(3).Component(2) != "":
			a.Text = e.Field(3).Component(2)
		}
	}
	return a, nil
}
