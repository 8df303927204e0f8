package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"perfusion/export"
	"perfusion/hl7/fhir"
	v2 "perfusion/hl7/v2"
	"perfusion/server"
	"perfusion/server/servertest"
	"perfusion/store"
)

// withOutbox queues an HL7 delivery on every signature.
func withOutbox(c *server.Config) {
	c.Store = store.New(c.Store.Backend(), store.Config{Outbox: &store.OutboxConfig{
		Destinations: []store.Destination{store.DestinationMLLP}, MessageID: export.MessageID}})
}

func TestExportAndDeliveryCommands(t *testing.T) {
	addr := servertest.Start(t, withOutbox)
	id := chartClosedCase(t, addr, "2026-01-10T08:00:00Z", "S1", 90, "20")

	// --raw: the exact bytes as sent, segments ending in CR.
	r := ctl(t, addr, "export", "hl7", id, "--raw")
	mustCode(t, r, exitOK)
	m, err := v2.Parse([]byte(r.stdout))
	if err != nil || m.Get("MSH-9") != "ORU" || !strings.Contains(r.stderr, "message id "+m.ControlID()) {
		t.Fatalf("export hl7: %v\nstderr: %s", err, r.stderr)
	}
	raw := r.stdout
	// For people: one segment per line, nothing else changed.
	r = ctl(t, addr, "export", "hl7", id)
	mustCode(t, r, exitOK)
	segs := strings.Split(strings.TrimSuffix(raw, "\r"), "\r")
	if strings.Contains(r.stdout, "\r") || r.stdout != strings.Join(segs, "\n")+"\n" || len(segs) < 3 {
		t.Fatalf("export hl7 without --raw is not one segment per line:\n%q", r.stdout)
	}
	out := filepath.Join(t.TempDir(), "case.hl7")
	mustCode(t, ctl(t, addr, "export", "hl7", id, "--to", out), exitOK)
	if b, err := os.ReadFile(out); err != nil || string(b) != raw {
		t.Fatalf("--to wrote something else than the bytes as sent (%v)", err)
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Fatalf("--to file mode %v, want 0600", st.Mode().Perm())
	}
	// This case has no device data: no device report, and the error says so.
	r = ctl(t, addr, "export", "hl7", id, "--device-report")
	mustCode(t, r, exitConflict)
	if !strings.Contains(r.stderr, "no device data") {
		t.Fatalf("device report of a case without samples: %s", r.stderr)
	}
	// Without FHIR identifier systems the server refuses to render FHIR,
	// naming the server setting to fix, once, without repeating itself.
	r = ctl(t, addr, "export", "fhir", id)
	mustCode(t, r, exitConflict)
	if !strings.Contains(r.stderr, "--fhir-staff-system") || !strings.Contains(r.stderr, "PERFUSION_FHIR_STAFF_SYSTEM") ||
		strings.Count(r.stderr, "cannot be rendered") > 1 {
		t.Fatalf("export fhir without a staff system: %s", r.stderr)
	}

	r = ctl(t, addr, "delivery", "list", "--case", id)
	mustCode(t, r, exitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "hl7v2-mllp") || !strings.Contains(lines[1], "pending") {
		t.Fatalf("delivery list:\n%s", r.stdout)
	}
	delivery := regexp.MustCompile(`^[0-9a-f-]{36}`).FindString(lines[1])
	r = ctl(t, addr, "delivery", "retry", "--case", id, delivery)
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "pending") {
		t.Fatalf("delivery retry:\n%s", r.stdout)
	}
	mustCode(t, ctl(t, addr, "delivery", "list", "--state", "bogus"), exitUsage)
	mustCode(t, ctl(t, addr, "delivery", "retry", delivery), exitUsage)
	// The only version cannot be superseded: nothing would replace it.
	r = ctl(t, addr, "delivery", "supersede", "--case", id, "--reason", "newer version", delivery)
	mustCode(t, r, exitConflict)
	if !strings.Contains(r.stderr, "no later version") {
		t.Fatalf("supersede the only version: %s", r.stderr)
	}
	mustCode(t, ctl(t, addr, "delivery", "supersede", "--case", id, delivery), exitUsage)
}

// TestExportPDFCommand: export pdf writes the signed record's PDF to a
// private file and names the version and ledger head it shows.
func TestExportPDFCommand(t *testing.T) {
	addr := servertest.Start(t)
	id := chartClosedCase(t, addr, "2026-01-10T08:00:00Z", "S1", 90, "20")
	out := filepath.Join(t.TempDir(), "case.pdf")
	r := ctl(t, addr, "export", "pdf", id, "--out", out)
	mustCode(t, r, exitOK)
	b, err := os.ReadFile(out)
	if err != nil || !strings.HasPrefix(string(b), "%PDF-") {
		t.Fatalf("export pdf wrote no PDF (%v)", err)
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Fatalf("--out file mode %v, want 0600", st.Mode().Perm())
	}
	if !regexp.MustCompile(`^version \d+, \d+ bytes, ledger link \d+ hash [0-9a-f]{64}\n$`).MatchString(r.stderr) {
		t.Fatalf("export pdf stderr: %q", r.stderr)
	}
	mustCode(t, ctl(t, addr, "export", "pdf", "123e4567-e89b-12d3-a456-426614174000"), exitNotFound)

	// export hl7 --document: the same PDF in an MDM^T02 (the first version).
	r = ctl(t, addr, "export", "hl7", id, "--document", "--raw")
	mustCode(t, r, exitOK)
	m, err := v2.Parse([]byte(r.stdout))
	if err != nil {
		t.Fatalf("export hl7 --document: %v", err)
	}
	pdf, err := v2.DocumentPDF(m)
	if err != nil || string(pdf) != string(b) || m.Get("MSH-9") != "MDM" || m.Segment("MSH").Field(9).Component(2) != "T02" ||
		!strings.Contains(r.stderr, "message id "+m.ControlID()) {
		t.Fatalf("export hl7 --document is not the MDM^T02 of the PDF (%v)\nstderr: %s", err, r.stderr)
	}
	mustCode(t, ctl(t, addr, "export", "hl7", id, "--document", "--device-report"), exitUsage)
}

func TestExportFHIRDocument(t *testing.T) {
	addr := servertest.Start(t, func(c *server.Config) {
		c.Renderer = export.NewRenderer(c.Store.Backend(), export.HL7Config{SendingApplication: v2.HD{NamespaceID: "PERFUSION"}},
			fhir.Options{MRNSystems: map[string]string{"": "http://hosp.example.org/mrn"}, StaffSystem: "http://hosp.example.org/staff"}, nil)
	})
	id := chartClosedCase(t, addr, "2026-01-10T08:00:00Z", "S1", 90, "20")
	var bundle struct {
		Type  string `json:"type"`
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
			} `json:"resource"`
		} `json:"entry"`
	}
	r := ctl(t, addr, "export", "fhir", id)
	mustCode(t, r, exitOK)
	if err := json.Unmarshal([]byte(r.stdout), &bundle); err != nil || bundle.Type != "transaction" {
		t.Fatalf("export fhir: type %q (%v)", bundle.Type, err)
	}
	r = ctl(t, addr, "export", "fhir", id, "--document")
	mustCode(t, r, exitOK)
	if err := json.Unmarshal([]byte(r.stdout), &bundle); err != nil || bundle.Type != "document" ||
		len(bundle.Entry) == 0 || bundle.Entry[0].Resource.ResourceType != "Composition" {
		t.Fatalf("export fhir --document: type %q (%v)\n%s", bundle.Type, err, r.stderr)
	}
}
