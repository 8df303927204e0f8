package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"perfusion/charting"
	"perfusion/store"
)

// Break-glass defaults.
const (
	// DefaultBreakGlassDuration is how long emergency access lasts.
	DefaultBreakGlassDuration = 60 * time.Minute
	// breakGlassSweep is how often expired grants are looked for, so each
	// expiry is audited within about this long of happening.
	breakGlassSweep = 30 * time.Second
	// MethodBreakGlassExpired is the method of the access event that
	// records a grant's expiry.
	MethodBreakGlassExpired = "break-glass-expired"
)

// errAuditUnavailable fails a call whose access record could not be
// written: access to patient data that is not recorded must not happen.
var errAuditUnavailable = status.Error(codes.Unavailable, "the access audit could not be written, so the call was not completed; retry")

// accessAuditor writes the access audit.
type accessAuditor struct {
	access   store.AccessBackend
	log      *slog.Logger
	now      func() time.Time
	observer Observer // nil in tests that build one directly
}

// failed counts a failed audit write for the metrics.
func (a *accessAuditor) failed() {
	if a.observer != nil {
		a.observer.AuditWriteFailed()
	}
}

// breakGlassKey marks, in a call's context, that a break-glass grant let
// the call reach its case.
type breakGlassKey struct{}

// breakGlassMark travels in a call's context to its audit record: the
// authorizer sets used when a grant let the call in, and list handlers
// whose responses carry no case ids (ExportCohort's de-identified rows)
// note the cases they returned.
type breakGlassMark struct {
	used bool

	mu sync.Mutex
	// listed is set once a handler noted cases; cases are the ids.
	listed bool
	cases  []uuid.UUID
	// req is a stream's first request, for the record's query and site.
	req proto.Message
}

// noteCases records, for the call's access event, that the call returned
// these cases. Handlers call it where the response does not name them.
func noteCases(ctx context.Context, ids ...uuid.UUID) {
	m, ok := ctx.Value(breakGlassKey{}).(*breakGlassMark)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.listed = true
	m.cases = append(m.cases, ids...)
}

// auditReads are the reads of the access audit itself: they return no
// patient data (Rule.PatientData is false), yet who looked at the audit,
// what they asked and which cases' events they saw is recorded, as for
// any list.
var auditReads = map[string]bool{
	"/perfusion.v1.AccessService/ListAccessEvents":  true,
	"/perfusion.v1.AccessService/ListBreakGlass":    true,
	"/perfusion.v1.AccessService/VerifyAccessAudit": true,
}

// listsCases reports whether a call's access event records the cases its
// response returned and its query: lists confined to sites, and audit
// reads.
func listsCases(method string, r Rule) bool { return r.Scope == ScopeList || auditReads[method] }

// describeList fills e's site hint, query and returned cases for a list
// call. req is the request (after the authorizer confined it to a site);
// resp the response, whose top-level repeated messages' case_id fields are
// the cases returned.
func describeList(e *store.AccessEvent, mark *breakGlassMark, req, resp proto.Message) {
	if mark != nil {
		mark.mu.Lock()
		defer mark.mu.Unlock()
		if req == nil {
			req = mark.req
		}
	}
	if req != nil {
		e.Site = siteOf(req)
		// List requests hold filters, sort and page only: no patient
		// identifiers (staff names at most), so the query may be kept.
		if q, err := (protojson.MarshalOptions{}).Marshal(req); err == nil {
			e.Query = string(q)
		}
	}
	var ids []uuid.UUID
	if mark != nil && mark.listed {
		ids = mark.cases
	}
	if resp != nil {
		ids = append(ids, caseIDsOf(resp)...)
	}
	e.SetCases(ids)
}

// siteOf returns a request's site: a top-level site field or the one in
// its filter.
func siteOf(req proto.Message) string {
	m := req.ProtoReflect()
	if s := stringField(m, "site"); s != "" {
		return s
	}
	if f := m.Descriptor().Fields().ByName("filter"); f != nil && f.Kind() == protoreflect.MessageKind && m.Has(f) {
		return stringField(m.Get(f).Message(), "site")
	}
	return ""
}

// caseIDsOf returns the case_id (and case_ids) of every element of m's
// top-level repeated message fields (ListCasesResponse.cases,
// ListDeliveriesResponse.deliveries, ListAccessEventsResponse.events, …).
func caseIDsOf(m proto.Message) []uuid.UUID {
	var out []uuid.UUID
	r := m.ProtoReflect()
	r.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if !fd.IsList() || fd.Kind() != protoreflect.MessageKind {
			return true
		}
		l := v.List()
		for i := range l.Len() {
			el := l.Get(i).Message()
			if id, err := uuid.Parse(stringField(el, "case_id")); err == nil {
				out = append(out, id)
			}
			// An access event of a list names its cases in case_ids: an
			// auditor reading it saw those ids too.
			if fd := el.Descriptor().Fields().ByName("case_ids"); fd != nil && fd.IsList() && fd.Kind() == protoreflect.StringKind {
				ids := el.Get(fd).List()
				for j := range ids.Len() {
					if id, err := uuid.Parse(ids.Get(j).String()); err == nil {
						out = append(out, id)
					}
				}
			}
		}
		return true
	})
	return out
}

// auditedStream keeps a stream's first request for its access record.
type auditedStream struct {
	grpc.ServerStream
	mark *breakGlassMark
}

// RecvMsg receives m and keeps it when it is the first.
func (s *auditedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if pm, ok := m.(proto.Message); ok && err == nil {
		s.mark.mu.Lock()
		if s.mark.req == nil {
			s.mark.req = pm
		}
		s.mark.mu.Unlock()
	}
	return err
}

// record audits one call when it touched patient data or was refused, and
// returns the call's error, or errAuditUnavailable when the record could
// not be written.
//
// req is the request (nil for streams, whose first request the context's
// mark holds); for lists and audit reads the record keeps the query and the
// cases returned.
func (a *accessAuditor) record(ctx context.Context, method string, r Rule, p Principal, caseID string, req, resp any, err error) error {
	code := status.Code(err)
	denied := code == codes.PermissionDenied || code == codes.Unauthenticated
	if !r.PatientData && !denied && !auditReads[method] {
		return err
	}
	if caseID == "" {
		if m, ok := resp.(proto.Message); ok && err == nil {
			caseID = caseIDOf(m) // a created case
		}
	}
	e := store.AccessEvent{ID: uuid.New(), At: a.now(), Principal: p.Name, Via: p.Via, Method: method, Code: code.String()}
	roles := make([]string, len(p.Roles))
	for i, role := range p.Roles {
		roles[i] = string(role)
	}
	e.Roles = strings.Join(roles, " ")
	if id, perr := uuid.Parse(caseID); perr == nil {
		e.CaseID = id
	}
	if denied {
		// Refusal texts are this package's fixed words (and the token
		// check's), never request content.
		e.Reason = status.Convert(err).Message()
	} else if m, ok := ctx.Value(breakGlassKey{}).(*breakGlassMark); ok && m.used {
		e.Reason = "break-glass"
	}
	// Only an answered call's request is described: a refused one may hold
	// anything (a patient's name typed as a site), and the audit holds no
	// patient identifiers.
	if listsCases(method, r) && err == nil {
		mark, _ := ctx.Value(breakGlassKey{}).(*breakGlassMark)
		reqM, _ := req.(proto.Message)
		respM, _ := resp.(proto.Message)
		describeList(&e, mark, reqM, respM)
	} else if m, ok := req.(proto.Message); ok && r.Scope == ScopeSite && err == nil {
		// A case being created has no stored site yet.
		e.Site = siteOf(m)
	}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		e.ClientAddr = pr.Addr.String()
	}
	// The call's own cancellation must not drop its record.
	if werr := a.access.AppendAccessEvents(context.WithoutCancel(ctx), []store.AccessEvent{e}); werr != nil {
		a.failed()
		a.log.Error("access audit write failed; failing the call", "method", method, "err", werr.Error())
		return errAuditUnavailable
	}
	return err
}

// WriteStarted is the reason of the access event recorded before a write
// (Rule.Writes) runs; the call's outcome follows in an event of its own.
const WriteStarted = "write started"

// recordWriteStart records, before the handler runs, that a write was let
// in (reason WriteStarted, code OK), and returns errAuditUnavailable when
// it could not be recorded: the write is then refused, not done.
func (a *accessAuditor) recordWriteStart(ctx context.Context, method string, r Rule, p Principal, caseID string, req any) error {
	if m, ok := req.(proto.Message); ok && caseID == "" {
		caseID = caseIDOf(m) // a case being created under its client-made id
	}
	return a.recordOpening(ctx, method, p, caseID, WriteStarted, func(e *store.AccessEvent) {
		if m, ok := req.(proto.Message); ok && r.Scope == ScopeSite {
			e.Site = siteOf(m) // a case being created has no stored site yet
		}
	}, "access audit write failed; refusing the write")
}

// recordStreamOpen records that a stream reached a case (reason "stream
// opened"); its end is recorded by record like any call.
func (a *accessAuditor) recordStreamOpen(ctx context.Context, method string, p Principal, caseID string) error {
	return a.recordOpening(ctx, method, p, caseID, "stream opened", nil, "access audit write failed; ending the stream")
}

// recordOpening records an access let in before its work begins (a write
// started, a stream opened), with reason, and errAuditUnavailable when it
// could not be recorded.
func (a *accessAuditor) recordOpening(ctx context.Context, method string, p Principal, caseID, reason string, fill func(*store.AccessEvent), failure string) error {
	e := store.AccessEvent{ID: uuid.New(), At: a.now(), Principal: p.Name, Via: p.Via, Method: method, Code: codes.OK.String(), Reason: reason}
	roles := make([]string, len(p.Roles))
	for i, role := range p.Roles {
		roles[i] = string(role)
	}
	e.Roles = strings.Join(roles, " ")
	e.CaseID, _ = uuid.Parse(caseID)
	if m, ok := ctx.Value(breakGlassKey{}).(*breakGlassMark); ok && m.used {
		e.Reason = reason + ", break-glass"
	}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		e.ClientAddr = pr.Addr.String()
	}
	if fill != nil {
		fill(&e)
	}
	if err := a.access.AppendAccessEvents(context.WithoutCancel(ctx), []store.AccessEvent{e}); err != nil {
		a.failed()
		a.log.Error(failure, "method", method, "err", err.Error())
		return errAuditUnavailable
	}
	return nil
}

// sweepExpired records the expiry of every grant that has expired and was
// not yet recorded.
func (a *accessAuditor) sweepExpired(ctx context.Context) error {
	ended, err := a.access.EndBreakGlass(ctx, uuid.Nil, "", a.now())
	if err != nil {
		return err
	}
	return a.recordEnds(ctx, ended)
}

// recordEnds writes the access events of ended grants.
func (a *accessAuditor) recordEnds(ctx context.Context, gs []store.BreakGlassGrant) error {
	if len(gs) == 0 {
		return nil
	}
	var es []store.AccessEvent
	for _, g := range gs {
		method := MethodBreakGlassExpired
		if g.EndReason == "ended" {
			method = "/perfusion.v1.AccessService/EndBreakGlass"
		}
		es = append(es, store.AccessEvent{ID: uuid.New(), At: g.EndedAt, Principal: g.Principal, Method: method, CaseID: g.CaseID,
			Code: codes.OK.String(), Reason: "break-glass " + g.EndReason})
	}
	return a.access.AppendAccessEvents(context.WithoutCancel(ctx), es)
}

// sweepLoop audits expiries until ctx ends.
func (a *accessAuditor) sweepLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.sweepExpired(ctx); err != nil && ctx.Err() == nil {
				a.log.Error("break-glass expiry sweep failed", "err", err.Error())
			}
		}
	}
}

// breakGlassAllows reports whether p holds a running grant on caseID, and
// marks the call's context so the audit says so.
func (a *authorizer) breakGlassAllows(ctx context.Context, p Principal, caseID uuid.UUID) (bool, error) {
	if a.access == nil {
		return false, nil
	}
	_, err := a.access.ActiveBreakGlass(ctx, p.Name, caseID, a.now())
	if errors.Is(err, charting.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if m, ok := ctx.Value(breakGlassKey{}).(*breakGlassMark); ok {
		m.used = true
	}
	return true, nil
}
