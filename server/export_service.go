package server

import (
	"context"
	"errors"
	"strings"

	"github.com/google/uuid"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/export"
	"perfusion/hl7/fhir"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
)

// exportService implements perfusionv1.ExportService over the renderer and
// the delivery outbox (store/outbox.go, package export).
type exportService struct {
	pb.UnimplementedExportServiceServer
	h *handlers
	r *export.Renderer
}

// newExportService builds the service. Without a configured renderer
// (tests, a server with no destination) HL7 previews use the default
// sending application and FHIR previews fail for want of identifier
// systems.
func newExportService(h *handlers, r *export.Renderer) *exportService {
	if r == nil {
		r = export.RendererFor(h.store, export.HL7Config{SendingApplication: v2.HD{NamespaceID: "PERFUSION"}}, fhir.Options{})
	}
	return &exportService{h: h, r: r}
}

// renderFail maps render errors: an unknown version is NotFound; content
// the builders refuse (or FHIR without its identifier systems) is a
// precondition the operator must fix, named without content.
func (s *exportService) renderFail(err error) error {
	switch {
	case errors.Is(err, export.ErrNotAVersion):
		return s.h.fail(charting.ErrNotFound)
	case errors.Is(err, export.ErrFHIRNotConfigured):
		// The person asking is rarely the operator: name the setting.
		return preconditionStatus("FHIR export is not configured on this server: start perfusiond with --fhir-staff-system " +
			"(or PERFUSION_FHIR_STAFF_SYSTEM), the identifier system of staff ids")
	case errors.Is(err, export.ErrContent):
		// ErrContent's own words would repeat "cannot be rendered".
		return preconditionStatus("the record cannot be rendered for export: " +
			strings.TrimPrefix(err.Error(), export.ErrContent.Error()+": "))
	}
	return s.h.fail(err)
}

func knownBundleType(t pb.FHIRBundleType) bool {
	switch t {
	case pb.FHIRBundleType_FHIR_BUNDLE_TYPE_UNSPECIFIED, pb.FHIRBundleType_FHIR_BUNDLE_TYPE_TRANSACTION, pb.FHIRBundleType_FHIR_BUNDLE_TYPE_DOCUMENT:
		return true
	}
	return false
}

func knownHL7Message(m pb.HL7Message) bool {
	switch m {
	case pb.HL7Message_HL7_MESSAGE_UNSPECIFIED, pb.HL7Message_HL7_MESSAGE_SUMMARY, pb.HL7Message_HL7_MESSAGE_DEVICE_REPORT,
		pb.HL7Message_HL7_MESSAGE_DOCUMENT:
		return true
	}
	return false
}

func (s *exportService) version(req interface {
	GetCaseId() string
	GetVersion() int64
}) (uuid.UUID, int64, error) {
	var p parser
	id := p.id("case_id", req.GetCaseId(), true)
	if req.GetVersion() < 0 {
		p.v.Add("version", "must be a version (a signature's or addendum's ledger sequence) or 0 for the latest")
	}
	return id, req.GetVersion(), p.err()
}

// RenderHL7 renders a version's ORU^R01.
func (s *exportService) RenderHL7(ctx context.Context, req *pb.RenderHL7Request) (*pb.RenderHL7Response, error) {
	id, ver, err := s.version(req)
	if err == nil && !knownHL7Message(req.GetMessage()) {
		var p parser
		p.v.Add("message", "must be HL7_MESSAGE_SUMMARY, HL7_MESSAGE_DEVICE_REPORT, HL7_MESSAGE_DOCUMENT or unspecified")
		err = p.err()
	}
	if err != nil {
		return nil, s.h.fail(err)
	}
	v, err := s.r.Load(ctx, id, ver)
	if err != nil {
		return nil, s.renderFail(err)
	}
	render := s.r.HL7
	switch req.GetMessage() {
	case pb.HL7Message_HL7_MESSAGE_DEVICE_REPORT:
		render = s.r.DeviceReport
	case pb.HL7Message_HL7_MESSAGE_DOCUMENT:
		render = s.r.MDM
	}
	out, err := render(v)
	if err != nil {
		return nil, s.renderFail(err)
	}
	return &pb.RenderHL7Response{Version: v.Number, MessageControlId: out.MessageID, Message: out.Payload}, nil
}

// RenderFHIR renders a version's transaction Bundle or FHIR document.
func (s *exportService) RenderFHIR(ctx context.Context, req *pb.RenderFHIRRequest) (*pb.RenderFHIRResponse, error) {
	id, ver, err := s.version(req)
	if err == nil && !knownBundleType(req.GetBundleType()) {
		var p parser
		p.v.Add("bundle_type", "must be FHIR_BUNDLE_TYPE_TRANSACTION, FHIR_BUNDLE_TYPE_DOCUMENT or unspecified")
		err = p.err()
	}
	if err != nil {
		return nil, s.h.fail(err)
	}
	v, err := s.r.Load(ctx, id, ver)
	if err != nil {
		return nil, s.renderFail(err)
	}
	render := s.r.FHIR
	if req.GetBundleType() == pb.FHIRBundleType_FHIR_BUNDLE_TYPE_DOCUMENT {
		render = s.r.FHIRDocument
	}
	out, err := render(v)
	if err != nil {
		return nil, s.renderFail(err)
	}
	return &pb.RenderFHIRResponse{Version: v.Number, BundleIdentifier: out.MessageID, Bundle: out.Payload}, nil
}

// RenderDocument renders a version's printable record, or an unsigned
// case's draft.
func (s *exportService) RenderDocument(ctx context.Context, req *pb.RenderDocumentRequest) (*pb.RenderDocumentResponse, error) {
	id, ver, err := s.version(req)
	if err != nil {
		return nil, s.h.fail(err)
	}
	d, err := s.r.RenderDocument(ctx, id, ver)
	if err != nil {
		return nil, s.renderFail(err)
	}
	return &pb.RenderDocumentResponse{Version: d.Version, Draft: d.Draft, LedgerSeq: d.Head.Seq, LedgerHash: d.Head.Hash.String(), Pdf: d.PDF}, nil
}

var (
	deliveryStates = map[pb.DeliveryState]store.DeliveryState{
		pb.DeliveryState_DELIVERY_STATE_PENDING: store.DeliveryPending, pb.DeliveryState_DELIVERY_STATE_DELIVERING: store.DeliveryDelivering,
		pb.DeliveryState_DELIVERY_STATE_DELIVERED: store.DeliveryDelivered, pb.DeliveryState_DELIVERY_STATE_FAILED: store.DeliveryFailed,
		pb.DeliveryState_DELIVERY_STATE_SUPERSEDED: store.DeliverySuperseded, pb.DeliveryState_DELIVERY_STATE_HELD: store.DeliveryHeld,
	}
	deliveryDestinations = map[store.Destination]pb.DeliveryDestination{
		store.DestinationMLLP: pb.DeliveryDestination_DELIVERY_DESTINATION_HL7V2_MLLP,
		store.DestinationFHIR: pb.DeliveryDestination_DELIVERY_DESTINATION_FHIR_REST,
	}
)

func deliveryOut(d *store.Delivery) *pb.Delivery {
	st := pb.DeliveryState_DELIVERY_STATE_UNSPECIFIED
	for k, v := range deliveryStates {
		if v == d.State {
			st = k
		}
	}
	return &pb.Delivery{DeliveryId: d.ID.String(), CaseId: d.CaseID.String(), Version: d.Version,
		Destination: deliveryDestinations[d.Destination], MessageId: d.MessageID, State: st, Attempts: int32(d.Attempts),
		NextAttemptAt: ts(d.NextAttemptAt), LeaseUntil: ts(d.LeaseUntil), LastError: d.LastError, AckCode: d.AckCode,
		AckText: d.AckText, CreatedAt: ts(d.CreatedAt), UpdatedAt: ts(d.UpdatedAt), DeliveredAt: ts(d.DeliveredAt),
		SupersededBy: d.SupersededBy, SupersedeReason: d.SupersedeReason}
}

// encodeDeliveryToken returns the token of the delivery listing's page
// after c (pagination.go), "" on the last page.
func encodeDeliveryToken(c *store.DeliveryCursor) string {
	if c == nil {
		return ""
	}
	return encodeTimeIDToken(c.CreatedAt, c.ID)
}

// deliveryToken decodes a delivery listing's token; "" means the first
// page.
func (p *parser) deliveryToken(field, tok string) *store.DeliveryCursor {
	at, id, ok := p.timeIDToken(field, tok)
	if !ok {
		return nil
	}
	return &store.DeliveryCursor{CreatedAt: at, ID: id}
}

// ListDeliveries lists deliveries.
func (s *exportService) ListDeliveries(ctx context.Context, req *pb.ListDeliveriesRequest) (*pb.ListDeliveriesResponse, error) {
	var p parser
	f := store.DeliveryFilter{Site: req.GetSite(), CaseID: p.id("case_id", req.GetCaseId(), false)}
	if req.GetState() != pb.DeliveryState_DELIVERY_STATE_UNSPECIFIED {
		st, ok := deliveryStates[req.GetState()]
		if !ok {
			p.v.Add("state", "unknown state")
		}
		f.State = st
	}
	f.Limit = p.pageSize("page_size", req.GetPageSize(), 50, 500)
	f.After = p.deliveryToken("page_token", req.GetPageToken())
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	ds, next, err := s.h.store.ListDeliveries(ctx, f)
	if err != nil {
		return nil, s.outboxFail(err)
	}
	out := &pb.ListDeliveriesResponse{NextPageToken: encodeDeliveryToken(next)}
	for i := range ds {
		out.Deliveries = append(out.Deliveries, deliveryOut(&ds[i]))
	}
	return out, nil
}

// ofCase fails unless delivery id belongs to caseID. The case is what
// access is checked on, so a delivery of another case is not found,
// whoever asks.
func (s *exportService) ofCase(ctx context.Context, caseID, id uuid.UUID) error {
	cur, err := s.h.store.GetDelivery(ctx, id)
	if err != nil {
		return s.outboxFail(err)
	}
	if cur.CaseID != caseID {
		return s.h.fail(charting.ErrNotFound)
	}
	return nil
}

// RetryDelivery requeues a failed or pending delivery.
func (s *exportService) RetryDelivery(ctx context.Context, req *pb.RetryDeliveryRequest) (*pb.RetryDeliveryResponse, error) {
	var p parser
	caseID := p.id("case_id", req.GetCaseId(), true)
	id := p.id("delivery_id", req.GetDeliveryId(), true)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	if err := s.ofCase(ctx, caseID, id); err != nil {
		return nil, err
	}
	d, err := s.h.store.RetryDelivery(ctx, id)
	if err != nil {
		return nil, s.outboxFail(err)
	}
	return &pb.RetryDeliveryResponse{Delivery: deliveryOut(d)}, nil
}

// SupersedeDelivery marks a pending or failed delivery replaced by a later
// version of its case.
func (s *exportService) SupersedeDelivery(ctx context.Context, req *pb.SupersedeDeliveryRequest) (*pb.SupersedeDeliveryResponse, error) {
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	var p parser
	caseID := p.id("case_id", req.GetCaseId(), true)
	id := p.id("delivery_id", req.GetDeliveryId(), true)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	if err := s.ofCase(ctx, caseID, id); err != nil {
		return nil, err
	}
	d, err := s.h.store.SupersedeDelivery(ctx, who, id, req.GetReason())
	if err != nil {
		return nil, s.outboxFail(err)
	}
	return &pb.SupersedeDeliveryResponse{Delivery: deliveryOut(d)}, nil
}

func (s *exportService) outboxFail(err error) error {
	if errors.Is(err, store.ErrNoOutbox) {
		return preconditionStatus("this server's store keeps no delivery outbox")
	}
	return s.h.fail(err)
}
