package main

import (
	"strings"
	"testing"
)

// TestAuditAccessAndBreakGlass: the access report shows who read the case
// and the refused call; break-glass needs a reason, is listed, and ends.
func TestAuditAccessAndBreakGlass(t *testing.T) {
	addr := startServer(t)
	r := ctl(t, addr, "case", "create", "--kind", "cpb", "--site", "MAIN", "--room", "OR-3",
		"--start", "2026-11-28T08:00:00Z", "--height", "170", "--weight", "70")
	mustCode(t, r, exitOK)
	caseID := uuidRE.FindString(r.stdout)
	mustCode(t, ctl(t, addr, "case", "show", caseID), exitOK)

	r = ctl(t, addr, "break-glass", "open", caseID)
	mustCode(t, r, exitError)
	if !strings.Contains(r.stderr, "reason") {
		t.Fatalf("no reason: %s", r.stderr)
	}
	r = ctl(t, addr, "break-glass", "open", caseID, "--reason", "transferred on ECMO, arrested in ED")
	mustCode(t, r, exitOK)
	grant := uuidRE.FindString(r.stdout)
	if grant == "" || !strings.Contains(r.stdout, "running") {
		t.Fatalf("open printed:\n%s", r.stdout)
	}
	r = ctl(t, addr, "break-glass", "list", "--user", "perfusionist-1")
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, grant) || !strings.Contains(r.stdout, "arrested in ED") {
		t.Fatalf("list:\n%s", r.stdout)
	}
	r = ctl(t, addr, "break-glass", "end", grant)
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "ended") {
		t.Fatalf("end:\n%s", r.stdout)
	}

	r = ctl(t, addr, "audit", "access", "--case", caseID, "--from", "-1h")
	mustCode(t, r, exitOK)
	for _, want := range []string{"TIME", "perfusionist-1", "/perfusion.v1.CaseService/CreateCase", "/perfusion.v1.CaseService/GetCase", "/perfusion.v1.AccessService/OpenBreakGlass", "break-glass ended", "127.0.0.1:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("audit access lacks %q:\n%s", want, r.stdout)
		}
	}
	r = ctl(t, addr, "audit", "access", "--denied")
	mustCode(t, r, exitOK)
	// The development identity may do everything: nothing was refused
	// (the reasonless break-glass was bad input, not a refusal).
	if strings.Count(r.stdout, "\n") != 1 || !strings.HasPrefix(r.stdout, "TIME") {
		t.Errorf("denied-only report:\n%s", r.stdout)
	}
	mustCode(t, ctl(t, addr, "audit", "access", "--from", "yesterday"), exitUsage)
}
