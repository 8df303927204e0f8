package main

import (
	"database/sql"
	"encoding/json"
	"strings"
	"testing"

	"perfusion/server"
	"perfusion/server/servertest"
	"perfusion/store"
	"perfusion/store/sqlite/sqlitetest"
)

// TestAuditVerifyNamesTheFirstBadLink: `audit verify` passes an untouched
// access audit and, after an event was deleted with the database's
// triggers bypassed, exits 5 naming the site, the missing link and what is
// wrong; `audit access` sorts and filters by the new columns.
func TestAuditVerifyNamesTheFirstBadLink(t *testing.T) {
	be := sqlitetest.Open(t)
	addr := servertest.Start(t, func(c *server.Config) { c.Store = store.New(be, store.Config{}) })
	r := ctl(t, addr, "case", "create", "--kind", "cpb", "--site", "MAIN", "--room", "OR-3",
		"--start", "2026-11-28T08:00:00Z", "--height", "170", "--weight", "70")
	mustCode(t, r, exitOK)
	caseID := uuidRE.FindString(r.stdout)
	mustCode(t, ctl(t, addr, "case", "show", caseID), exitOK)
	mustCode(t, ctl(t, addr, "case", "show", caseID), exitOK)

	r = ctl(t, addr, "audit", "verify")
	mustCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "MAIN") || !strings.Contains(r.stdout, "OK") {
		t.Fatalf("verify:\n%s", r.stdout)
	}
	r = ctl(t, addr, "audit", "access", "--method", "/perfusion.v1.CaseService/GetCase", "--sort", "time", "--asc", "--output", "json")
	mustCode(t, r, exitOK)
	var listed struct {
		Events []struct {
			EventID string `json:"eventId"`
			Seq     string `json:"seq"`
			Site    string `json:"site"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed.Events) != 2 || listed.Events[0].Site != "MAIN" {
		t.Fatalf("GetCase events: %v\n%s", err, r.stdout)
	}
	r = ctl(t, addr, "audit", "access", "--site", "MAIN", "--sort", "method", "--outcome", "OK")
	mustCode(t, r, exitOK)
	if i, j := strings.Index(r.stdout, "CaseService/CreateCase"), strings.Index(r.stdout, "CaseService/GetCase"); i < 0 || j < i {
		t.Fatalf("sorted by method:\n%s", r.stdout)
	}
	mustCode(t, ctl(t, addr, "audit", "access", "--sort", "colour"), exitUsage)

	// Delete the first read of the case, as someone with the file could.
	db, err := sql.Open("sqlite", "file:"+be.Path()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{`DROP TRIGGER access_events_no_delete`, `DELETE FROM access_events WHERE event_id = '` + listed.Events[0].EventID + `'`,
		`CREATE TRIGGER access_events_no_delete BEFORE DELETE ON access_events BEGIN SELECT RAISE(ABORT, 'perfusion record is append-only'); END`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	r = ctl(t, addr, "audit", "verify")
	mustCode(t, r, exitVerifyFail)
	want := "site MAIN, link " + listed.Events[0].Seq + " (event missing): link missing"
	if !strings.Contains(r.stderr, want) || !strings.Contains(r.stdout, "FAILED at link "+listed.Events[0].Seq) {
		t.Fatalf("verify after a deletion: want %q\nstdout:\n%s\nstderr:\n%s", want, r.stdout, r.stderr)
	}
}
