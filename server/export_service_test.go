package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/export"
	"perfusion/hl7/fhir"
	v2 "perfusion/hl7/v2"
	"perfusion/server"
	"perfusion/store"
)

// withOutbox queues both destinations on signing and renders with a
// site's settings.
func withOutbox(b store.Backend) func(*server.Config) {
	return func(c *server.Config) {
		c.Store = store.New(b, store.Config{Outbox: &store.OutboxConfig{
			Destinations: []store.Destination{store.DestinationMLLP, store.DestinationFHIR}, MessageID: export.MessageID}})
		c.Renderer = export.NewRenderer(b, export.HL7Config{SendingApplication: v2.HD{NamespaceID: "PERFUSION"}},
			fhir.Options{MRNSystems: map[string]string{"HOSP": "http://hosp.example.org/mrn"}, StaffSystem: "http://hosp.example.org/staff"}, nil)
	}
}

// signedViaAPI charts bypass on/off, closes and signs a case through the
// API and returns its id and the signature's number (the version).
func (e *env) signedViaAPI() (string, int64) {
	e.t.Helper()
	c := e.createCase("OR-5")
	now := time.Now().Add(-time.Hour)
	for i, typ := range []pb.EventType{pb.EventType_EVENT_TYPE_BYPASS_ON, pb.EventType_EVENT_TYPE_BYPASS_OFF} {
		e.recordEntry(&pb.Entry{EntryId: uuid.NewString(), CaseId: c.GetCaseId(), OccurredAt: timestamppb.New(now.Add(time.Duration(i) * 30 * time.Minute)),
			Detail: &pb.Entry_Event{Event: &pb.Event{Type: typ}}})
	}
	if _, err := e.cases.CloseCase(as(perfusionist), &pb.CloseCaseRequest{CaseId: c.GetCaseId()}); err != nil {
		e.t.Fatalf("close: %v", err)
	}
	resp, err := e.cases.SignCase(as(perfusionist), &pb.SignCaseRequest{CaseId: c.GetCaseId(),
		Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED, SignerDisplayName: "Pat Perfusionist"})
	if err != nil {
		e.t.Fatalf("sign: %v", err)
	}
	// A signature's number is its own link, right after the head it covers.
	return c.GetCaseId(), resp.GetSignature().GetCovers().GetSequence() + 1
}

func TestExportService(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b, withOutbox(b))
		ex := pb.NewExportServiceClient(e.conn)
		ctx := as(perfusionist)
		caseID, ver := e.signedViaAPI()
		id := uuid.MustParse(caseID)

		h, err := ex.RenderHL7(ctx, &pb.RenderHL7Request{CaseId: caseID})
		if err != nil {
			t.Fatalf("render HL7: %v", err)
		}
		m, err := v2.Parse(h.GetMessage())
		if err != nil || h.GetVersion() != ver || h.GetMessageControlId() != v2.ControlID(export.ControlIDKind, id, ver) ||
			m.ControlID() != h.GetMessageControlId() || m.Get("OBR-25") != "F" {
			t.Fatalf("HL7 preview: version %d id %q (%v)", h.GetVersion(), h.GetMessageControlId(), err)
		}
		again, err := ex.RenderHL7(ctx, &pb.RenderHL7Request{CaseId: caseID, Version: ver})
		if err != nil || string(again.GetMessage()) != string(h.GetMessage()) {
			t.Fatalf("rendering the same version twice differs (%v)", err)
		}
		f, err := ex.RenderFHIR(ctx, &pb.RenderFHIRRequest{CaseId: caseID, Version: ver})
		if err != nil {
			t.Fatalf("render FHIR: %v", err)
		}
		var bundle fhir.Bundle
		if err := json.Unmarshal(f.GetBundle(), &bundle); err != nil || bundle.Type != "transaction" ||
			bundle.Identifier.Value != f.GetBundleIdentifier() || f.GetBundleIdentifier() != fhir.TransactionIdentifier(id, ver) {
			t.Fatalf("FHIR preview: %q (%v)", f.GetBundleIdentifier(), err)
		}
		d, err := ex.RenderFHIR(ctx, &pb.RenderFHIRRequest{CaseId: caseID, Version: ver, BundleType: pb.FHIRBundleType_FHIR_BUNDLE_TYPE_DOCUMENT})
		if err != nil {
			t.Fatalf("render FHIR document: %v", err)
		}
		var docBundle struct {
			Type       string          `json:"type"`
			Identifier fhir.Identifier `json:"identifier"`
			Entry      []struct {
				Resource struct {
					ResourceType string          `json:"resourceType"`
					Text         *fhir.Narrative `json:"text"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(d.GetBundle(), &docBundle); err != nil || docBundle.Type != "document" || d.GetVersion() != ver ||
			docBundle.Identifier.Value != d.GetBundleIdentifier() || d.GetBundleIdentifier() == f.GetBundleIdentifier() ||
			len(docBundle.Entry) == 0 || docBundle.Entry[0].Resource.ResourceType != "Composition" ||
			docBundle.Entry[0].Resource.Text == nil || docBundle.Entry[0].Resource.Text.Status != "generated" {
			t.Fatalf("FHIR document: type %q id %q (%v)", docBundle.Type, d.GetBundleIdentifier(), err)
		}
		_, err = ex.RenderFHIR(ctx, &pb.RenderFHIRRequest{CaseId: caseID, BundleType: pb.FHIRBundleType(99)})
		wantFieldViolation(t, "render FHIR unknown bundle type", err, "bundle_type")

		list, err := ex.ListDeliveries(ctx, &pb.ListDeliveriesRequest{CaseId: caseID})
		if err != nil || len(list.GetDeliveries()) != 2 {
			t.Fatalf("list: %d, %v", len(list.GetDeliveries()), err)
		}
		ids := map[pb.DeliveryDestination]*pb.Delivery{}
		for _, d := range list.GetDeliveries() {
			ids[d.GetDestination()] = d
			if d.GetState() != pb.DeliveryState_DELIVERY_STATE_PENDING || d.GetVersion() != ver || d.GetCaseId() != caseID {
				t.Errorf("delivery %v", d)
			}
		}
		mllpD, fhirD := ids[pb.DeliveryDestination_DELIVERY_DESTINATION_HL7V2_MLLP], ids[pb.DeliveryDestination_DELIVERY_DESTINATION_FHIR_REST]
		if mllpD.GetMessageId() != h.GetMessageControlId() || fhirD.GetMessageId() != f.GetBundleIdentifier() {
			t.Fatalf("queued message ids differ from the previews")
		}
		// Paging, and state and site filters.
		p1, err := ex.ListDeliveries(ctx, &pb.ListDeliveriesRequest{PageSize: 1})
		if err != nil || len(p1.GetDeliveries()) != 1 || p1.GetNextPageToken() == "" {
			t.Fatalf("page 1: %v", err)
		}
		p2, err := ex.ListDeliveries(ctx, &pb.ListDeliveriesRequest{PageSize: 1, PageToken: p1.GetNextPageToken()})
		if err != nil || len(p2.GetDeliveries()) != 1 || p2.GetDeliveries()[0].GetDeliveryId() == p1.GetDeliveries()[0].GetDeliveryId() {
			t.Fatalf("page 2: %v", err)
		}
		if l, err := ex.ListDeliveries(ctx, &pb.ListDeliveriesRequest{State: pb.DeliveryState_DELIVERY_STATE_FAILED}); err != nil || len(l.GetDeliveries()) != 0 {
			t.Fatalf("failed filter: %v", err)
		}
		if l, err := ex.ListDeliveries(ctx, &pb.ListDeliveriesRequest{Site: "OTHER"}); err != nil || len(l.GetDeliveries()) != 0 {
			t.Fatalf("site filter: %v", err)
		}

		// Retry: pending is fine; delivered is refused.
		r, err := ex.RetryDelivery(ctx, &pb.RetryDeliveryRequest{CaseId: caseID, DeliveryId: mllpD.GetDeliveryId()})
		if err != nil || r.GetDelivery().GetState() != pb.DeliveryState_DELIVERY_STATE_PENDING {
			t.Fatalf("retry pending: %v", err)
		}
		o, _ := store.OutboxOf(b)
		claimed, err := o.ClaimDeliveries(context.Background(), "", time.Now().Add(time.Hour), time.Minute, 10)
		if err != nil || len(claimed) != 2 {
			t.Fatalf("claim: %v", err)
		}
		_, err = ex.RetryDelivery(ctx, &pb.RetryDeliveryRequest{CaseId: caseID, DeliveryId: mllpD.GetDeliveryId()})
		wantCode(t, "retry while delivering", err, codes.FailedPrecondition)
		for _, d := range claimed {
			d.State, d.AckCode, d.UpdatedAt, d.DeliveredAt = store.DeliveryDelivered, "AA", time.Now(), time.Now()
			if ok, err := o.FinishDelivery(context.Background(), &d, d.Attempts); !ok || err != nil {
				t.Fatalf("finish: %v", err)
			}
		}
		_, err = ex.RetryDelivery(ctx, &pb.RetryDeliveryRequest{CaseId: caseID, DeliveryId: mllpD.GetDeliveryId()})
		wantCode(t, "retry delivered", err, codes.FailedPrecondition)
		_, err = ex.RetryDelivery(ctx, &pb.RetryDeliveryRequest{CaseId: uuid.NewString(), DeliveryId: mllpD.GetDeliveryId()})
		wantCode(t, "retry under another case", err, codes.NotFound)

		// An addendum is a new version, sent as a correction (OBR-25 C).
		if _, err := e.cases.AddAddendum(ctx, &pb.AddAddendumRequest{CaseId: caseID, AddendumId: uuid.NewString(), Text: "late", Reason: "forgot"}); err != nil {
			t.Fatalf("addendum: %v", err)
		}
		h2, err := ex.RenderHL7(ctx, &pb.RenderHL7Request{CaseId: caseID})
		if err != nil || h2.GetVersion() <= ver {
			t.Fatalf("latest after addendum: %d, %v", h2.GetVersion(), err)
		}
		if m2, _ := v2.Parse(h2.GetMessage()); m2.Get("OBR-25") != "C" || m2.ControlID() == h.GetMessageControlId() {
			t.Fatalf("addendum version: OBR-25 %q, control id reused: %v", m2.Get("OBR-25"), m2.ControlID() == h.GetMessageControlId())
		}
		// Superseding is refused for a delivered version and for the latest
		// one (nothing would replace it); it needs a reason.
		list2, err := ex.ListDeliveries(ctx, &pb.ListDeliveriesRequest{CaseId: caseID, State: pb.DeliveryState_DELIVERY_STATE_PENDING})
		if err != nil || len(list2.GetDeliveries()) != 2 {
			t.Fatalf("pending after the addendum: %v, %v", list2.GetDeliveries(), err)
		}
		latest := list2.GetDeliveries()[0]
		_, err = ex.SupersedeDelivery(ctx, &pb.SupersedeDeliveryRequest{CaseId: caseID, DeliveryId: latest.GetDeliveryId(), Reason: "newer"})
		wantCode(t, "supersede the latest version", err, codes.FailedPrecondition)
		_, err = ex.SupersedeDelivery(ctx, &pb.SupersedeDeliveryRequest{CaseId: caseID, DeliveryId: mllpD.GetDeliveryId(), Reason: "newer"})
		wantCode(t, "supersede a delivered one", err, codes.FailedPrecondition)
		_, err = ex.SupersedeDelivery(ctx, &pb.SupersedeDeliveryRequest{CaseId: uuid.NewString(), DeliveryId: mllpD.GetDeliveryId(), Reason: "x"})
		wantCode(t, "supersede under another case", err, codes.NotFound)
		_, err = ex.SupersedeDelivery(ctx, &pb.SupersedeDeliveryRequest{CaseId: caseID, DeliveryId: mllpD.GetDeliveryId()})
		wantFieldViolation(t, "supersede without a reason", err, "reason")
		_, err = ex.SupersedeDelivery(ctx, &pb.SupersedeDeliveryRequest{CaseId: caseID})
		wantFieldViolation(t, "supersede without an id", err, "delivery_id")
		// A second addendum: the first addendum's pending delivery may now be
		// superseded, recording who and why.
		if _, err := e.cases.AddAddendum(ctx, &pb.AddAddendumRequest{CaseId: caseID, AddendumId: uuid.NewString(), Text: "later", Reason: "forgot again"}); err != nil {
			t.Fatalf("addendum: %v", err)
		}
		sup, err := ex.SupersedeDelivery(ctx, &pb.SupersedeDeliveryRequest{CaseId: caseID, DeliveryId: latest.GetDeliveryId(), Reason: "the next version carries it"})
		if err != nil || sup.GetDelivery().GetState() != pb.DeliveryState_DELIVERY_STATE_SUPERSEDED ||
			sup.GetDelivery().GetSupersedeReason() != "the next version carries it" || sup.GetDelivery().GetSupersededBy() == "" {
			t.Fatalf("supersede: %v, %v", sup.GetDelivery(), err)
		}
		if l, err := ex.ListDeliveries(ctx, &pb.ListDeliveriesRequest{CaseId: caseID, State: pb.DeliveryState_DELIVERY_STATE_SUPERSEDED}); err != nil || len(l.GetDeliveries()) != 1 {
			t.Fatalf("superseded filter: %v", err)
		}

		// The first version still renders exactly as before.
		if old, err := ex.RenderHL7(ctx, &pb.RenderHL7Request{CaseId: caseID, Version: ver}); err != nil || string(old.GetMessage()) != string(h.GetMessage()) {
			t.Fatalf("version %d changed after an addendum (%v)", ver, err)
		}

		// Bad input and lifecycle misuse.
		_, err = ex.RenderHL7(ctx, &pb.RenderHL7Request{CaseId: "nope", Version: -1})
		wantFieldViolation(t, "render bad ids", err, "case_id")
		wantFieldViolation(t, "render bad version", err, "version")
		_, err = ex.RenderHL7(ctx, &pb.RenderHL7Request{CaseId: uuid.NewString()})
		wantCode(t, "render unknown case", err, codes.NotFound)
		_, err = ex.RenderFHIR(ctx, &pb.RenderFHIRRequest{CaseId: caseID, Version: 1})
		wantCode(t, "render a version that is no signature", err, codes.NotFound)
		open := e.createCase("OR-6")
		_, err = ex.RenderHL7(ctx, &pb.RenderHL7Request{CaseId: open.GetCaseId()})
		wantCode(t, "render an unsigned case", err, codes.FailedPrecondition)
		_, err = ex.ListDeliveries(ctx, &pb.ListDeliveriesRequest{CaseId: "x", PageToken: "!!", PageSize: -1})
		wantFieldViolation(t, "list bad", err, "case_id")
		wantFieldViolation(t, "list bad", err, "page_token")
		wantFieldViolation(t, "list bad", err, "page_size")
		_, err = ex.RetryDelivery(ctx, &pb.RetryDeliveryRequest{})
		wantFieldViolation(t, "retry empty", err, "delivery_id")
		e.assertNoPHI()
	})
}

// TestRenderDeviceReport: the device data of a case streamed over gRPC
// comes back as an IHE PCD-01 report with its own MSH-10; bad message
// kinds are refused by field, and a case without samples has no report.
func TestRenderDeviceReport(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b, withOutbox(b))
		ex := pb.NewExportServiceClient(e.conn)
		ctx := as(perfusionist)
		c := e.createCase("OR-7")
		// Three minutes of pump flow and outlet temperature, from a whole
		// minute, in batches of 20 s.
		t0 := time.Now().Add(-time.Hour).Truncate(time.Minute)
		e.recordEntry(&pb.Entry{EntryId: uuid.NewString(), CaseId: c.GetCaseId(), OccurredAt: timestamppb.New(t0),
			Detail: &pb.Entry_Event{Event: &pb.Event{Type: pb.EventType_EVENT_TYPE_BYPASS_ON}}})
		ss := openStream(t, e.charting, c.GetCaseId(), "hlm-1")
		for seq := int64(1); seq <= 9; seq++ {
			ss.send(flowBatch("hlm-1", seq, t0.UnixMilli()+(seq-1)*20_000, 20))
		}
		ss.close()
		e.closeAndSign(c.GetCaseId())

		resp, err := ex.RenderHL7(ctx, &pb.RenderHL7Request{CaseId: c.GetCaseId(), Message: pb.HL7Message_HL7_MESSAGE_DEVICE_REPORT})
		if err != nil {
			t.Fatalf("render device report: %v", err)
		}
		m, err := v2.Parse(resp.GetMessage())
		if err != nil {
			t.Fatalf("parse the device report: %v", err)
		}
		id := uuid.MustParse(c.GetCaseId())
		if m.Get("MSH-21") != "IHE_PCD_001" || m.ControlID() != v2.ControlID(export.DeviceReportKind, id, resp.GetVersion()) ||
			m.ControlID() == v2.ControlID(export.ControlIDKind, id, resp.GetVersion()) {
			t.Fatalf("device report MSH-21 %q, MSH-10 %q", m.Get("MSH-21"), m.ControlID())
		}
		if n := len(m.All("OBR")); n != 3 {
			t.Errorf("%d OBR groups, want one per minute (3)", n)
		}
		flows := 0
		for _, obx := range m.All("OBX") {
			if obx.Field(3).Value() == "pump_flow" {
				flows++
			}
		}
		if flows != 3 {
			t.Errorf("%d pump flow rows, want 3 (a mean per minute)", flows)
		}

		_, err = ex.RenderHL7(ctx, &pb.RenderHL7Request{CaseId: c.GetCaseId(), Message: pb.HL7Message(99)})
		wantFieldViolation(t, "render an unknown message", err, "message")
		noSamples, _ := e.signedViaAPI()
		_, err = ex.RenderHL7(ctx, &pb.RenderHL7Request{CaseId: noSamples, Message: pb.HL7Message_HL7_MESSAGE_DEVICE_REPORT})
		wantCode(t, "device report without samples", err, codes.FailedPrecondition)
		e.assertNoPHI()
	})
}

// TestRenderDocument: the signed case's PDF names its version and ledger
// head, renders the same twice; an open case renders as a draft; bad ids,
// unknown cases and versions of an unsigned case are refused.
func TestRenderDocument(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b, withOutbox(b))
		ex := pb.NewExportServiceClient(e.conn)
		ctx := as(perfusionist)
		caseID, ver := e.signedViaAPI()
		d, err := ex.RenderDocument(ctx, &pb.RenderDocumentRequest{CaseId: caseID})
		if err != nil {
			t.Fatalf("render document: %v", err)
		}
		if d.GetVersion() != ver || d.GetDraft() || d.GetLedgerSeq() != ver || len(d.GetLedgerHash()) != 64 ||
			!strings.HasPrefix(string(d.GetPdf()), "%PDF-") {
			t.Fatalf("document: version %d draft %v link %d hash %q", d.GetVersion(), d.GetDraft(), d.GetLedgerSeq(), d.GetLedgerHash())
		}
		again, err := ex.RenderDocument(ctx, &pb.RenderDocumentRequest{CaseId: caseID, Version: ver})
		if err != nil || string(again.GetPdf()) != string(d.GetPdf()) {
			t.Fatalf("rendering the same version twice differs (%v)", err)
		}
		open := e.createCase("OR-6")
		dr, err := ex.RenderDocument(ctx, &pb.RenderDocumentRequest{CaseId: open.GetCaseId()})
		if err != nil || !dr.GetDraft() || dr.GetVersion() != 0 || dr.GetLedgerSeq() == 0 {
			t.Fatalf("draft: %v draft %v version %d link %d", err, dr.GetDraft(), dr.GetVersion(), dr.GetLedgerSeq())
		}
		_, err = ex.RenderDocument(ctx, &pb.RenderDocumentRequest{CaseId: open.GetCaseId(), Version: 2})
		wantCode(t, "a version of an unsigned case", err, codes.NotFound)
		_, err = ex.RenderDocument(ctx, &pb.RenderDocumentRequest{CaseId: "nope", Version: -1})
		wantFieldViolation(t, "document bad ids", err, "case_id")
		wantFieldViolation(t, "document bad version", err, "version")
		_, err = ex.RenderDocument(ctx, &pb.RenderDocumentRequest{CaseId: uuid.NewString()})
		wantCode(t, "document of an unknown case", err, codes.NotFound)
	})
}
