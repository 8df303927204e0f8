package server_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	pb "perfusion/api/perfusion/v1"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
)

// TestReconcileIdentity: the RPC appends a reconciliation to a signed case
// (shown by GetAuditTrail as its own link), the HL7 rendering of the
// signed version then carries the reconciled MRN, no delivery is queued,
// and bad input or an unknown case stores nothing.
func TestReconcileIdentity(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b, withOutbox(b))
		ex := pb.NewExportServiceClient(e.conn)
		ctx := as(perfusionist)
		caseID, ver := e.signedViaAPI()
		req := &pb.ReconcileIdentityRequest{CaseId: caseID, Mrn: "MRN-9911", AssigningAuthority: "HOSP", Reason: "EHR merge"}
		for _, tc := range []struct {
			field string
			edit  func(r *pb.ReconcileIdentityRequest)
		}{
			{"reason", func(r *pb.ReconcileIdentityRequest) { r.Reason = "" }},
			{"mrn", func(r *pb.ReconcileIdentityRequest) { r.Mrn = "MRN\x00" }},
			{"assigning_authority", func(r *pb.ReconcileIdentityRequest) { r.AssigningAuthority = "" }},
			{"case_id", func(r *pb.ReconcileIdentityRequest) { r.CaseId = "nope" }},
		} {
			bad := &pb.ReconcileIdentityRequest{CaseId: req.CaseId, Mrn: req.Mrn, AssigningAuthority: req.AssigningAuthority, Reason: req.Reason}
			tc.edit(bad)
			_, err := e.cases.ReconcileIdentity(ctx, bad)
			wantFieldViolation(t, tc.field, err, tc.field)
		}
		_, err := e.cases.ReconcileIdentity(ctx, &pb.ReconcileIdentityRequest{CaseId: uuid.NewString(), Mrn: "M", AssigningAuthority: "HOSP", Reason: "r"})
		wantCode(t, "unknown case", err, codes.NotFound)
		before, err := e.record.GetAuditTrail(ctx, &pb.GetAuditTrailRequest{CaseId: caseID})
		if err != nil {
			t.Fatal(err)
		}
		n := len(before.GetEvents())

		resp, err := e.cases.ReconcileIdentity(ctx, req)
		if err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		if resp.GetLedgerSeq() != int64(n)+1 || len(resp.GetLedgerHash()) != 64 {
			t.Fatalf("response %v after %d links", resp, n)
		}
		trail, err := e.record.GetAuditTrail(ctx, &pb.GetAuditTrailRequest{CaseId: caseID, AfterSequence: int64(n)})
		if err != nil || len(trail.GetEvents()) != 1 {
			t.Fatalf("audit trail after the reconciliation: %v, %v", trail, err)
		}
		if ev := trail.GetEvents()[0]; ev.GetKind() != "identity_reconciled" || ev.GetActor() != perfusionist || ev.GetReason() != "EHR merge" {
			t.Fatalf("audit event %v", ev)
		}
		h, err := ex.RenderHL7(ctx, &pb.RenderHL7Request{CaseId: caseID, Version: ver})
		if err != nil {
			t.Fatalf("render: %v", err)
		}
		m, err := v2.Parse(h.GetMessage())
		if err != nil || m.Get("PID-3") != "MRN-9911" {
			t.Fatalf("PID-3 %q after the reconciliation (%v)", m.Get("PID-3"), err)
		}
		if l, err := ex.ListDeliveries(ctx, &pb.ListDeliveriesRequest{CaseId: caseID}); err != nil || len(l.GetDeliveries()) != 2 {
			t.Fatalf("a reconciliation queued deliveries: %d, %v", len(l.GetDeliveries()), err)
		}
		if s := e.logs.String(); strings.Contains(s, "MRN-9911") {
			t.Fatal("the reconciled MRN was logged")
		}
	})
}
