package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"perfusion/server"
	"perfusion/server/servertest"
)

// devTokenServer serves on a fresh embedded store trusting development
// tokens of a key in its own directory, as the quick-start server does, and
// returns its address and a token function for that key.
func devTokenServer(t *testing.T) (addr string, token func(roles []server.Role, sites ...string) string) {
	t.Helper()
	key, err := server.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	auth, err := server.NewJWTAuthenticator(server.JWTConfig{Keys: key.Keys(), Issuer: server.DevIssuer, Audience: server.DevAudience})
	if err != nil {
		t.Fatal(err)
	}
	addr = servertest.Start(t, func(c *server.Config) { c.Authenticator = auth })
	return addr, func(roles []server.Role, sites ...string) string {
		return issue(t, key, roles, sites...)
	}
}

func issue(t *testing.T, key *server.DevKey, roles []server.Role, sites ...string) string {
	t.Helper()
	tok, err := key.Issue(server.DevTokenClaims{Subject: "perfusionist-1", Roles: roles, Sites: sites, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ctlToken runs perfusionctl in-process against addr with token as
// PERFUSION_TOKEN, as a user of the README does.
func ctlToken(t *testing.T, addr, token string, args ...string) result {
	t.Helper()
	t.Setenv("PERFUSION_TOKEN", token)
	t.Setenv("PERFUSION_PRINCIPAL", "")
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"--addr", addr, "--timeout", "10s"}, args...), &out, &errb)
	t.Logf("perfusionctl %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return result{code, out.String(), errb.String()}
}

// TestTwoSiteTokenLists: with the README's token for two sites, every list
// (case list, delivery list, the review lists) is refused until a site is
// named, and the refusal says "permission denied" once and names --site and
// the caller's sites; with --site the same commands work.
func TestTwoSiteTokenLists(t *testing.T) {
	addr, token := devTokenServer(t)
	perfusionist := token([]server.Role{server.RolePerfusionist}, "MAIN", "SIM")
	reviewer := token([]server.Role{server.RoleReviewer, server.RoleIdentified}, "MAIN", "SIM")
	for _, c := range []struct {
		token string
		args  []string
	}{
		{perfusionist, []string{"case", "list"}},
		{perfusionist, []string{"delivery", "list", "--state", "failed"}},
		{reviewer, []string{"review", "cases"}},
		{reviewer, []string{"review", "aggregate", "--group-by", "month", "--metrics", "cpb_minutes"}},
		{reviewer, []string{"review", "export", "--format", "csv"}},
	} {
		r := ctlToken(t, addr, c.token, c.args...)
		if r.code != exitError || strings.Count(r.stderr, "permission denied") != 1 ||
			!strings.Contains(r.stderr, "--site") || !strings.Contains(r.stderr, "MAIN, SIM") {
			t.Errorf("%s without --site: exit %d, %q", strings.Join(c.args, " "), r.code, r.stderr)
		}
	}
	mustCode(t, ctlToken(t, addr, perfusionist, "case", "list", "--site", "MAIN"), exitOK)
	mustCode(t, ctlToken(t, addr, perfusionist, "delivery", "list", "--site", "SIM"), exitOK)
	mustCode(t, ctlToken(t, addr, reviewer, "review", "cases", "--site", "MAIN"), exitOK)
	// A site that is not the caller's: refused, the code said once.
	r := ctlToken(t, addr, perfusionist, "case", "list", "--site", "EAST")
	if r.code != exitError || strings.Count(r.stderr, "permission denied") != 1 || !strings.Contains(r.stderr, "not among yours") {
		t.Errorf("case list --site EAST: exit %d, %q", r.code, r.stderr)
	}
	// A single-site caller has the site filled in, as before.
	mustCode(t, ctlToken(t, addr, token([]server.Role{server.RolePerfusionist}, "MAIN"), "case", "list"), exitOK)
}

// TestStatusTextSaysItsCodeOnce: every refusal prints the code's words
// once, whether or not the server's message starts with them too.
func TestStatusTextSaysItsCodeOnce(t *testing.T) {
	addr := startServer(t)
	r := ctl(t, addr, "case", "show", "6f1c1c52-6f8e-4c39-9d7e-1d2b0a3e4f50")
	mustCode(t, r, exitNotFound)
	if strings.Count(r.stderr, "not found") != 1 {
		t.Fatalf("case show of an unknown case: %q", r.stderr)
	}
	r = ctl(t, addr, "break-glass", "end", "6f1c1c52-6f8e-4c39-9d7e-1d2b0a3e4f50")
	mustCode(t, r, exitNotFound)
	if strings.Count(r.stderr, "not found") != 1 {
		t.Fatalf("break-glass end of an unknown grant: %q", r.stderr)
	}
}

// TestTokenOfAnotherDataDir: a development token made with another
// --data-dir than the server's is refused with how to make a good one, and
// the refusal does not repeat the token.
func TestTokenOfAnotherDataDir(t *testing.T) {
	addr, _ := devTokenServer(t)
	other, err := server.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tok := issue(t, other, []server.Role{server.RolePerfusionist}, "MAIN")
	r := ctlToken(t, addr, tok, "case", "list")
	if r.code != exitError || !strings.Contains(r.stderr, "development key") || !strings.Contains(r.stderr, "perfusiond token") ||
		!strings.Contains(r.stderr, "--data-dir") || strings.Contains(r.stderr, tok[strings.LastIndex(tok, ".")+1:]) ||
		strings.Contains(r.stderr, tok[:20]) {
		t.Fatalf("token of another key: exit %d, %q", r.code, r.stderr)
	}
}

// TestHelpInEveryGroup: "help" works as a word at any level of the
// command tree, as the README shows.
func TestHelpInEveryGroup(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"help", "entry"}, "perfusionctl entry — "},
		{[]string{"entry", "help"}, "perfusionctl entry — "},
		{[]string{"entry", "help", "add", "lab"}, "perfusionctl entry add lab — "},
		{[]string{"help", "entry", "add", "lab"}, "perfusionctl entry add lab — "},
		{[]string{"entry", "add", "lab", "help"}, "perfusionctl entry add lab — "},
		{[]string{"case", "show", "help"}, "perfusionctl case show — "},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, &out, &errb)
		if code != exitOK || !strings.HasPrefix(out.String(), c.want) {
			t.Errorf("perfusionctl %s: exit %d, %q, stderr %q", strings.Join(c.args, " "), code, firstLine(out.String()), errb.String())
		}
	}
	// Every group answers "help".
	var walk func(path []string, n *command)
	walk = func(path []string, n *command) {
		if n.setup != nil {
			return
		}
		var out, errb bytes.Buffer
		if code := run(context.Background(), append(append([]string{}, path...), "help"), &out, &errb); code != exitOK {
			t.Errorf("perfusionctl %s help: exit %d, %s", strings.Join(path, " "), code, errb.String())
		}
		for _, c := range n.subs {
			walk(append(append([]string{}, path...), c.name), c)
		}
	}
	walk(nil, commandTree())
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"entry", "help", "nope"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), `"entry nope"`) {
		t.Errorf("entry help nope: exit %d, %q", code, errb.String())
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
