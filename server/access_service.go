package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
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

// accessSorts maps the API's sort to the store's.
var accessSorts = map[pb.AccessEventSort]store.AccessSort{
	pb.AccessEventSort_ACCESS_EVENT_SORT_UNSPECIFIED: store.SortAccessAt,
	pb.AccessEventSort_ACCESS_EVENT_SORT_TIME:        store.SortAccessAt,
	pb.AccessEventSort_ACCESS_EVENT_SORT_PRINCIPAL:   store.SortAccessPrincipal,
	pb.AccessEventSort_ACCESS_EVENT_SORT_METHOD:      store.SortAccessMethod,
	pb.AccessEventSort_ACCESS_EVENT_SORT_CASE:        store.SortAccessCase,
	pb.AccessEventSort_ACCESS_EVENT_SORT_SITE:        store.SortAccessSite,
	pb.AccessEventSort_ACCESS_EVENT_SORT_OUTCOME:     store.SortAccessCode,
	pb.AccessEventSort_ACCESS_EVENT_SORT_BREAK_GLASS: store.SortAccessBreakGlass,
}

// accessToken is an access listing's page token: the sort it belongs to
// and the last event's key, time and id.
type accessToken struct {
	Sort store.AccessSort `json:"s"`
	Desc bool             `json:"d"`
	Key  string           `json:"k"`
	At   time.Time        `json:"t"`
	ID   uuid.UUID        `json:"i"`
}

func encodeAccessToken(t accessToken) string {
	b, err := json.Marshal(t)
	if err != nil {
		panic(fmt.Sprintf("server: access token does not encode: %v", err)) // plain struct: cannot happen
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// accessToken decodes a page token of the same sort; "" is the first page.
func (p *parser) accessToken(field, tok string, sort store.AccessSort, desc bool) *store.AccessCursor {
	if tok == "" {
		return nil
	}
	var t accessToken
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || t.ID == uuid.Nil {
		p.v.Add(field, "not a page token of this listing")
		return nil
	}
	if t.Sort != sort || t.Desc != desc {
		p.v.Add(field, "the token belongs to another sort_by or order: ask for the same sort as the first page")
		return nil
	}
	return &store.AccessCursor{Key: t.Key, At: t.At, ID: t.ID}
}

// ListAccessEvents pages through the access audit in the requested order,
// filtered by any element. The interceptor records the listing itself,
// with its query and the cases whose events it returned.
func (s *accessService) ListAccessEvents(ctx context.Context, req *pb.ListAccessEventsRequest) (*pb.ListAccessEventsResponse, error) {
	if s.auditor == nil {
		return nil, errNoAccessAudit
	}
	var p parser
	sort, ok := accessSorts[req.GetSortBy()]
	if !ok {
		p.v.Add("sort_by", "unknown sort")
	}
	var desc bool
	switch req.GetOrder() {
	case pb.SortOrder_SORT_ORDER_UNSPECIFIED:
		desc = sort == store.SortAccessAt // the report's habit: newest first
	case pb.SortOrder_SORT_ORDER_ASCENDING:
	case pb.SortOrder_SORT_ORDER_DESCENDING:
		desc = true
	default:
		p.v.Add("order", "unknown order")
	}
	f := store.AccessFilter{
		From: p.time("from", req.GetFrom()), To: p.time("to", req.GetTo()),
		Principal:  req.GetPrincipal(),
		CaseID:     p.id("case_id", req.GetCaseId(), false),
		Method:     req.GetMethod(),
		Site:       req.GetSite(),
		Code:       req.GetOutcome(),
		DeniedOnly: req.GetDeniedOnly(),
		BreakGlass: req.GetBreakGlassOnly(),
		Sort:       sort,
		Desc:       desc,
		Limit:      p.pageSize("page_size", req.GetPageSize(), defaultAccessPageSize, maxAccessPageSize),
	}
	if f.Code != "" && !knownCode(f.Code) {
		p.v.Add("outcome", "not a gRPC status code name (OK, NotFound, PermissionDenied, …)")
	}
	f.After = p.accessToken("page_token", req.GetPageToken(), sort, desc)
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
		out.NextPageToken = encodeAccessToken(accessToken{Sort: sort, Desc: desc, Key: last.CursorKey(sort), At: last.At, ID: last.ID})
	}
	for i := range es {
		out.Events = append(out.Events, accessEventOut(&es[i]))
	}
	return out, nil
}

// knownCode reports whether name is a gRPC status code's name as the
// audit records it (codes.Code.String()).
func knownCode(name string) bool {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if c.String() == name {
			return true
		}
	}
	return false
}

func accessEventOut(e *store.AccessEvent) *pb.AccessEvent {
	ev := &pb.AccessEvent{EventId: e.ID.String(), At: timestamppb.New(e.At), Principal: e.Principal, Roles: e.Roles, Via: e.Via,
		Method: e.Method, Code: e.Code, Reason: e.Reason, ClientAddr: e.ClientAddr, Site: e.Site, CaseCount: int32(e.CaseCount),
		CaseSetDigest: e.CaseSetDigest, Query: e.Query, Seq: e.Seq, BreakGlass: e.BreakGlass}
	if e.CaseID != uuid.Nil {
		ev.CaseId = e.CaseID.String()
	}
	for _, id := range e.CaseIDs {
		ev.CaseIds = append(ev.CaseIds, id.String())
	}
	if e.Seq > 0 {
		ev.Hash = e.Hash.String()
	}
	return ev
}

// VerifyAccessAudit re-hashes the access audit's chains and names each
// chain's first bad link.
func (s *accessService) VerifyAccessAudit(ctx context.Context, req *pb.VerifyAccessAuditRequest) (*pb.VerifyAccessAuditResponse, error) {
	if s.auditor == nil {
		return nil, errNoAccessAudit
	}
	rep, err := store.VerifyAccessAudit(ctx, s.auditor.access, req.GetSite())
	if err != nil {
		return nil, s.h.fail(fmt.Errorf("verify access audit: %w", err))
	}
	out := &pb.VerifyAccessAuditResponse{Ok: rep.OK(), UnchainedEvents: rep.Unchained}
	for _, c := range rep.Chains {
		v := &pb.AccessChainVerification{Site: c.Site, Links: c.Links, HeadSeq: c.Head.Seq, HeadHash: c.Head.Hash.String(), Ok: c.OK,
			BadSeq: c.BadSeq, Problem: c.Problem}
		if c.BadEventID != uuid.Nil {
			v.BadEventId = c.BadEventID.String()
		}
		out.Chains = append(out.Chains, v)
	}
	if !out.Ok {
		s.h.log.Error("access audit verification failed", "chains", len(out.Chains))
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
	reason := strings.TrimSpace(req.GetReason())
	if n := utf8.RuneCountInString(reason); n < 10 || n > 500 || !utf8.ValidString(reason) {
		p.v.Add("reason", "required: the emergency in words, 10 to 500 characters besides spaces")
	}
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	c, err := s.h.store.GetCase(ctx, id)
	if err != nil {
		return nil, s.h.fail(err)
	}
	if namesPatient(reason, c.Details.Patient) {
		// The reason is shown to every admin who reviews grants; the
		// grant already names the case.
		return nil, s.h.fail(&charting.InvalidError{Violations: []charting.FieldViolation{{Field: "reason",
			Description: "must not name the patient (MRN or name): the grant already names the case; say what the emergency is"}}})
	}
	now := s.auditor.now()
	if g, err := s.auditor.access.ActiveBreakGlass(ctx, who, id, now); err == nil {
		return &pb.OpenBreakGlassResponse{Grant: grantOut(g)}, nil
	} else if !errors.Is(err, charting.ErrNotFound) {
		return nil, s.h.fail(err)
	}
	g := store.BreakGlassGrant{ID: uuid.New(), Principal: who, CaseID: id, Site: c.Site, Reason: reason,
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

// namesPatient reports whether text holds the patient's MRN, or family or
// given name as a word, case-insensitively.
func namesPatient(text string, p charting.Patient) bool {
	lower := strings.ToLower(text)
	if p.MRN != "" && strings.Contains(lower, strings.ToLower(p.MRN)) {
		return true
	}
	words := strings.FieldsFunc(lower, func(r rune) bool { return !unicode.IsLetter(r) && r != '-' && r != '\'' })
	for _, name := range []string{p.FamilyName, p.GivenName} {
		name = strings.ToLower(strings.TrimSpace(name))
		switch {
		case name == "":
		case strings.Contains(name, " "): // "van der Berg": as a phrase
			if strings.Contains(lower, name) {
				return true
			}
		case slices.Contains(words, name):
			return true
		}
	}
	return false
}
