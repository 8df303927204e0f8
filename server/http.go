package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/vanguard"
	"connectrpc.com/vanguard/vanguardgrpc"

	"perfusion/store/ingest"
)

// HTTPHandler serves the API to browsers: Connect (JSON and binary),
// gRPC-Web and gRPC over any HTTP version, at /<service>/<method>,
// transcoded into this server's grpc.Server (vanguard). Every call runs
// the same interceptors as a native gRPC call — authentication from the
// Authorization header, policy, access audit, text rules, recovery — and
// the same handlers, so nothing about the record differs by transport.
//
// It answers only the API's paths (anything else is 404); the web
// package mounts it beside the tablet's files. Native gRPC clients,
// device gateways above all, keep the grpc.Server's own listener (Serve):
// grpc-go's ServeHTTP path that this handler uses is slower, and
// StreamSamples needs client streaming, which browsers cannot do anyway.
func (s *Server) HTTPHandler() (http.Handler, error) {
	limit := uint32(s.cfg.Limits.MaxRecvMessageSize)
	t, err := vanguardgrpc.NewTranscoder(s.grpc, vanguard.WithDefaultServiceOptions(
		// Bounds what the transcoder buffers of a JSON or gRPC-Web body
		// before gRPC's own receive limit sees it.
		vanguard.WithMaxMessageBufferBytes(limit),
		vanguard.WithMaxGetURLBytes(16<<10),
	))
	if err != nil {
		return nil, fmt.Errorf("browser API transcoder: %w", err)
	}
	return &httpGate{next: t, gate: s.gate}, nil
}

// IsAPIPath reports whether an HTTP path names an API method served by
// HTTPHandler (/perfusion.v1.CaseService/CreateCase, the health check),
// so a router can send everything else elsewhere.
func IsAPIPath(path string) bool {
	return strings.HasPrefix(path, "/perfusion.v1.") || strings.HasPrefix(path, "/grpc.health.v1.Health/")
}

// httpGate does for HTTP calls what earlyGate.tap does for native ones
// that HTTP's path skips: it bounds the body before anything buffers it
// and gives unary calls their server-side deadline, so a slow or huge
// browser request holds no more than a native one.
type httpGate struct {
	next http.Handler
	gate *earlyGate
}

func (h *httpGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !IsAPIPath(r.URL.Path) {
		http.NotFound(w, r)
		return
	}
	// A message may arrive base64-encoded (gRPC-Web text) or as JSON,
	// either larger than its binary form: allow twice the message limit
	// plus framing. gRPC's own limit then applies to the decoded message.
	r.Body = http.MaxBytesReader(w, r.Body, int64(2*h.gate.limits.MaxRecvMessageSize+64<<10))
	if d, ok := h.gate.deadline(r.URL.Path); ok {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		r = r.WithContext(ctx)
	}
	h.next.ServeHTTP(w, r)
}

// deadline is the server-side deadline of a call to method (a full
// "/service/method" name): the long-call timeout for whole-record reads,
// the call timeout for other unary calls, none for streams.
func (g *earlyGate) deadline(method string) (time.Duration, bool) {
	timeout := g.limits.CallTimeout
	if longCalls[method] {
		timeout = g.limits.LongCallTimeout
	} else if g.streaming[method] {
		return 0, false
	}
	return timeout, timeout > 0
}

// Limits returns the resource limits the server applies, defaults filled
// in, so a listener beside it (the browser face) can apply the same.
func (s *Server) Limits() Limits { return s.cfg.Limits }

// Committer is the group committer every StreamSamples stream submits to;
// the metrics watch its queue.
func (s *Server) Committer() *ingest.Committer { return s.ingest }
