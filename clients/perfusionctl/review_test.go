package main

import (
	"encoding/csv"
	"regexp"
	"strings"
	"testing"
	"time"

	"perfusion/server"
	"perfusion/server/servertest"
)

// chartClosedCase charts a signed case through the CLI: bypass of cpb
// minutes starting three hours ago, one lab Hct, and returns its id.
func chartClosedCase(t *testing.T, addr, start, surgeon string, cpb int, hct string) string {
	t.Helper()
	r := ctl(t, addr, "case", "create", "--kind", "cpb", "--site", "MAIN", "--room", "OR-3", "--start", start,
		"--height", "170", "--weight", "70", "--mrn", "MRN-CLI-55121", "--family", "Clifamilyname", "--surgeon", surgeon)
	mustCode(t, r, exitOK)
	id := uuidRE.FindString(r.stdout)
	on := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Minute)
	at := func(min int) string { return on.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }
	mustCode(t, ctl(t, addr, "entry", "add", "event", id, "--type", "bypass-on", "--at", at(0)), exitOK)
	mustCode(t, ctl(t, addr, "entry", "add", "event", id, "--type", "bypass-off", "--at", at(cpb)), exitOK)
	mustCode(t, ctl(t, addr, "entry", "add", "lab", id, "--analyte", "hct", "--value", hct, "--at", at(10)), exitOK)
	mustCode(t, ctl(t, addr, "case", "close", id), exitOK)
	mustCode(t, ctl(t, addr, "case", "sign", id, "--meaning", "authored", "--name", "P. Perfusionist"), exitOK)
	return id
}

func TestReviewCommands(t *testing.T) {
	addr := servertest.Start(t, func(c *server.Config) { c.ExportKey = []byte(strings.Repeat("k", 32)) })
	// CPB 90, 120 and 60 minutes; Hct 20, 24, 18; January, January, February.
	a := chartClosedCase(t, addr, "2026-01-10T08:00:00Z", "S1", 90, "20")
	b := chartClosedCase(t, addr, "2026-01-20T08:00:00Z", "S2", 120, "24")
	c := chartClosedCase(t, addr, "2026-02-03T08:00:00Z", "S1", 60, "18")

	r := ctl(t, addr, "review", "cases", "--where", "nadir_hct_pct<21", "--sort", "cpb_minutes", "--desc")
	mustCode(t, r, exitOK)
	if !strings.HasPrefix(strings.TrimSpace(r.stdout), "CASE") || !strings.Contains(r.stdout, short(a)) || !strings.Contains(r.stdout, short(c)) ||
		strings.Contains(r.stdout, short(b)) || strings.Index(r.stdout, short(a)) > strings.Index(r.stdout, short(c)) {
		t.Fatalf("review cases: want A (90 min) before C (60 min), not B:\n%s", r.stdout)
	}
	r = ctl(t, addr, "review", "cases", "--output", "csv", "--metrics", "cpb_minutes,nadir_hct_pct")
	mustCode(t, r, exitOK)
	rows, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil || len(rows) != 4 || strings.Join(rows[0][8:], ",") != "cpb_minutes,nadir_hct_pct" || rows[1][0] != a || rows[1][8] != "90" || rows[1][9] != "20" {
		t.Fatalf("review cases csv: %v\n%s", err, r.stdout)
	}
	r = ctl(t, addr, "review", "aggregate", "--group-by", "month", "--metrics", "cpb_minutes", "--output", "csv")
	mustCode(t, r, exitOK)
	// January: 90 and 120 → mean 105, p25 97.5; February: 60.
	if !strings.Contains(r.stdout, "2026-01,cpb_minutes,2,105,105,97.5,112.5,90,120") || !strings.Contains(r.stdout, "2026-02,cpb_minutes,1,60,60,60,60,60,60") {
		t.Fatalf("review aggregate:\n%s", r.stdout)
	}
	r = ctl(t, addr, "review", "aggregate", "--group-by", "surgeon", "--metrics", "nadir_hct_pct")
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "MEDIAN") || !strings.Contains(r.stdout, "S1") {
		t.Fatalf("review aggregate table:\n%s", r.stdout)
	}
	r = ctl(t, addr, "review", "metrics", b)
	mustCode(t, r, exitOK)
	// B: 120 minutes without pump flow, so full flow by the minutes rule,
	// 5 minutes after bypass on to 10 before off: 105 minutes.
	if !strings.Contains(r.stdout, "Definitions v2") || !strings.Contains(r.stdout, "cpb_minutes") || !strings.Contains(r.stdout, "120") ||
		!strings.Contains(r.stdout, "(minutes-rule)") || !strings.Contains(r.stdout, ", 105 min") || !regexp.MustCompile(`nadir_hct_pct\s+24\s+%\s+bypass`).MatchString(r.stdout) {
		t.Fatalf("review metrics:\n%s", r.stdout)
	}
	r = ctl(t, addr, "review", "export", "--format", "ndjson")
	mustCode(t, r, exitOK)
	if n := strings.Count(r.stdout, "\n"); n != 3 || strings.Contains(r.stdout, "MRN-CLI") || strings.Contains(r.stdout, "Clifamilyname") ||
		strings.Contains(r.stdout, a) || strings.Contains(r.stdout, "2026-01-10") {
		t.Fatalf("review export: %d lines, or identifiers:\n%s", n, r.stdout)
	}
	mustCode(t, ctl(t, addr, "review", "cases", "--where", "nadir_hct_pct~21"), exitUsage)
	r = ctl(t, addr, "review", "cases", "--where", "no_such_metric<1")
	if r.code == exitOK || !strings.Contains(r.stderr, "no_such_metric") {
		t.Fatalf("unknown metric: exit %d\n%s", r.code, r.stderr)
	}
}

func FuzzParseCondition(f *testing.F) {
	for _, s := range []string{"nadir_hct_pct<21", "a<=1", "b>=2.5", "c<>3", "d!=4", "e=5", "f>-1e3", "<1", "x~1", "y<", "z<=abc", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCondition(s)
		if err != nil {
			return
		}
		if c.GetMetric() == "" || c.GetComparison() == 0 || strings.ContainsAny(c.GetMetric(), "<>=!") {
			t.Fatalf("parseCondition(%q) = %v", s, c)
		}
	})
}

// TestReviewCSVIsSpreadsheetSafe: a staff ID that a spreadsheet would run
// as a formula comes out as text; numbers stay numbers.
func TestReviewCSVIsSpreadsheetSafe(t *testing.T) {
	addr := servertest.Start(t)
	id := chartClosedCase(t, addr, "2026-03-10T08:00:00Z", "@SUM(A1)", 75, "22")
	r := ctl(t, addr, "review", "cases", "--output", "csv", "--metrics", "cpb_minutes")
	mustCode(t, r, exitOK)
	rows, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil || len(rows) != 2 || rows[1][0] != id {
		t.Fatalf("review cases csv: %v\n%s", err, r.stdout)
	}
	if rows[1][6] != "'@SUM(A1)" || rows[1][8] != "75" {
		t.Fatalf("surgeon cell %q, cpb %q: want the formula neutralised and the number kept", rows[1][6], rows[1][8])
	}
}
