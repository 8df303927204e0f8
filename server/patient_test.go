package server_test

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
	"perfusion/hl7/fhir"
	"perfusion/server"
	"perfusion/store"
)

// TestLookupPatient: CaseService.LookupPatient answers from the EHR's
// FHIR server (an httptest one here): the patient as a case's details
// take it and the encounters; an unknown MRN is NotFound, an EHR that does
// not answer Unavailable, and the log holds none of it.
func TestLookupPatient(t *testing.T) {
	down := false
	ehr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		switch {
		case down:
			w.WriteHeader(http.StatusBadGateway)
		case r.URL.Path == "/Patient" && strings.HasSuffix(r.URL.Query().Get("identifier"), "|"+testMRN):
			_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","id":"p1",
				"name":[{"use":"official","family":"` + testFamily + `","given":["Alex"]}],"gender":"female","birthDate":"1961-04-02"}}]}`))
		case r.URL.Path == "/Patient":
			_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","total":0}`))
		case r.URL.Path == "/Encounter":
			_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Encounter","id":"e1",
				"identifier":[{"system":"urn:visit","value":"V-9"}],"status":"in-progress","class":{"code":"IMP"},"period":{"start":"2026-12-01T08:00:00Z"}}}]}`))
		}
	}))
	defer ehr.Close()
	lookup, err := fhir.NewLookup(fhir.LookupConfig{BaseURL: ehr.URL, MRNSystems: map[string]string{"HOSP": "urn:mrn"}, EncounterSystem: "urn:visit"})
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, sqliteBackend(t), func(c *server.Config) { c.PatientLookup = lookup })
	resp, err := e.cases.LookupPatient(as(perfusionist), &pb.LookupPatientRequest{Site: "MAIN", Mrn: testMRN, AssigningAuthority: "HOSP"})
	if err != nil {
		t.Fatal(err)
	}
	p := resp.GetPatient()
	if p.GetMrn() != testMRN || p.GetMrnAssigningAuthority() != "HOSP" || p.GetFamilyName() != testFamily || p.GetSex() != pb.Sex_SEX_FEMALE ||
		p.GetBirthDate() != "1961-04-02" || resp.GetFhirPatientId() != "p1" || len(resp.GetEncounters()) != 1 || resp.GetEncounters()[0].GetEncounterId() != "V-9" {
		t.Fatalf("lookup %v", resp)
	}
	if _, err := e.cases.LookupPatient(as(perfusionist), &pb.LookupPatientRequest{Site: "MAIN", Mrn: "nobody", AssigningAuthority: "HOSP"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown MRN: %v", err)
	}
	if _, err := e.cases.LookupPatient(as(perfusionist), &pb.LookupPatientRequest{Site: "MAIN", Mrn: testMRN, AssigningAuthority: "ELSEWHERE"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("unknown authority: %v", err)
	}
	if _, err := e.cases.LookupPatient(as(perfusionist), &pb.LookupPatientRequest{Site: "MAIN"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no MRN: %v", err)
	}
	down = true
	if _, err := e.cases.LookupPatient(as(perfusionist), &pb.LookupPatientRequest{Site: "MAIN", Mrn: testMRN, AssigningAuthority: "HOSP"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("EHR down: %v", err)
	}
	e.assertNoPHI()
}

// TestIdentityHistoryAndJournal: GetIdentityHistory shows the details
// identity and the reconciliations; InboundService lists and reads the
// journal, and refuses a replay on a server without the listener.
func TestIdentityHistoryAndJournal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b)
		c := e.createCase("OR-1")
		if _, err := e.cases.ReconcileIdentity(as(perfusionist), &pb.ReconcileIdentityRequest{CaseId: c.GetCaseId(), Mrn: "MRN-NEW", AssigningAuthority: "HOSP", Reason: "merge"}); err != nil {
			t.Fatal(err)
		}
		h, err := e.cases.GetIdentityHistory(as(perfusionist), &pb.GetIdentityHistoryRequest{CaseId: c.GetCaseId()})
		if err != nil || len(h.GetRecords()) != 2 || h.GetRecords()[0].GetMrn() != testMRN || h.GetRecords()[1].GetSource() != "reconciliation" ||
			h.GetCurrent().GetMrn() != "MRN-NEW" || h.GetCurrent().GetFamilyName() != testFamily {
			t.Fatalf("history %v %v", h, err)
		}
		if _, err := e.cases.GetIdentityHistory(as(perfusionist), &pb.GetIdentityHistoryRequest{CaseId: uuid.NewString()}); status.Code(err) != codes.NotFound {
			t.Fatalf("unknown case: %v", err)
		}

		ib, err := e.store.Inbound()
		if err != nil {
			t.Fatal(err)
		}
		id := uuid.MustParse(c.GetCaseId())
		for i, code := range []string{"AA", "AE", "AA"} {
			content := []byte("MSH|^~\\&|EPIC|HOSP|||20260101||ADT^A08|C" + string(rune('0'+i)) + "|P|2.5.1\rPID|||" + testMRN + "^^^HOSP^MR\r")
			m := &store.InboundMessage{InboundKey: store.InboundKey{Sender: "epic", SendingApplication: "EPIC", SendingFacility: "HOSP", ControlID: "C" + string(rune('0'+i))},
				MessageType: "ADT^A08", ReceivedAt: time.Now().UTC(), Content: content, ContentSHA256: sha256.Sum256(content), AckCode: code, Ack: []byte("MSH|x\r"),
				ProcessedAt: time.Now().UTC(), Attempts: 1}
			if i == 0 {
				m.Outcome.Changes = []store.InboundChange{{CaseID: id, Action: store.InboundDetails, LedgerSeq: 3}}
			}
			if _, err := ib.RecordInbound(context.Background(), m, store.InboundWrites{}); err != nil {
				t.Fatal(err)
			}
		}
		in := pb.NewInboundServiceClient(e.conn)
		page1, err := in.ListInboundMessages(as("admin-1"), &pb.ListInboundMessagesRequest{PageSize: 2})
		if err != nil || len(page1.GetMessages()) != 2 || page1.GetNextPageToken() == "" {
			t.Fatalf("page 1: %v %v", page1, err)
		}
		page2, err := in.ListInboundMessages(as("admin-1"), &pb.ListInboundMessagesRequest{PageSize: 2, PageToken: page1.GetNextPageToken()})
		if err != nil || len(page2.GetMessages()) != 1 || page2.GetNextPageToken() != "" || page2.GetMessages()[0].GetChanges()[0].GetCaseId() != c.GetCaseId() {
			t.Fatalf("page 2: %v %v", page2, err)
		}
		if r, err := in.ListInboundMessages(as("admin-1"), &pb.ListInboundMessagesRequest{AckCode: "AE"}); err != nil || len(r.GetMessages()) != 1 {
			t.Fatalf("AE only: %v %v", r, err)
		}
		if r, err := in.ListInboundMessages(as("admin-1"), &pb.ListInboundMessagesRequest{CaseId: c.GetCaseId()}); err != nil || len(r.GetMessages()) != 1 {
			t.Fatalf("by case: %v %v", r, err)
		}
		if _, err := in.ListInboundMessages(as("admin-1"), &pb.ListInboundMessagesRequest{AckCode: "XX"}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("bad code: %v", err)
		}
		one, err := in.GetInboundMessage(as("admin-1"), &pb.GetInboundMessageRequest{MessageId: page2.GetMessages()[0].GetMessageId()})
		if err != nil || one.GetContent() != "" {
			t.Fatalf("get without content: %v %v", one, err)
		}
		one, err = in.GetInboundMessage(as("admin-1"), &pb.GetInboundMessageRequest{MessageId: page2.GetMessages()[0].GetMessageId(), IncludeContent: true})
		if err != nil || !strings.Contains(one.GetContent(), testMRN) {
			t.Fatalf("get with content: %v %v", one, err)
		}
		if _, err := in.GetInboundMessage(as("admin-1"), &pb.GetInboundMessageRequest{MessageId: 999999}); status.Code(err) != codes.NotFound {
			t.Fatalf("unknown message: %v", err)
		}
		if _, err := in.ReplayInboundMessage(as("admin-1"), &pb.ReplayInboundMessageRequest{MessageId: 1}); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("replay without the listener: %v", err)
		}
		e.assertNoPHI()
	})
}
