package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCaseCircuitAndPrime(t *testing.T) {
	addr := startServer(t)
	r := ctl(t, addr, "case", "create", "--kind", "cpb", "--site", "MAIN", "--room", "OR-2", "--start", "now",
		"--pump", "centrifugal", "--reservoir", "hard-shell", "--oxygenator", "Fusion:L123:(01)0761", "--arterial-filter", "AF100",
		"--cannula", "ascending aorta:22", "--cannula", "right atrium:36:two-stage", "--cardioplegia", "del Nido",
		"--cell-salvage", "--ultrafiltration", "--prime", "Plasma-Lyte A:1200", "--prime", "albumin 5%:250", "--rap", "400")
	mustCode(t, r, exitOK)
	caseID := uuidRE.FindString(r.stdout)
	for _, want := range []string{"Arterial pump:", "centrifugal", "hard-shell", "Fusion, lot L123, UDI (01)0761", "AF100",
		"ascending aorta 22 Fr", "right atrium 36 Fr two-stage", "del Nido", "cell salvage, ultrafiltration",
		"1450 mL (Plasma-Lyte A 1200 mL, albumin 5% 250 mL)", "RAP:", "400 mL"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("case create did not show %q:\n%s", want, r.stdout)
		}
	}

	// Repeating --cannula in an update replaces the list; the prime is kept.
	r = ctl(t, addr, "case", "update", caseID, "--cannula", "femoral vein:25")
	mustCode(t, r, exitOK)
	if strings.Contains(r.stdout, "ascending aorta") || !strings.Contains(r.stdout, "femoral vein 25 Fr") || !strings.Contains(r.stdout, "1450 mL") {
		t.Fatalf("update replaced the wrong things:\n%s", r.stdout)
	}

	for _, bad := range [][]string{
		{"--cannula", "aorta"}, {"--cannula", "aorta:big"}, {"--prime", "saline"}, {"--prime", "saline:-5"}, {"--pump", "hamster"},
	} {
		args := append([]string{"case", "create", "--kind", "cpb", "--site", "MAIN", "--room", "OR-2", "--start", "now"}, bad...)
		mustCode(t, ctl(t, addr, args...), exitUsage)
	}
}

func TestCaseListAll(t *testing.T) {
	addr := startServer(t)
	for i := 0; i < 5; i++ {
		mustCode(t, ctl(t, addr, "case", "create", "--kind", "cpb", "--site", "EAST", "--room", "OR-9", "--start", "now"), exitOK)
	}
	r := ctl(t, addr, "case", "list", "--site", "EAST", "--page-size", "2")
	mustCode(t, r, exitOK)
	if n := len(uuidRE.FindAllString(r.stdout, -1)); n != 2 || !strings.Contains(r.stdout, "--page-token") {
		t.Fatalf("one page: %d cases, want 2 and a next-page hint:\n%s", n, r.stdout)
	}
	r = ctl(t, addr, "case", "list", "--site", "EAST", "--page-size", "2", "--all", "--output", "json")
	mustCode(t, r, exitOK)
	var resp struct {
		Cases []struct {
			CaseID string `json:"caseId"`
		} `json:"cases"`
		NextPageToken string `json:"nextPageToken"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range resp.Cases {
		seen[c.CaseID] = true
	}
	if len(resp.Cases) != 5 || len(seen) != 5 || resp.NextPageToken != "" {
		t.Fatalf("--all: %d cases (%d distinct), token %q; want 5 distinct and no token", len(resp.Cases), len(seen), resp.NextPageToken)
	}
}
