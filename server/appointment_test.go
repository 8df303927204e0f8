package server_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
	"perfusion/hl7/inbound"
	"perfusion/server"
)

// TestSubmitAppointment: the FHIR twin of SIU over gRPC: a booked
// Appointment plans a case and is journaled; content the rules refuse is
// InvalidArgument naming what; a cancellation of a case being charted is
// FailedPrecondition; a server without the listener refuses.
func TestSubmitAppointment(t *testing.T) {
	e := start(t, sqliteBackend(t), func(c *server.Config) {
		h, err := inbound.NewHandler(inbound.Config{Store: c.Store, Rooms: map[string][]string{"MAIN": {"CVOR-2"}}, MRNSystems: map[string]string{"HOSP": "urn:mrn"}})
		if err != nil {
			t.Fatal(err)
		}
		c.Inbound = h
	})
	in := pb.NewInboundServiceClient(e.conn)
	at := time.Now().Add(30 * time.Hour).UTC().Format(time.RFC3339)
	appt := func(version, status string) string {
		return `{"resourceType":"Appointment","id":"a1","meta":{"versionId":"` + version + `"},"status":"` + status + `","start":"` + at + `",
			"serviceType":[{"text":"CABG x2"}],"participant":[{"actor":{"reference":"Patient/p","identifier":{"system":"urn:mrn","value":"` + testMRN + `"}}},
			{"actor":{"reference":"Location/l","display":"CVOR-2"}}]}`
	}
	resp, err := in.SubmitAppointment(as("engine-1"), &pb.SubmitAppointmentRequest{Site: "MAIN", AppointmentJson: []byte(appt("1", "booked"))})
	if err != nil || resp.GetMessage().GetAckCode() != "AA" || len(resp.GetMessage().GetChanges()) != 1 || resp.GetMessage().GetChanges()[0].GetAction() != "created" {
		t.Fatalf("submit: %v %v", resp, err)
	}
	caseID := resp.GetMessage().GetChanges()[0].GetCaseId()
	if c := e.getCase(caseID); c.GetDetails().GetPatient().GetMrn() != testMRN || c.GetDetails().GetBooking().GetAppointmentId() != "a1" {
		t.Fatalf("case %v", c)
	}
	if _, err := in.SubmitAppointment(as("engine-1"), &pb.SubmitAppointmentRequest{Site: "MAIN", AppointmentJson: []byte(`{"resourceType":"Appointment","meta":{"versionId":"2"},"id":"a1","status":"booked"}`)}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no start: %v", err)
	}
	e.recordEntry(noteEntry(caseID, "on the table", time.Now().Add(-time.Minute)))
	if _, err := in.SubmitAppointment(as("engine-1"), &pb.SubmitAppointmentRequest{Site: "MAIN", AppointmentJson: []byte(appt("3", "cancelled"))}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("cancel a case being charted: %v", err)
	}
	if _, err := in.SubmitAppointment(as("engine-1"), &pb.SubmitAppointmentRequest{Site: "MAIN", AppointmentJson: []byte(appt("1", "cancelled"))}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("a version reused: %v", err)
	}
	e.assertNoPHI()

	bare := start(t, sqliteBackend(t))
	if _, err := pb.NewInboundServiceClient(bare.conn).SubmitAppointment(as("engine-1"), &pb.SubmitAppointmentRequest{Site: "MAIN", AppointmentJson: []byte(appt("1", "booked"))}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("no listener: %v", err)
	}
}
