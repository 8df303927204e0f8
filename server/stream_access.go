package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"perfusion/charting"
)

// DefaultStreamRecheck is how often an open stream re-checks the access
// that let it in: re-authenticates its credentials, and checks its roles,
// its sites and any break-glass grant it relies on. A credential's expiry
// and a grant's end are not waited for: timers end the stream at that
// instant; the re-check catches what has no known time (a grant ended
// early, a site taken away, a signing key withdrawn).
const DefaultStreamRecheck = 5 * time.Second

// accessEndedError is the cancellation cause of a stream whose access
// ended: its status is what the client gets.
type accessEndedError struct{ st *status.Status }

func (e *accessEndedError) Error() string { return e.st.Message() }

// GRPCStatus makes the error its status for status.FromError.
func (e *accessEndedError) GRPCStatus() *status.Status { return e.st }

func accessEnded(c codes.Code, format string, args ...any) error {
	return &accessEndedError{st: status.Newf(c, format, args...)}
}

// endedCause returns the status that ended ctx's stream because its access
// ended, or nil.
func endedCause(ctx context.Context) error {
	var ae *accessEndedError
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &ae) {
		return ae
	}
	return nil
}

// streamGuard ends a stream when the access that admitted it ends: the
// credential expires, a break-glass grant it relies on ends, or the
// principal no longer holds the role or the site. It cancels the stream's
// context with an accessEndedError; handlers end on their context as they
// do when the client leaves, the guarded stream refuses any further
// message in either direction, and the access interceptor turns the
// handler's error into the cause. One goroutine and one ticker per stream.
type streamGuard struct {
	ic     *interceptors
	rule   Rule
	method string
	// in is the stream's incoming context (metadata and peer), which
	// authenticates the caller again.
	in     context.Context
	p      Principal
	cancel context.CancelCauseFunc
	every  time.Duration
	poke   chan struct{}

	mu sync.Mutex
	// cases the stream named, with their sites ("" when the caller
	// reached every site and the site was not read).
	cases map[uuid.UUID]caseReach
	// sites the stream's lists named ("" is every site).
	sites map[string]bool
}

type caseReach struct {
	site       string
	breakGlass bool // the case was reached through a grant
}

// guardStream starts a guard for a stream admitted as p and returns the
// stream's guarded context; stop ends the guard.
func (ic *interceptors) guardStream(in, ctx context.Context, method string, r Rule, p Principal) (*streamGuard, context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	g := &streamGuard{ic: ic, rule: r, method: method, in: in, p: p, cancel: cancel,
		every: ic.authz.streamRecheck, poke: make(chan struct{}, 1),
		cases: map[uuid.UUID]caseReach{}, sites: map[string]bool{}}
	if g.every <= 0 {
		g.every = DefaultStreamRecheck
	}
	done := make(chan struct{})
	go func() { defer close(done); g.run(ctx) }()
	return g, ctx, func() { cancel(nil); <-done }
}

// noteCase records a case the stream reached; a nil guard ignores it.
func (g *streamGuard) noteCase(caseID, site string) {
	id, err := uuid.Parse(caseID)
	if g == nil || err != nil {
		return
	}
	g.mu.Lock() // g.p is replaced by the guard's goroutine
	reach := caseReach{site: site, breakGlass: site != "" && !g.p.CanReachSite(site)}
	g.cases[id] = reach
	g.mu.Unlock()
	if reach.breakGlass {
		g.wake() // arm the timer at the grant's end now
	}
}

// noteSite records a site the stream's lists are confined to.
func (g *streamGuard) noteSite(site string) {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.sites[site] = true
	g.mu.Unlock()
}

func (g *streamGuard) wake() {
	select {
	case g.poke <- struct{}{}:
	default:
	}
}

// timerAt returns a timer firing at t, or nil for the zero time.
func timerAt(t time.Time) *time.Timer {
	if t.IsZero() {
		return nil
	}
	return time.NewTimer(time.Until(t))
}

func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

func (g *streamGuard) run(ctx context.Context) {
	expiry := timerAt(g.p.ExpiresAt)
	if expiry != nil {
		defer expiry.Stop()
	}
	tick := time.NewTicker(g.every)
	defer tick.Stop()
	var grantEnd *time.Timer
	defer func() {
		if grantEnd != nil {
			grantEnd.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timerC(expiry):
			g.cancel(accessEnded(codes.Unauthenticated, "your credentials expired while the stream was open, so it ended: authenticate again and resume"))
			return
		case <-timerC(grantEnd):
		case <-tick.C:
		case <-g.poke:
		}
		next, err := g.recheck(ctx)
		if err != nil {
			g.cancel(err)
			return
		}
		if grantEnd != nil {
			grantEnd.Stop()
		}
		grantEnd = timerAt(next)
	}
}

// recheck authenticates the stream's caller again and checks its role and
// every case and site the stream reached. It returns the earliest end of
// the break-glass grants the stream relies on (zero: none), or the
// accessEndedError that ends the stream.
func (g *streamGuard) recheck(ctx context.Context) (time.Time, error) {
	p, err := g.ic.auth.Authenticate(g.in)
	if err != nil {
		if status.Code(err) == codes.Unavailable {
			// The key source is down: the credential was good and its
			// expiry timer still runs; do not end every stream for an
			// identity provider's outage.
			return g.nextGrantEnd(ctx)
		}
		msg := "authentication failed"
		if st, ok := status.FromError(err); ok {
			msg = st.Message()
		}
		return time.Time{}, accessEnded(codes.Unauthenticated, "your credentials are no longer accepted (%s), so the stream ended", msg)
	}
	if p.Name != g.p.Name {
		return time.Time{}, accessEnded(codes.Unauthenticated, "the stream's credentials now name another principal, so it ended")
	}
	if !g.rule.allows(p) {
		return time.Time{}, accessEnded(codes.PermissionDenied, "your roles no longer allow %s, so the stream ended", g.method)
	}
	g.mu.Lock()
	sites := make([]string, 0, len(g.sites))
	for s := range g.sites {
		sites = append(sites, s)
	}
	g.mu.Unlock()
	for _, s := range sites {
		if (s == "" && !p.AllSites) || (s != "" && !p.CanReachSite(s)) {
			return time.Time{}, accessEnded(codes.PermissionDenied, "the site of this stream is no longer among yours, so it ended")
		}
	}
	g.mu.Lock()
	g.p = p
	g.mu.Unlock()
	return g.nextGrantEnd(ctx)
}

// nextGrantEnd checks every case the stream reached against g.p's sites
// and, where those do not reach it, a running break-glass grant. It
// returns the earliest grant end.
func (g *streamGuard) nextGrantEnd(ctx context.Context) (time.Time, error) {
	g.mu.Lock()
	cases := make(map[uuid.UUID]caseReach, len(g.cases))
	for id, c := range g.cases {
		cases[id] = c
	}
	g.mu.Unlock()
	var next time.Time
	a := g.ic.authz
	for id, c := range cases {
		if c.site == "" {
			if g.p.AllSites {
				continue
			}
			cs, err := a.h.store.GetCase(ctx, id)
			if err != nil {
				return time.Time{}, g.checkFailed(ctx, err)
			}
			c.site = cs.Site
			g.mu.Lock()
			g.cases[id] = c
			g.mu.Unlock()
		}
		if g.p.CanReachSite(c.site) {
			continue
		}
		if a.access == nil {
			return time.Time{}, accessEnded(codes.PermissionDenied, "the case's site is no longer among yours, so the stream ended")
		}
		grant, err := a.access.ActiveBreakGlass(ctx, g.p.Name, id, a.now())
		if errors.Is(err, charting.ErrNotFound) {
			if c.breakGlass {
				return time.Time{}, accessEnded(codes.PermissionDenied, "the break-glass grant that let this stream reach the case has ended, so the stream ended")
			}
			return time.Time{}, accessEnded(codes.PermissionDenied, "the case's site is no longer among yours, so the stream ended")
		} else if err != nil {
			return time.Time{}, g.checkFailed(ctx, err)
		}
		if next.IsZero() || grant.ExpiresAt.Before(next) {
			next = grant.ExpiresAt
		}
	}
	return next, nil
}

// checkFailed ends a stream whose access could not be re-checked: access
// that cannot be shown must not continue. Unavailable tells the client to
// resume, which checks afresh.
func (g *streamGuard) checkFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err() // the stream ended anyway
	}
	g.ic.log.Error("stream access re-check failed; ending the stream", "method", g.method, "err", fmt.Errorf("re-check: %w", err).Error())
	return accessEnded(codes.Unavailable, "the stream's access could not be re-checked, so it ended: resume it")
}

// guardedStream is a stream under a guard: its context ends with the
// access, and once it has, no message goes out or comes in.
type guardedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *guardedStream) Context() context.Context { return s.ctx }

// SendMsg refuses to send after the access ended.
func (s *guardedStream) SendMsg(m any) error {
	if err := endedCause(s.ctx); err != nil {
		return err
	}
	return s.ServerStream.SendMsg(m)
}

// RecvMsg refuses what arrives after the access ended.
func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return endedCause(s.ctx)
}
