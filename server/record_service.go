package server

import (
	"context"

	pb "perfusion/api/perfusion/v1"
	"perfusion/store"
)

// recordService implements perfusionv1.RecordService.
type recordService struct {
	pb.UnimplementedRecordServiceServer
	h *handlers
}

// VerifyRecord re-hashes a case's stored record and reports the first bad
// link, if any.
func (s *recordService) VerifyRecord(ctx context.Context, req *pb.VerifyRecordRequest) (*pb.VerifyRecordResponse, error) {
	var p parser
	id := p.id("case_id", req.GetCaseId(), true)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	var opts []store.VerifyOption
	if req.GetAgainstCheckpoints() {
		opts = append(opts, store.AgainstCheckpoints())
	}
	v, err := s.h.store.VerifyRecord(ctx, id, opts...)
	if err != nil {
		return nil, s.h.fail(err)
	}
	out := &pb.VerifyRecordResponse{
		Ok:                    v.OK(),
		LinksVerified:         v.LinksVerified,
		EntriesVerified:       v.EntriesVerified,
		SampleBatchesVerified: v.SampleBatchesVerified,
		SamplesVerified:       v.SamplesVerified,
		HeadHash:              v.Head.String(),
		CheckpointsVerified:   v.CheckpointsVerified,
	}
	if b := v.Bad; b != nil {
		out.FirstBadLink = &pb.BadLink{Sequence: b.Seq, Kind: string(b.Kind), Ref: b.Ref,
			Problem: verificationProblems.enum(string(b.Problem)), Detail: b.Detail}
	}
	return out, nil
}

// Page sizes of GetAuditTrail.
const (
	defaultAuditPageSize = 500
	maxAuditPageSize     = 5000
)

// GetAuditTrail lists a case's writes in ledger order.
func (s *recordService) GetAuditTrail(ctx context.Context, req *pb.GetAuditTrailRequest) (*pb.GetAuditTrailResponse, error) {
	var p parser
	id := p.id("case_id", req.GetCaseId(), true)
	if req.GetAfterSequence() < 0 {
		p.v.Add("after_sequence", "must not be negative")
	}
	limit := p.pageSize("page_size", req.GetPageSize(), defaultAuditPageSize, maxAuditPageSize)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	// One more than the page tells whether another page follows, so the
	// last page says so instead of sending the client on an empty round.
	links, err := s.h.store.AuditTrail(ctx, id, req.GetAfterSequence(), limit+1)
	if err != nil {
		return nil, s.h.fail(err)
	}
	out := &pb.GetAuditTrailResponse{}
	if len(links) > limit {
		links = links[:limit]
		out.NextAfterSequence = links[limit-1].Seq
	}
	for _, l := range links {
		out.Events = append(out.Events, &pb.AuditEvent{Sequence: l.Seq, Kind: string(l.Kind), Ref: l.Ref, Actor: l.Actor,
			RecordedAt: ts(l.RecordedAt), Reason: l.Reason, Hash: l.Hash.String()})
	}
	return out, nil
}
