package inbound

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	v2 "perfusion/hl7/v2"
	"perfusion/store"
	"perfusion/store/sqlite/sqlitetest"
)

// secret stands for patient data in the fuzz seeds: no error text, ACK or
// log line may ever repeat it.
const secret = "ZZSECRETZZ"

// fuzzSeeds are the fixtures (with the secret in every field a value could
// leak from) and hostile variations.
func fuzzSeeds(t testing.TB) [][]byte {
	var out [][]byte
	files, _ := filepath.Glob(filepath.Join("testdata", "*.hl7"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, k := range []string{"MRN", "FAMILY", "GIVEN", "DOB", "VISIT", "APPT", "START", "NOW", "WEIGHT", "PRIOR", "PRIORVISIT", "ROOM"} {
			s = strings.ReplaceAll(s, "{{"+k+"}}", secret)
		}
		s = strings.NewReplacer("{{CTL}}", "C1", "{{SITE}}", "MAIN", "{{TRIGGER}}", "S15").Replace(s)
		out = append(out, []byte(strings.ReplaceAll(s, "\n", "\r")))
	}
	out = append(out,
		[]byte("MSH|^~\\&|A|B|||20260101||SIU^S12|C2|P|2.5.1\rSCH||"+secret+"\rAIS|1||x|2026010112"+secret+"\rAIL|1||^CVOR-1^^MAIN\r"),
		[]byte("MSH|^~\\&|A|B|||20260101||ADT^A08|C3|P|2.5.1\rPID|||1^^^H^MR||"+secret+"||"+secret+"\rOBX|1|NM|29463-7^w^LN||"+secret+"|kg\r"),
		[]byte("MSH|^~\\&|A|B|||20260101||ADT^A40|C4|P|2.5.1\rPID|||1^^^H^MR\rMRG|"+secret+"\rMRG|\r"),
		[]byte("MSH|^^\\&|A|B|||x||ADT^A08|C5|P\rPID|||"+secret),
		[]byte("MSH|^~\\&|A|B||||\xff"+secret+"|ADT^A08|C6|P|2.5.1||||||8859/1\rPID|||"+secret+"^^^H^MR\r"),
		[]byte("MSH|^~\\&|A|B|||20260101||ADT^A01|C7|P|2.5.1\rPID|||"+secret+"^^^H^MR~2^^^H^MR||a^b~c^d^^^^^L||1958031212+0500|F\rPV1||I|^^^|||||||||||||||||V\r"),
	)
	return out
}

// FuzzExtract feeds arbitrary messages to the extraction of ADT and SIU
// content: it must never panic, and no problem it reports may repeat a
// value of the message.
func FuzzExtract(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr := headerOnly(b)
		if hdr != nil {
			if _, err := hdr.Encode(); err != nil {
				t.Fatalf("a header-only message does not encode: %v", err)
			}
		}
		text, cerr := decodeCharset(b)
		if cerr == nil && !utf8.Valid(text) {
			t.Fatal("decodeCharset returned text that is not UTF-8")
		}
		m, err := v2.Parse(text)
		if err != nil {
			return
		}
		o := extractOptions{DefaultAuthority: "HOSP", Location: time.UTC}
		check := func(p *Problem) {
			if p != nil && strings.Contains(b2s(b), secret) && strings.Contains(p.Error(), secret) {
				t.Fatalf("a problem repeats message content: %q", p.Error())
			}
		}
		for _, need := range []bool{false, true} {
			p, prob := patientFrom(m, o, need)
			check(prob)
			if prob == nil && need && p.ID.MRN == "" {
				t.Fatal("a patient without an MRN was accepted where one is required")
			}
			a, prob := appointmentFrom(m, o, need)
			check(prob)
			if prob == nil && (a.ID == "" || need && a.Start.IsZero()) {
				t.Fatalf("an appointment without its id or start was accepted: %+v", a)
			}
		}
		_, prob := mergesFrom(m, o)
		check(prob)
	})
}

func b2s(b []byte) string { return string(b) }

// FuzzHandle runs arbitrary messages through the whole handler on a real
// embedded store: it must never panic; it answers with nil (close) or an
// ACK that parses, acknowledges the message's control id and repeats no
// value of the message in its text; the log never holds one either.
func FuzzHandle(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	st := store.New(sqlitetest.Open(f), store.Config{})
	logs := &strings.Builder{}
	h, err := NewHandler(Config{Store: st, Rooms: map[string][]string{"MAIN": {"CVOR-1"}}, DefaultAuthority: "HOSP",
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(logs), nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		logs.Reset()
		ack := h.Handle(context.Background(), "fuzz", b)
		// The header's codes (sending application and facility, message
		// type, control id, processing and version ids) are logged and
		// named in ACKs on purpose: they are how an interface team finds a
		// message, and name no patient.
		for _, n := range []int{3, 4, 9, 10, 11, 12} {
			if strings.Contains(rawMSHField(b, n), secret) {
				return
			}
		}
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("the log repeats message content: %s", logs.String())
		}
		if ack == nil {
			return
		}
		a, err := v2.ParseAck(ack)
		if err != nil {
			t.Fatalf("the ACK does not parse: %v\n%q", err, ack)
		}
		if strings.Contains(a.Text, secret) {
			t.Fatalf("the ACK repeats message content: %q", a.Text)
		}
		if m, err := v2.Parse(b); err == nil && a.ControlID != m.ControlID() {
			t.Fatalf("ACK for %q acknowledges %q", m.ControlID(), a.ControlID)
		}
	})
}

// FuzzAppointment feeds arbitrary JSON to the FHIR Appointment reader: it
// must never panic, never accept a booking without its id and start, and
// no problem it reports may repeat a value of the resource.
func FuzzAppointment(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Appointment","id":"a","meta":{"versionId":"1"},"status":"booked","start":"2026-12-09T07:30:00Z","participant":[{"actor":{"reference":"Patient/p","identifier":{"system":"urn:mrn","value":"` + secret + `"}}},{"actor":{"reference":"Location/l","display":"CVOR-1"}},{"type":[{"text":"Surgeon"}],"actor":{"reference":"Practitioner/s","display":"` + secret + `"}}]}`,
		`{"resourceType":"Appointment","identifier":[{"value":"` + secret + `"}],"status":"cancelled","cancelationReason":{"text":"` + secret + `"}}`,
		`{"resourceType":"Appointment","id":"a","status":"booked","start":"` + secret + `"}`,
		`{"resourceType":"Appointment","id":"a","status":"` + secret + `"}`,
		`{"resourceType":"Appointment","id":"a","status":"booked","start":"2026-12-09T07:30:00+01:00","participant":[{"actor":{"reference":"Patient/p","identifier":{"system":"` + secret + `","value":"1"}}}]}`,
		`[]`, `{"resourceType":"Appointment"}{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, book, _, prob := appointmentFromFHIR(b, extractOptions{DefaultAuthority: "HOSP"}, map[string]string{"HOSP": "urn:mrn"})
		if prob != nil {
			if strings.Contains(string(b), secret) && strings.Contains(prob.Error(), secret) {
				t.Fatalf("a problem repeats content: %q", prob.Error())
			}
			return
		}
		if a.ID == "" || book && a.Start.IsZero() {
			t.Fatalf("accepted without id or start: %+v", a)
		}
		_ = appointmentKey("s", "MAIN", b)
	})
}
