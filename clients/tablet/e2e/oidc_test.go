package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"perfusion/server"
)

// mockIDP is a small OpenID Connect provider for the browser tests:
// discovery, an authorization endpoint that approves by itself (the person
// "signs in" without a form), a token endpoint that checks PKCE S256 and
// hands out RS256 access tokens for perfusiond, and the JWKS that verifies
// them.
//
// It keeps a session per browser (a cookie), as a real provider does: an
// authorization request without max_age or prompt=login is answered from
// the session with its old auth_time (single sign-on), so a tablet that
// wants a fresh authentication for signing must ask for one. A request
// with prompt=login, or with max_age shorter than the session's age, is a
// fresh sign-in: a new auth_time, counted in logins.
type mockIDP struct {
	url, clientID, audience string
	// The person who signs in.
	subject string
	roles   []server.Role
	sites   []string
	// tokenTTL is the lifetime of the access tokens.
	tokenTTL time.Duration

	key *rsa.PrivateKey
	kid string
	srv *httptest.Server

	mu sync.Mutex
	// loginSkew makes fresh sign-ins look this long ago (their auth_time),
	// so a test can start with an authentication too old to sign with
	// without waiting for it to age.
	loginSkew time.Duration
	sessions  map[string]time.Time // session cookie → auth_time
	codes     map[string]*authCode
	authorize []url.Values // every authorization request, in order
	logins    int          // fresh authentications
	exchanges int          // codes exchanged for tokens
	refused   []string     // why token requests were refused
}

type authCode struct {
	clientID, redirectURI, challenge, nonce, scope string
	authTime, expires                              time.Time
}

const sessionCookie = "mock_idp_session"

// newMockIDP starts a provider for clientID whose access tokens carry aud
// audience and name subject with roles and sites.
func newMockIDP(t *testing.T, clientID, audience, subject string, roles []server.Role, sites []string) *mockIDP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	m := &mockIDP{clientID: clientID, audience: audience, subject: subject, roles: roles, sites: sites, tokenTTL: time.Hour,
		key: key, kid: "mock-1", sessions: map[string]time.Time{}, codes: map[string]*authCode{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", m.discovery)
	mux.HandleFunc("GET /authorize", m.authorizeEndpoint)
	mux.HandleFunc("/token", m.tokenEndpoint)
	mux.HandleFunc("GET /jwks", m.jwks)
	m.srv = httptest.NewServer(mux)
	m.url = m.srv.URL
	t.Cleanup(m.srv.Close)
	return m
}

// cors lets the tablet, served from another origin, read the answers.
func cors(w http.ResponseWriter) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Access-Control-Allow-Methods", "GET, POST")
	w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	cors(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (m *mockIDP) discovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                m.url,
		"authorization_endpoint":                m.url + "/authorize",
		"token_endpoint":                        m.url + "/token",
		"jwks_uri":                              m.url + "/jwks",
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"none"},
		"scopes_supported":                      []string{"openid", "profile"},
		"claims_supported":                      []string{"sub", "auth_time", "roles", "sites"},
	})
}

var challengePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

func (m *mockIDP) authorizeEndpoint(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	m.mu.Lock()
	m.authorize = append(m.authorize, q)
	m.mu.Unlock()
	redirect := q.Get("redirect_uri")
	ru, err := url.Parse(redirect)
	if redirect == "" || err != nil || (ru.Scheme != "http" && ru.Scheme != "https") || ru.Host == "" {
		http.Error(w, "redirect_uri missing or not an absolute URL", http.StatusBadRequest)
		return
	}
	if q.Get("client_id") != m.clientID {
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	}
	fail := func(code, desc string) {
		v := ru.Query()
		v.Set("error", code)
		v.Set("error_description", desc)
		if s := q.Get("state"); s != "" {
			v.Set("state", s)
		}
		ru.RawQuery = v.Encode()
		http.Redirect(w, r, ru.String(), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "response_type must be code")
		return
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		fail("invalid_scope", "scope must include openid")
		return
	case q.Get("code_challenge_method") != "S256" || !challengePattern.MatchString(q.Get("code_challenge")):
		fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
		return
	case q.Get("state") == "":
		fail("invalid_request", "state is required")
		return
	}
	now := time.Now()
	m.mu.Lock()
	var sid string
	if c, err := r.Cookie(sessionCookie); err == nil {
		sid = c.Value
	}
	authTime, known := m.sessions[sid]
	fresh := !known || slices.Contains(strings.Fields(q.Get("prompt")), "login")
	if ma := q.Get("max_age"); ma != "" {
		secs, err := strconv.Atoi(ma)
		if err != nil || secs < 0 {
			m.mu.Unlock()
			fail("invalid_request", "max_age must be a non-negative integer")
			return
		}
		if now.Sub(authTime) >= time.Duration(secs)*time.Second {
			fresh = true
		}
	}
	if fresh {
		authTime = now.Add(-m.loginSkew)
		m.logins++
		sid = randomString(16)
		m.sessions[sid] = authTime
	}
	code := randomString(24)
	m.codes[code] = &authCode{clientID: m.clientID, redirectURI: redirect, challenge: q.Get("code_challenge"),
		nonce: q.Get("nonce"), scope: q.Get("scope"), authTime: authTime, expires: now.Add(time.Minute)}
	m.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sid, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	v := ru.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	ru.RawQuery = v.Encode()
	http.Redirect(w, r, ru.String(), http.StatusFound)
}

func (m *mockIDP) tokenEndpoint(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		cors(w)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request"})
		return
	}
	refuse := func(code, desc string) {
		m.mu.Lock()
		m.refused = append(m.refused, desc)
		m.mu.Unlock()
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
	}
	if err := r.ParseForm(); err != nil {
		refuse("invalid_request", "form: "+err.Error())
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "authorization_code" {
		refuse("unsupported_grant_type", "grant_type must be authorization_code")
		return
	}
	m.mu.Lock()
	c := m.codes[f.Get("code")]
	delete(m.codes, f.Get("code")) // one use, whatever happens next
	m.mu.Unlock()
	verifier := f.Get("code_verifier")
	sum := sha256.Sum256([]byte(verifier))
	switch {
	case c == nil:
		refuse("invalid_grant", "unknown or used code")
		return
	case time.Now().After(c.expires):
		refuse("invalid_grant", "code expired")
		return
	case f.Get("client_id") != c.clientID:
		refuse("invalid_client", "client_id does not match the code")
		return
	case f.Get("redirect_uri") != c.redirectURI:
		refuse("invalid_grant", "redirect_uri does not match the authorization request")
		return
	case !regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`).MatchString(verifier):
		refuse("invalid_grant", "code_verifier must be 43 to 128 unreserved characters")
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge:
		refuse("invalid_grant", "PKCE verification failed")
		return
	}
	now := time.Now()
	m.mu.Lock()
	m.exchanges++
	m.mu.Unlock()
	access, err := m.sign(jwt.MapClaims{"iss": m.url, "sub": m.subject, "aud": m.audience, "azp": m.clientID,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(m.tokenTTL).Unix(), "auth_time": c.authTime.Unix(),
		"roles": roleStrings(m.roles), "sites": m.sites, "scope": c.scope, "jti": randomString(8)})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	idClaims := jwt.MapClaims{"iss": m.url, "sub": m.subject, "aud": m.clientID, "iat": now.Unix(),
		"exp": now.Add(m.tokenTTL).Unix(), "auth_time": c.authTime.Unix(), "name": "OIDC " + m.subject}
	if c.nonce != "" {
		idClaims["nonce"] = c.nonce
	}
	id, err := m.sign(idClaims)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"access_token": access, "id_token": id, "token_type": "Bearer",
		"expires_in": int(m.tokenTTL / time.Second), "scope": c.scope})
}

func (m *mockIDP) jwks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &m.key.PublicKey, KeyID: m.kid, Algorithm: "RS256", Use: "sig"}}})
}

func (m *mockIDP) sign(claims jwt.MapClaims) (string, error) {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = m.kid
	return tok.SignedString(m.key)
}

// mint issues an access token directly, for pumpsim and the gRPC witness.
func (m *mockIDP) mint(t *testing.T, subject string, roles []server.Role, sites []string, ttl time.Duration, authTime time.Time) string {
	t.Helper()
	now := time.Now()
	tok, err := m.sign(jwt.MapClaims{"iss": m.url, "sub": subject, "aud": m.audience, "iat": now.Unix(), "nbf": now.Unix(),
		"exp": now.Add(ttl).Unix(), "auth_time": authTime.Unix(), "roles": roleStrings(roles), "sites": sites})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// setLoginSkew sets how long ago fresh sign-ins say they happened.
func (m *mockIDP) setLoginSkew(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loginSkew = d
}

// stats returns the authorization requests so far, the number of fresh
// sign-ins and of token exchanges.
func (m *mockIDP) stats() (requests []url.Values, logins, exchanges int, refused []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.authorize), m.logins, m.exchanges, slices.Clone(m.refused)
}

func roleStrings(roles []server.Role) []string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return s
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
