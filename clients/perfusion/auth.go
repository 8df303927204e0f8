package perfusion

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// EnvToken is the environment variable Credentials read a bearer token
// from when neither a token nor a token file is given.
const EnvToken = "PERFUSION_TOKEN"

// WithToken sends token as "authorization: Bearer <token>" with every
// call: a JWT from the hospital's identity provider, or in development one
// printed by `perfusiond token`.
func WithToken(token string) Option {
	return func(c *config) { c.perRPC = bearerToken{token: token, secure: c.tls != nil} }
}

// WithTokenFile sends the token held in path with every call, re-reading
// the file when it changes, so a long-running gateway picks up the tokens
// an agent rotates into it without restarting.
func WithTokenFile(path string) Option {
	return func(c *config) { c.perRPC = &tokenFile{path: path, secure: c.tls != nil} }
}

// WithTLS dials with TLS configured by cfg (server CA, server name, client
// certificate). Without it the connection is plaintext, which perfusiond
// accepts on loopback only.
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) {
		c.tls = cfg
		c.dialOpts = append(c.dialOpts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		switch b := c.perRPC.(type) {
		case bearerToken:
			b.secure = true
			c.perRPC = b
		case *tokenFile:
			b.secure = true
		}
	}
}

// bearerToken is a PerRPCCredentials with a fixed token. Over plaintext it
// is sent only because the server accepts plaintext on loopback alone.
type bearerToken struct {
	token  string
	secure bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return b.secure }

// tokenFile is a PerRPCCredentials reading its token from a file, again
// whenever the file's modification time or size changes.
type tokenFile struct {
	path   string
	secure bool

	mu      sync.Mutex
	token   string
	modTime time.Time
	size    int64
}

func (f *tokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	fi, err := os.Stat(f.path)
	if err != nil {
		return nil, fmt.Errorf("perfusion: token file: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.token == "" || !fi.ModTime().Equal(f.modTime) || fi.Size() != f.size {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("perfusion: token file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return nil, errors.New("perfusion: token file is empty")
		}
		f.token, f.modTime, f.size = tok, fi.ModTime(), fi.Size()
	}
	return map[string]string{"authorization": "Bearer " + f.token}, nil
}

func (f *tokenFile) RequireTransportSecurity() bool { return f.secure }

// Credentials is how a command-line client identifies itself and secures
// its connection; the commands fill it from flags.
type Credentials struct {
	// Token is a bearer JWT; TokenFile a file holding one. Neither: the
	// PERFUSION_TOKEN environment variable.
	Token, TokenFile string
	// Principal is the development x-perfusion-principal header, for
	// servers started with --dev-header-auth.
	Principal string
	// CAFile verifies the server's certificate (TLS when set, or when any
	// TLS field is set); CertFile and KeyFile are a client certificate for
	// mutual TLS; ServerName overrides the name checked.
	CAFile, CertFile, KeyFile, ServerName string
	// TLS forces TLS with the system's roots when no CA file is given.
	TLS bool
}

// Options turns the credentials into Dial options. getenv reads the
// environment (os.Getenv when nil).
func (c Credentials) Options(getenv func(string) string) ([]Option, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var opts []Option
	if c.TLS || c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.ServerName != "" {
		cfg, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, WithTLS(cfg))
	}
	tok := c.Token
	if tok == "" && c.TokenFile != "" {
		// Checked now so a wrong path is a usage error, then re-read as
		// it changes.
		if _, err := os.Stat(c.TokenFile); err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		opts = append(opts, WithTokenFile(c.TokenFile))
		tok = "file"
	} else {
		if tok == "" && c.Principal == "" {
			tok = strings.TrimSpace(getenv(EnvToken))
		}
		if tok != "" {
			opts = append(opts, WithToken(tok))
		}
	}
	if c.Principal != "" {
		opts = append(opts, WithPrincipal(c.Principal))
	}
	if tok == "" && c.Principal == "" && c.CertFile == "" {
		return nil, errors.New("no credentials: give a token (--token-file or " + EnvToken + "), a client certificate, or a development principal")
	}
	return opts, nil
}

func (c Credentials) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("CA file holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("a client certificate needs both the certificate and the key file")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
