package server

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/store"
)

// Access listing sizes.
const (
	defaultAccessPageSize = 100
	maxAccessPageSize     = 1000
)

// accessService implements perfusionv1.AccessService.
type accessService struct {
	pb.UnimplementedAccessServiceServer
	h        *handlers
	auditor  *accessAuditor
	duration time.Duration
}

var errNoAccessAudit = status.Error(codes.Unimplemented, "this server's store keeps no access audit")

// ListAccessEvents pages through the access audit, newest first.
func (s *accessService) ListAccessEvents(ctx context.Context, req *pb.ListAccessEventsRequest) (*pb.ListAccessEventsResponse, error) {
	if s.auditor == nil {
		return nil, errNoAccessAudit
	}
	var p parser
	f := store.AccessFilter{
		From: p.time("from", req.GetFrom()), To: p.time("to", req.GetTo()),
		Principal:  req.GetPrincipal(),
		CaseID:     p.id("case_id", req.GetCaseId(), false),
		DeniedOnly: req.GetDeniedOnly(),
		Limit:      p.pageSize("page_size", req.GetPageSize(), defaultAccessPageSize, maxAccessPageSize),
	}
	// Access cursors share the case listing's token format: a time and an
	// id.
	if c := p.pageToken("page_token", req.GetPageToken()); c != nil {
		f.After = &store.AccessCursor{At: c.ScheduledStart, ID: c.ID}
	}
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	want := f.Limit
	f.Limit++
	es, err := s.auditor.access.ListAccessEvents(ctx, f)
	if err != nil {
		return nil, s.h.fail(fmt.Errorf("list access events: %w", err))
	}
	out := &pb.ListAccessEventsResponse{}
	if len(es) > want {
		es = es[:want]
		last := es[want-1]
		out.NextPageToken = encodePageToken(&store.CaseCursor{ScheduledStart: last.At, ID: last.ID})
	}
	for _, e := range es {
		ev := &pb.AccessEvent{EventId: e.ID.String(), At: timestamppb.New(e.At), Principal: e.Principal, Roles: e.Roles, Via: e.Via,
			Method: e.Method, Code: e.Code, Reason: e.Reason, ClientAddr: e.ClientAddr}
		if e.CaseID != uuid.Nil {
			ev.CaseId = e.CaseID.String()
		}
		out.Events = append(out.Events, ev)
	}
	return out, nil
}

// OpenBreakGlass grants the caller time-limited access to a case of a site
// that is not theirs. A running grant on the same case is returned as it
// is, so a retried call opens nothing twice.
func (s *accessService) OpenBreakGlass(ctx context.Context, req *pb.OpenBreakGlassRequest) (*pb.OpenBreakGlassResponse, error) {
	if s.auditor == nil {
		return nil, errNoAccessAudit
	}
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	var p parser
	id := p.id("case_id", req.GetCaseId(), true)
	if n := utf8.RuneCountInString(req.GetReason()); n < 10 || n > 500 || !utf8.ValidString(req.GetReason()) {
		p.v.Add("reason", "required: the emergency, 10 to 500 characters")
	}
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	c, err := s.h.store.GetCase(ctx, id)
	if err != nil {
		return nil, s.h.fail(err)
	}
	now := s.auditor.now()
	if g, err := s.auditor.access.ActiveBreakGlass(ctx, who, id, now); err == nil {
		return &pb.OpenBreakGlassResponse{Grant: grantOut(g)}, nil
	} else if !errors.Is(err, charting.ErrNotFound) {
		return nil, s.h.fail(err)
	}
	g := store.BreakGlassGrant{ID: uuid.New(), Principal: who, CaseID: id, Site: c.Site, Reason: req.GetReason(),
		StartedAt: now, ExpiresAt: now.Add(s.duration)}
	if err := s.auditor.access.InsertBreakGlass(ctx, g); err != nil {
		return nil, s.h.fail(fmt.Errorf("open break-glass: %w", err))
	}
	s.h.log.Warn("break-glass access opened", "principal", who, "case_id", id.String(), "site", c.Site, "expires_at", g.ExpiresAt)
	return &pb.OpenBreakGlassResponse{Grant: grantOut(&g)}, nil
}

// EndBreakGlass ends the caller's own running grant; expiries found on the
// way are recorded too.
func (s *accessService) EndBreakGlass(ctx context.Context, req *pb.EndBreakGlassRequest) (*pb.EndBreakGlassResponse, error) {
	if s.auditor == nil {
		return nil, errNoAccessAudit
	}
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	var p parser
	id := p.id("grant_id", req.GetGrantId(), true)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	ended, err := s.auditor.access.EndBreakGlass(ctx, id, who, s.auditor.now())
	if err != nil {
		return nil, s.h.fail(fmt.Errorf("end break-glass: %w", err))
	}
	if err := s.auditor.recordEnds(ctx, ended); err != nil {
		s.h.log.Error("access audit write failed", "err", err.Error())
		return nil, errAuditUnavailable
	}
	for i := range ended {
		if ended[i].ID == id {
			return &pb.EndBreakGlassResponse{Grant: grantOut(&ended[i])}, nil
		}
	}
	return nil, status.Error(codes.NotFound, "no running break-glass grant of yours with that id")
}

// ListBreakGlass lists grants for review, newest first.
func (s *accessService) ListBreakGlass(ctx context.Context, req *pb.ListBreakGlassRequest) (*pb.ListBreakGlassResponse, error) {
	if s.auditor == nil {
		return nil, errNoAccessAudit
	}
	var p parser
	f := store.BreakGlassFilter{
		From: p.time("from", req.GetFrom()), To: p.time("to", req.GetTo()),
		Principal: req.GetPrincipal(),
		CaseID:    p.id("case_id", req.GetCaseId(), false),
		Limit:     p.pageSize("page_size", req.GetPageSize(), defaultAccessPageSize, maxAccessPageSize),
	}
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	gs, err := s.auditor.access.ListBreakGlass(ctx, f)
	if err != nil {
		return nil, s.h.fail(fmt.Errorf("list break-glass: %w", err))
	}
	out := &pb.ListBreakGlassResponse{}
	for i := range gs {
		out.Grants = append(out.Grants, grantOut(&gs[i]))
	}
	return out, nil
}

func grantOut(g *store.BreakGlassGrant) *pb.BreakGlassGrant {
	out := &pb.BreakGlassGrant{GrantId: g.ID.String(), Principal: g.Principal, CaseId: g.CaseID.String(), Site: g.Site, Reason: g.Reason,
		StartedAt: timestamppb.New(g.StartedAt), ExpiresAt: timestamppb.New(g.ExpiresAt), EndReason: g.EndReason}
	if !g.EndedAt.IsZero() {
		out.EndedAt = timestamppb.New(g.EndedAt)
	}
	return out
}
