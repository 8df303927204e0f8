package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"perfusion/server"
)

// Environment variables of the authentication and transport flags.
const (
	envJWKSFile        = "PERFUSION_JWKS_FILE"
	envJWKSURL         = "PERFUSION_JWKS_URL"
	envJWTIssuer       = "PERFUSION_JWT_ISSUER"
	envJWTAudience     = "PERFUSION_JWT_AUDIENCE"
	envNameClaim       = "PERFUSION_NAME_CLAIM"
	envRolesClaim      = "PERFUSION_ROLES_CLAIM"
	envSitesClaim      = "PERFUSION_SITES_CLAIM"
	envStaffIDClaim    = "PERFUSION_STAFF_ID_CLAIM"
	envJWTLeeway       = "PERFUSION_JWT_LEEWAY"
	envSignAuthMaxAge  = "PERFUSION_SIGN_AUTH_MAX_AGE"
	envDevTokens       = "PERFUSION_DEV_TOKENS"
	envDevHeaderAuth   = "PERFUSION_DEV_HEADER_AUTH"
	envTLSCert         = "PERFUSION_TLS_CERT"
	envTLSKey          = "PERFUSION_TLS_KEY"
	envTLSClientCA     = "PERFUSION_TLS_CLIENT_CA"
	envClientCertRoles = "PERFUSION_CLIENT_CERT_ROLES"
	envClientCertSites = "PERFUSION_CLIENT_CERT_SITES"
	envAllowPlaintext  = "PERFUSION_ALLOW_PLAINTEXT"
	envBreakGlass      = "PERFUSION_BREAK_GLASS_DURATION"
)

// authConfig is how serve authenticates callers and secures the wire.
type authConfig struct {
	jwksFile, jwksURL                 string
	issuer, audience                  string
	nameClaim, rolesClaim, sitesClaim string
	staffIDClaim                      string
	leeway, signAuthMaxAge            time.Duration
	devTokens, devHeaderAuth          bool
	tlsCert, tlsKey, tlsClientCA      string
	clientCertRoles, clientCertSites  string
	allowPlaintext                    bool
	breakGlass                        time.Duration
}

// authFlags registers the authentication and transport flags.
// headerAuthBuilt says whether this build has --dev-header-auth.
func authFlags(fs *flag.FlagSet, env envFlags, headerAuthBuilt bool) *authConfig {
	c := &authConfig{}
	fs.StringVar(&c.jwksFile, "jwks-file", "", "JSON Web Key Set file verifying bearer tokens (env "+envJWKSFile+")")
	fs.StringVar(&c.jwksURL, "jwks-url", "", "the identity provider's jwks_uri (env "+envJWKSURL+")")
	fs.StringVar(&c.issuer, "jwt-issuer", "", "required iss of bearer tokens (env "+envJWTIssuer+")")
	fs.StringVar(&c.audience, "jwt-audience", "", "required aud of bearer tokens (env "+envJWTAudience+")")
	fs.StringVar(&c.nameClaim, "name-claim", "sub", "claim naming the caller (env "+envNameClaim+")")
	fs.StringVar(&c.rolesClaim, "roles-claim", "roles", "claim holding the roles, dotted for nested claims, e.g. realm_access.roles (env "+envRolesClaim+")")
	fs.StringVar(&c.sitesClaim, "sites-claim", "sites", "claim holding the sites the caller may reach, \"*\" for all (env "+envSitesClaim+")")
	fs.StringVar(&c.staffIDClaim, "staff-id-claim", "", "claim holding the caller's staff id, when the login name is not it; signatures record it and the EHR exports send it as the signer (env "+envStaffIDClaim+")")
	fs.DurationVar(&c.leeway, "jwt-leeway", server.DefaultLeeway, "clock skew tolerated on exp, nbf and iat (env "+envJWTLeeway+")")
	fs.DurationVar(&c.signAuthMaxAge, "sign-auth-max-age", server.DefaultSignAuthMaxAge, "how recent a signer's authentication (auth_time) must be (env "+envSignAuthMaxAge+")")
	fs.BoolVar(&c.devTokens, "dev-tokens", false, "trust tokens from `perfusiond token` (the key in --data-dir); the default with the embedded store and no JWKS (env "+envDevTokens+")")
	if headerAuthBuilt {
		fs.BoolVar(&c.devHeaderAuth, "dev-header-auth", false, "TEST BUILDS ONLY: trust the x-perfusion-principal header, every caller gets every role; loopback, no TLS, no JWKS (env "+envDevHeaderAuth+")")
	} else {
		// Known but refused, so an operator who sets it learns why it does
		// nothing instead of seeing "flag provided but not defined".
		fs.BoolFunc("dev-header-auth", "not in this build (test builds only: go build -tags devauth)", func(v string) error {
			if on, err := strconv.ParseBool(v); err == nil && !on {
				return nil // explicitly off: nothing to refuse
			}
			return errors.New("development header authentication is not in this build of perfusiond (only in test builds, go build -tags devauth); use --dev-tokens on loopback, or an identity provider's JWKS")
		})
	}
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file (PEM); with --tls-key serves TLS 1.3 (env "+envTLSCert+")")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS key file (PEM) (env "+envTLSKey+")")
	fs.StringVar(&c.tlsClientCA, "tls-client-ca", "", "CA file verifying client certificates (mutual TLS for device gateways and interface engines) (env "+envTLSClientCA+")")
	fs.StringVar(&c.clientCertRoles, "client-cert-roles", "", "the one role of client-certificate principals: device (gateways) or interface (interface engines); required with --tls-client-ca (env "+envClientCertRoles+")")
	fs.StringVar(&c.clientCertSites, "client-cert-sites", "", "sites client-certificate principals may reach, comma-separated; required with --tls-client-ca, no all-sites value (env "+envClientCertSites+")")
	fs.BoolVar(&c.allowPlaintext, "allow-plaintext", false, "allow plaintext on a non-loopback address (behind a TLS-terminating proxy only) (env "+envAllowPlaintext+")")
	fs.DurationVar(&c.breakGlass, "break-glass-duration", server.DefaultBreakGlassDuration, "how long emergency (break-glass) access to another site's case lasts (env "+envBreakGlass+")")
	env["break-glass-duration"] = envBreakGlass
	for k, v := range map[string]string{"jwks-file": envJWKSFile, "jwks-url": envJWKSURL, "jwt-issuer": envJWTIssuer, "jwt-audience": envJWTAudience,
		"name-claim": envNameClaim, "roles-claim": envRolesClaim, "sites-claim": envSitesClaim, "staff-id-claim": envStaffIDClaim, "jwt-leeway": envJWTLeeway,
		"sign-auth-max-age": envSignAuthMaxAge, "dev-tokens": envDevTokens, "dev-header-auth": envDevHeaderAuth,
		"tls-cert": envTLSCert, "tls-key": envTLSKey, "tls-client-ca": envTLSClientCA, "client-cert-roles": envClientCertRoles,
		"client-cert-sites": envClientCertSites, "allow-plaintext": envAllowPlaintext} {
		env[k] = v
	}
	return c
}

// check refuses contradictory settings before anything starts. embedded
// says the store is the embedded one, loopback that the listen address can
// only be reached from this machine.
//
// Development authentication (tokens signed by the key in the data
// directory, or the header of test builds) is for a developer's machine:
// it is refused beside anything that marks a real deployment — an identity
// provider's JWKS, TLS, a non-loopback address, and for development tokens
// PostgreSQL — because it would otherwise win over the real identity
// provider or reach the network. Test builds (-tags devauth) may run the
// header on PostgreSQL: crash and load tests need the real database, and
// such a binary is never deployed.
func (c *authConfig) check(embedded, loopback bool) error {
	if err := c.checkClientCerts(); err != nil {
		return err
	}
	jwks := c.jwksFile != "" || c.jwksURL != ""
	tls := c.tlsCert != "" || c.tlsKey != "" || c.tlsClientCA != ""
	switch {
	case c.jwksFile != "" && c.jwksURL != "":
		return usageErrorf("give --jwks-file or --jwks-url, not both")
	case jwks && (c.issuer == "" || c.audience == ""):
		return usageErrorf("--jwks-file/--jwks-url need --jwt-issuer and --jwt-audience")
	case c.devTokens && c.devHeaderAuth:
		return usageErrorf("give --dev-tokens or --dev-header-auth, not both")
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return usageErrorf("--tls-cert and --tls-key go together")
	case c.tlsClientCA != "" && c.tlsCert == "":
		return usageErrorf("--tls-client-ca needs --tls-cert and --tls-key")
	case c.leeway < 0 || c.leeway > 5*time.Minute || c.signAuthMaxAge <= 0 || c.breakGlass <= 0 || c.breakGlass > 24*time.Hour:
		return usageErrorf("--jwt-leeway must be 0 to 5m, --sign-auth-max-age positive and --break-glass-duration up to 24h")
	}
	for _, dev := range []struct {
		on         bool
		flag       string
		postgresOK bool
	}{{c.devTokens, "--dev-tokens", false}, {c.devHeaderAuth, "--dev-header-auth", true}} {
		switch {
		case !dev.on:
		case jwks:
			return usageErrorf("%s cannot be combined with a JWKS (--jwks-file/--jwks-url): development authentication would be trusted beside the identity provider", dev.flag)
		case tls:
			return usageErrorf("%s cannot be combined with TLS (--tls-cert/--tls-client-ca): development authentication is for a loopback listener only", dev.flag)
		case !loopback:
			return usageErrorf("%s needs a loopback --listen address (127.0.0.1 or ::1): development authentication must not be reachable from other machines", dev.flag)
		case !embedded && !dev.postgresOK:
			return usageErrorf("%s cannot be combined with PostgreSQL (--database-url): development tokens are for the embedded store; give --jwks-url or --jwks-file", dev.flag)
		}
	}
	if !jwks && !c.devTokens && !c.devHeaderAuth && c.tlsClientCA == "" {
		if !embedded || !loopback || tls {
			return usageErrorf("no authentication configured: give --jwks-url or --jwks-file with --jwt-issuer and --jwt-audience (development tokens are trusted only on loopback with the embedded store and no TLS)")
		}
		c.devTokens = true // the embedded quick start
	}
	return nil
}

// checkClientCerts refuses a client-certificate mapping that is missing or
// too broad: with --tls-client-ca every certificate the CA signs becomes a
// principal, so its one role (device or interface, never a person's) and
// its sites must be given explicitly; there is no all-sites default, and
// the retired integration role is refused with the roles that replace it.
func (c *authConfig) checkClientCerts() error {
	if c.tlsClientCA == "" {
		if c.clientCertRoles != "" || c.clientCertSites != "" {
			return usageErrorf("--client-cert-roles and --client-cert-sites need --tls-client-ca")
		}
		return nil
	}
	_, err := c.certAuthenticator(nil)
	return err
}

// certAuthenticator builds the client-certificate authenticator over next.
func (c *authConfig) certAuthenticator(next server.Authenticator) (*server.CertAuthenticator, error) {
	roles := splitList(c.clientCertRoles)
	switch {
	case len(roles) == 0:
		return nil, usageErrorf("--tls-client-ca needs --client-cert-roles: device (device gateways) or interface (interface engines)")
	case len(roles) > 1:
		return nil, usageErrorf("--client-cert-roles takes one role, device or interface: a certificate that could do both would let a pump gateway read what the interface engine sends (give the other kind of client a token)")
	case len(splitList(c.clientCertSites)) == 0:
		return nil, usageErrorf("--tls-client-ca needs --client-cert-sites: the sites (comma-separated) whose cases certificate principals may reach; there is no all-sites default")
	}
	a, err := server.NewCertAuthenticator(server.Role(roles[0]), splitList(c.clientCertSites), next)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	return a, nil
}

// authenticator builds the server's Authenticator. The development key is
// created in dataDir on first use.
func (c *authConfig) authenticator(dataDir string, log *slog.Logger) (server.Authenticator, error) {
	var next server.Authenticator
	switch {
	case c.devHeaderAuth:
		log.Warn("!!! DEVELOPMENT AUTHENTICATION: the x-perfusion-principal header is trusted and every caller has every role on every site; never use with real patients !!!")
		next = server.HeaderAuthenticator{}
	case c.devTokens:
		key, err := server.LoadOrCreateDevKey(dataDir)
		if err != nil {
			return nil, err
		}
		log.Warn("development tokens: trusting the key in the data directory (issue tokens with `perfusiond token`); use an identity provider's JWKS with real patients", "kid", key.KID)
		next, err = server.NewJWTAuthenticator(server.JWTConfig{Keys: key.Keys(), Issuer: server.DevIssuer, Audience: server.DevAudience, Leeway: c.leeway})
		if err != nil {
			return nil, err
		}
	case c.jwksFile != "" || c.jwksURL != "":
		keys, err := server.NewJWKS(server.JWKSConfig{URL: c.jwksURL, File: c.jwksFile, Logger: log})
		if err != nil {
			return nil, err
		}
		next, err = server.NewJWTAuthenticator(server.JWTConfig{Keys: keys, Issuer: c.issuer, Audience: c.audience, Leeway: c.leeway,
			NameClaim: c.nameClaim, RolesClaim: c.rolesClaim, SitesClaim: c.sitesClaim, StaffIDClaim: c.staffIDClaim})
		if err != nil {
			return nil, err
		}
	}
	if c.tlsClientCA == "" {
		if next == nil {
			return nil, errors.New("no authenticator configured")
		}
		return next, nil
	}
	a, err := c.certAuthenticator(next)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// transport returns the TLS configuration, or nil for plaintext, which is
// allowed on loopback, elsewhere only with --allow-plaintext; either way
// the log says so loudly.
func (c *authConfig) transport(addr net.Addr, log *slog.Logger) (*tls.Config, error) {
	if c.tlsCert != "" {
		return server.TLSConfig(c.tlsCert, c.tlsKey, c.tlsClientCA)
	}
	if !isLoopback(addr) {
		if !c.allowPlaintext {
			return nil, usageErrorf("refusing plaintext on the non-loopback address %s: give --tls-cert and --tls-key, or --allow-plaintext behind a TLS-terminating proxy", addr)
		}
		log.Warn("!!! LISTENING IN PLAINTEXT ON A NON-LOOPBACK ADDRESS (--allow-plaintext): tokens and patient data cross the network unencrypted unless a TLS proxy is in front !!!", "addr", addr.String())
		return nil, nil
	}
	log.Warn("!!! PLAINTEXT on loopback: fine for a developer's machine only; serve TLS (--tls-cert, --tls-key) anywhere else !!!", "addr", addr.String())
	return nil, nil
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
