package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"

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
// principal (a device gateway, an interface engine): its name is the
// certificate's common name, its roles and sites are fixed here. Callers
// without a client certificate are passed to Next (the token
// authenticator); nil Next refuses them.
type CertAuthenticator struct {
	// Roles of every certificate principal, usually integration.
	Roles []Role
	// Sites they may reach; "*" is every site.
	Sites []string
	// Next authenticates callers that present no certificate.
	Next Authenticator
}

// Authenticate returns the certificate's principal, or Next's.
func (c CertAuthenticator) Authenticate(ctx context.Context) (Principal, error) {
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
			cn := ti.State.VerifiedChains[0][0].Subject.CommonName
			if !validPrincipal(cn) {
				return Principal{}, errUnauthenticated("the client certificate's common name is not a usable principal")
			}
			p := Principal{Name: cn, Roles: c.Roles, Sites: c.Sites, Via: "mtls"}
			p.AllSites = slices.Contains(c.Sites, "*")
			return p, nil
		}
	}
	if c.Next == nil {
		return Principal{}, errUnauthenticated("a client certificate is required")
	}
	return c.Next.Authenticate(ctx)
}
