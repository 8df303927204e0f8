package fhir

import (
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/hl7/v2"
)

// RenderedPDF is the rendered record of one signed version, sent as a
// DocumentReference with the PDF inline.
type RenderedPDF struct {
	// Version is the ledger sequence of the version the PDF shows (as
	// v2.RenderedDocument.Version): it names the DocumentReference.
	Version int64
	// Replaces is the version this one replaces, 0 for the first. It
	// becomes relatesTo "replaces" the earlier DocumentReference.
	Replaces int64
	// At is when this version came to be (signature or addendum time):
	// DocumentReference.date and attachment.creation.
	At  time.Time
	PDF []byte
}

// DocumentMasterIdentifier is DocumentReference.masterIdentifier of a
// version: stable across resends, one per version, the same document as
// the MDM's TXA-12 (case ID and version).
func DocumentMasterIdentifier(caseID uuid.UUID, version int64) Identifier {
	return Identifier{System: SystemRFC3986, Value: "urn:uuid:" + ResourceUUID(caseID, "document/pdf/v"+strconv.FormatInt(version, 10)).String()}
}

// documentRef adds the DocumentReference of rec.Document: LOINC 28570-0,
// the PDF inline with size and SHA-1 (R4: base64 of the SHA-1 of the
// data), the first signer as author and authenticator, the Provenances
// and the bypass Procedure as context.related, and relatesTo "replaces"
// the previous version's DocumentReference by its masterIdentifier (a
// logical reference: it was sent in an earlier transaction).
func (b *builder) documentRef() error {
	d := b.rec.Document
	if d == nil {
		return nil
	}
	if len(d.PDF) == 0 || d.Version < 1 || d.Replaces < 0 || d.Replaces >= d.Version || d.At.IsZero() {
		return errf("document: needs a PDF, a time, a positive version and an earlier replaced version")
	}
	c := b.rec.Case
	first := c.Signatures[0]
	for _, s := range c.Signatures {
		if s.Number < first.Number {
			first = s
		}
	}
	signer := b.staff(v2.SignerID(first), first.DisplayName)
	sum := sha1.Sum(d.PDF)
	title := "Perfusion record"
	if c.Kind == charting.KindECMO {
		title = "ECMO record"
	}
	master := DocumentMasterIdentifier(c.ID, d.Version)
	key := "document-reference/v" + strconv.FormatInt(d.Version, 10)
	r := &DocumentReference{ResourceType: "DocumentReference", ID: b.id(key), MasterIdentifier: &master,
		Identifier: b.ident(key), Status: "current", DocStatus: "final",
		Type:    &CodeableConcept{Coding: []Coding{{System: SystemLOINC, Code: codeProcedureNote, Display: "Procedure note"}}, Text: title},
		Subject: &b.patient, Date: fhirTime(d.At), Author: []Reference{signer}, Authenticator: &signer,
		Description: title + ", version " + strconv.FormatInt(d.Version, 10),
		Content: []DocumentReferenceContent{{Attachment: Attachment{ContentType: "application/pdf",
			Data: base64.StdEncoding.EncodeToString(d.PDF), Size: len(d.PDF),
			Hash: base64.StdEncoding.EncodeToString(sum[:]), Title: title + ".pdf", Creation: fhirTime(d.At)}}},
		Context: &DocumentReferenceContext{Period: &Period{Start: fhirTime(b.rec.BypassStart), End: fhirTime(b.rec.BypassEnd)}},
	}
	if d.Replaces > 0 {
		r.DocStatus = "amended"
		prev := DocumentMasterIdentifier(c.ID, d.Replaces)
		r.RelatesTo = []DocumentReferenceRelatesTo{{Code: "replaces", Target: Reference{Type: "DocumentReference", Identifier: &prev}}}
	}
	if b.enc != nil {
		r.Context.Encounter = []Reference{*b.enc}
	}
	if b.bypass != nil {
		r.Context.Related = append(r.Context.Related, b.bypass.ref())
	}
	if b.doc {
		r.Context.Related = append(r.Context.Related, Reference{Reference: "urn:uuid:" + ResourceUUID(c.ID, "composition").String()})
	}
	for _, it := range b.items {
		if it.typ == "Provenance" {
			r.Context.Related = append(r.Context.Related, it.ref())
		}
	}
	it := b.add(key, "DocumentReference", "Signatures", r)
	it.identified = true
	return nil
}
