package server_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
	"perfusion/store"
	"perfusion/store/sqlite"
	"perfusion/store/sqlite/sqlitetest"
)

var (
	rolePerf     = []server.Role{server.RolePerfusionist}
	roleReviewer = []server.Role{server.RoleReviewer}
	roleAdmin    = []server.Role{server.RoleAdmin}
)

// accessEvents lists the access audit as an admin.
func (e *jwtEnv) accessEvents(f *pb.ListAccessEventsRequest) []*pb.AccessEvent {
	e.t.Helper()
	resp, err := pb.NewAccessServiceClient(e.conn).ListAccessEvents(e.token("auditor", roleAdmin, nil, 0), f)
	if err != nil {
		e.t.Fatalf("ListAccessEvents: %v", err)
	}
	return resp.GetEvents()
}

// TestAccessAuditRecordsEveryCall: reads and writes of patient data, and
// every refused call, are recorded with who, roles, case, RPC, outcome and
// client address; health checks are not.
func TestAccessAuditRecordsEveryCall(t *testing.T) {
	e := startJWT(t)
	id := e.createCaseAt("MAIN")
	north := e.createCaseAt("NORTH")
	main := []string{"MAIN"}
	calls := []struct {
		principal string
		code      codes.Code
		caseID    string
		method    string
		do        func() error
	}{
		{"perfusionist-1", codes.OK, id, "GetCase", func() error {
			_, err := e.cases.GetCase(e.token("perfusionist-1", rolePerf, main, 0), &pb.GetCaseRequest{CaseId: id})
			return err
		}},
		{"reviewer-1", codes.PermissionDenied, id, "GetCase", func() error {
			_, err := e.cases.GetCase(e.token("reviewer-1", roleReviewer, main, 0), &pb.GetCaseRequest{CaseId: id})
			return err
		}},
		{"reviewer-1", codes.OK, id, "VerifyRecord", func() error {
			_, err := e.record.VerifyRecord(e.token("reviewer-1", roleReviewer, main, 0), &pb.VerifyRecordRequest{CaseId: id})
			return err
		}},
		{"perfusionist-1", codes.PermissionDenied, north, "ListEntries", func() error {
			_, err := e.charting.ListEntries(e.token("perfusionist-1", rolePerf, main, 0), &pb.ListEntriesRequest{CaseId: north})
			return err
		}},
		{"", codes.Unauthenticated, "", "ListCases", func() error {
			_, err := e.cases.ListCases(context.Background(), &pb.ListCasesRequest{})
			return err
		}},
		{"perfusionist-1", codes.NotFound, "00000000-0000-4000-8000-000000000000", "GetCase", func() error {
			_, err := e.cases.GetCase(e.token("perfusionist-1", rolePerf, main, 0), &pb.GetCaseRequest{CaseId: "00000000-0000-4000-8000-000000000000"})
			return err
		}},
	}
	for _, c := range calls {
		if got := status.Code(c.do()); got != c.code {
			t.Fatalf("%s as %q: %s, want %s", c.method, c.principal, got, c.code)
		}
	}
	if _, err := healthpb.NewHealthClient(e.conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	// A call without credentials is refused at its headers, before its
	// body is read, and recorded asynchronously (limits.go): wait for it.
	events := e.accessEvents(&pb.ListAccessEventsRequest{})
	// Each creation is two events: its access before the write ("write
	// started"), its outcome after.
	for deadline := time.Now().Add(5 * time.Second); len(events) < len(calls)+4 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		events = e.accessEvents(&pb.ListAccessEventsRequest{})
	}
	// Newest first: the calls above in reverse, after the two creations.
	if len(events) != len(calls)+4 {
		for _, ev := range events {
			t.Log(ev)
		}
		t.Fatalf("%d access events, want %d (2 creations of 2 events each and every call but the health check)", len(events), len(calls)+4)
	}
	for i, c := range calls {
		ev := events[len(calls)-1-i]
		if ev.GetPrincipal() != c.principal || ev.GetCode() != c.code.String() || ev.GetCaseId() != c.caseID ||
			!strings.HasSuffix(ev.GetMethod(), "/"+c.method) || !strings.HasPrefix(ev.GetClientAddr(), "127.0.0.1:") || ev.GetAt() == nil {
			t.Errorf("call %d (%s as %q → %s): recorded %v", i, c.method, c.principal, c.code, ev)
		}
		if c.principal != "" && ev.GetVia() != "jwt" {
			t.Errorf("call %d: via %q", i, ev.GetVia())
		}
		if c.code == codes.PermissionDenied && ev.GetReason() == "" {
			t.Errorf("call %d: a refusal without its reason", i)
		}
	}
	if created := events[len(events)-1]; created.GetCaseId() != id || !strings.HasSuffix(created.GetMethod(), "/CreateCase") {
		t.Errorf("creation recorded as %v", created)
	}
	// Filters and pages.
	if n := len(e.accessEvents(&pb.ListAccessEventsRequest{Principal: "reviewer-1"})); n != 2 {
		t.Errorf("reviewer-1: %d events, want 2", n)
	}
	// The north case's three events (its creation's two), and the first
	// listing, which returned them (reads of the audit record the cases
	// whose events they saw).
	if n := len(e.accessEvents(&pb.ListAccessEventsRequest{CaseId: north})); n != 4 {
		t.Errorf("north case: %d events, want 4", n)
	}
	if n := len(e.accessEvents(&pb.ListAccessEventsRequest{DeniedOnly: true})); n != 3 {
		t.Errorf("denied: %d events, want 3", n)
	}
	ac := pb.NewAccessServiceClient(e.conn)
	var paged int
	req := &pb.ListAccessEventsRequest{PageSize: 3}
	for {
		resp, err := ac.ListAccessEvents(e.token("auditor", roleAdmin, nil, 0), req)
		if err != nil {
			t.Fatal(err)
		}
		paged += len(resp.GetEvents())
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	// The four listings above are recorded too; the pages' own records are
	// newer than the first page, so newest-first paging does not meet them.
	if paged != len(calls)+4+4 {
		t.Errorf("paging saw %d events, want %d", paged, len(calls)+4+4)
	}
	_, err := ac.ListAccessEvents(e.token("perfusionist-1", rolePerf, main, 0), &pb.ListAccessEventsRequest{})
	wantCode(t, "a perfusionist reading the access audit", err, codes.PermissionDenied)
}

// failingAudit is the embedded store whose access audit cannot be written.
type failingAudit struct{ *sqlite.Backend }

func (failingAudit) AppendAccessEvents(context.Context, []store.AccessEvent) error {
	return errors.New("disk full")
}

// TestAccessAuditFailureFailsTheCall: a read whose access record cannot be
// written returns no data.
func TestAccessAuditFailureFailsTheCall(t *testing.T) {
	b := sqlitetest.Open(t)
	good := start(t, b)
	c := good.createCase("OR-1")
	e := start(t, failingAudit{b})
	resp, err := e.cases.GetCase(as(perfusionist), &pb.GetCaseRequest{CaseId: c.GetCaseId()})
	st := wantCode(t, "GetCase with the audit down", err, codes.Unavailable)
	if resp != nil || !strings.Contains(st.Message(), "access audit") {
		t.Fatalf("response %v, message %q", resp, st.Message())
	}
	// Calls that touch no patient data and are allowed need no record.
	if _, err := healthpb.NewHealthClient(e.conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health with the audit down: %v", err)
	}
}

// TestAccessAuditBeforeWrite: a write is audited before it takes effect.
// With the audit unwritable the write is refused and nothing is stored;
// when only its outcome cannot be recorded (the access is on record
// already) the caller hears what happened to the write.
func TestAccessAuditBeforeWrite(t *testing.T) {
	b := sqlitetest.Open(t)
	good := start(t, b)
	c := good.createCase("OR-1")
	down := start(t, failingAudit{b})
	entry := &pb.Entry{EntryId: uuid.NewString(), CaseId: c.GetCaseId(), OccurredAt: timestamppb.Now(),
		Detail: &pb.Entry_Note{Note: &pb.Note{Text: "heparin drawn up"}}}
	_, err := down.charting.RecordEntry(as(perfusionist), &pb.RecordEntryRequest{Entry: entry})
	wantCode(t, "RecordEntry with the audit down", err, codes.Unavailable)
	list, err := good.charting.ListEntries(as(perfusionist), &pb.ListEntriesRequest{CaseId: c.GetCaseId()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetEntries()); n != 0 {
		t.Fatalf("%d entries stored by a write whose audit failed, want 0", n)
	}

	// Only the outcome fails: the first append (the access) succeeds.
	once := start(t, &auditOnce{Backend: b})
	got, err := once.charting.RecordEntry(as(perfusionist), &pb.RecordEntryRequest{Entry: entry})
	if err != nil || got.GetEntry().GetEntryId() != entry.GetEntryId() {
		t.Fatalf("RecordEntry whose outcome could not be audited: %v, %v; want the stored entry", got, err)
	}
	var started int
	events, err := b.ListAccessEvents(context.Background(), store.AccessFilter{CaseID: uuid.MustParse(c.GetCaseId()), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if strings.HasSuffix(ev.Method, "/RecordEntry") && ev.Reason == server.WriteStarted {
			started++
		}
	}
	if started != 1 {
		t.Fatalf("%d RecordEntry accesses on record, want 1 (the refused write recorded nothing)", started)
	}
}

// auditOnce writes the first access event and fails every later one.
type auditOnce struct {
	*sqlite.Backend
	n atomic.Int32
}

func (a *auditOnce) AppendAccessEvents(ctx context.Context, es []store.AccessEvent) error {
	if a.n.Add(1) > 1 {
		return errors.New("disk full")
	}
	return a.Backend.AppendAccessEvents(ctx, es)
}

// TestBreakGlass: a clinician of another site is refused, opens emergency
// access with a reason (not without), reaches the case, and loses access
// when the grant expires; start, use and expiry are audited and the grant
// is listed for review.
func TestBreakGlass(t *testing.T) {
	const grantFor = 600 * time.Millisecond
	e := startJWT(t, func(c *server.Config) { c.BreakGlassDuration = grantFor })
	north := e.createCaseAt("NORTH")
	doc := func() context.Context { return e.token("er-doc", rolePerf, []string{"MAIN"}, 0) }
	ac := pb.NewAccessServiceClient(e.conn)

	_, err := e.cases.GetCase(doc(), &pb.GetCaseRequest{CaseId: north})
	st := wantCode(t, "before break-glass", err, codes.PermissionDenied)
	if !strings.Contains(st.Message(), "OpenBreakGlass") {
		t.Errorf("the refusal does not point at break-glass: %q", st.Message())
	}
	_, err = ac.OpenBreakGlass(doc(), &pb.OpenBreakGlassRequest{CaseId: north})
	wantFieldViolation(t, "break-glass without a reason", err, "reason")
	_, err = ac.OpenBreakGlass(doc(), &pb.OpenBreakGlassRequest{CaseId: north, Reason: "ok"})
	wantFieldViolation(t, "break-glass with a two-letter reason", err, "reason")
	_, err = ac.OpenBreakGlass(doc(), &pb.OpenBreakGlassRequest{CaseId: north, Reason: "          "})
	wantFieldViolation(t, "break-glass with a reason of ten spaces", err, "reason")
	for _, reason := range []string{"arrest of " + testMRN + " in ED", "need the record of " + strings.ToUpper(testFamily) + ", Alex, arrested"} {
		_, err = ac.OpenBreakGlass(doc(), &pb.OpenBreakGlassRequest{CaseId: north, Reason: reason})
		wantFieldViolation(t, "break-glass with a reason naming the patient", err, "reason")
		if st, _ := status.FromError(err); strings.Contains(st.Message(), testMRN) || strings.Contains(strings.ToLower(st.Message()), strings.ToLower(testFamily)) {
			t.Fatalf("the refusal echoes the patient: %q", st.Message())
		}
	}
	_, err = ac.OpenBreakGlass(e.token("rev", roleReviewer, []string{"MAIN"}, 0), &pb.OpenBreakGlassRequest{CaseId: north, Reason: "patient arrested in ED"})
	wantCode(t, "a reviewer breaking the glass", err, codes.PermissionDenied)

	opened, err := ac.OpenBreakGlass(doc(), &pb.OpenBreakGlassRequest{CaseId: north, Reason: "patient arrested in ED, on ECMO from NORTH"})
	if err != nil {
		t.Fatalf("OpenBreakGlass: %v", err)
	}
	g := opened.GetGrant()
	if g.GetSite() != "NORTH" || g.GetPrincipal() != "er-doc" || g.GetExpiresAt().AsTime().Sub(g.GetStartedAt().AsTime()) != grantFor {
		t.Fatalf("grant %v", g)
	}
	if _, err := e.cases.GetCase(doc(), &pb.GetCaseRequest{CaseId: north}); err != nil {
		t.Fatalf("GetCase under break-glass: %v", err)
	}
	// Another clinician without a grant is still refused.
	_, err = e.cases.GetCase(e.token("someone", rolePerf, []string{"MAIN"}, 0), &pb.GetCaseRequest{CaseId: north})
	wantCode(t, "another clinician", err, codes.PermissionDenied)

	time.Sleep(grantFor + 100*time.Millisecond)
	_, err = e.cases.GetCase(doc(), &pb.GetCaseRequest{CaseId: north})
	wantCode(t, "after expiry", err, codes.PermissionDenied)

	// The expiry is recorded by the sweep within a quarter of the grant.
	deadline := time.Now().Add(5 * time.Second)
	var events []*pb.AccessEvent
	for {
		events = e.accessEvents(&pb.ListAccessEventsRequest{Principal: "er-doc", CaseId: north})
		if len(events) > 0 && events[0].GetMethod() == server.MethodBreakGlassExpired {
			break
		}
		if len(events) > 1 && events[1].GetMethod() == server.MethodBreakGlassExpired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no expiry event: %v", events)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var sawOpen, sawUse bool
	for _, ev := range events {
		sawOpen = sawOpen || strings.HasSuffix(ev.GetMethod(), "/OpenBreakGlass") && ev.GetCode() == "OK"
		sawUse = sawUse || strings.HasSuffix(ev.GetMethod(), "/GetCase") && ev.GetCode() == "OK" && ev.GetReason() == "break-glass"
	}
	if !sawOpen || !sawUse {
		t.Fatalf("opening (%v) or use (%v) not audited: %v", sawOpen, sawUse, events)
	}
	list, err := ac.ListBreakGlass(e.token("auditor", roleAdmin, nil, 0), &pb.ListBreakGlassRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetGrants()) != 1 || list.GetGrants()[0].GetEndReason() != "expired" || !strings.Contains(list.GetGrants()[0].GetReason(), "arrested") {
		t.Fatalf("review list: %v", list.GetGrants())
	}

	// Ended by its holder before expiry.
	opened, err = ac.OpenBreakGlass(doc(), &pb.OpenBreakGlassRequest{CaseId: north, Reason: "second emergency, ECMO circuit change"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ac.EndBreakGlass(e.token("someone", rolePerf, []string{"MAIN"}, 0), &pb.EndBreakGlassRequest{GrantId: opened.GetGrant().GetGrantId()})
	wantCode(t, "ending another's grant", err, codes.NotFound)
	ended, err := ac.EndBreakGlass(doc(), &pb.EndBreakGlassRequest{GrantId: opened.GetGrant().GetGrantId()})
	if err != nil || ended.GetGrant().GetEndReason() != "ended" {
		t.Fatalf("EndBreakGlass: %v, %v", ended, err)
	}
	_, err = e.cases.GetCase(doc(), &pb.GetCaseRequest{CaseId: north})
	wantCode(t, "after ending", err, codes.PermissionDenied)
}

// TestAccessAuditStreams: a stream's access is recorded when it first
// names its case, before anything is sent or stored, and again when it
// ends; with the audit down the stream ends at once.
func TestAccessAuditStreams(t *testing.T) {
	e := startJWT(t)
	id := e.createCaseAt("MAIN")
	ctx, cancel := context.WithTimeout(e.token("gateway-1", []server.Role{server.RoleDevice}, []string{"MAIN"}, 0), 10*time.Second)
	defer cancel()
	ss, err := e.charting.StreamSamples(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ss.Send(openMsg(id, "hlm-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Recv(); err != nil {
		t.Fatalf("open: %v", err)
	}
	opened := e.accessEvents(&pb.ListAccessEventsRequest{CaseId: id, Principal: "gateway-1"})
	if len(opened) != 1 || opened[0].GetReason() != "stream opened" || !strings.HasSuffix(opened[0].GetMethod(), "/StreamSamples") {
		t.Fatalf("while the stream is open: %v", opened)
	}
	ss.CloseSend()
	for {
		if _, err := ss.Recv(); err != nil {
			break
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(e.accessEvents(&pb.ListAccessEventsRequest{CaseId: id, Principal: "gateway-1"})) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the stream's end was not recorded")
		}
		time.Sleep(20 * time.Millisecond)
	}

	b := sqlitetest.Open(t)
	c := start(t, b).createCase("OR-1")
	down := start(t, failingAudit{b})
	s2, err := down.charting.StreamSamples(as(gateway))
	if err != nil {
		t.Fatal(err)
	}
	s2.Send(openMsg(c.GetCaseId(), "hlm-1"))
	_, err = s2.Recv()
	wantCode(t, "stream with the audit down", err, codes.Unavailable)
}

// TestExportCohortAuditedFirst: an extract is recorded in the access audit
// before its first row goes out, so with the audit down not even the CSV
// header reaches the caller.
func TestExportCohortAuditedFirst(t *testing.T) {
	b := sqlitetest.Open(t)
	good := start(t, b, withExportKey)
	id := good.createCase("OR-1").GetCaseId()
	if _, err := good.cases.CloseCase(as(perfusionist), &pb.CloseCaseRequest{CaseId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := good.cases.SignCase(as(perfusionist), &pb.SignCaseRequest{CaseId: id, Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED, SignerDisplayName: "P"}); err != nil {
		t.Fatal(err)
	}
	if got := exportAll(t, pb.NewReviewServiceClient(good.conn), pb.ExportFormat_EXPORT_FORMAT_CSV); !bytes.Contains(got, []byte("\n")) {
		t.Fatalf("the cohort has no row to send: %q", got)
	}
	e := start(t, failingAudit{b}, withExportKey)
	stream, err := pb.NewReviewServiceClient(e.conn).ExportCohort(as(reviewer), &pb.ExportCohortRequest{Format: pb.ExportFormat_EXPORT_FORMAT_CSV})
	if err != nil {
		t.Fatal(err)
	}
	chunk, err := stream.Recv()
	if chunk != nil {
		t.Fatalf("the extract sent %d bytes before its access record was written", len(chunk.GetData()))
	}
	wantCode(t, "ExportCohort with the audit down", err, codes.Unavailable)
}
