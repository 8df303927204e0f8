package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"perfusion/hl7/inbound"
	v2 "perfusion/hl7/v2"
	"perfusion/server"
	"perfusion/server/servertest"
)

// TestInboundCommands: an SIU message plans a case; inbound list shows it
// with its change, inbound show prints the row and, with --content, the
// message and ACK one segment per line; inbound replay processes it again
// (nothing more changes); case identity shows where the identity came
// from; case lookup without a FHIR server says so.
func TestInboundCommands(t *testing.T) {
	var h *inbound.Handler
	addr := servertest.Start(t, func(c *server.Config) {
		var err error
		h, err = inbound.NewHandler(inbound.Config{Store: c.Store, Rooms: map[string][]string{"MAIN": {"CVOR-1"}}})
		if err != nil {
			t.Fatal(err)
		}
		c.Inbound = h
	})
	start := time.Now().Add(26 * time.Hour).UTC().Format("200601021504-0700")
	msg := "MSH|^~\\&|OPTIME|HOSP|PERFUSION|HOSP|20261201120000||SIU^S12^SIU_S12|CTL-9|P|2.5.1\r" +
		"SCH||B-9^OPTIME\rPID|1||MRN-9^^^HOSP^MR||Roe^Rita||19700101|F\rRGS|1\rAIS|1||CABG^CABG^LOCAL|" + start + "\rAIL|1||^CVOR-1^^MAIN\r"
	ack := h.Handle(context.Background(), "engine", []byte(msg))
	if a, err := v2.ParseAck(ack); err != nil || a.Code != v2.AA {
		t.Fatalf("ACK %+v %v", a, err)
	}

	r := ctl(t, addr, "inbound", "list")
	mustCode(t, r, exitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "SIU^S12") || !strings.Contains(lines[1], "CTL-9") || !strings.Contains(lines[1], "created 1") ||
		strings.Contains(r.stdout, "MRN-9") {
		t.Fatalf("inbound list:\n%s", r.stdout)
	}
	id := strings.Fields(lines[1])[0]
	r = ctl(t, addr, "inbound", "show", id)
	mustCode(t, r, exitOK)
	caseID := uuidRE.FindString(r.stdout)
	if caseID == "" || !strings.Contains(r.stdout, "created") || strings.Contains(r.stdout, "MRN-9") {
		t.Fatalf("inbound show:\n%s", r.stdout)
	}
	r = ctl(t, addr, "inbound", "show", id, "--content")
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "\nPID|1||MRN-9^^^HOSP^MR||Roe^Rita||19700101|F\n") || !strings.Contains(r.stdout, "\nMSA|AA|CTL-9") {
		t.Fatalf("inbound show --content:\n%s", r.stdout)
	}
	r = ctl(t, addr, "inbound", "replay", id)
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "(2 attempt(s))") || !strings.Contains(r.stdout, "Before replay by") || !strings.Contains(r.stdout, "unchanged") {
		t.Fatalf("inbound replay:\n%s", r.stdout)
	}
	mustCode(t, ctl(t, addr, "inbound", "show", "x"), exitUsage)
	mustCode(t, ctl(t, addr, "inbound", "show", "999999"), exitNotFound)
	mustCode(t, ctl(t, addr, "inbound", "list", "--ack", "XX"), exitError)

	r = ctl(t, addr, "case", "identity", caseID)
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "interface:engine") || !strings.Contains(r.stdout, "MRN-9") || !strings.Contains(r.stdout, "In force (as exported): MRN MRN-9 (HOSP), Roe, Rita, born 1970-01-01") {
		t.Fatalf("case identity:\n%s", r.stdout)
	}
	r = ctl(t, addr, "case", "lookup", "--site", "MAIN", "--mrn", "MRN-9")
	mustCode(t, r, exitConflict)
	if !strings.Contains(r.stderr, "--fhir-lookup-url") {
		t.Fatalf("case lookup without a FHIR server: %s", r.stderr)
	}
}
