package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"perfusion/export"
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

	r := ctl(t, addr, "export", "hl7", id)
	mustCode(t, r, exitOK)
	m, err := v2.Parse([]byte(r.stdout))
	if err != nil || m.Get("MSH-9") != "ORU" || !strings.Contains(r.stderr, "message id "+m.ControlID()) {
		t.Fatalf("export hl7: %v\nstderr: %s", err, r.stderr)
	}
	out := filepath.Join(t.TempDir(), "case.hl7")
	mustCode(t, ctl(t, addr, "export", "hl7", id, "--to", out), exitOK)
	if b, err := os.ReadFile(out); err != nil || string(b) != r.stdout {
		t.Fatalf("--to wrote something else (%v)", err)
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
	// Without FHIR identifier systems the server refuses to render FHIR.
	mustCode(t, ctl(t, addr, "export", "fhir", id), exitConflict)

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
}
