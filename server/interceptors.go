package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// interceptors is the chain every call passes, outermost first:
// logging → access (authentication, authorization, access audit) →
// recovery. Logging is outermost so it sees the
// final status of every call, including refused ones; recovery is innermost
// so a panicking handler still yields a status that logging records.
type interceptors struct {
	log   *slog.Logger
	auth  Authenticator
	authz *authorizer
	// audit, when set, records a call in the access audit and returns the
	// call's error, or its own when the record could not be written.
	audit *accessAuditor
	// observer counts calls for the metrics.
	observer Observer
}

func newInterceptors(log *slog.Logger, auth Authenticator, authz *authorizer) *interceptors {
	return &interceptors{log: log, auth: auth, authz: authz, observer: noObserver{}}
}

// callInfo is filled in by inner interceptors for the logging interceptor,
// which runs first and so cannot read what they put into the context.
type callInfo struct {
	principal string
}

type callInfoKey struct{}

func (ic *interceptors) unaryLogging(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ci := &callInfo{}
	start := time.Now()
	ic.observer.CallStarted(info.FullMethod)
	resp, err := handler(context.WithValue(ctx, callInfoKey{}, ci), req)
	ic.logCall(info.FullMethod, ci, start, err)
	return resp, err
}

func (ic *interceptors) streamLogging(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ci := &callInfo{}
	start := time.Now()
	ic.observer.CallStarted(info.FullMethod)
	err := handler(srv, &ctxStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callInfoKey{}, ci)})
	ic.logCall(info.FullMethod, ci, start, err)
	return err
}

// logCall writes one line per call. It never logs request or response
// content, nor error messages: those may echo client input. Internal
// errors are logged, without patient data, where they are mapped.
func (ic *interceptors) logCall(method string, ci *callInfo, start time.Time, err error) {
	code := status.Code(err)
	ic.observer.CallEnded(method, code.String(), time.Since(start))
	level := slog.LevelInfo
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelError
	}
	ic.log.Log(context.Background(), level, "grpc call",
		"method", method, "code", code.String(), "duration", time.Since(start), "principal", ci.principal)
}

func (ic *interceptors) authenticate(ctx context.Context) (context.Context, Principal, error) {
	p, err := ic.auth.Authenticate(ctx)
	if err != nil {
		// An authenticator may say why with a status (Unauthenticated, or
		// Unavailable when its key source is down); any other error is a
		// refusal whose text stays here.
		if _, ok := status.FromError(err); ok {
			return nil, Principal{}, err
		}
		return nil, Principal{}, status.Error(codes.Unauthenticated, "authentication failed")
	}
	if p.Via != ViaMTLS && reservedName(p.Name) {
		// Only a client certificate names a machine: a token may not
		// pass itself off as one (nor write as one).
		return nil, Principal{}, status.Error(codes.Unauthenticated, "the principal's name lies in a service namespace (device:, interface:), which only client certificates may use")
	}
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		ci.principal = p.Name
	}
	return WithPrincipal(ctx, p), p, nil
}

// admit authenticates and authorizes a call up to its request: the method
// must have a policy entry, the caller one of its roles (and for signing a
// recent authentication). Site scoping needs the request and follows.
func (ic *interceptors) admit(ctx context.Context, method string) (context.Context, Principal, Rule, error) {
	r, ok := PolicyFor(method)
	if !ok {
		return ctx, Principal{}, r, errNoPolicy
	}
	if r.Public {
		return ctx, Principal{}, r, nil
	}
	ctx, p, err := ic.authenticate(ctx)
	if err != nil {
		return ctx, p, r, err
	}
	return ctx, p, r, ic.authz.checkRole(p, method, r)
}

func (ic *interceptors) unaryAccess(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx = context.WithValue(ctx, breakGlassKey{}, &breakGlassMark{})
	actx, p, r, err := ic.admit(ctx, info.FullMethod)
	if r.Public && err == nil {
		return handler(ctx, req)
	}
	var caseID string
	if m, ok := req.(proto.Message); ok {
		if err == nil {
			caseID, err = ic.authz.checkScope(actx, p, r, m)
		} else {
			caseID = caseIDOf(m) // a refused call's case, for the audit
		}
	}
	if err != nil {
		return nil, ic.audited(ctx, info.FullMethod, r, p, caseID, req, nil, err)
	}
	if r.Writes && ic.audit != nil {
		// Audit before the write takes effect: if the audit cannot be
		// written, nothing is.
		if err := ic.audit.recordWriteStart(ctx, info.FullMethod, r, p, caseID, req); err != nil {
			return nil, err
		}
	}
	resp, err := handler(actx, req)
	if aerr := ic.audited(ctx, info.FullMethod, r, p, caseID, req, resp, err); aerr != err {
		if r.Writes {
			// The write's access is on record already; its outcome could
			// not be added (logged and counted). The caller hears what
			// happened to the write, not a retry that is not needed.
			return resp, err
		}
		return nil, aerr
	}
	return resp, err
}

func (ic *interceptors) streamAccess(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	mark := &breakGlassMark{}
	base := context.WithValue(ss.Context(), breakGlassKey{}, mark)
	ctx, p, r, err := ic.admit(base, info.FullMethod)
	if r.Public && err == nil {
		return handler(srv, ss)
	}
	if err != nil {
		return ic.audited(base, info.FullMethod, r, p, "", nil, nil, err)
	}
	// A stream lasts as long as the access that let it in, and no longer:
	// the guard ends it when its credential expires, a grant it relies on
	// ends, or its caller loses the role or the site (stream_access.go).
	guard, ctx, stop := ic.guardStream(base, ctx, info.FullMethod, r, p)
	defer stop()
	// The access record of a list keeps its request (the query).
	guarded := &guardedStream{ServerStream: &auditedStream{ServerStream: ss, mark: mark}, ctx: ctx}
	scoped := &scopedStream{ServerStream: guarded, ctx: ctx, a: ic.authz, p: p, checked: map[string]bool{}, guard: guard}
	if ic.audit != nil && r.PatientData {
		scoped.opened = func(caseID string) error {
			return ic.audit.recordStreamOpen(base, info.FullMethod, p, caseID)
		}
	}
	switch r.Scope {
	case ScopeList:
		list := &listScopedStream{ServerStream: guarded, ctx: ctx, p: p, guard: guard}
		if ic.audit != nil && r.PatientData {
			list.opened = func() error { return ic.audit.recordStreamOpen(base, info.FullMethod, p, "") }
		}
		err = handler(srv, list)
	case ScopeNone, ScopeSite:
		err = handler(srv, guarded)
	default:
		err = handler(srv, scoped)
	}
	if cause := endedCause(ctx); cause != nil && err != nil {
		// The handler ended because the access did (or failed on the
		// way): the client is told why.
		err = cause
	}
	return ic.audited(base, info.FullMethod, r, p, scoped.caseID, nil, nil, err)
}

// audited records a call in the access audit when it touched patient data
// or was refused, and returns the call's error; when the record cannot be
// written the call fails instead (see access_audit.go).
func (ic *interceptors) audited(ctx context.Context, method string, r Rule, p Principal, caseID string, req, resp any, err error) error {
	if ic.audit == nil {
		return err
	}
	return ic.audit.record(ctx, method, r, p, caseID, req, resp, err)
}

// errPanic is what a client sees when a handler panics: nothing of the
// panic itself, which may carry data.
var errPanic = status.Error(codes.Internal, "internal error")

// recovered logs a handler panic: its type and the stack, never its value,
// which may carry request data.
func (ic *interceptors) recovered(method string, p any) error {
	ic.log.Error("panic in handler", "method", method, "panic_type", typeName(p), "stack", string(debug.Stack()))
	return errPanic
}

func (ic *interceptors) unaryRecovery(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, ic.recovered(info.FullMethod, p)
		}
	}()
	return handler(ctx, req)
}

func (ic *interceptors) streamRecovery(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = ic.recovered(info.FullMethod, p)
		}
	}()
	return handler(srv, ss)
}

// ctxStream replaces a stream's context, as interceptors must to pass
// values to stream handlers.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the replaced context.
func (s *ctxStream) Context() context.Context { return s.ctx }

func typeName(v any) string { return fmt.Sprintf("%T", v) }
