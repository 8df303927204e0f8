package server

import (
	"context"
	"log/slog"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/store"
)

// handlers holds what every service needs: the record and a logger for
// internal errors.
type handlers struct {
	store *store.Store
	log   *slog.Logger
}

// fail maps an error to a gRPC status (see toStatus).
func (h *handlers) fail(err error) error { return toStatus(h.log, err) }

// caseService implements perfusionv1.CaseService.
type caseService struct {
	pb.UnimplementedCaseServiceServer
	h      *handlers
	lookup PatientLookup // patient_service.go; nil without a FHIR server
}

// CreateCase opens a planned case, idempotent on a client-made case_id.
func (s *caseService) CreateCase(ctx context.Context, req *pb.CreateCaseRequest) (*pb.CreateCaseResponse, error) {
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	var p parser
	n := store.NewCase{
		ID:             p.id("case_id", req.GetCaseId(), false),
		Kind:           charting.Kind(caseKinds.parse(&p, "kind", req.GetKind())),
		Site:           req.GetSite(),
		Room:           req.GetRoom(),
		ScheduledStart: p.time("scheduled_start", req.GetScheduledStart()),
		Details:        p.detailsIn("details.", req.GetDetails()),
	}
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	c, err := s.h.store.CreateCase(ctx, who, n)
	if err != nil {
		return nil, s.h.fail(err)
	}
	return &pb.CreateCaseResponse{Case: caseOut(c)}, nil
}

// GetCase returns one case.
func (s *caseService) GetCase(ctx context.Context, req *pb.GetCaseRequest) (*pb.GetCaseResponse, error) {
	var p parser
	id := p.id("case_id", req.GetCaseId(), true)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	c, err := s.h.store.GetCase(ctx, id)
	if err != nil {
		return nil, s.h.fail(err)
	}
	return &pb.GetCaseResponse{Case: caseOut(c)}, nil
}

// Page sizes of ListCases.
const (
	defaultCasePageSize = 50
	maxCasePageSize     = 500
)

// ListCases pages through cases, newest scheduled start first.
func (s *caseService) ListCases(ctx context.Context, req *pb.ListCasesRequest) (*pb.ListCasesResponse, error) {
	var p parser
	f := store.CaseFilter{
		Status: charting.Status(caseStatuses.parse(&p, "status", req.GetStatus())),
		Site:   req.GetSite(),
		Room:   req.GetRoom(),
		From:   p.time("scheduled_from", req.GetScheduledFrom()),
		To:     p.time("scheduled_to", req.GetScheduledTo()),
		Limit:  p.pageSize("page_size", req.GetPageSize(), defaultCasePageSize, maxCasePageSize),
		After:  p.pageToken("page_token", req.GetPageToken()),
	}
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	cases, next, err := s.h.store.ListCases(ctx, f)
	if err != nil {
		return nil, s.h.fail(err)
	}
	out := &pb.ListCasesResponse{NextPageToken: encodePageToken(next)}
	for i := range cases {
		out.Cases = append(out.Cases, caseOut(&cases[i]))
	}
	return out, nil
}

// UpdateCaseDetails stores a new version of the details.
func (s *caseService) UpdateCaseDetails(ctx context.Context, req *pb.UpdateCaseDetailsRequest) (*pb.UpdateCaseDetailsResponse, error) {
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	var p parser
	id := p.id("case_id", req.GetCaseId(), true)
	if req.GetExpectedDetailsVersion() < 1 {
		p.v.Add("expected_details_version", "required: the details version the client edited")
	}
	p.require("details", req.GetDetails() != nil)
	d := p.detailsIn("details.", req.GetDetails())
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	// The booking is the inbound interface's (output only): keep the
	// case's. Read at the version the client edited, which the store
	// checks again under the case's lock.
	cur, err := s.h.store.GetCase(ctx, id)
	if err != nil {
		return nil, s.h.fail(err)
	}
	d.Booking = cur.Details.Booking
	c, err := s.h.store.UpdateCaseDetails(ctx, who, id, req.GetExpectedDetailsVersion(), d, req.GetReason())
	if err != nil {
		return nil, s.h.fail(err)
	}
	return &pb.UpdateCaseDetailsResponse{Case: caseOut(c)}, nil
}

// CloseCase ends charting.
func (s *caseService) CloseCase(ctx context.Context, req *pb.CloseCaseRequest) (*pb.CloseCaseResponse, error) {
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	var p parser
	id := p.id("case_id", req.GetCaseId(), true)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	c, err := s.h.store.CloseCase(ctx, who, id)
	if err != nil {
		return nil, s.h.fail(err)
	}
	return &pb.CloseCaseResponse{Case: caseOut(c)}, nil
}

// SignCase signs a closed or signed case as the calling principal.
func (s *caseService) SignCase(ctx context.Context, req *pb.SignCaseRequest) (*pb.SignCaseResponse, error) {
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	var p parser
	id := p.id("case_id", req.GetCaseId(), true)
	r := store.SignRequest{
		Meaning:     charting.SignatureMeaning(signatureMeanings.parse(&p, "meaning", req.GetMeaning())),
		DisplayName: req.GetSignerDisplayName(),
	}
	if pr, ok := PrincipalFrom(ctx); ok {
		r.StaffID = pr.StaffID
	}
	if h := req.GetExpectedLedgerHead(); h != nil {
		if h.GetSequence() < 1 {
			p.v.Add("expected_ledger_head.sequence", "must be at least 1")
		}
		r.ExpectedHead = &charting.Head{Seq: h.GetSequence(), Hash: p.hash("expected_ledger_head.hash", h.GetHash())}
	}
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	c, sig, dup, err := s.h.store.SignCase(ctx, who, id, r)
	if err != nil {
		return nil, s.h.fail(err)
	}
	return &pb.SignCaseResponse{Case: caseOut(c), Signature: signatureOut(*sig), Duplicate: dup}, nil
}

// AddAddendum appends an addendum to a signed case.
func (s *caseService) AddAddendum(ctx context.Context, req *pb.AddAddendumRequest) (*pb.AddAddendumResponse, error) {
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	var p parser
	caseID := p.id("case_id", req.GetCaseId(), true)
	addendumID := p.id("addendum_id", req.GetAddendumId(), true)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	e, _, err := s.h.store.AddAddendum(ctx, who, caseID, addendumID, req.GetText(), req.GetReason())
	if err != nil {
		return nil, s.h.fail(renameFields(err, addendumFields))
	}
	return &pb.AddAddendumResponse{Entry: entryOut(e)}, nil
}

// ReconcileIdentity appends a patient identity to a case.
func (s *caseService) ReconcileIdentity(ctx context.Context, req *pb.ReconcileIdentityRequest) (*pb.ReconcileIdentityResponse, error) {
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	var p parser
	caseID := p.id("case_id", req.GetCaseId(), true)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	r, err := s.h.store.ReconcileIdentity(ctx, who, caseID, store.IdentityUpdate{MRN: req.GetMrn(), AssigningAuthority: req.GetAssigningAuthority(),
		FamilyName: req.GetFamilyName(), GivenName: req.GetGivenName(), BirthDate: req.GetBirthDate(), Reason: req.GetReason()})
	if err != nil {
		return nil, s.h.fail(err)
	}
	// The link by its sequence: a later write may already have moved the
	// head.
	links, err := s.h.store.AuditTrail(ctx, caseID, r.Seq-1, 1)
	if err != nil {
		return nil, s.h.fail(err)
	}
	out := &pb.ReconcileIdentityResponse{LedgerSeq: r.Seq, RecordedAt: timestamppb.New(r.RecordedAt)}
	if len(links) == 1 {
		out.LedgerHash = links[0].Hash.String()
	}
	return out, nil
}

// addendumFields maps the domain's entry field names to AddAddendumRequest's.
func addendumFields(f string) string {
	switch f {
	case "entry.entry_id":
		return "addendum_id"
	case "entry.case_id":
		return "case_id"
	case "entry.addendum.text":
		return "text"
	case "entry.addendum.reason":
		return "reason"
	}
	return f
}
