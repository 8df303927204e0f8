package v2

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"perfusion/charting"
)

// refPDF is a small PDF standing in for the rendered record in the golden
// messages (the real record is rendered and checked in package export).
// It holds bytes that base64 turns into '+' and '/', which must pass
// through HL7 unescaped.
var refPDF = []byte("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n" +
	"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n\xfb\xff\xfe%%EOF\n")

func refDocHeader(version int64) Header {
	h := refHeader(version)
	h.ControlID = ControlID("mdm-document", refCaseID, version)
	return h
}

func refDocument() *RenderedDocument {
	s := refSummary()
	return &RenderedDocument{CaseID: refCaseID, Patient: s.Patient, Visit: s.Visit, Version: 57,
		Activity: s.BypassStart, Origination: s.Signature.SignedAt, Signatures: []charting.Signature{s.Signature}, PDF: refPDF}
}

func refDocumentAddendum() *RenderedDocument {
	d := refDocument()
	d.Replaces, d.Version = d.Version, 61
	d.Origination = d.Origination.Add(26 * time.Hour)
	return d
}

func TestDocumentPDFRoundTrip(t *testing.T) {
	for name, d := range map[string]*RenderedDocument{"T02": refDocument(), "T10": refDocumentAddendum()} {
		t.Run(name, func(t *testing.T) {
			m, err := BuildDocument(refDocHeader(1), d)
			if err != nil {
				t.Fatal(err)
			}
			b, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DocumentPDF(back)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, d.PDF) {
				t.Errorf("decoded document differs from the PDF (%d vs %d bytes)", len(got), len(d.PDF))
			}
			data := back.All("OBX")[0].Field(5).Component(5)
			if strings.ContainsAny(data, "\r\n") || !strings.ContainsAny(data, "+/") {
				t.Errorf("base64 must be one line and the test PDF must exercise + and /: %q", data)
			}
			if got, want := back.Get("MSH-9"), "MDM"; got != want {
				t.Errorf("MSH-9 = %q", got)
			}
			if got := back.Get("TXA-17"); got != "AU" {
				t.Errorf("TXA-17 = %q, want AU", got)
			}
			wantTrigger, wantParent := "T02", ""
			if d.Replaces > 0 {
				wantTrigger, wantParent = "T10", refCaseID.String()+"-57"
			}
			if got := back.Segment("MSH").Field(9).Component(2); got != wantTrigger {
				t.Errorf("MSH-9.2 = %q, want %q", got, wantTrigger)
			}
			if got := back.Get("TXA-12"); got != refCaseID.String()+"-"+strconv.FormatInt(d.Version, 10) {
				t.Errorf("TXA-12 = %q", got)
			}
			if got := back.Get("TXA-13"); got != wantParent {
				t.Errorf("TXA-13 = %q, want %q", got, wantParent)
			}
		})
	}
}

func TestBuildDocumentRejects(t *testing.T) {
	cases := map[string]func(*RenderedDocument){
		"no pdf":         func(d *RenderedDocument) { d.PDF = nil },
		"no version":     func(d *RenderedDocument) { d.Version = 0 },
		"replaces later": func(d *RenderedDocument) { d.Replaces = d.Version },
		"no origination": func(d *RenderedDocument) { d.Origination = time.Time{} },
		"no MRN":         func(d *RenderedDocument) { d.Patient.MRN = "" },
	}
	for name, mutate := range cases {
		d := refDocument()
		mutate(d)
		if _, err := BuildDocument(refDocHeader(1), d); err == nil {
			t.Errorf("%s: built", name)
		}
	}
}
