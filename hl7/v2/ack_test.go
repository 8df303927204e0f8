package v2

import (
	"strings"
	"testing"
	"time"
)

func TestAckClass(t *testing.T) {
	for code, want := range map[AckCode]AckClass{
		AA: AckAccepted, CA: AckAccepted,
		AE: AckContentError, CE: AckContentError,
		AR: AckRejected, CR: AckRejected,
		"": AckInvalid, "XX": AckInvalid, "aa": AckInvalid,
	} {
		if got := code.Class(); got != want {
			t.Errorf("%q.Class() = %v, want %v", code, got, want)
		}
	}
}

func TestAckRoundTrip(t *testing.T) {
	orig, err := BuildSummary(refHeader(1), refSummary())
	if err != nil {
		t.Fatal(err)
	}
	h := Header{SendingApplication: HD{NamespaceID: "EHR"}, ControlID: "A1", Time: time.Now()}
	for _, tc := range []struct {
		code AckCode
		err  *AckError
	}{
		{AA, nil}, {CA, nil},
		{AE, &AckError{Code: ErrRequiredFieldMissing, Text: "PID-3 missing | try again\nline 2"}},
		{AR, &AckError{Code: ErrApplicationInternal, Severity: SeverityFatal, Text: "database down"}},
		{CR, nil},
	} {
		ack, err := BuildAck(h, orig, tc.code, tc.err)
		if err != nil {
			t.Fatal(err)
		}
		if got := ack.Get("MSH-9"); got != "ACK" || ack.Get("MSH-9.2") != "R01" || ack.Get("MSH-9.3") != "ACK" {
			t.Errorf("MSH-9 = %v", ack.Segment("MSH").Field(9))
		}
		if got := ack.Get("MSH-5"); got != "PERFUSION" {
			t.Errorf("MSH-5 = %q: the ACK goes back to the sender", got)
		}
		b, err := ack.Encode()
		if err != nil {
			t.Fatal(err)
		}
		a, err := ParseAck(b)
		if err != nil {
			t.Fatal(err)
		}
		if a.Code != tc.code || a.ControlID != orig.ControlID() {
			t.Errorf("parsed %+v", a)
		}
		if tc.err != nil {
			sev := tc.err.Severity
			if sev == "" {
				sev = SeverityError
			}
			if a.ErrorCode != tc.err.Code || a.Severity != sev || a.Text != tc.err.Text {
				t.Errorf("parsed error %+v, want %+v", a, tc.err)
			}
		}
	}
	if _, err := BuildAck(h, orig, "ZZ", nil); err == nil {
		t.Error("unknown code accepted")
	}
	if _, err := BuildAck(h, &Message{}, AA, nil); err == nil {
		t.Error("ACK for nothing accepted")
	}
}

func TestParseForeignAcks(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ack
	}{
		// From IHE PCD TF-2 Appendix E (PCD-03 application acknowledgement),
		// with its odd spacing kept.
		{"MSH|^~\\&|IOCVENDOR^6543210000000001^EUI-64|IOCVENDOR|IOPVENDOR^1234560000000001^EUI-64|IOPVENDOR|20080101123456-0600||RRG^O16^RRG_O16|102|P|2.5||||||ASCII|EN^English^ISO659||IHE_PCD_PIV_001\rMSA|AR|102\rERR|||207^ Application internal error|F|9010^Unable to match medication to drug library\r",
			Ack{Code: AR, ControlID: "102", ErrorCode: "207", Severity: "F", Text: " Application internal error"}},
		// Old style: text in MSA-3, LF terminators, v2.7 encoding characters.
		{"MSH|^~\\&#|R|F|||20260101||ACK|9|P|2.3\nMSA|AE|C1|Bad \\F\\ data\n", Ack{Code: AE, ControlID: "C1", Text: "Bad | data"}},
		{"MSH|^~\\&|R\r\nMSA|CA|X\r\n", Ack{Code: CA, ControlID: "X"}},
	} {
		a, err := ParseAck([]byte(tc.in))
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if a != tc.want {
			t.Errorf("got %+v, want %+v", a, tc.want)
		}
	}
	for _, bad := range []string{
		"MSH|^~\\&|R\rPID|1\r",
		"MSH|^~\\&|R\rMSA|OK|1\r",
		"not hl7",
	} {
		if _, err := ParseAck([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "PID|1") {
			t.Errorf("error echoes content: %v", err)
		}
	}
}

func TestErrorCodeTexts(t *testing.T) {
	for _, c := range []ErrorCode{ErrMessageAccepted, ErrSegmentSequence, ErrRequiredFieldMissing, ErrDataType,
		ErrTableValueNotFound, ErrUnsupportedMessageType, ErrUnsupportedEventCode, ErrUnsupportedProcessingID,
		ErrUnsupportedVersionID, ErrUnknownKeyIdentifier, ErrDuplicateKeyIdentifier, ErrApplicationRecordLocked,
		ErrApplicationInternal} {
		if c.Text() == "" {
			t.Errorf("%s has no text", c)
		}
	}
}
