package fhir

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"testing"
)

// refPDFBytes stands in for the rendered record (package export checks
// the real one).
var refPDFBytes = []byte("%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")

// refWithPDF adds the rendered record to a reference record; replaces is
// the version it replaces (0: the first).
func refWithPDF(r *Record, replaces int64) *Record {
	v := int64(57)
	if replaces > 0 {
		v = 61
	}
	r.Document = &RenderedPDF{Version: v, Replaces: replaces, At: r.Timestamp, PDF: refPDFBytes}
	return r
}

func docRef(t *testing.T, b *Bundle) *DocumentReference {
	t.Helper()
	for _, e := range b.Entry {
		if d, ok := e.Resource.(*DocumentReference); ok {
			return d
		}
	}
	t.Fatal("no DocumentReference in the bundle")
	return nil
}

func TestDocumentReference(t *testing.T) {
	b, err := BuildTransaction(refWithPDF(refRecord(), 0), refOptions())
	if err != nil {
		t.Fatal(err)
	}
	d := docRef(t, b)
	a := d.Content[0].Attachment
	data, err := base64.StdEncoding.DecodeString(a.Data)
	if err != nil || !bytes.Equal(data, refPDFBytes) {
		t.Fatalf("attachment data does not decode to the PDF: %v", err)
	}
	sum := sha1.Sum(refPDFBytes)
	if a.Hash != base64.StdEncoding.EncodeToString(sum[:]) || a.Size != len(refPDFBytes) || a.ContentType != "application/pdf" {
		t.Errorf("hash/size/type = %q/%d/%q", a.Hash, a.Size, a.ContentType)
	}
	if d.Subject == nil || len(d.Author) == 0 || d.Date == "" || a.Title == "" || d.RelatesTo != nil {
		t.Errorf("subject, author, date, title required; no relatesTo on the first version: %+v", d)
	}
	var provs int
	for _, r := range d.Context.Related {
		for _, e := range b.Entry {
			if e.FullURL == r.Reference {
				if _, ok := e.Resource.(*Provenance); ok {
					provs++
				}
			}
		}
	}
	if provs == 0 {
		t.Error("context.related names no Provenance of the bundle")
	}
	for _, e := range b.Entry {
		if e.Resource == any(d) && (e.Request.Method != "PUT" || e.Request.URL == "") {
			t.Errorf("DocumentReference is not a conditional update: %+v", e.Request)
		}
	}

	b2, err := BuildTransaction(refWithPDF(refAmended(), 57), refOptions())
	if err != nil {
		t.Fatal(err)
	}
	d2 := docRef(t, b2)
	if len(d2.RelatesTo) != 1 || d2.RelatesTo[0].Code != "replaces" || d2.RelatesTo[0].Target.Identifier == nil ||
		d2.RelatesTo[0].Target.Identifier.Value != d.MasterIdentifier.Value {
		t.Errorf("addendum's DocumentReference must replace the first: %+v", d2.RelatesTo)
	}
	if d2.MasterIdentifier.Value == d.MasterIdentifier.Value {
		t.Error("each version needs its own masterIdentifier")
	}
}
