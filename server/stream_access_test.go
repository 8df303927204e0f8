package server_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
)

// watchWith starts watching on c as the caller of ctx.
func watchWith(t *testing.T, ctx context.Context, c pb.ChartingServiceClient, req *pb.WatchCaseRequest) *watchRun {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	s, err := c.WatchCase(ctx, req)
	if err != nil {
		cancel()
		t.Fatalf("watch case: %v", err)
	}
	w := &watchRun{t: t, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			m, err := s.Recv()
			w.mu.Lock()
			if err != nil {
				w.err = err
				w.mu.Unlock()
				return
			}
			w.msgs = append(w.msgs, m)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// caughtUp waits for the watch's first caught_up message.
func (w *watchRun) caughtUp() {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.ContainsFunc(w.messages(), (*pb.WatchCaseResponse).GetCaughtUp) {
		select {
		case <-w.done:
			w.t.Fatalf("watch ended with %v before catching up", w.err)
		default:
		}
		if time.Now().After(deadline) {
			w.t.Fatal("watch not caught up after 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// endedWithin waits up to d for the server to end the stream and returns
// its status; a stream still open then fails the test.
func (w *watchRun) endedWithin(d time.Duration) *status.Status {
	w.t.Helper()
	select {
	case <-w.done:
	case <-time.After(d):
		w.t.Fatalf("the stream was still open %s after its access ended", d)
	}
	return status.Convert(w.err)
}

// sawNote reports whether the watch delivered a note with text.
func (w *watchRun) sawNote(text string) bool {
	for _, m := range w.messages() {
		for _, e := range m.GetEntries() {
			if e.GetNote().GetText() == text {
				return true
			}
		}
	}
	return false
}

// TestStreamEndsWhenTokenExpires: a WatchCase opened with a token ends
// Unauthenticated when the token expires, and a note written after that
// never reaches it (it once did, 75 s after expiry, while GetCase with the
// same token said "expired"); a device's StreamSamples ends the same way.
func TestStreamEndsWhenTokenExpires(t *testing.T) {
	key, err := server.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// A millisecond of leeway, so the test need not wait the default 30 s.
	auth, err := server.NewJWTAuthenticator(server.JWTConfig{Keys: key.Keys(), Issuer: server.DevIssuer, Audience: server.DevAudience, Leeway: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := &jwtEnv{env: start(t, sqliteBackend(t), func(c *server.Config) { c.Authenticator = auth }), key: key}
	id := e.createCaseAt("MAIN")
	short := func(name string, roles []server.Role) (context.Context, time.Time) {
		now := time.Now()
		tok, err := key.Issue(server.DevTokenClaims{Subject: name, Roles: roles, Sites: []string{"MAIN"}, TTL: 2 * time.Second}, now)
		if err != nil {
			t.Fatal(err)
		}
		return bearer(tok), time.Unix(now.Add(2*time.Second).Unix(), 0) // exp has whole seconds
	}

	ctx, exp := short("perfusionist-2", rolePerf)
	w := watchWith(t, ctx, e.charting, &pb.WatchCaseRequest{CaseId: id})
	w.caughtUp()
	gw, _ := short("gateway-1", []server.Role{server.RoleDevice})
	ss, err := e.charting.StreamSamples(gw)
	if err != nil {
		t.Fatal(err)
	}
	if err := ss.Send(openMsg(id, "hlm-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Recv(); err != nil {
		t.Fatalf("open: %v", err)
	}

	time.Sleep(time.Until(exp) + 300*time.Millisecond)
	_, err = e.cases.GetCase(ctx, &pb.GetCaseRequest{CaseId: id})
	wantCode(t, "GetCase with the expired token", err, codes.Unauthenticated)
	const late = "written after the watcher's token expired"
	fresh := e.token("perfusionist-1", rolePerf, []string{"MAIN"}, 0)
	if _, err := e.charting.RecordEntry(fresh, &pb.RecordEntryRequest{Entry: noteEntry(id, late, time.Now())}); err != nil {
		t.Fatal(err)
	}
	st := w.endedWithin(5 * time.Second)
	if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "expired") {
		t.Fatalf("watch ended with %v, want Unauthenticated saying the credentials expired", st)
	}
	if w.sawNote(late) {
		t.Fatal("the watch delivered a note written after its token expired")
	}
	_, err = ss.Recv()
	wantCode(t, "StreamSamples after its token expired", err, codes.Unauthenticated)
}

// TestStreamEndsWhenBreakGlassEnds: a WatchCase that reached another
// site's case through break-glass ends PermissionDenied when the grant
// expires, and when its holder ends it early; entries written afterwards
// never reach it.
func TestStreamEndsWhenBreakGlassEnds(t *testing.T) {
	const grantFor = 1500 * time.Millisecond
	e := startJWT(t, func(c *server.Config) {
		c.BreakGlassDuration = grantFor
		c.StreamRecheck = 100 * time.Millisecond
	})
	north := e.createCaseAt("NORTH")
	doc := func() context.Context { return e.token("er-doc", rolePerf, []string{"MAIN"}, 0) }
	northPerf := e.token("perfusionist-n", rolePerf, []string{"NORTH"}, 0)
	ac := pb.NewAccessServiceClient(e.conn)
	open := func() *pb.BreakGlassGrant {
		g, err := ac.OpenBreakGlass(doc(), &pb.OpenBreakGlassRequest{CaseId: north, Reason: "patient transferred on ECMO from NORTH"})
		if err != nil {
			t.Fatalf("OpenBreakGlass: %v", err)
		}
		return g.GetGrant()
	}

	t.Run("expired", func(t *testing.T) {
		g := open()
		w := watchWith(t, doc(), e.charting, &pb.WatchCaseRequest{CaseId: north})
		w.caughtUp()
		time.Sleep(time.Until(g.GetExpiresAt().AsTime()) + 200*time.Millisecond)
		const late = "written after the grant expired"
		if _, err := e.charting.RecordEntry(northPerf, &pb.RecordEntryRequest{Entry: noteEntry(north, late, time.Now())}); err != nil {
			t.Fatal(err)
		}
		st := w.endedWithin(5 * time.Second)
		if st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "break-glass") {
			t.Fatalf("watch ended with %v, want PermissionDenied naming the break-glass grant", st)
		}
		if w.sawNote(late) {
			t.Fatal("the watch delivered a note written after the grant expired")
		}
		// The end is audited as a refusal, with its reason.
		var audited bool
		for _, ev := range e.accessEvents(&pb.ListAccessEventsRequest{Principal: "er-doc", CaseId: north, DeniedOnly: true}) {
			audited = audited || strings.HasSuffix(ev.GetMethod(), "/WatchCase") && strings.Contains(ev.GetReason(), "break-glass")
		}
		if !audited {
			t.Fatal("the watch's end is not in the access audit")
		}
	})
	t.Run("ended", func(t *testing.T) {
		g := open()
		w := watchWith(t, doc(), e.charting, &pb.WatchCaseRequest{CaseId: north})
		w.caughtUp()
		if _, err := ac.EndBreakGlass(doc(), &pb.EndBreakGlassRequest{GrantId: g.GetGrantId()}); err != nil {
			t.Fatal(err)
		}
		st := w.endedWithin(time.Second) // well before the grant's expiry
		if st.Code() != codes.PermissionDenied {
			t.Fatalf("watch ended with %v, want PermissionDenied", st)
		}
	})
}

// siteDirectory is an authenticator whose answer can change while a
// stream is open, as one backed by token introspection or a staff
// directory does: the x-perfusion-principal header names the caller, the
// directory says its sites.
type siteDirectory struct {
	mu    sync.Mutex
	sites map[string][]string
}

func (d *siteDirectory) set(name string, sites ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sites[name] = sites
}

// TrustsPrincipalHeader tells the server's early credential check that
// this authenticator reads the development principal header.
func (d *siteDirectory) TrustsPrincipalHeader() bool { return true }

func (d *siteDirectory) Authenticate(ctx context.Context) (server.Principal, error) {
	p, err := server.HeaderAuthenticator{Roles: rolePerf}.Authenticate(ctx)
	if err != nil {
		return p, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	p.Sites = slices.Clone(d.sites[p.Name])
	return p, nil
}

// TestStreamEndsWhenSiteIsLost: a WatchCase ends PermissionDenied, within
// the re-check interval, once its caller no longer holds the case's site.
func TestStreamEndsWhenSiteIsLost(t *testing.T) {
	dir := &siteDirectory{sites: map[string][]string{}}
	dir.set("perfusionist-3", "MAIN")
	dir.set(perfusionist, "MAIN")
	e := start(t, sqliteBackend(t), func(c *server.Config) {
		c.Authenticator = dir
		c.StreamRecheck = 100 * time.Millisecond
	})
	id := e.createCase("OR-1").GetCaseId()
	w := watchWith(t, as("perfusionist-3"), e.charting, &pb.WatchCaseRequest{CaseId: id})
	w.caughtUp()
	e.recordEntry(noteEntry(id, "while the site was held", time.Now()))
	dir.set("perfusionist-3", "EAST") // moved to another campus
	st := w.endedWithin(3 * time.Second)
	if st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "site") {
		t.Fatalf("watch ended with %v, want PermissionDenied naming the site", st)
	}
	const late = "written after the site was lost"
	e.recordEntry(noteEntry(id, late, time.Now()))
	if w.sawNote(late) {
		t.Fatal("the watch delivered a note after its caller lost the site")
	}
	// Unary calls agree.
	_, err := e.cases.GetCase(as("perfusionist-3"), &pb.GetCaseRequest{CaseId: id})
	wantCode(t, "GetCase after losing the site", err, codes.PermissionDenied)
}
