package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"perfusion/server"
)

// TestMockIDP checks the test's identity provider without a browser: the
// authorization code flow with PKCE, single sign-on from its session,
// fresh sign-ins on max_age and prompt=login, refusals of a wrong
// verifier, a reused code and a changed redirect_uri — and that
// perfusiond's own JWT verifier, fetching the JWKS, accepts its access
// tokens with their auth_time. The browser tests rely on all of it.
func TestMockIDP(t *testing.T) {
	idp := newMockIDP(t, "tablet", "perfusion", "oidc-pat", []server.Role{server.RolePerfusionist}, []string{"MAIN"})
	keys, err := server.NewJWKS(server.JWKSConfig{URL: idp.url + "/jwks"})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := server.NewJWTAuthenticator(server.JWTConfig{Keys: keys, Issuer: idp.url, Audience: "perfusion"})
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	var disc map[string]any
	resp, err := browser.Get(idp.url + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&disc)
	resp.Body.Close()
	if disc["issuer"] != idp.url || disc["authorization_endpoint"] != idp.url+"/authorize" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("discovery: %v (CORS %q)", disc, resp.Header.Get("Access-Control-Allow-Origin"))
	}

	const redirect = "http://127.0.0.1:1/"
	// authorize runs the redirect leg and returns the code (or the error
	// the provider redirected with) and the verifier.
	authorize := func(extra url.Values) (code, verifier string) {
		t.Helper()
		verifier = randomString(32) // 64 hex characters
		sum := sha256.Sum256([]byte(verifier))
		q := url.Values{"response_type": {"code"}, "client_id": {"tablet"}, "redirect_uri": {redirect}, "scope": {"openid profile"},
			"state": {"s1"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
		for k, v := range extra {
			q[k] = v
		}
		resp, err := browser.Get(idp.url + "/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), redirect) {
			t.Fatalf("authorize: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if e := loc.Query().Get("error"); e != "" {
			return "error:" + e, verifier
		}
		if loc.Query().Get("state") != "s1" {
			t.Fatalf("state not returned: %s", loc)
		}
		return loc.Query().Get("code"), verifier
	}
	exchange := func(code, verifier, redirectURI string) (map[string]any, int) {
		t.Helper()
		resp, err := http.PostForm(idp.url+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {redirectURI}, "client_id": {"tablet"}, "code_verifier": {verifier}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return body, resp.StatusCode
	}
	authTime := func(body map[string]any) time.Time {
		t.Helper()
		tok, _ := body["access_token"].(string)
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
		p, err := verifier.Authenticate(ctx)
		if err != nil {
			t.Fatalf("perfusiond's verifier refused the access token: %v", err)
		}
		if p.Name != "oidc-pat" || !p.HasRole(server.RolePerfusionist) || len(p.Sites) != 1 || p.Sites[0] != "MAIN" {
			t.Fatalf("principal %+v", p)
		}
		return p.AuthTime
	}

	// First sign-in, made to look 10 minutes old.
	idp.setLoginSkew(10 * time.Minute)
	code, v := authorize(nil)
	if _, status := exchange(code, v+"x", redirect); status != http.StatusBadRequest {
		t.Fatalf("a wrong code_verifier got %d", status)
	}
	code, v = authorize(nil)
	if _, status := exchange(code, v, redirect+"other"); status != http.StatusBadRequest {
		t.Fatalf("a changed redirect_uri got %d", status)
	}
	code, v = authorize(nil)
	body, status := exchange(code, v, redirect)
	if status != http.StatusOK || body["token_type"] != "Bearer" || body["id_token"] == nil {
		t.Fatalf("token: %d %v", status, body)
	}
	first := authTime(body)
	if age := time.Since(first); age < 9*time.Minute || age > 11*time.Minute {
		t.Fatalf("auth_time %s old, want about 10 min", age)
	}
	if _, status := exchange(code, v, redirect); status != http.StatusBadRequest {
		t.Fatalf("a reused code got %d", status)
	}
	idp.setLoginSkew(0)

	// Single sign-on: the session's auth_time, no new sign-in; the same
	// with a max_age it still meets.
	_, logins, _, _ := idp.stats()
	for _, extra := range []url.Values{nil, {"max_age": {"3600"}}} {
		code, v = authorize(extra)
		body, _ = exchange(code, v, redirect)
		if at := authTime(body); !at.Equal(first) {
			t.Fatalf("%v: auth_time %s, want the session's %s", extra, at, first)
		}
	}
	if _, l, _, _ := idp.stats(); l != logins {
		t.Fatalf("single sign-on counted %d fresh sign-ins", l-logins)
	}
	// max_age=0 and prompt=login are fresh sign-ins with a new auth_time.
	for _, extra := range []url.Values{{"max_age": {"0"}}, {"prompt": {"login"}}, {"max_age": {"60"}}} {
		idp.setLoginSkew(10 * time.Minute) // the session is old again for max_age=60
		authorize(url.Values{"prompt": {"login"}})
		idp.setLoginSkew(0)
		code, v = authorize(extra)
		body, _ = exchange(code, v, redirect)
		if age := time.Since(authTime(body)); age > 5*time.Second {
			t.Fatalf("%v: auth_time %s old, want fresh", extra, age)
		}
	}
	// Without PKCE the provider refuses to authorize.
	if code, _ := authorize(url.Values{"code_challenge_method": {"plain"}}); code != "error:invalid_request" {
		t.Fatalf("plain PKCE: %q", code)
	}
	if _, _, ex, refused := idp.stats(); ex != 6 || len(refused) != 3 {
		t.Fatalf("exchanges %d, refusals %q", ex, refused)
	}
}
