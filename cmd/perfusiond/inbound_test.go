package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
	"perfusion/hl7/mllp"
	v2 "perfusion/hl7/v2"
	"perfusion/server"
)

// TestInboundListener: perfusiond serve with --hl7-inbound-listen plans a
// case from an SIU message over MLLP; an administrator lists the journal,
// reads the message, replays it (nothing more changes) over gRPC, and a
// perfusionist reads the case's identity history.
func TestInboundListener(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	addrs := make(chan string, 1)
	a, _, logs := testApp(map[string]string{envDataDir: dir, envListen: "127.0.0.1:0"})
	a.onInboundListen = func(addr string) { addrs <- addr }
	grpcAddrs := make(chan net.Addr, 1)
	a.onListen = func(addr net.Addr) { grpcAddrs <- addr }
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() {
		code <- a.run(ctx, []string{"serve", "--log-format", "text", "--hl7-inbound-listen", "127.0.0.1:0",
			"--hl7-inbound-allow", "engine=127.0.0.1", "--hl7-inbound-rooms", "MAIN:CVOR-1,CVOR-2;EAST:CVOR-E", "--hl7-time-zone", "America/Chicago"})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-code:
		case <-time.After(15 * time.Second):
			t.Errorf("serve did not stop")
		}
	})
	var inAddr string
	var grpcAddr net.Addr
	for inAddr == "" || grpcAddr == nil {
		select {
		case inAddr = <-addrs:
		case grpcAddr = <-grpcAddrs:
		case c := <-code:
			t.Fatalf("serve exited with %d:\n%s", c, logs)
		case <-time.After(30 * time.Second):
			t.Fatalf("serve did not start:\n%s", logs)
		}
	}

	// The interface engine books a case.
	start := time.Now().Add(26 * time.Hour).Format("200601021504")
	msg := "MSH|^~\\&|OPTIME|HOSP|PERFUSION|HOSP|" + time.Now().Format("20060102150405") + "||SIU^S12^SIU_S12|CTL-1|P|2.5.1\r" +
		"SCH||B-1^OPTIME\rPID|1||MRN-77^^^HOSP^MR||Doe^Jane||19600101|F\rRGS|1\rAIS|1||CABG^CABG x2^LOCAL|" + start + "\rAIL|1||^CVOR-2^^MAIN\r" +
		"AIP|1||2001^Heart^Harriet|SURG\r"
	conn, err := net.Dial("tcp", inAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := mllp.WriteFrame(conn, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	raw, err := mllp.NewReader(conn, 0).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	ack, err := v2.ParseAck(raw)
	if err != nil || ack.Code != v2.AA || ack.ControlID != "CTL-1" {
		t.Fatalf("ACK %+v %v", ack, err)
	}
	if !strings.Contains(string(raw), "|PERFUSION|") {
		t.Fatalf("ACK MSH-3 is not the configured sending application: %q", raw)
	}

	gc, err := grpc.NewClient(grpcAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	waitServing(t, gc)
	key, err := server.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	as := func(role server.Role) context.Context {
		tok, err := key.Issue(server.DevTokenClaims{Subject: string(role) + "-1", Roles: []server.Role{role}, Sites: []string{"MAIN"}, TTL: time.Hour}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}
	in := pb.NewInboundServiceClient(gc)
	list, err := in.ListInboundMessages(as(server.RoleAdmin), &pb.ListInboundMessagesRequest{})
	if err != nil || len(list.GetMessages()) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	m := list.GetMessages()[0]
	if m.GetAckCode() != "AA" || m.GetSender() != "engine" || m.GetMessageType() != "SIU^S12" || len(m.GetChanges()) != 1 || m.GetChanges()[0].GetAction() != "created" {
		t.Fatalf("journal row %v", m)
	}
	caseID := m.GetChanges()[0].GetCaseId()
	got, err := in.GetInboundMessage(as(server.RoleAdmin), &pb.GetInboundMessageRequest{MessageId: m.GetMessageId(), IncludeContent: true})
	if err != nil || got.GetContent() != msg || !strings.Contains(got.GetAck(), "MSA|AA|CTL-1") {
		t.Fatalf("get: %v %v", got, err)
	}
	if _, err := in.ListInboundMessages(as(server.RolePerfusionist), &pb.ListInboundMessagesRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a perfusionist listed the inbound journal: %v", err)
	}
	rep, err := in.ReplayInboundMessage(as(server.RoleAdmin), &pb.ReplayInboundMessageRequest{MessageId: m.GetMessageId()})
	if err != nil || rep.GetMessage().GetAttempts() != 2 || len(rep.GetMessage().GetReplays()) != 1 || rep.GetMessage().GetReplays()[0].GetBy() != "admin-1" {
		t.Fatalf("replay: %v %v", rep, err)
	}
	cs := pb.NewCaseServiceClient(gc)
	c, err := cs.GetCase(as(server.RolePerfusionist), &pb.GetCaseRequest{CaseId: caseID})
	if err != nil || c.GetCase().GetStatus() != pb.CaseStatus_CASE_STATUS_PLANNED || c.GetCase().GetRoom() != "CVOR-2" ||
		c.GetCase().GetDetails().GetBooking().GetAppointmentId() != "B-1^OPTIME" || c.GetCase().GetDetailsVersion() != 1 {
		t.Fatalf("case: %v %v", c, err)
	}
	// Start time read in the configured zone (no offset in AIS-4).
	loc, _ := time.LoadLocation("America/Chicago")
	want, _ := time.ParseInLocation("200601021504", start, loc)
	if !c.GetCase().GetScheduledStart().AsTime().Equal(want) {
		t.Fatalf("scheduled start %v, want %v", c.GetCase().GetScheduledStart().AsTime(), want)
	}
	h, err := cs.GetIdentityHistory(as(server.RolePerfusionist), &pb.GetIdentityHistoryRequest{CaseId: caseID})
	if err != nil || len(h.GetRecords()) != 1 || h.GetCurrent().GetMrn() != "MRN-77" || h.GetRecords()[0].GetActor() != "interface:engine" {
		t.Fatalf("identity history: %v %v", h, err)
	}
	// A tablet's details update keeps the booking.
	d := c.GetCase().GetDetails()
	d.Booking = nil
	d.Circuit = &pb.Circuit{CardioplegiaSystem: "del Nido"}
	up, err := cs.UpdateCaseDetails(as(server.RolePerfusionist), &pb.UpdateCaseDetailsRequest{CaseId: caseID, ExpectedDetailsVersion: 1, Details: d})
	if err != nil || up.GetCase().GetDetails().GetBooking().GetAppointmentId() != "B-1^OPTIME" {
		t.Fatalf("update: %v %v", up, err)
	}
	if _, err := cs.LookupPatient(as(server.RolePerfusionist), &pb.LookupPatientRequest{Site: "MAIN", Mrn: "MRN-77"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("lookup without a FHIR server: %v", err)
	}
	if strings.Contains(logs.String(), "MRN-77") || strings.Contains(logs.String(), "Doe") {
		t.Fatalf("the log holds patient data:\n%s", logs)
	}
}

// TestInboundFlags: the listener's settings are checked at start.
func TestInboundFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--hl7-inbound-listen", "127.0.0.1:0", "--hl7-inbound-rooms", "MAIN:OR-1"}, "--hl7-inbound-allow"},
		{[]string{"--hl7-inbound-listen", "127.0.0.1:0", "--hl7-inbound-allow", "127.0.0.1"}, "--hl7-inbound-rooms"},
		{[]string{"--hl7-inbound-listen", "127.0.0.1:0", "--hl7-inbound-allow", "0.0.0.0/0", "--hl7-inbound-rooms", "MAIN:OR-1"}, "every address"},
		{[]string{"--hl7-inbound-listen", "127.0.0.1:0", "--hl7-inbound-allow", "cn:engine", "--hl7-inbound-rooms", "MAIN:OR-1"}, "client-ca"},
		{[]string{"--hl7-inbound-listen", "0.0.0.0:0", "--hl7-inbound-allow", "10.0.0.0/8", "--hl7-inbound-rooms", "MAIN:OR-1"}, "plaintext"},
		{[]string{"--hl7-inbound-listen", "127.0.0.1:0", "--hl7-inbound-allow", "127.0.0.1", "--hl7-inbound-rooms", "MAIN"}, "SITE:ROOM"},
		{[]string{"--hl7-inbound-rooms", "MAIN:OR-1"}, "needs --hl7-inbound-listen"},
	} {
		a, _, errb := testApp(map[string]string{envDataDir: t.TempDir()})
		if code := a.run(context.Background(), append([]string{"serve"}, tc.args...)); code != exitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Fatalf("%v: exit %d, %q; want usage naming %q", tc.args, code, errb.String(), tc.want)
		}
	}
}
