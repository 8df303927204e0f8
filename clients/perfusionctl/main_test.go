package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server/servertest"
)

// startServer serves on a fresh embedded store (see server/servertest).
func startServer(t *testing.T) string { return servertest.Start(t) }

type result struct {
	code           int
	stdout, stderr string
}

// ctl runs perfusionctl in-process against addr.
func ctl(t *testing.T, addr string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"--addr", addr, "--principal", "perfusionist-1", "--timeout", "10s"}, args...)
	code := run(context.Background(), full, &out, &errb)
	t.Logf("perfusionctl %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return result{code, out.String(), errb.String()}
}

func mustCode(t *testing.T, r result, want int) {
	t.Helper()
	if r.code != want {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, want, r.stdout, r.stderr)
	}
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

func TestWalkThrough(t *testing.T) {
	addr := startServer(t)

	r := ctl(t, addr, "case", "create", "--kind", "cpb", "--site", "MAIN", "--room", "OR-3",
		"--start", "2026-11-28T08:00:00Z", "--height", "170", "--weight", "70", "--procedure", "CABG x3")
	mustCode(t, r, exitOK)
	caseID := uuidRE.FindString(r.stdout)
	if caseID == "" || !strings.Contains(r.stdout, "planned") || !strings.Contains(r.stdout, "1.818 m²") {
		t.Fatalf("create printed no case id, planned status or BSA:\n%s", r.stdout)
	}

	r = ctl(t, addr, "case", "--output", "table", "list", "--site", "MAIN")
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, caseID) || !strings.HasPrefix(r.stdout, "CASE ") {
		t.Fatalf("case list:\n%s", r.stdout)
	}

	r = ctl(t, addr, "entry", "add", "drug", "--case", caseID, "--drug", "heparin", "--dose", "30000", "--unit", "[iU]", "--route", "intravenous", "--at", "-3m")
	mustCode(t, r, exitOK)
	drugID := uuidRE.FindString(r.stdout)
	if !strings.Contains(r.stdout, "heparin 30000 [iU] intravenous") {
		t.Fatalf("entry add drug:\n%s", r.stdout)
	}
	r = ctl(t, addr, "entry", "add", "event", caseID, "--type", "bypass-on")
	mustCode(t, r, exitOK)

	// Correct the dose only: the other fields are kept from the original.
	r = ctl(t, addr, "entry", "correct", "drug", "--case", caseID, "--entry", drugID, "--dose", "25000", "--reason", "wrong dose charted")
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "heparin 25000 [iU] intravenous") || !strings.Contains(r.stdout, "corrects "+drugID) {
		t.Fatalf("entry correct:\n%s", r.stdout)
	}
	// Correcting with the wrong kind is a usage error; without a reason too.
	mustCode(t, ctl(t, addr, "entry", "correct", "event", "--case", caseID, "--entry", drugID, "--type", "bypass-off", "--reason", "x"), exitUsage)
	mustCode(t, ctl(t, addr, "entry", "void", "--case", caseID, "--entry", drugID), exitUsage)
	// The superseded entry can no longer be corrected: a conflict.
	r = ctl(t, addr, "entry", "void", "--case", caseID, "--entry", drugID, "--reason", "again")
	if r.code != exitConflict && r.code != exitError {
		t.Fatalf("void of a superseded entry: exit %d", r.code)
	}

	r = ctl(t, addr, "entry", "list", caseID)
	mustCode(t, r, exitOK)
	if strings.Contains(r.stdout, "30000") || !strings.Contains(r.stdout, "25000") || !strings.Contains(r.stdout, "bypass-on") {
		t.Fatalf("entry list (current view):\n%s", r.stdout)
	}
	r = ctl(t, addr, "entry", "list", caseID, "--history")
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "30000") || !strings.Contains(r.stdout, "superseded by") {
		t.Fatalf("entry list --history:\n%s", r.stdout)
	}

	// Signing before closing is a lifecycle conflict.
	mustCode(t, ctl(t, addr, "case", "sign", caseID, "--meaning", "authored", "--name", "P. Perfusionist"), exitConflict)
	r = ctl(t, addr, "case", "close", caseID)
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "closed") {
		t.Fatalf("close:\n%s", r.stdout)
	}
	// Charting on a closed case: exit 4.
	mustCode(t, ctl(t, addr, "entry", "add", "note", "--case", caseID, "--text", "late"), exitConflict)
	r = ctl(t, addr, "case", "sign", caseID, "--meaning", "authored", "--name", "P. Perfusionist")
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "Signed "+caseID+" as P. Perfusionist (authored)") || !strings.Contains(r.stdout, "signed") {
		t.Fatalf("sign:\n%s", r.stdout)
	}
	r = ctl(t, addr, "case", "addendum", caseID, "--text", "Post-op Hb reported late", "--reason", "lab after sign-off")
	mustCode(t, r, exitOK)
	// The identity of a signed case is reconciled without touching it; a
	// reason is required.
	mustCode(t, ctl(t, addr, "case", "reconcile", caseID, "--mrn", "00123456", "--authority", "HOSP"), exitUsage)
	r = ctl(t, addr, "case", "reconcile", caseID, "--mrn", "00123456", "--authority", "HOSP", "--reason", "registered after the emergency")
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "Identity of "+caseID+" reconciled") {
		t.Fatalf("reconcile:\n%s", r.stdout)
	}

	r = ctl(t, addr, "record", "verify", caseID)
	mustCode(t, r, exitOK)
	if !strings.HasPrefix(r.stdout, "OK: ") {
		t.Fatalf("verify:\n%s", r.stdout)
	}
	r = ctl(t, addr, "record", "audit", caseID)
	mustCode(t, r, exitOK)
	for _, want := range []string{"case_created", "entry", "correction", "case_closed", "signature", "addendum", "identity_reconciled", "registered after the emergency", "wrong dose charted", "perfusionist-1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("audit trail lacks %q:\n%s", want, r.stdout)
		}
	}
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); !strings.HasPrefix(lines[0], "SEQ ") || len(lines) < 8 {
		t.Errorf("audit table: %d lines:\n%s", len(lines), r.stdout)
	}

	// JSON output is protojson of the responses.
	r = ctl(t, addr, "--output", "json", "record", "verify", caseID)
	mustCode(t, r, exitOK)
	var vr pb.VerifyRecordResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &vr); err != nil || !vr.GetOk() {
		t.Fatalf("verify json: %v, %v\n%s", err, &vr, r.stdout)
	}
	r = ctl(t, addr, "record", "audit", caseID, "--output", "json")
	mustCode(t, r, exitOK)
	var ar pb.GetAuditTrailResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &ar); err != nil || len(ar.GetEvents()) < 7 {
		t.Fatalf("audit json: %v, %d events", err, len(ar.GetEvents()))
	}
	r = ctl(t, addr, "case", "show", caseID, "--output", "json")
	mustCode(t, r, exitOK)
	var gc pb.GetCaseResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &gc); err != nil || gc.GetCase().GetStatus() != pb.CaseStatus_CASE_STATUS_SIGNED {
		t.Fatalf("case show json: %v, %v", err, gc.GetCase().GetStatus())
	}
	r = ctl(t, addr, "entry", "list", caseID, "--history", "--output", "json")
	mustCode(t, r, exitOK)
	var generic map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &generic); err != nil {
		t.Fatalf("entry list json: %v", err)
	}
}

func TestFieldViolationsExit1(t *testing.T) {
	addr := startServer(t)
	r := ctl(t, addr, "case", "create", "--kind", "ecmo", "--site", "MAIN", "--room", "ICU-1", "--start", "now")
	mustCode(t, r, exitOK)
	caseID := uuidRE.FindString(r.stdout)
	r = ctl(t, addr, "entry", "add", "drug", "--case", caseID, "--drug", "heparin", "--dose", "-5")
	mustCode(t, r, exitError)
	if !strings.Contains(r.stderr, "invalid request, the server refused") || !strings.Contains(r.stderr, "  entry.drug.dose: ") || !strings.Contains(r.stderr, "  entry.drug.unit: ") {
		t.Fatalf("field violations not printed field by field:\n%s", r.stderr)
	}
	// Missing site and room on create: violations from the server.
	r = ctl(t, addr, "case", "create", "--kind", "cpb", "--start", "now")
	mustCode(t, r, exitError)
	if !strings.Contains(r.stderr, "  site: ") || !strings.Contains(r.stderr, "  room: ") {
		t.Fatalf("create violations:\n%s", r.stderr)
	}
}

func TestNotFoundAndUsage(t *testing.T) {
	addr := startServer(t)
	r := ctl(t, addr, "record", "verify", uuid.NewString())
	mustCode(t, r, exitNotFound)
	mustCode(t, ctl(t, addr, "case", "show", uuid.NewString()), exitNotFound)
	mustCode(t, ctl(t, addr, "entry", "correct", "note", "--case", uuid.NewString(), "--entry", uuid.NewString(), "--reason", "x", "--text", "y"), exitNotFound)

	mustCode(t, ctl(t, addr, "nosuch"), exitUsage)
	mustCode(t, ctl(t, addr, "case", "create", "--kind", "heart"), exitUsage)
	mustCode(t, ctl(t, addr, "case", "show"), exitUsage)
	mustCode(t, ctl(t, addr, "case", "list", "--bogus"), exitUsage)
	mustCode(t, ctl(t, addr, "--output", "yaml", "case", "list"), exitUsage)
	r = ctl(t, addr, "case", "sign", "--help")
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "--meaning") {
		t.Fatalf("help:\n%s", r.stdout)
	}
	r = ctl(t, addr, "help")
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "Exit codes:") {
		t.Fatalf("help lacks exit codes:\n%s", r.stdout)
	}
}

func TestUnavailable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"--addr", addr, "--principal", "p", "--timeout", "1s", "case", "list"}, &out, &errb)
	if code != exitUnavailable {
		t.Fatalf("exit %d, want %d; stderr %s", code, exitUnavailable, errb.String())
	}
}

func TestCompletion(t *testing.T) {
	for _, c := range []struct {
		words []string
		want  string
	}{
		{[]string{"ca"}, "case"},
		{[]string{"entry", "add", ""}, "cardioplegia"},
		{[]string{"entry", "add", "event", "--type", "bypass-o"}, "bypass-on"},
		{[]string{"case", "sign", "--mea"}, "--meaning"},
		{[]string{"--output", ""}, "json"},
		{[]string{"entry", "add", "lab", "--analyte", "hc"}, "hct"},
		{[]string{"samples", "query", "--channels", "pump_f"}, "pump_flow"},
	} {
		got := complete(commandTree(), c.words)
		if !contains(got, c.want) {
			t.Errorf("complete %q = %q, want %q among them", c.words, got, c.want)
		}
	}
	for _, sh := range []string{"bash", "zsh"} {
		var out bytes.Buffer
		if code := run(context.Background(), []string{"completion", sh}, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "__complete") {
			t.Errorf("completion %s: exit %d\n%s", sh, code, out.String())
		}
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func TestCaseUpdate(t *testing.T) {
	addr := startServer(t)
	r := ctl(t, addr, "case", "create", "--kind", "cpb", "--site", "MAIN", "--room", "OR-2", "--start", "now", "--height", "170", "--weight", "70", "--mrn", "123")
	mustCode(t, r, exitOK)
	caseID := uuidRE.FindString(r.stdout)

	r = ctl(t, addr, "case", "update", caseID, "--weight", "80", "--surgeon", "S1:Dr. A. Surgeon", "--allergies", "latex, penicillin")
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "170 cm, 80 kg") || !strings.Contains(r.stdout, "Details version:  2") || !strings.Contains(r.stdout, "MRN:              123") {
		t.Fatalf("update kept or changed the wrong fields:\n%s", r.stdout)
	}
	// A stale version is refused: exit 4.
	mustCode(t, ctl(t, addr, "case", "update", caseID, "--weight", "81", "--expect-version", "1"), exitConflict)

	r = ctl(t, addr, "case", "show", caseID, "--output", "json")
	mustCode(t, r, exitOK)
	var gc pb.GetCaseResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &gc); err != nil {
		t.Fatal(err)
	}
	d := gc.GetCase().GetDetails()
	if d.GetTeam().GetSurgeon().GetDisplayName() != "Dr. A. Surgeon" || len(d.GetPatient().GetAllergies()) != 2 || d.GetPatient().GetWeightKg() != 80 {
		t.Fatalf("details after update: %v", d)
	}
}

func TestEveryEntryKind(t *testing.T) {
	addr := startServer(t)
	r := ctl(t, addr, "case", "create", "--kind", "cpb", "--site", "MAIN", "--room", "OR-5", "--start", "now")
	mustCode(t, r, exitOK)
	c := uuidRE.FindString(r.stdout)
	adds := map[string][]string{
		"event":        {"--type", "cross-clamp-on", "--comment", "ok"},
		"drug":         {"--drug", "phenylephrine", "--dose", "100", "--unit", "ug", "--route", "circuit"},
		"fluid":        {"--kind", "crystalloid", "--name", "Plasma-Lyte A", "--volume", "500"},
		"blood":        {"--type", "prbc", "--units", "1", "--volume", "280", "--route", "circuit"},
		"lab":          {"--analyte", "hct", "--value", "24", "--site", "arterial", "--device", "i-STAT"},
		"note":         {"--text", "venous line chatter"},
		"checklist":    {"--section", "pump", "--item", "occlusion set", "--state", "checked"},
		"artifact":     {"--channel", "pump_flow", "--start", "-15m", "--end", "-14m", "--artifact-reason", "line flush"},
		"cardioplegia": {"--solution", "del Nido", "--volume", "1000", "--route", "antegrade", "--phase", "induction", "--temp", "8"},
	}
	ids := map[string]string{}
	for kind, flags := range adds {
		r := ctl(t, addr, append([]string{"entry", "add", kind, "--case", c, "--output", "json"}, flags...)...)
		mustCode(t, r, exitOK)
		var resp pb.RecordEntryResponse
		if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if got := entryKind(resp.GetEntry()); got != kind {
			t.Fatalf("entry add %s stored a %s", kind, got)
		}
		ids[kind] = resp.GetEntry().GetEntryId()
	}
	// Resending with the same --id is idempotent.
	r = ctl(t, addr, "entry", "add", "note", "--case", c, "--id", ids["note"], "--text", "venous line chatter")
	if r.code != exitOK && r.code != exitConflict {
		t.Fatalf("resend: exit %d", r.code)
	}
	r = ctl(t, addr, "entry", "correct", "artifact", "--case", c, "--entry", ids["artifact"], "--end", "-13m", "--reason", "longer flush")
	mustCode(t, r, exitOK)
	r = ctl(t, addr, "entry", "void", "--case", c, "--entry", ids["note"], "--reason", "wrong case")
	mustCode(t, r, exitOK)
	r = ctl(t, addr, "entry", "list", c)
	mustCode(t, r, exitOK)
	if strings.Contains(r.stdout, "venous line chatter") || strings.Count(r.stdout, "\n") != 9 {
		t.Fatalf("current view after void and correction:\n%s", r.stdout)
	}
	// Signing against a head that moved on is refused: exit 4.
	r = ctl(t, addr, "case", "show", c)
	head := regexp.MustCompile(`Ledger head:\s+(\S+)`).FindStringSubmatch(r.stdout)[1]
	mustCode(t, ctl(t, addr, "case", "close", c), exitOK)
	mustCode(t, ctl(t, addr, "case", "sign", c, "--meaning", "authored", "--name", "P", "--head", head), exitConflict)
	r = ctl(t, addr, "case", "show", c)
	head = regexp.MustCompile(`Ledger head:\s+(\S+)`).FindStringSubmatch(r.stdout)[1]
	mustCode(t, ctl(t, addr, "case", "sign", c, "--meaning", "authored", "--name", "P", "--head", head), exitOK)
	mustCode(t, ctl(t, addr, "record", "verify", c), exitOK)
}

// TestEveryCommandHelp renders the help of every command: it fails on a
// flag defined twice (a kind's flag clashing with a common one) and on a
// leaf without examples.
func TestEveryCommandHelp(t *testing.T) {
	var walk func(n *command, path []string)
	walk = func(n *command, path []string) {
		if n.hidden {
			return
		}
		var out, errb bytes.Buffer
		args := append(append([]string{}, path...), "--help")
		if code := run(context.Background(), args, &out, &errb); code != exitOK {
			t.Errorf("%v: exit %d: %s", args, code, errb.String())
		}
		if n.setup != nil && !strings.Contains(out.String(), "Examples:\n  ") {
			t.Errorf("%v: no examples:\n%s", args, out.String())
		}
		for _, c := range n.subs {
			walk(c, append(append([]string{}, path...), c.name))
		}
	}
	walk(commandTree(), nil)
}
