package export_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"testing"

	"perfusion/export"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
)

// TestDocumentDelivery: with documents on, signing and an addendum each
// deliver the rendered record. To the HL7 receiver each version is the ORU
// and then the MDM (T02 first, then T10 naming the first document in
// TXA-13); an AR on the first MDM resends the ORU (dropped as a duplicate)
// and the MDM, and the addendum's messages wait until it is accepted. The
// MDM's base64 decodes to exactly the rendered PDF. The FHIR transaction
// of each version carries a DocumentReference with the same PDF, its
// SHA-1, and the second replaces the first. Before documents were
// delivered, the receiver got ORUs only.
func TestDocumentDelivery(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgtest.Open(t), startClock(), store.DestinationMLLP, store.DestinationFHIR)
	e.r.WithDocuments(true)
	caseID, _ := signedCase(t, e.s, e.clk)
	vs := caseVersions(t, e, caseID, 1)
	rcv := newReceiver(t, "AA", "AR")
	fs := newFHIRServer(t)
	ft, err := export.NewFHIRTransport(fs.srv.URL, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := e.worker(t, map[store.Destination]export.Transport{store.DestinationMLLP: mllpTransport(t, rcv), store.DestinationFHIR: ft})
	drain(t, e, w, 20)
	for _, v := range vs {
		for _, dest := range []store.Destination{store.DestinationMLLP, store.DestinationFHIR} {
			if d := delivery(t, e, caseID, v, dest); d.State != store.DeliveryDelivered {
				t.Fatalf("version %d to %s: %s (%s)", v, dest, d.State, d.LastError)
			}
		}
	}

	oru := func(v int64) string { return export.MessageID(store.DestinationMLLP, caseID, v) }
	mdm := func(v int64) string { return v2.ControlID(export.DocumentControlIDKind, caseID, v) }
	want := []string{oru(vs[0]), mdm(vs[0]), oru(vs[0]), mdm(vs[0]), oru(vs[1]), mdm(vs[1])}
	rcv.mu.Lock()
	got := append([]string(nil), rcv.arrivals...)
	rcv.mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("arrivals %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("arrival %d is %s, want %s (order ORU, MDM per version, versions in order)", i, got[i], want[i])
		}
	}

	var firstDoc string
	for i, v := range vs {
		doc, err := e.r.RenderDocument(ctx, caseID, v)
		if err != nil {
			t.Fatal(err)
		}
		raw := rcv.stored[mdm(v)]
		validateHL7(t, raw)
		m, err := v2.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		pdf, err := v2.DocumentPDF(m)
		if err != nil || !bytes.Equal(pdf, doc.PDF) {
			t.Fatalf("version %d: MDM document is not the rendered PDF (%v, %d vs %d bytes)", v, err, len(pdf), len(doc.PDF))
		}
		trigger, parent := m.Segment("MSH").Field(9).Component(2), m.Get("TXA-13")
		if i == 0 && (trigger != "T02" || parent != "") || i == 1 && (trigger != "T10" || parent != firstDoc) {
			t.Errorf("version %d: %s with TXA-13 %q (first document %q)", v, trigger, parent, firstDoc)
		}
		if m.Get("TXA-17") != "AU" || m.Get("TXA-12") == "" {
			t.Errorf("version %d: TXA-12 %q, TXA-17 %q", v, m.Get("TXA-12"), m.Get("TXA-17"))
		}
		if i == 0 {
			firstDoc = m.Get("TXA-12")
		}

		body := fs.stored[export.MessageID(store.DestinationFHIR, caseID, v)]
		validateFHIR(t, body)
		var bundle struct {
			Entry []struct {
				Resource struct {
					ResourceType     string `json:"resourceType"`
					MasterIdentifier struct{ Value string }
					RelatesTo        []struct {
						Code   string
						Target struct{ Identifier struct{ Value string } }
					}
					Content []struct {
						Attachment struct {
							ContentType, Data, Hash string
							Size                    int
						}
					}
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(body, &bundle); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, en := range bundle.Entry {
			r := en.Resource
			if r.ResourceType != "DocumentReference" {
				continue
			}
			n++
			a := r.Content[0].Attachment
			data, _ := base64.StdEncoding.DecodeString(a.Data)
			sum := sha1.Sum(doc.PDF)
			if !bytes.Equal(data, doc.PDF) || a.Size != len(doc.PDF) || a.Hash != base64.StdEncoding.EncodeToString(sum[:]) || a.ContentType != "application/pdf" {
				t.Errorf("version %d: DocumentReference attachment is not the PDF with its size and SHA-1", v)
			}
			if i == 1 && (len(r.RelatesTo) != 1 || r.RelatesTo[0].Code != "replaces") {
				t.Errorf("version %d: relatesTo %+v", v, r.RelatesTo)
			}
		}
		if n != 1 {
			t.Errorf("version %d: %d DocumentReferences in the transaction", v, n)
		}
	}
}
