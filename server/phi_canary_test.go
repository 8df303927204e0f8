package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
)

// Canaries: patient identifiers that must never reach a log line or an
// error text, whatever the call and however it fails.
var canaries = []string{"Quillfeather", "Zebulonne", "CANARY-MRN-7730019", "1957-03-14", "Cnry-note-Vex9", "canary-allergy-ptx"}

// TestPHICanaries seeds canary names and MRNs, runs a workload through the
// server over a real connection (successful calls, bad input, conflicts,
// refusals, forged tokens, streams), and finds no canary in anything the
// server logged (every level, captured by the slog handler), in any error
// text or detail a client received, or in the access audit.
func TestPHICanaries(t *testing.T) {
	e := startJWT(t)
	clin := func() context.Context { return e.token("perfusionist-1", rolePerf, []string{"MAIN"}, 0) }
	canaryDetails := func() *pb.CaseDetails {
		d := sampleDetails()
		d.Patient.FamilyName, d.Patient.GivenName, d.Patient.Mrn, d.Patient.BirthDate = canaries[0], canaries[1], canaries[2], canaries[3]
		d.Patient.Allergies = []string{canaries[5]}
		return d
	}
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	id := uuid.NewString()
	create := &pb.CreateCaseRequest{CaseId: id, Kind: pb.CaseKind_CASE_KIND_CPB, Site: "MAIN", Room: "OR-1",
		ScheduledStart: timestamppb.New(time.Now().Truncate(time.Minute)), Details: canaryDetails()}
	if _, err := e.cases.CreateCase(clin(), create); err != nil {
		t.Fatal(err)
	}
	// The same id with other content: AlreadyExists.
	other := canaryDetails()
	other.Patient.GivenName = canaries[1] + "-other"
	_, err := e.cases.CreateCase(clin(), &pb.CreateCaseRequest{CaseId: id, Kind: pb.CaseKind_CASE_KIND_CPB, Site: "MAIN", Room: "OR-1",
		ScheduledStart: create.ScheduledStart, Details: other})
	keep(err)
	// Bad input carrying canaries in the offending fields.
	bad := canaryDetails()
	bad.Patient.BirthDate = canaries[3] + "-not-a-date"
	bad.Patient.Mrn = strings.Repeat(canaries[2], 20)
	bad.Patient.HeightCm = -5
	_, err = e.cases.CreateCase(clin(), &pb.CreateCaseRequest{CaseId: uuid.NewString(), Kind: pb.CaseKind_CASE_KIND_CPB, Site: "MAIN", Room: "OR-2",
		ScheduledStart: create.ScheduledStart, Details: bad})
	keep(err)
	_, err = e.cases.UpdateCaseDetails(clin(), &pb.UpdateCaseDetailsRequest{CaseId: id, Details: canaryDetails(), ExpectedDetailsVersion: 99})
	keep(err)
	now := time.Now()
	if _, err := e.charting.RecordEntry(clin(), &pb.RecordEntryRequest{Entry: noteEntry(id, "seen by "+canaries[0]+" "+canaries[4], now)}); err != nil {
		t.Fatal(err)
	}
	_, err = e.charting.RecordEntry(clin(), &pb.RecordEntryRequest{Entry: noteEntry(id, canaries[4]+strings.Repeat("x", 70000), now)})
	keep(err)
	_, err = e.charting.RecordEntry(clin(), &pb.RecordEntryRequest{Entry: noteEntry("not-a-uuid-"+canaries[2], canaries[4], now)})
	keep(err)
	// Reads, allowed and refused.
	for _, ctx := range []context.Context{clin(), e.token("reviewer-1", roleReviewer, []string{"MAIN"}, 0), e.token("elsewhere", rolePerf, []string{"NORTH"}, 0)} {
		_, err = e.cases.GetCase(ctx, &pb.GetCaseRequest{CaseId: id})
		keep(err)
		_, err = e.charting.ListEntries(ctx, &pb.ListEntriesRequest{CaseId: id})
		keep(err)
		_, err = e.record.GetAuditTrail(ctx, &pb.GetAuditTrailRequest{CaseId: id})
		keep(err)
	}
	_, err = e.cases.ListCases(clin(), &pb.ListCasesRequest{Site: canaries[0]})
	keep(err)
	// A forged token naming a canary, and a token-shaped canary.
	claims, _ := json.Marshal(map[string]any{"sub": canaries[0], "name": canaries[1], "iss": server.DevIssuer, "aud": server.DevAudience, "exp": now.Add(time.Hour).Unix()})
	forged := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","kid":"`+canaries[2]+`"}`)) + "." + base64.RawURLEncoding.EncodeToString(claims) + ".c2ln"
	_, err = e.cases.GetCase(bearer(forged), &pb.GetCaseRequest{CaseId: id})
	keep(err)
	_, err = e.cases.GetCase(bearer(canaries[0]), &pb.GetCaseRequest{CaseId: id})
	keep(err)
	_, err = e.cases.GetCase(as(canaries[1]), &pb.GetCaseRequest{CaseId: id})
	keep(err)
	// Break-glass with a reason naming the patient (which the reason must
	// not do, and which must not leak further when it does).
	_, err = pb.NewAccessServiceClient(e.conn).OpenBreakGlass(e.token("elsewhere", rolePerf, []string{"NORTH"}, 0),
		&pb.OpenBreakGlassRequest{CaseId: id, Reason: "treating " + canaries[0] + " in ED"})
	keep(err)
	// A stream with a bad batch.
	sctx, cancel := context.WithTimeout(clin(), 10*time.Second)
	defer cancel()
	ss, err := e.charting.StreamSamples(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ss.Send(openMsg(id, "hlm-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Recv(); err != nil {
		t.Fatalf("open: %v", err)
	}
	// Source ids name devices and are echoed by design; the bad batch is
	// bad in its content.
	ss.Send(batchMsg(&pb.SampleBatch{SourceId: "hlm-1", Sequence: 1}))
	for {
		if _, err := ss.Recv(); err != nil {
			keep(err)
			break
		}
	}
	_, err = e.cases.CloseCase(clin(), &pb.CloseCaseRequest{CaseId: id})
	keep(err)
	_, err = e.cases.SignCase(e.token("perfusionist-1", rolePerf, []string{"MAIN"}, time.Hour), &pb.SignCaseRequest{CaseId: id,
		Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED, SignerDisplayName: canaries[0]})
	keep(err)

	if len(errs) < 15 {
		t.Fatalf("only %d calls failed: the workload does not exercise failures", len(errs))
	}
	var texts strings.Builder
	for _, err := range errs {
		st := status.Convert(err)
		b, _ := protojson.Marshal(st.Proto()) // message and every detail
		texts.Write(b)
		texts.WriteByte('\n')
	}
	audit, _ := protojson.Marshal(&pb.ListAccessEventsResponse{Events: e.accessEvents(&pb.ListAccessEventsRequest{PageSize: 1000})})
	for what, text := range map[string]string{"server log": e.logs.String(), "error texts": texts.String(), "access audit": string(audit)} {
		if len(text) == 0 {
			t.Fatalf("%s is empty: nothing captured", what)
		}
		low := strings.ToLower(text)
		for _, c := range canaries {
			if strings.Contains(low, strings.ToLower(c)) {
				t.Errorf("%s contains the canary %q", what, c)
			}
		}
	}
	// The canaries are in the record: the test would see them if they
	// leaked (a sanity check of the search itself).
	got, err := e.cases.GetCase(clin(), &pb.GetCaseRequest{CaseId: id})
	if err != nil || !strings.Contains(protojson.Format(got), canaries[2]) {
		t.Fatalf("the canary MRN is not in the record: %v", err)
	}
}
