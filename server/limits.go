package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	perfusionv1 "perfusion/api/perfusion/v1"
	"perfusion/store"
)

// Resource limits: what one caller, or anyone before authenticating, may
// hold of the server. Each has a default that leaves the documented
// workloads (1,000 live device streams, watch displays, exports) untouched.
const (
	// DefaultMaxRecvMessageSize bounds one received message. The largest
	// request is a StreamSamples batch: at most 10,000 samples, which
	// encode in at most about 220 KB (9-byte times, 8-byte values, 5-byte
	// invalid indexes; TestMaxBatchFitsRecvLimit measures the worst case),
	// every other request is a few KB. gRPC allocates a message's buffer
	// from its length prefix before the interceptors run, so this is the
	// most a request body can hold per call.
	DefaultMaxRecvMessageSize = 1 << 20
	// DefaultMaxHeaderListSize bounds a call's headers (a bearer token of
	// an identity provider is a few KB).
	DefaultMaxHeaderListSize = 32 << 10
	// MaxBearerTokenLen is the longest bearer token the early check lets
	// through to verification.
	MaxBearerTokenLen = 16 << 10
	// DefaultMaxConnections is how many connections are served at once;
	// more wait in the kernel's accept queue until one closes.
	DefaultMaxConnections = 2048
	// DefaultConnectionTimeout is how long a new connection has to finish
	// its TLS and HTTP/2 handshakes (gRPC's own default is 120 s).
	DefaultConnectionTimeout = 10 * time.Second
	// DefaultMaxConnectionIdle closes a connection without calls for this
	// long (clients reconnect on their next call).
	DefaultMaxConnectionIdle = 5 * time.Minute
	// DefaultMaxConcurrentStreams bounds the calls open on one connection.
	DefaultMaxConcurrentStreams = 256
	// DefaultMaxStreamsPerPrincipal bounds the streams (WatchCase,
	// StreamSamples, ExportCohort) one principal has open on this server:
	// a gateway streams a few sources per room, a display watches a few
	// rooms.
	DefaultMaxStreamsPerPrincipal = 100
	// DefaultCallTimeout is the server-side deadline of a unary call.
	DefaultCallTimeout = 60 * time.Second
	// DefaultLongCallTimeout is the deadline of the calls that read a
	// whole record or cohort (longCalls).
	DefaultLongCallTimeout = 10 * time.Minute
)

// longCalls read a whole record, render a whole export or aggregate a
// cohort, and get Limits.LongCallTimeout instead of CallTimeout.
// ExportCohort is a stream, the only one with a deadline: the others
// (StreamSamples, WatchCase) live as long as a case.
var longCalls = map[string]bool{
	"/" + perfusionv1.RecordService_ServiceDesc.ServiceName + "/VerifyRecord":     true,
	"/" + perfusionv1.ExportService_ServiceDesc.ServiceName + "/RenderHL7":        true,
	"/" + perfusionv1.ExportService_ServiceDesc.ServiceName + "/RenderFHIR":       true,
	"/" + perfusionv1.ExportService_ServiceDesc.ServiceName + "/RenderDocument":   true,
	"/" + perfusionv1.ReviewService_ServiceDesc.ServiceName + "/AggregateMetrics": true,
	"/" + perfusionv1.ReviewService_ServiceDesc.ServiceName + "/ExportCohort":     true,
}

// Limits bounds what callers may hold. Zero fields take the defaults
// above; a negative count or duration turns that limit off.
type Limits struct {
	// MaxRecvMessageSize bounds one received message, in bytes.
	MaxRecvMessageSize int
	// MaxHeaderListSize bounds a call's headers, in bytes.
	MaxHeaderListSize int
	// MaxConnections bounds the connections served at once.
	MaxConnections int
	// ConnectionTimeout bounds a new connection's handshakes.
	ConnectionTimeout time.Duration
	// MaxConnectionIdle closes a connection that has had no call for
	// this long.
	MaxConnectionIdle time.Duration
	// MaxConcurrentStreams bounds the calls open on one connection.
	MaxConcurrentStreams int
	// MaxStreamsPerPrincipal bounds the streams one principal has open;
	// one more is refused with ResourceExhausted.
	MaxStreamsPerPrincipal int
	// CallTimeout is the server-side deadline of unary calls (a client's
	// shorter deadline wins).
	CallTimeout time.Duration
	// LongCallTimeout is the deadline of VerifyRecord, RenderHL7,
	// RenderFHIR, RenderDocument, AggregateMetrics and ExportCohort.
	LongCallTimeout time.Duration
}

// withDefaults fills zero fields.
func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxRecvMessageSize, DefaultMaxRecvMessageSize)
	def(&l.MaxHeaderListSize, DefaultMaxHeaderListSize)
	def(&l.MaxConnections, DefaultMaxConnections)
	def(&l.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	def(&l.MaxStreamsPerPrincipal, DefaultMaxStreamsPerPrincipal)
	defDur(&l.ConnectionTimeout, DefaultConnectionTimeout)
	defDur(&l.MaxConnectionIdle, DefaultMaxConnectionIdle)
	defDur(&l.CallTimeout, DefaultCallTimeout)
	defDur(&l.LongCallTimeout, DefaultLongCallTimeout)
	return l
}

// serverOptions are the gRPC options that carry the limits.
func (l Limits) serverOptions() []grpc.ServerOption {
	var opts []grpc.ServerOption
	if l.MaxRecvMessageSize > 0 {
		opts = append(opts, grpc.MaxRecvMsgSize(l.MaxRecvMessageSize))
	} else {
		opts = append(opts, grpc.MaxRecvMsgSize(DefaultMaxMessageSize))
	}
	if l.MaxHeaderListSize > 0 {
		opts = append(opts, grpc.MaxHeaderListSize(uint32(l.MaxHeaderListSize)))
	}
	if l.ConnectionTimeout > 0 {
		opts = append(opts, grpc.ConnectionTimeout(l.ConnectionTimeout))
	}
	if l.MaxConcurrentStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(l.MaxConcurrentStreams)))
	}
	return opts
}

// listener bounds the connections accepted from lis.
func (l Limits) listener(lis net.Listener) net.Listener {
	if l.MaxConnections > 0 {
		return netutil.LimitListener(lis, l.MaxConnections)
	}
	return lis
}

// earlyGate runs when a call's headers arrive, before gRPC reads its body
// (grpc.InTapHandle). It refuses a call that carries no plausible
// credentials, so an anonymous caller cannot make the server buffer a
// request body at all, and it sets the call's server-side deadline, which
// then also bounds a body that arrives slowly. gRPC runs it on the
// connection's reader goroutine, so it does no I/O and verifies no
// signature: a well-formed forged token gets through to the
// authentication interceptor, which refuses it after reading a body of at
// most MaxRecvMessageSize.
type earlyGate struct {
	limits Limits
	// headerAuth: the authenticator trusts x-perfusion-principal
	// (development and tests).
	headerAuth bool
	// streaming names the server-streaming and bidirectional methods,
	// filled by New once the services are registered.
	streaming map[string]bool
	// refused carries the gate's refusals to the access audit without
	// blocking the connection's reader; nil without an audit.
	refused chan store.AccessEvent
	dropped atomic.Int64
}

func (g *earlyGate) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if r, ok := PolicyFor(info.FullMethodName); !ok || r.Public {
		// Health and reflection need no credentials; an unknown method is
		// left to gRPC's Unimplemented.
		return ctx, nil
	}
	if !g.plausible(ctx, info.Header) {
		err := status.Error(codes.Unauthenticated, "missing or malformed credentials: send authorization: Bearer <token>")
		g.audit(ctx, info.FullMethodName, err)
		return ctx, err
	}
	timeout, ok := g.deadline(info.FullMethodName)
	if !ok {
		return ctx, nil
	}
	// The call's context is cancelled when the call ends, which stops
	// this timer too; AfterFunc releases it when the deadline passes.
	dctx, cancel := context.WithTimeout(ctx, timeout)
	context.AfterFunc(dctx, cancel)
	return dctx, nil
}

// audit queues a refusal for the access audit (every refused call is
// recorded), timed now so it sorts where it happened. When the queue is
// full (a flood of anonymous calls) the refusal is counted and dropped:
// the audit must not become the flood's amplifier.
func (g *earlyGate) audit(ctx context.Context, method string, err error) {
	if g.refused == nil {
		return
	}
	e := store.AccessEvent{ID: uuid.New(), At: time.Now(), Method: method, Code: codes.Unauthenticated.String(), Reason: status.Convert(err).Message()}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		e.ClientAddr = pr.Addr.String()
	}
	select {
	case g.refused <- e:
	default:
		g.dropped.Add(1)
	}
}

// auditLoop writes the gate's refusals until ctx ends.
func (g *earlyGate) auditLoop(ctx context.Context, access store.AccessBackend, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-g.refused:
			if err := access.AppendAccessEvents(context.WithoutCancel(ctx), []store.AccessEvent{e}); err != nil {
				log.Error("access audit write of a refused call failed", "method", e.Method, "err", err.Error())
			}
			if n := g.dropped.Swap(0); n > 0 {
				log.Warn("refused calls without credentials not written to the access audit: its queue was full", "dropped", n)
			}
		}
	}
}

// plausible reports whether a call carries credentials worth reading its
// body for: a verified client certificate, a bearer token shaped like a
// signed JWT, or (development) the principal header.
func (g *earlyGate) plausible(ctx context.Context, md metadata.MD) bool {
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			return true
		}
	}
	if g.headerAuth && len(md.Get(PrincipalHeader)) == 1 {
		return true
	}
	auth := md.Get("authorization")
	if len(auth) != 1 {
		return false
	}
	scheme, tok, ok := strings.Cut(auth[0], " ")
	return ok && strings.EqualFold(scheme, "bearer") && plausibleJWT(tok)
}

// plausibleJWT checks a token's shape only: three base64url parts, at
// most MaxBearerTokenLen bytes, a header that is a JSON object naming an
// algorithm. Verification is the authenticator's.
func plausibleJWT(tok string) bool {
	if len(tok) == 0 || len(tok) > MaxBearerTokenLen {
		return false
	}
	parts := strings.Split(tok, ".")
	// An empty signature (alg none) passes: the authenticator refuses it
	// naming the algorithm.
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	return json.Unmarshal(hdr, &h) == nil && h.Alg != ""
}

// trustsPrincipalHeader reports whether an authenticator accepts the
// development principal header, which the early gate then lets through.
func trustsPrincipalHeader(a Authenticator) bool {
	switch a := a.(type) {
	case HeaderAuthenticator, *HeaderAuthenticator:
		return true
	case interface{ TrustsPrincipalHeader() bool }:
		// An authenticator that wraps the header one (tests) says so.
		return a.TrustsPrincipalHeader()
	case *CertAuthenticator:
		return a != nil && a.next != nil && trustsPrincipalHeader(a.next)
	}
	return false
}

// streamLimiter counts each principal's open streams.
type streamLimiter struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

func newStreamLimiter(max int) *streamLimiter {
	return &streamLimiter{max: max, open: map[string]int{}}
}

// stream is a stream interceptor placed after authentication: a principal
// at its limit is refused with ResourceExhausted before the handler runs.
// Unauthenticated (public) streams, health watches, are not counted.
func (l *streamLimiter) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	p, ok := PrincipalFrom(ss.Context())
	if !ok || l.max <= 0 {
		return handler(srv, ss)
	}
	l.mu.Lock()
	if l.open[p.Name] >= l.max {
		l.mu.Unlock()
		return status.Errorf(codes.ResourceExhausted, "too many open streams for this caller (at most %d): close one first", l.max)
	}
	l.open[p.Name]++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		if l.open[p.Name]--; l.open[p.Name] <= 0 {
			delete(l.open, p.Name)
		}
		l.mu.Unlock()
	}()
	return handler(srv, ss)
}
