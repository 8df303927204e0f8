package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

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
	access store.AccessBackend
	log    *slog.Logger
	now    func() time.Time
}

// breakGlassKey marks, in a call's context, that a break-glass grant let
// the call reach its case.
type breakGlassKey struct{}

// breakGlassMark is set by the authorizer when a grant was used.
type breakGlassMark struct{ used bool }

// record audits one call when it touched patient data or was refused, and
// returns the call's error, or errAuditUnavailable when the record could
// not be written.
func (a *accessAuditor) record(ctx context.Context, method string, r Rule, p Principal, caseID string, resp any, err error) error {
	code := status.Code(err)
	denied := code == codes.PermissionDenied || code == codes.Unauthenticated
	if !r.PatientData && !denied {
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
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		e.ClientAddr = pr.Addr.String()
	}
	// The call's own cancellation must not drop its record.
	if werr := a.access.AppendAccessEvents(context.WithoutCancel(ctx), []store.AccessEvent{e}); werr != nil {
		a.log.Error("access audit write failed; failing the call", "method", method, "err", werr.Error())
		return errAuditUnavailable
	}
	return err
}

// recordStreamOpen records that a stream reached a case (reason "stream
// opened"); its end is recorded by record like any call.
func (a *accessAuditor) recordStreamOpen(ctx context.Context, method string, p Principal, caseID string) error {
	e := store.AccessEvent{ID: uuid.New(), At: a.now(), Principal: p.Name, Via: p.Via, Method: method, Code: codes.OK.String(), Reason: "stream opened"}
	roles := make([]string, len(p.Roles))
	for i, role := range p.Roles {
		roles[i] = string(role)
	}
	e.Roles = strings.Join(roles, " ")
	e.CaseID, _ = uuid.Parse(caseID)
	if m, ok := ctx.Value(breakGlassKey{}).(*breakGlassMark); ok && m.used {
		e.Reason = "stream opened, break-glass"
	}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		e.ClientAddr = pr.Addr.String()
	}
	if err := a.access.AppendAccessEvents(context.WithoutCancel(ctx), []store.AccessEvent{e}); err != nil {
		a.log.Error("access audit write failed; ending the stream", "method", method, "err", err.Error())
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
