package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// TLSConfig builds the server's TLS: version 1.3 only, the certificate and
// key from files, and when clientCAFile is given, client certificates
// verified against it. A client certificate is optional then (people
// authenticate with tokens), but one that is presented must verify: an
// expired one or one from another CA fails the handshake.
func TLSConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("client CA file holds no PEM certificate")
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// CertAuthenticator maps a verified client certificate to a service
// principal: a device gateway or an interface engine. Its name is the
// certificate's common name in the role's namespace ("device:hlm-gw-3"),
// so it never equals a person's id and every write it makes says it came
// from a machine; its one role and its sites are fixed here, explicitly
// (NewCertAuthenticator refuses an empty or all-sites list). Callers
// without a client certificate are passed to Next (the token
// authenticator); nil Next refuses them.
type CertAuthenticator struct {
	role  Role
	sites []string
	next  Authenticator
}

// NewCertAuthenticator checks the mapping: role must be one of
// ServiceRoles (a certificate is never a person), sites a non-empty list
// of site codes without "*" (a gateway sits at a site; an interface engine
// serving several lists them).
func NewCertAuthenticator(role Role, sites []string, next Authenticator) (*CertAuthenticator, error) {
	if role == RetiredRoleIntegration {
		return nil, fmt.Errorf("client certificate role %q was retired: use %q for device gateways or %q for interface engines", role, RoleDevice, RoleInterface)
	}
	if !slices.Contains(ServiceRoles(), role) {
		return nil, fmt.Errorf("client certificate role %q: must be one of %q, %q (people authenticate with tokens)", role, RoleDevice, RoleInterface)
	}
	if len(sites) == 0 {
		return nil, errors.New("client certificates need their sites listed explicitly: there is no all-sites default")
	}
	for _, s := range sites {
		if s == "*" || s == "" || strings.ContainsAny(s, ", \t") {
			return nil, fmt.Errorf("client certificate site %q: list site codes; \"*\" (all sites) is not allowed for certificates", s)
		}
	}
	return &CertAuthenticator{role: role, sites: slices.Clone(sites), next: next}, nil
}

// ViaMTLS is Principal.Via of a client-certificate principal.
const ViaMTLS = "mtls"

// ServicePrincipalName is the name of a certificate principal of role r
// with common name cn: "<role>:<cn>".
func ServicePrincipalName(r Role, cn string) string { return string(r) + ":" + cn }

// Authenticate returns the certificate's principal, or Next's.
func (c *CertAuthenticator) Authenticate(ctx context.Context) (Principal, error) {
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
			leaf := ti.State.VerifiedChains[0][0]
			name := ServicePrincipalName(c.role, leaf.Subject.CommonName)
			if leaf.Subject.CommonName == "" || !validPrincipal(name) {
				return Principal{}, errUnauthenticated("the client certificate's common name is not a usable principal")
			}
			// A stream outlives neither the certificate that opened it.
			return Principal{Name: name, Roles: []Role{c.role}, Sites: slices.Clone(c.sites), Via: ViaMTLS, ExpiresAt: leaf.NotAfter}, nil
		}
	}
	if c.next == nil {
		return Principal{}, errUnauthenticated("a client certificate is required")
	}
	return c.next.Authenticate(ctx)
}
