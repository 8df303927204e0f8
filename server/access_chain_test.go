package server_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	pb "perfusion/api/perfusion/v1"
)

// TestAccessAuditReadsAudited: reading the access audit (ListAccessEvents,
// ListBreakGlass, VerifyAccessAudit) is itself recorded, with the query and
// the cases whose events were seen; a list of cases records which cases it
// returned, under the site it was confined to.
func TestAccessAuditReadsAudited(t *testing.T) {
	e := startJWT(t)
	a := e.createCaseAt("MAIN")
	b := e.createCaseAt("MAIN")
	e.createCaseAt("NORTH")
	lc, err := e.cases.ListCases(e.token("perfusionist-1", rolePerf, []string{"MAIN"}, 0), &pb.ListCasesRequest{})
	if err != nil || len(lc.GetCases()) != 2 {
		t.Fatalf("ListCases: %v, %d cases", err, len(lc.GetCases()))
	}
	ac := pb.NewAccessServiceClient(e.conn)
	admin := e.token("auditor", roleAdmin, nil, 0)
	if _, err := ac.ListBreakGlass(admin, &pb.ListBreakGlassRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.VerifyAccessAudit(admin, &pb.VerifyAccessAuditRequest{}); err != nil {
		t.Fatal(err)
	}
	seen, err := ac.ListAccessEvents(admin, &pb.ListAccessEventsRequest{Method: "/perfusion.v1.CaseService/ListCases"})
	if err != nil || len(seen.GetEvents()) != 1 {
		t.Fatalf("ListCases events: %v, %v", err, seen.GetEvents())
	}
	list := seen.GetEvents()[0]
	if list.GetSite() != "MAIN" || list.GetCaseCount() != 2 || len(list.GetCaseIds()) != 2 || list.GetCaseSetDigest() == "" ||
		!strings.Contains(list.GetQuery(), `"site":"MAIN"`) || list.GetSeq() == 0 || list.GetHash() == "" {
		t.Fatalf("the list's record: %v", list)
	}
	for _, id := range []string{a, b} {
		if !strings.Contains(strings.Join(list.GetCaseIds(), " "), id) {
			t.Errorf("the list's record lacks case %s", id)
		}
	}
	// The case filter finds the list that returned the case.
	byCase := e.accessEvents(&pb.ListAccessEventsRequest{CaseId: a, Method: "/perfusion.v1.CaseService/ListCases"})
	if len(byCase) != 1 {
		t.Errorf("case %s: %d list events, want 1", a, len(byCase))
	}
	reads := e.accessEvents(&pb.ListAccessEventsRequest{Principal: "auditor", SortBy: pb.AccessEventSort_ACCESS_EVENT_SORT_TIME,
		Order: pb.SortOrder_SORT_ORDER_ASCENDING})
	var methods []string
	for _, ev := range reads {
		methods = append(methods, ev.GetMethod()[strings.LastIndex(ev.GetMethod(), "/")+1:])
		if ev.GetCode() != "OK" || ev.GetClientAddr() == "" {
			t.Errorf("audit read recorded as %v", ev)
		}
	}
	// The two listings and the verification, then the ListAccessEvents
	// that found the ListCases record (it returned the two cases' list
	// event), and the case-filtered one.
	want := "ListBreakGlass VerifyAccessAudit ListAccessEvents ListAccessEvents"
	if got := strings.Join(methods, " "); got != want {
		t.Fatalf("audit reads recorded: %s; want %s", got, want)
	}
	// Both saw the list's event, which named the two cases.
	for _, r := range reads[2:] {
		if r.GetCaseCount() != 2 || len(r.GetCaseIds()) != 2 || !strings.Contains(r.GetQuery(), "ListCases") {
			t.Errorf("the audit read's record: %v", r)
		}
	}
	if !strings.Contains(reads[3].GetQuery(), a) {
		t.Errorf("the case-filtered read's query: %s", reads[3].GetQuery())
	}
}

// TestVerifyAccessAuditRPC: the verification reports every site's chain as
// intact, with its head, and is refused to anyone but an admin.
func TestVerifyAccessAuditRPC(t *testing.T) {
	e := startJWT(t)
	e.createCaseAt("MAIN")
	e.createCaseAt("NORTH")
	ac := pb.NewAccessServiceClient(e.conn)
	resp, err := ac.VerifyAccessAudit(e.token("auditor", roleAdmin, nil, 0), &pb.VerifyAccessAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetOk() || len(resp.GetChains()) != 2 {
		t.Fatalf("verification: %v", resp)
	}
	// Each creation is two links: its access before the write, its
	// outcome after.
	for _, c := range resp.GetChains() {
		if !c.GetOk() || c.GetLinks() != 2 || c.GetHeadSeq() != 2 || len(c.GetHeadHash()) != 64 {
			t.Errorf("chain %q: %v", c.GetSite(), c)
		}
	}
	one, err := ac.VerifyAccessAudit(e.token("auditor", roleAdmin, nil, 0), &pb.VerifyAccessAuditRequest{Site: "NORTH"})
	if err != nil || len(one.GetChains()) != 1 || one.GetChains()[0].GetSite() != "NORTH" {
		t.Fatalf("NORTH alone: %v, %v", err, one)
	}
	_, err = ac.VerifyAccessAudit(e.token("perfusionist-1", rolePerf, []string{"MAIN"}, 0), &pb.VerifyAccessAuditRequest{})
	wantCode(t, "a perfusionist verifying the access audit", err, codes.PermissionDenied)
}

// TestAccessReportSortsAndPages: the report sorts by principal, both ways,
// and pages by key; a token of another sort is refused.
func TestAccessReportSortsAndPages(t *testing.T) {
	e := startJWT(t)
	id := e.createCaseAt("MAIN")
	for _, who := range []string{"carol", "alice", "bob"} {
		if _, err := e.cases.GetCase(e.token(who, rolePerf, []string{"MAIN"}, 0), &pb.GetCaseRequest{CaseId: id}); err != nil {
			t.Fatal(err)
		}
	}
	ac := pb.NewAccessServiceClient(e.conn)
	page := func(req *pb.ListAccessEventsRequest) []string {
		t.Helper()
		var out []string
		req.PageSize, req.Method = 1, "/perfusion.v1.CaseService/GetCase"
		for {
			resp, err := ac.ListAccessEvents(e.token("auditor", roleAdmin, nil, 0), req)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range resp.GetEvents() {
				out = append(out, ev.GetPrincipal())
			}
			if resp.GetNextPageToken() == "" {
				return out
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
	if got := strings.Join(page(&pb.ListAccessEventsRequest{SortBy: pb.AccessEventSort_ACCESS_EVENT_SORT_PRINCIPAL}), " "); got != "alice bob carol" {
		t.Errorf("by principal: %s", got)
	}
	if got := strings.Join(page(&pb.ListAccessEventsRequest{SortBy: pb.AccessEventSort_ACCESS_EVENT_SORT_PRINCIPAL,
		Order: pb.SortOrder_SORT_ORDER_DESCENDING}), " "); got != "carol bob alice" {
		t.Errorf("by principal, descending: %s", got)
	}
	if got := strings.Join(page(&pb.ListAccessEventsRequest{}), " "); got != "bob alice carol" {
		t.Errorf("default, newest first: %s", got)
	}
	first, err := ac.ListAccessEvents(e.token("auditor", roleAdmin, nil, 0), &pb.ListAccessEventsRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ac.ListAccessEvents(e.token("auditor", roleAdmin, nil, 0), &pb.ListAccessEventsRequest{PageSize: 1, PageToken: first.GetNextPageToken(),
		SortBy: pb.AccessEventSort_ACCESS_EVENT_SORT_SITE})
	wantCode(t, "a page token of another sort", err, codes.InvalidArgument)
	_, err = ac.ListAccessEvents(e.token("auditor", roleAdmin, nil, 0), &pb.ListAccessEventsRequest{Outcome: "Fine"})
	wantCode(t, "an unknown outcome", err, codes.InvalidArgument)
}
