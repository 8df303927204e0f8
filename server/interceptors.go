package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// interceptors is the chain every call passes, outermost first:
// logging → authentication → recovery. Logging is outermost so it sees the
// final status of every call, including refused ones; recovery is innermost
// so a panicking handler still yields a status that logging records.
type interceptors struct {
	log  *slog.Logger
	auth Authenticator
}

func newInterceptors(log *slog.Logger, auth Authenticator) *interceptors {
	return &interceptors{log: log, auth: auth}
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
	resp, err := handler(context.WithValue(ctx, callInfoKey{}, ci), req)
	ic.logCall(info.FullMethod, ci, start, err)
	return resp, err
}

func (ic *interceptors) streamLogging(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ci := &callInfo{}
	start := time.Now()
	err := handler(srv, &ctxStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callInfoKey{}, ci)})
	ic.logCall(info.FullMethod, ci, start, err)
	return err
}

// logCall writes one line per call. It never logs request or response
// content, nor error messages: those may echo client input. Internal
// errors are logged, without patient data, where they are mapped.
func (ic *interceptors) logCall(method string, ci *callInfo, start time.Time, err error) {
	code := status.Code(err)
	level := slog.LevelInfo
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelError
	}
	ic.log.Log(context.Background(), level, "grpc call",
		"method", method, "code", code.String(), "duration", time.Since(start), "principal", ci.principal)
}

// skipAuth reports whether a method is open to everyone: health checks
// come from load balancers and orchestrators, reflection only describes the
// API.
func skipAuth(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
}

func (ic *interceptors) authenticate(ctx context.Context) (context.Context, error) {
	p, err := ic.auth.Authenticate(ctx)
	if err != nil {
		// An authenticator may say why with a status (Unauthenticated, or
		// Unavailable when its key source is down); any other error is a
		// refusal whose text stays here.
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Error(codes.Unauthenticated, "authentication failed")
	}
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		ci.principal = p.Name
	}
	return WithPrincipal(ctx, p), nil
}

func (ic *interceptors) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if skipAuth(info.FullMethod) {
		return handler(ctx, req)
	}
	ctx, err := ic.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (ic *interceptors) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if skipAuth(info.FullMethod) {
		return handler(srv, ss)
	}
	ctx, err := ic.authenticate(ss.Context())
	if err != nil {
		return err
	}
	return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
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
