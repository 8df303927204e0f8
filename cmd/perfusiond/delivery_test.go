package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/hl7/mllp"
	v2 "perfusion/hl7/v2"
	"perfusion/server"
)

// TestServeDeliversSignedCase: perfusiond serve with --hl7-mllp-addr sends
// a signed case's ORU^R01 to a real MLLP listener, and shows it delivered.
func TestServeDeliversSignedCase(t *testing.T) {
	var mu sync.Mutex
	var got [][]byte
	rcv, err := mllp.Start("127.0.0.1:0", mllp.AckHandler(v2.HD{NamespaceID: "EHR"}, func(m *v2.Message) (v2.AckCode, *v2.AckError) {
		b, _ := m.Encode()
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
		return v2.AckCode("AA"), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rcv.Close() })
	dataDir := t.TempDir()
	srv := startServe(t, map[string]string{envDataDir: dataDir}, "--listen", "127.0.0.1:0", "--dev-tokens", "--log-format", "text",
		"--hl7-mllp-addr", rcv.Addr().String(), "--hl7-receiving-application", "EHR", "--delivery-poll-interval", "50ms")

	conn, err := grpc.NewClient(srv.addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitServing(t, conn)
	key, err := server.LoadOrCreateDevKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := key.Issue(server.DevTokenClaims{Subject: "perfusionist-1", Roles: []server.Role{server.RolePerfusionist, server.RoleInterface},
		Sites: []string{"MAIN"}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	cases := pb.NewCaseServiceClient(conn)
	c, err := cases.CreateCase(ctx, &pb.CreateCaseRequest{CaseId: uuid.NewString(), Kind: pb.CaseKind_CASE_KIND_CPB, Site: "MAIN", Room: "OR-1",
		ScheduledStart: timestamppb.Now(), Details: &pb.CaseDetails{Patient: &pb.Patient{Mrn: "MRN-SERVE-1", MrnAssigningAuthority: "MAIN",
			FamilyName: "Servetest", HeightCm: 170, WeightKg: 70}}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	id := c.GetCase().GetCaseId()
	start := time.Now().Add(-2 * time.Hour)
	for i, typ := range []pb.EventType{pb.EventType_EVENT_TYPE_BYPASS_ON, pb.EventType_EVENT_TYPE_BYPASS_OFF} {
		if _, err := pb.NewChartingServiceClient(conn).RecordEntry(ctx, &pb.RecordEntryRequest{Entry: &pb.Entry{EntryId: uuid.NewString(), CaseId: id,
			OccurredAt: timestamppb.New(start.Add(time.Duration(i) * time.Hour)), Detail: &pb.Entry_Event{Event: &pb.Event{Type: typ}}}}); err != nil {
			t.Fatalf("entry: %v", err)
		}
	}
	if _, err := cases.CloseCase(ctx, &pb.CloseCaseRequest{CaseId: id}); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := cases.SignCase(ctx, &pb.SignCaseRequest{CaseId: id, Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED, SignerDisplayName: "P One"}); err != nil {
		t.Fatalf("sign: %v", err)
	}
	ex := pb.NewExportServiceClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	var d *pb.Delivery
	for time.Now().Before(deadline) {
		l, err := ex.ListDeliveries(ctx, &pb.ListDeliveriesRequest{CaseId: id})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		if len(l.GetDeliveries()) == 1 && l.GetDeliveries()[0].GetState() == pb.DeliveryState_DELIVERY_STATE_DELIVERED {
			d = l.GetDeliveries()[0]
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d == nil || d.GetAckCode() != "AA" {
		t.Fatalf("not delivered: %v\n%s", d, srv.logs)
	}
	mu.Lock()
	defer mu.Unlock()
	// The summary, then (--deliver-document is on by default) the
	// rendered record as MDM^T02.
	if len(got) != 2 {
		t.Fatalf("receiver got %d messages, want 2 (ORU, MDM)", len(got))
	}
	m, _ := v2.Parse(got[0])
	if m.ControlID() != d.GetMessageId() || m.Get("MSH-5") != "EHR" || m.Get("PID-3") != "MRN-SERVE-1" {
		t.Fatalf("received MSH-10 %q, MSH-5 %q", m.ControlID(), m.Get("MSH-5"))
	}
	doc, _ := v2.Parse(got[1])
	if pdf, err := v2.DocumentPDF(doc); err != nil || !bytes.HasPrefix(pdf, []byte("%PDF-")) ||
		doc.Segment("MSH").Field(9).Component(2) != "T02" || doc.Get("PID-3") != "MRN-SERVE-1" {
		t.Fatalf("second message is not the MDM^T02 with the PDF: %v", err)
	}
	if logs := srv.logs.String(); strings.Contains(logs, "MRN-SERVE-1") || strings.Contains(logs, "Servetest") {
		t.Fatalf("patient data in the server log")
	}
}

// TestDeliveryLeaseCoversBothACKs: with documents delivered an HL7
// delivery waits for two ACKs (ORU, then MDM), so the lease must cover
// twice as much; without documents, or without HL7, twice the ACK timeout
// is enough.
func TestDeliveryLeaseCoversBothACKs(t *testing.T) {
	for _, tc := range []struct {
		doc  bool
		mllp string
		ok   bool
	}{{true, "engine:2575", false}, {false, "engine:2575", true}, {true, "", true}} {
		d := &deliveryConfig{mllpAddr: tc.mllp, document: tc.doc, sendingApp: "PERFUSION", timeZone: "UTC",
			ackTimeout: 30 * time.Second, pollInterval: time.Second, lease: time.Minute}
		if err := d.check(); (err == nil) != tc.ok {
			t.Errorf("document %v, mllp %q: check() = %v", tc.doc, tc.mllp, err)
		}
		d.lease = 2 * time.Minute
		if err := d.check(); err != nil {
			t.Errorf("document %v, mllp %q, lease 2m: %v", tc.doc, tc.mllp, err)
		}
	}
}
