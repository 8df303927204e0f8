package server

import (
	"context"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Principal is the authenticated caller. Its Name becomes the actor of
// every write (the author of entries, the signer of signatures, the actor
// on the ledger), so it must identify a person or a device, never a shared
// account.
type Principal struct {
	// Name is the stable identity of the caller, e.g. a staff id or a
	// device gateway's id. At most MaxPrincipalLen characters.
	Name string
	// Roles are what the caller may do (see policy.go). Unknown role names
	// are kept but grant nothing.
	Roles []Role
	// Sites are the hospital or campus codes whose cases the caller may
	// reach; AllSites is written "*" in a token.
	Sites []string
	// AllSites lets the caller reach every site's cases (administrators,
	// and the development identities of tests).
	AllSites bool
	// AuthTime is when the person last proved who they are to the
	// identity provider (the OpenID Connect auth_time claim); zero when
	// unknown. Signing requires it to be recent.
	AuthTime time.Time
	// Via says how the caller was authenticated: "jwt", "mtls" or
	// "dev-header". It goes to the access audit.
	Via string
	// ExpiresAt is when the credential stops being accepted (a token's
	// exp plus the tolerated clock skew, a certificate's NotAfter); zero
	// when it does not expire. A stream the credential opened ends then.
	ExpiresAt time.Time
	// StaffID is the person's staff identifier from the configured claim
	// (JWTConfig.StaffIDClaim), when the login name is not it; "" when not
	// configured or absent. A signature stores it for the EHR exports.
	StaffID string
}

// reservedName reports whether name lies in a service principal's
// namespace ("device:…", "interface:…"): only a client certificate may
// carry such a name, so a token naming one is refused and a machine's
// writes can never be taken for a person's, nor a person's for a
// machine's.
func reservedName(name string) bool {
	for _, r := range ServiceRoles() {
		if strings.HasPrefix(name, string(r)+":") {
			return true
		}
	}
	return false
}

// HasRole reports whether p holds role r.
func (p Principal) HasRole(r Role) bool { return slices.Contains(p.Roles, r) }

// CanReachSite reports whether p's site scope covers site.
func (p Principal) CanReachSite(site string) bool {
	return p.AllSites || slices.Contains(p.Sites, site)
}

// MaxPrincipalLen bounds a principal's name; it is stored with every write.
const MaxPrincipalLen = 128

// Authenticator decides who is calling. Implementations return an error
// with codes.Unauthenticated (or any error, which the interceptor turns into
// Unauthenticated) when the caller cannot be identified. Real
// authentication (JWT, mTLS) will be further implementations of this
// interface.
type Authenticator interface {
	Authenticate(ctx context.Context) (Principal, error)
}

// PrincipalHeader is the metadata key HeaderAuthenticator reads.
const PrincipalHeader = "x-perfusion-principal"

// HeaderAuthenticator trusts the caller's own claim in the
// x-perfusion-principal metadata key, and gives every caller the same
// Roles and site scope (nil Roles: every role, every site, identified
// access, authenticated just now).
//
// ┌──────────────────────────────────────────────────────────────────────┐
// │ FOR DEVELOPMENT AND TESTS ONLY. Anyone who can reach the port can    │
// │ claim to be anyone: the record's authorship and signatures are then  │
// │ worthless. Never deploy it where real patients are charted; use a    │
// │ real Authenticator (JWT or mTLS) instead.                            │
// └──────────────────────────────────────────────────────────────────────┘
type HeaderAuthenticator struct {
	// Roles granted to every caller; nil grants all roles and all sites.
	Roles []Role
	// Sites every caller may reach when Roles is set; "*" is every site.
	Sites []string
}

// Authenticate returns the principal named by the x-perfusion-principal
// metadata key: exactly one value, 1 to 128 printable characters.
func (h HeaderAuthenticator) Authenticate(ctx context.Context) (Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(PrincipalHeader)
	switch {
	case len(vals) == 0:
		return Principal{}, status.Error(codes.Unauthenticated, "missing "+PrincipalHeader+" metadata")
	case len(vals) > 1:
		return Principal{}, status.Error(codes.Unauthenticated, PrincipalHeader+" must be given once")
	}
	if !validPrincipal(vals[0]) {
		// The value is not echoed: it is whatever the caller sent.
		return Principal{}, status.Errorf(codes.Unauthenticated, "%s must be 1 to %d printable characters", PrincipalHeader, MaxPrincipalLen)
	}
	p := Principal{Name: vals[0], Roles: h.Roles, Sites: h.Sites, AuthTime: time.Now(), Via: "dev-header"}
	if h.Roles == nil {
		p.Roles, p.AllSites = AllRoles(), true
	}
	if slices.Contains(p.Sites, "*") {
		p.AllSites = true
	}
	return p, nil
}

func validPrincipal(s string) bool {
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > MaxPrincipalLen {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

type principalKey struct{}

// WithPrincipal returns a context carrying p, as the authentication
// interceptor does.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal the authentication interceptor put
// into ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// actor returns the name of the authenticated caller. A handler reached
// without one is a wiring bug; refusing the call keeps an anonymous write
// off the record.
func actor(ctx context.Context) (string, error) {
	p, ok := PrincipalFrom(ctx)
	if !ok || p.Name == "" {
		return "", status.Error(codes.Unauthenticated, "no authenticated principal")
	}
	return p.Name, nil
}

// errUnauthenticated is an Unauthenticated status with a fixed reason.
func errUnauthenticated(reason string) error { return status.Error(codes.Unauthenticated, reason) }

// ValidPrincipalName reports whether name may name a person signing in:
// 1 to MaxPrincipalLen printable characters, outside the device and
// interface namespaces that only client certificates carry.
func ValidPrincipalName(name string) bool {
	return validPrincipal(name) && !reservedName(name)
}
