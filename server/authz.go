package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"perfusion/charting"
	"perfusion/store"
)

// DefaultSignAuthMaxAge is how long after authenticating a person may sign:
// a signature attests the record, so it must come from someone who proved
// who they are a short while ago, not from a token left open all shift.
const DefaultSignAuthMaxAge = 15 * time.Minute

// authorizer applies the policy table to one authenticated call.
type authorizer struct {
	h *handlers
	// access holds break-glass grants; nil when the backend keeps none.
	access         store.AccessBackend
	signAuthMaxAge time.Duration
	// streamRecheck is how often open streams re-check their access; 0
	// means DefaultStreamRecheck.
	streamRecheck time.Duration
	now           func() time.Time
}

// maxAuthTimeAhead is how far ahead of this server's clock a token's
// auth_time may lie: the clocks of an identity provider and a server differ
// by seconds, not minutes.
const maxAuthTimeAhead = time.Minute

// errNoPolicy refuses a method missing from the policy table: fail closed.
var errNoPolicy = status.Error(codes.PermissionDenied, "the method has no access policy")

// checkRole applies the rule's roles and recent-authentication demand.
func (a *authorizer) checkRole(p Principal, method string, r Rule) error {
	if !r.allows(p) {
		if p.HasRole(RetiredRoleIntegration) {
			// A deployment's old tokens: say what replaced the role
			// rather than leave the operator guessing.
			return status.Errorf(codes.PermissionDenied, "the integration role was retired and grants nothing: give device gateways the %q role and interface engines the %q role",
				RoleDevice, RoleInterface)
		}
		if r.Identified && p.HasRole(RoleReviewer) && !p.HasRole(RoleIdentified) {
			return status.Error(codes.PermissionDenied, "this method returns patient identifiers; reviewers need identified access")
		}
		return status.Errorf(codes.PermissionDenied, "your roles may not call %s", method)
	}
	if r.RecentAuth {
		if p.AuthTime.IsZero() {
			return status.Error(codes.Unauthenticated, "signing requires a recent authentication, and the token has no auth_time: sign in again")
		}
		if ahead := p.AuthTime.Sub(a.now()); ahead > maxAuthTimeAhead {
			// A sign-in in the future is a forged or broken token, and
			// would keep a signature "recent" for as long as it lies ahead.
			return status.Errorf(codes.Unauthenticated, "the token's auth_time is %s in the future: sign in again", ahead.Round(time.Second))
		}
		if age := a.now().Sub(p.AuthTime); age > a.signAuthMaxAge {
			return status.Errorf(codes.Unauthenticated, "signing requires an authentication within the last %s; yours was %s ago: sign in again",
				a.signAuthMaxAge, age.Round(time.Second))
		}
	}
	return nil
}

// checkScope confines a request to the caller's sites. It returns the case
// the request names, if any, for the access audit. Requests whose case id
// is missing or malformed, or names no case, pass on: the handler answers
// them with InvalidArgument or NotFound, as for anyone.
func (a *authorizer) checkScope(ctx context.Context, p Principal, r Rule, req proto.Message) (caseID string, err error) {
	switch r.Scope {
	case ScopeCase:
		caseID = caseIDOf(req)
		_, err := a.checkCase(ctx, p, caseID)
		return caseID, err
	case ScopeSite:
		if site := stringField(req.ProtoReflect(), "site"); site != "" && !p.CanReachSite(site) {
			return "", status.Error(codes.PermissionDenied, "the site is not among yours")
		}
	case ScopeList:
		_, err := scopeList(p, req)
		return "", err
	}
	return "", nil
}

// checkCase checks that the case's site is among the caller's, or that a
// break-glass grant lets the caller in. It returns the case's site ("" when
// the id is empty, malformed or names no case), which never changes, so a
// stream can re-check its access without reading the case again.
func (a *authorizer) checkCase(ctx context.Context, p Principal, caseID string) (site string, err error) {
	if p.AllSites || caseID == "" {
		// Every site: no need to read the case (its site is "" here, and
		// a stream's guard reads it only if the caller ever loses that).
		return "", nil
	}
	id, err := uuid.Parse(caseID)
	if err != nil {
		return "", nil
	}
	c, err := a.h.store.GetCase(ctx, id)
	if errors.Is(err, charting.ErrNotFound) {
		return "", nil
	} else if err != nil {
		return "", a.h.fail(fmt.Errorf("authorize: %w", err))
	}
	if p.CanReachSite(c.Site) {
		return c.Site, nil
	}
	ok, err := a.breakGlassAllows(ctx, p, id)
	if err != nil {
		return "", a.h.fail(fmt.Errorf("authorize: break-glass: %w", err))
	}
	if !ok {
		return "", status.Error(codes.PermissionDenied, "the case belongs to a site that is not among yours (break-glass: AccessService.OpenBreakGlass)")
	}
	return c.Site, nil
}

// scopeList confines a list to one of the caller's sites, filling in the
// only one a single-site caller has. It returns the list's site ("" for an
// all-sites caller's list of every site).
func scopeList(p Principal, req proto.Message) (string, error) {
	if p.AllSites {
		return listSite(req), nil
	}
	m := req.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("site")
	if f := m.Descriptor().Fields().ByName("filter"); fd == nil && f != nil && f.Kind() == protoreflect.MessageKind {
		// ReviewService requests carry the site in their filter message.
		m = m.Mutable(f).Message()
		fd = m.Descriptor().Fields().ByName("site")
	}
	if fd == nil {
		return "", status.Error(codes.PermissionDenied, "the list cannot be confined to your sites")
	}
	site := m.Get(fd).String()
	switch {
	case site == "" && len(p.Sites) == 1:
		site = p.Sites[0]
		m.Set(fd, protoreflect.ValueOfString(site))
	case site == "" && len(p.Sites) == 0:
		return "", status.Error(codes.PermissionDenied, "your credentials grant no site")
	case site == "":
		return "", errSiteRequired(p.Sites)
	case !p.CanReachSite(site):
		return "", status.Error(codes.PermissionDenied, "the site is not among yours")
	}
	return site, nil
}

// listSite returns the site a list request names, in its site field or
// its filter's, or "".
func listSite(req proto.Message) string {
	m := req.ProtoReflect()
	if site := stringField(m, "site"); site != "" {
		return site
	}
	if f := m.Descriptor().Fields().ByName("filter"); f != nil && f.Kind() == protoreflect.MessageKind && m.Has(f) {
		return stringField(m.Get(f).Message(), "site")
	}
	return ""
}

// ReasonSiteRequired (google.rpc.ErrorInfo) refuses a list without a site
// from a caller who reaches several: metadata "sites" lists the caller's
// own sites, comma-separated, so a client can offer them (perfusionctl
// names its --site flag).
const ReasonSiteRequired = "SITE_REQUIRED"

// errSiteRequired refuses a list that names no site when the caller has
// several. The store filters by one site, so the server cannot fill in
// several; it names the caller's own sites (nothing the caller does not
// know) so the next call can name one.
func errSiteRequired(sites []string) error {
	joined := strings.Join(sites, ",")
	st := status.Newf(codes.PermissionDenied, "you reach several sites (%s): name one of them in the request's site field",
		strings.Join(sites, ", "))
	return withDetails(st, &errdetails.ErrorInfo{Reason: ReasonSiteRequired, Domain: errorDomain, Metadata: map[string]string{"sites": joined}})
}

// listScopedStream applies scopeList to each request of a server stream
// (ReviewService.ExportCohort), which the unary path cannot see.
type listScopedStream struct {
	grpc.ServerStream
	ctx context.Context
	p   Principal
	// guard re-checks the list's site while the stream lasts.
	guard *streamGuard
	// opened, when set, records the stream's opening in the access audit
	// before its first message goes out: a list of patient data is
	// audited before any of it is sent, and not sent when the audit
	// cannot be written.
	opened func() error
	sent   bool
}

func (s *listScopedStream) Context() context.Context { return s.ctx }

// SendMsg audits the opening before the first message.
func (s *listScopedStream) SendMsg(m any) error {
	if !s.sent && s.opened != nil {
		if err := s.opened(); err != nil {
			return err
		}
	}
	s.sent = true
	return s.ServerStream.SendMsg(m)
}

// RecvMsg receives m and confines it to the caller's sites.
func (s *listScopedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if pm, ok := m.(proto.Message); ok {
		site, err := scopeList(s.p, pm)
		if err != nil {
			return err
		}
		s.guard.noteSite(site)
	}
	return nil
}

// caseIDOf returns the first non-empty case_id of m: a top-level field, or
// one in a message field one level down (RecordEntryRequest.entry,
// StreamSamplesRequest.open).
func caseIDOf(m proto.Message) string {
	r := m.ProtoReflect()
	if id := stringField(r, "case_id"); id != "" {
		return id
	}
	var found string
	r.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() {
			return true
		}
		found = stringField(v.Message(), "case_id")
		return found == ""
	})
	return found
}

// stringField returns the value of m's string field name, or "".
func stringField(m protoreflect.Message, name protoreflect.Name) string {
	fd := m.Descriptor().Fields().ByName(name)
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return ""
	}
	return m.Get(fd).String()
}

// scopedStream checks the case of every message a client sends on a
// stream, so a stream cannot reach a case its caller could not.
type scopedStream struct {
	grpc.ServerStream
	ctx     context.Context
	a       *authorizer
	p       Principal
	checked map[string]bool
	// caseID is the first case the stream named, for the access audit.
	caseID string
	// opened, when set, records in the access audit that the stream
	// reached a case.
	opened func(caseID string) error
	// guard re-checks the stream's cases while it lasts.
	guard *streamGuard
}

func (s *scopedStream) Context() context.Context { return s.ctx }

// RecvMsg receives m and refuses it when it names a case out of scope.
func (s *scopedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	pm, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	id := caseIDOf(pm)
	if id == "" || s.checked[id] {
		return nil
	}
	if s.caseID == "" {
		s.caseID = id
	}
	site, err := s.a.checkCase(s.ctx, s.p, id)
	if err != nil {
		return err
	}
	s.checked[id] = true
	s.guard.noteCase(id, site)
	// A stream may read or write a case for hours (WatchCase,
	// StreamSamples): its access is recorded when it first names the case,
	// before anything of the case is sent or stored, and again when it
	// ends. When the first record cannot be written the stream ends here.
	if s.opened != nil {
		if err := s.opened(id); err != nil {
			return err
		}
	}
	return nil
}
