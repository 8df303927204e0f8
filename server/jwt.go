package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// DefaultLeeway is the clock skew tolerated on exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// KeySource finds the public key that verifies a token, by its key id. It
// returns a status error: Unauthenticated for an unknown key, Unavailable
// when the keys cannot be fetched.
type KeySource interface {
	PublicKey(ctx context.Context, kid string) (any, error)
}

// JWTConfig configures a JWTAuthenticator.
type JWTConfig struct {
	// Keys verify signatures (a JWKS, or the development key).
	Keys KeySource
	// Issuer must equal the token's iss.
	Issuer string
	// Audience must be among the token's aud.
	Audience string
	// Leeway on exp, nbf and iat; 0 means DefaultLeeway.
	Leeway time.Duration
	// NameClaim names the caller; "" means "sub".
	NameClaim string
	// RolesClaim holds the roles: a list of strings or one space-separated
	// string, at a dotted path (e.g. "realm_access.roles"); "" means
	// "roles".
	RolesClaim string
	// SitesClaim holds the sites the same way, "*" meaning all; "" means
	// "sites".
	SitesClaim string
	// StaffIDClaim, when set, names the claim (dotted for nested) holding
	// the caller's staff identifier, the id the EHR knows the team by; a
	// signature made with the token records it and the exports send it as
	// the signer. A token without it signs with the login name alone.
	StaffIDClaim string
}

// JWTAuthenticator verifies bearer JWTs from the hospital's OpenID Connect
// provider: RS256 or ES256 signatures only (alg none and HMAC, whose key
// would be the public key anyone can fetch, are refused), issuer, audience,
// expiry (required) and not-before.
type JWTAuthenticator struct {
	cfg    JWTConfig
	parser *jwt.Parser
}

// NewJWTAuthenticator checks cfg and fills its defaults.
func NewJWTAuthenticator(cfg JWTConfig) (*JWTAuthenticator, error) {
	if cfg.Keys == nil || cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("jwt: keys, issuer and audience are required")
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.NameClaim == "" {
		cfg.NameClaim = "sub"
	}
	if cfg.RolesClaim == "" {
		cfg.RolesClaim = "roles"
	}
	if cfg.SitesClaim == "" {
		cfg.SitesClaim = "sites"
	}
	return &JWTAuthenticator{cfg: cfg, parser: jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256", "ES256"}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)}, nil
}

// BearerToken returns the token of the authorization metadata
// ("Bearer <token>"), or "".
func BearerToken(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return ""
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// Authenticate verifies the bearer token and maps its claims to a
// principal. Refusals say which check failed, never the token's content.
func (a *JWTAuthenticator) Authenticate(ctx context.Context) (Principal, error) {
	raw := BearerToken(ctx)
	if raw == "" {
		return Principal{}, status.Error(codes.Unauthenticated, "missing bearer token (authorization: Bearer <JWT>)")
	}
	claims := jwt.MapClaims{}
	var keyErr error
	_, err := a.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, err := a.cfg.Keys.PublicKey(ctx, kid)
		keyErr = err
		return k, err
	})
	if err != nil {
		if s, ok := status.FromError(keyErr); ok && keyErr != nil {
			return Principal{}, s.Err()
		}
		return Principal{}, status.Error(codes.Unauthenticated, "invalid token: "+tokenReason(err))
	}
	return a.principal(claims)
}

// tokenReason names the failed check in words safe to return.
func tokenReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "a required claim is missing"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "bad signature or algorithm (RS256 or ES256 required)"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	}
	return "rejected"
}

func (a *JWTAuthenticator) principal(claims jwt.MapClaims) (Principal, error) {
	name, _ := claimAt(claims, a.cfg.NameClaim).(string)
	if !validPrincipal(name) {
		return Principal{}, status.Errorf(codes.Unauthenticated, "invalid token: claim %s must be 1 to %d printable characters", a.cfg.NameClaim, MaxPrincipalLen)
	}
	p := Principal{Name: name, Via: "jwt"}
	for _, r := range stringsClaim(claimAt(claims, a.cfg.RolesClaim)) {
		p.Roles = append(p.Roles, Role(r))
	}
	for _, s := range stringsClaim(claimAt(claims, a.cfg.SitesClaim)) {
		if s == "*" {
			p.AllSites = true
			continue
		}
		p.Sites = append(p.Sites, s)
	}
	if p.HasRole(RoleAdmin) {
		p.AllSites = true
	}
	if a.cfg.StaffIDClaim != "" {
		// A malformed staff id is left out rather than refusing the token:
		// it only names the signer to the EHR.
		if id, _ := claimAt(claims, a.cfg.StaffIDClaim).(string); validPrincipal(id) {
			p.StaffID = id
		}
	}
	if at, ok := claims["auth_time"].(float64); ok && at > 0 {
		p.AuthTime = time.Unix(int64(at), 0)
	}
	// exp is required and was checked with the leeway, so the token stops
	// being accepted at exp + leeway: a stream it opened ends then too.
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		p.ExpiresAt = exp.Add(a.cfg.Leeway)
	}
	return p, nil
}

// claimAt follows a dotted path into nested claims.
func claimAt(claims map[string]any, path string) any {
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// stringsClaim reads a list of strings or one space-separated string.
func stringsClaim(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// StaticKeys is a fixed key set, by key id: the development key.
type StaticKeys map[string]any

// errNotDevKey refuses a token of another key. The commonest cause is a
// token made by `perfusiond token` with another data directory than the
// server's (each directory has its own key), so the refusal says how to
// make a good one; it never repeats the token.
var errNotDevKey = status.Error(codes.Unauthenticated, "invalid token: not signed by this server's development key "+
	"(a token of another data directory, or of a replaced key): make one with `perfusiond token --data-dir DIR …` "+
	"using the server's --data-dir")

// PublicKey returns the key of kid.
func (k StaticKeys) PublicKey(_ context.Context, kid string) (any, error) {
	if key, ok := k[kid]; ok {
		return key, nil
	}
	return nil, errNotDevKey
}

// String describes the set without its keys.
func (k StaticKeys) String() string { return fmt.Sprintf("%d static keys", len(k)) }
