package fhir

import (
	"bytes"
	"encoding/json"
	"flag"
	"html"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenBundles builds every golden bundle from the reference case.
func goldenBundles(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for name, g := range map[string]struct {
		build func(*Record, Options) (*Bundle, error)
		rec   *Record
	}{
		"document_cpb.json":                 {BuildDocument, refRecord()},
		"document_cpb_amended.json":         {BuildDocument, refAmended()},
		"transaction_cpb.json":              {BuildTransaction, refRecord()},
		"transaction_cpb_pdf.json":          {BuildTransaction, refWithPDF(refRecord(), 0)},
		"transaction_cpb_pdf_addendum.json": {BuildTransaction, refWithPDF(refAmended(), 57)},
	} {
		b, err := g.build(g.rec, refOptions())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		j, err := Encode(b)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = j
	}
	return out
}

func TestGolden(t *testing.T) {
	for name, got := range goldenBundles(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", name)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run go test -update and review the diff)", path)
			}
		})
	}
}

// TestReproducible builds twice: fullUrls and ids come from the case, not
// from randomness or the clock.
func TestReproducible(t *testing.T) {
	a, b := goldenBundles(t), goldenBundles(t)
	for k := range a {
		if !bytes.Equal(a[k], b[k]) {
			t.Errorf("%s differs between two builds", k)
		}
	}
}

// TestDocumentShape checks the rules of a FHIR document that a structural
// validator does not: Composition first, identifier and timestamp set,
// every fullUrl a urn:uuid matching the resource id, every reference to a
// urn:uuid resolvable inside the bundle, every entry listed in a section.
func TestDocumentShape(t *testing.T) {
	var doc struct {
		Identifier map[string]string `json:"identifier"`
		Timestamp  string            `json:"timestamp"`
		Entry      []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(goldenBundles(t)["document_cpb.json"], &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Identifier["value"] == "" || doc.Timestamp == "" {
		t.Error("document needs identifier and timestamp")
	}
	full := map[string]bool{}
	for i, e := range doc.Entry {
		var r struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if err := json.Unmarshal(e.Resource, &r); err != nil {
			t.Fatal(err)
		}
		if i == 0 && r.ResourceType != "Composition" {
			t.Errorf("first entry is %s", r.ResourceType)
		}
		if e.FullURL != "urn:uuid:"+r.ID {
			t.Errorf("entry %d: fullUrl %s does not match id %s", i, e.FullURL, r.ID)
		}
		if full[e.FullURL] {
			t.Errorf("entry %d: fullUrl repeated", i)
		}
		full[e.FullURL] = true
	}
	// Every entry is reached from the Composition, directly (section
	// entries, subject, author, encounter) or through another entry (a
	// performer's Practitioner through its Procedure): nothing stray.
	reached := map[string]bool{doc.Entry[0].FullURL: true}
	for changed := true; changed; {
		changed = false
		for _, e := range doc.Entry {
			if !reached[e.FullURL] {
				continue
			}
			for _, part := range strings.Split(string(e.Resource), `"reference": "`)[1:] {
				if ref := part[:strings.IndexByte(part, '"')]; !reached[ref] {
					reached[ref], changed = true, true
				}
			}
		}
	}
	for i, e := range doc.Entry[1:] {
		if !reached[e.FullURL] {
			t.Errorf("entry %d (%s) is not reached from the Composition", i+1, e.FullURL)
		}
	}
	all := string(goldenBundles(t)["document_cpb.json"])
	for _, part := range strings.Split(all, `"reference": "`)[1:] {
		ref := part[:strings.IndexByte(part, '"')]
		if !full[ref] {
			t.Errorf("reference %s does not resolve in the bundle", ref)
		}
	}
}

// TestErrorsCarryNoPatientData: a record the builder refuses yields an
// error that does not repeat the patient's identifiers.
func TestErrorsCarryNoPatientData(t *testing.T) {
	rec := refRecord()
	opts := refOptions()
	opts.MRNSystems = nil
	_, err := BuildDocument(rec, opts)
	if err == nil {
		t.Fatal("want an error for an unmapped assigning authority")
	}
	p := rec.Case.Details.Patient
	for _, s := range []string{p.MRN, p.FamilyName, p.GivenName, p.BirthDate} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains patient data", err)
		}
	}
	rec = refRecord()
	rec.Case.Status = "closed"
	if _, err := BuildTransaction(rec, refOptions()); err == nil {
		t.Error("an unsigned case must not be exported")
	}
}

// TestAmendmentKeepsIdentity: a corrected lab result is sent under the
// fullUrl (and identifier) of the value it corrects, with status
// corrected, while the document gets a new Bundle.identifier, so a
// receiver replaces the value and keeps both document versions.
func TestAmendmentKeepsIdentity(t *testing.T) {
	first, err := BuildDocument(refRecord(), refOptions())
	if err != nil {
		t.Fatal(err)
	}
	second, err := BuildDocument(refAmended(), refOptions())
	if err != nil {
		t.Fatal(err)
	}
	if first.Identifier.Value == second.Identifier.Value {
		t.Error("versions 1 and 2 share a Bundle.identifier")
	}
	if len(first.Entry) != len(second.Entry) {
		t.Fatalf("entries: %d vs %d", len(first.Entry), len(second.Entry))
	}
	changed := 0
	for i := range first.Entry {
		if first.Entry[i].FullURL != second.Entry[i].FullURL {
			t.Errorf("entry %d changed identity", i)
		}
		a, _ := first.Entry[i].Resource.(*Observation)
		b, _ := second.Entry[i].Resource.(*Observation)
		if a != nil && b != nil && a.ValueQuantity != nil && *a.ValueQuantity.Value != *b.ValueQuantity.Value {
			changed++
			if b.Status != "corrected" {
				t.Errorf("entry %d: corrected value has status %s", i, b.Status)
			}
		}
	}
	if changed != 1 {
		t.Errorf("%d values changed, want 1", changed)
	}
}

// TestDocumentSelfContained: the document resolves its references inside
// itself (no Practitioner or Encounter known only by identifier) and its
// Composition has a generated XHTML narrative naming every section.
func TestDocumentSelfContained(t *testing.T) {
	for _, name := range []string{"document_cpb.json", "document_cpb_amended.json"} {
		var doc struct {
			Entry []struct {
				FullURL  string         `json:"fullUrl"`
				Resource map[string]any `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(goldenBundles(t)[name], &doc); err != nil {
			t.Fatal(err)
		}
		types := map[string]string{}
		for _, e := range doc.Entry {
			types[e.FullURL], _ = e.Resource["resourceType"].(string)
		}
		// Every Reference that names a type or an identifier also points
		// at an entry of that type.
		var walk func(where string, v any)
		walk = func(where string, v any) {
			switch v := v.(type) {
			case map[string]any:
				typ, isType := v["type"].(string)
				_, hasIdent := v["identifier"]
				_, hasDisplay := v["display"]
				if isType && (hasIdent || hasDisplay) {
					ref, _ := v["reference"].(string)
					if types[ref] != typ {
						t.Errorf("%s: %s: a %s reference that does not resolve in the document (reference %q)", name, where, typ, ref)
					}
				}
				for k, x := range v {
					walk(where+"."+k, x)
				}
			case []any:
				for _, x := range v {
					walk(where, x)
				}
			}
		}
		for _, e := range doc.Entry {
			walk(types[e.FullURL], e.Resource)
		}
		comp := doc.Entry[0].Resource
		text, _ := comp["text"].(map[string]any)
		div, _ := text["div"].(string)
		if text["status"] != "generated" || !strings.HasPrefix(div, `<div xmlns="http://www.w3.org/1999/xhtml">`) || !strings.HasSuffix(div, "</div>") {
			t.Errorf("%s: Composition.text %v, want a generated XHTML div", name, text)
		}
		secs, _ := comp["section"].([]any)
		if len(secs) == 0 {
			t.Fatalf("%s: no sections", name)
		}
		for _, s := range secs {
			title, _ := s.(map[string]any)["title"].(string)
			if !strings.Contains(div, html.EscapeString(title)+":") {
				t.Errorf("%s: the narrative does not summarise section %q", name, title)
			}
		}
	}
}
