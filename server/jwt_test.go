package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
)

const (
	testIssuer   = "https://idp.example.org/realms/hospital"
	testAudience = "perfusion-api"
)

// idp is a test identity provider: an EC and an RSA key published as a
// JWKS over HTTP.
type idp struct {
	ec      *ecdsa.PrivateKey
	rsa     *rsa.PrivateKey
	extra   *ecdsa.PrivateKey // published only once rotate is called
	rotated atomic.Bool
	fetches atomic.Int32
	srv     *httptest.Server
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	p := &idp{}
	var err error
	if p.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if p.extra, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if p.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &p.ec.PublicKey, KeyID: "ec-1", Algorithm: "ES256", Use: "sig"},
			{Key: &p.rsa.PublicKey, KeyID: "rsa-1", Algorithm: "RS256", Use: "sig"},
		}}
		if p.rotated.Load() {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &p.extra.PublicKey, KeyID: "ec-2", Algorithm: "ES256", Use: "sig"})
		}
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// claims are valid claims for a perfusionist at MAIN, authenticated now.
func validClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": testIssuer, "aud": []string{testAudience, "other"}, "sub": "perfusionist-1",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "auth_time": now.Unix(),
		"realm_access": map[string]any{"roles": []string{"perfusionist"}}, "sites": "MAIN",
	}
}

func (p *idp) sign(t *testing.T, method jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *idp) authenticator(t *testing.T) server.Authenticator {
	t.Helper()
	keys, err := server.NewJWKS(server.JWKSConfig{URL: p.srv.URL, MinRefetch: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a, err := server.NewJWTAuthenticator(server.JWTConfig{Keys: keys, Issuer: testIssuer, Audience: testAudience, RolesClaim: "realm_access.roles"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func bearer(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func TestJWTAuthentication(t *testing.T) {
	p := newIDP(t)
	e := start(t, sqliteBackend(t), func(c *server.Config) { c.Authenticator = p.authenticator(t) })

	with := func(f func(jwt.MapClaims)) jwt.MapClaims {
		c := validClaims()
		f(c)
		return c
	}
	good := p.sign(t, jwt.SigningMethodES256, "ec-1", p.ec, validClaims())
	parts := strings.Split(good, ".")
	tampered := with(func(c jwt.MapClaims) {
		c["sub"] = "admin-1"
		c["realm_access"] = map[string]any{"roles": []string{"admin"}}
	})
	tamperedPayload, _ := json.Marshal(tampered)
	pubDER, _ := x509.MarshalPKIXPublicKey(&p.rsa.PublicKey)
	hsWithPublicKey := p.sign(t, jwt.SigningMethodHS256, "rsa-1", pubDER, validClaims())
	none := p.sign(t, jwt.SigningMethodNone, "ec-1", jwt.UnsafeAllowNoneSignatureType, validClaims())

	for _, tc := range []struct {
		name  string
		token string
		code  codes.Code
		why   string
	}{
		{"valid ES256", good, codes.OK, ""},
		{"valid RS256", p.sign(t, jwt.SigningMethodRS256, "rsa-1", p.rsa, validClaims()), codes.OK, ""},
		{"within leeway", p.sign(t, jwt.SigningMethodES256, "ec-1", p.ec, with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-10 * time.Second).Unix() })), codes.OK, ""},
		{"expired", p.sign(t, jwt.SigningMethodES256, "ec-1", p.ec, with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() })), codes.Unauthenticated, "expired"},
		{"no exp", p.sign(t, jwt.SigningMethodES256, "ec-1", p.ec, with(func(c jwt.MapClaims) { delete(c, "exp") })), codes.Unauthenticated, "missing"},
		{"not yet valid", p.sign(t, jwt.SigningMethodES256, "ec-1", p.ec, with(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(5 * time.Minute).Unix() })), codes.Unauthenticated, "not valid yet"},
		{"wrong audience", p.sign(t, jwt.SigningMethodES256, "ec-1", p.ec, with(func(c jwt.MapClaims) { c["aud"] = "someone-else" })), codes.Unauthenticated, "wrong audience"},
		{"wrong issuer", p.sign(t, jwt.SigningMethodES256, "ec-1", p.ec, with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), codes.Unauthenticated, "wrong issuer"},
		{"alg none", none, codes.Unauthenticated, "algorithm"},
		{"HS256 with the public key", hsWithPublicKey, codes.Unauthenticated, "algorithm"},
		{"tampered payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString(tamperedPayload) + "." + parts[2], codes.Unauthenticated, "signature"},
		{"signed by another key under a known kid", p.sign(t, jwt.SigningMethodES256, "ec-1", p.extra, validClaims()), codes.Unauthenticated, "signature"},
		{"unknown kid", p.sign(t, jwt.SigningMethodES256, "nope", p.ec, validClaims()), codes.Unauthenticated, "unknown key id"},
		{"RS256 header on an EC key", p.sign(t, jwt.SigningMethodRS256, "ec-1", p.rsa, validClaims()), codes.Unauthenticated, "signature"},
		{"garbage", "not.a.jwt", codes.Unauthenticated, "malformed"},
		{"no subject", p.sign(t, jwt.SigningMethodES256, "ec-1", p.ec, with(func(c jwt.MapClaims) { delete(c, "sub") })), codes.Unauthenticated, "sub"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.cases.ListCases(bearer(tc.token), &pb.ListCasesRequest{})
			if tc.code == codes.OK {
				if err != nil {
					t.Fatalf("ListCases: %v", err)
				}
				return
			}
			st := wantCode(t, "ListCases", err, tc.code)
			if !strings.Contains(st.Message(), tc.why) {
				t.Fatalf("message %q does not say %q", st.Message(), tc.why)
			}
		})
	}
	_, err := e.cases.ListCases(context.Background(), &pb.ListCasesRequest{})
	wantCode(t, "no token", err, codes.Unauthenticated)
	_, err = e.cases.ListCases(as("admin"), &pb.ListCasesRequest{})
	wantCode(t, "the development header with JWT configured", err, codes.Unauthenticated)
}

// TestJWKSRefetchOnUnknownKid: a rotated-in key is fetched at once, and a
// burst of unknown key ids fetches at most once per MinRefetch.
func TestJWKSRefetchOnUnknownKid(t *testing.T) {
	p := newIDP(t)
	keys, err := server.NewJWKS(server.JWKSConfig{URL: p.srv.URL, MinRefetch: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := keys.PublicKey(ctx, "ec-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.PublicKey(ctx, "ec-2"); err == nil {
		t.Fatal("ec-2 found before rotation")
	}
	for range 50 {
		keys.PublicKey(ctx, "forged")
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches within MinRefetch, want 1", n)
	}
	p.rotated.Store(true)
	time.Sleep(250 * time.Millisecond)
	if _, err := keys.PublicKey(ctx, "ec-2"); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

func TestJWKSUnavailable(t *testing.T) {
	keys, err := server.NewJWKS(server.JWKSConfig{URL: "http://127.0.0.1:1/jwks"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = keys.PublicKey(context.Background(), "k")
	wantCode(t, "unreachable JWKS", err, codes.Unavailable)
}

func TestParseJWKSRefusesSymmetricKeys(t *testing.T) {
	if _, err := server.ParseJWKS([]byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}`)); err == nil {
		t.Fatal("a symmetric key was accepted")
	}
	if _, err := server.ParseJWKS([]byte(`{"keys":[]}`)); err == nil {
		t.Fatal("an empty set was accepted")
	}
}

func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"a","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AA"}]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := server.ParseJWKS(b)
		if err == nil && len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
	})
}

// TestJWKSSlowProviderDoesNotStall: once keys are held, a due refresh runs
// in the background; a provider that hangs does not hold up callers whose
// key is known, and its keys stay in use.
func TestJWKSSlowProviderDoesNotStall(t *testing.T) {
	p := newIDP(t)
	var hang atomic.Bool
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			<-release
		}
		p.srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer slow.Close()
	defer close(release)
	keys, err := server.NewJWKS(server.JWKSConfig{URL: slow.URL, Refresh: 50 * time.Millisecond, MinRefetch: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := keys.PublicKey(ctx, "ec-1"); err != nil {
		t.Fatal(err)
	}
	hang.Store(true)
	time.Sleep(100 * time.Millisecond) // the keys are now due for refresh
	for range 3 {
		start := time.Now()
		if _, err := keys.PublicKey(ctx, "ec-1"); err != nil {
			t.Fatalf("known key while the provider hangs: %v", err)
		}
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Fatalf("a known key took %s while the provider hangs", d)
		}
	}
	// An unknown key id waits for the fetch, bounded by the caller.
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = keys.PublicKey(cctx, "ec-9")
	wantCode(t, "unknown kid while the provider hangs", err, codes.Unavailable)
}

// TestStaffIDClaim: with --staff-id-claim the principal carries the staff
// id from that (dotted) claim, which a signature records for the EHR; a
// token without it, or an authenticator without the setting, has none.
func TestStaffIDClaim(t *testing.T) {
	p := newIDP(t)
	keys, err := server.NewJWKS(server.JWKSConfig{URL: p.srv.URL, MinRefetch: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	auth := func(claim string) *server.JWTAuthenticator {
		a, err := server.NewJWTAuthenticator(server.JWTConfig{Keys: keys, Issuer: testIssuer, Audience: testAudience, StaffIDClaim: claim})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	withStaff := validClaims()
	withStaff["ehr"] = map[string]any{"staff_id": "S-40127"}
	in := func(c jwt.MapClaims) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+p.sign(t, jwt.SigningMethodES256, "ec-1", p.ec, c)))
	}
	for _, tc := range []struct {
		name, claim string
		claims      jwt.MapClaims
		want        string
	}{
		{"configured and present", "ehr.staff_id", withStaff, "S-40127"},
		{"configured, absent", "ehr.staff_id", validClaims(), ""},
		{"not configured", "", withStaff, ""},
	} {
		pr, err := auth(tc.claim).Authenticate(in(tc.claims))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if pr.StaffID != tc.want || pr.Name != "perfusionist-1" {
			t.Errorf("%s: staff id %q name %q, want %q perfusionist-1", tc.name, pr.StaffID, pr.Name, tc.want)
		}
	}
}
