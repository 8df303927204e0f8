package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"

	"perfusion/clients/tablet"
	"perfusion/server"
	"perfusion/server/web"
)

// Environment variables of the browser-face flags.
const (
	envHTTPListen   = "PERFUSION_HTTP_LISTEN"
	envOIDCIssuer   = "PERFUSION_OIDC_ISSUER"
	envOIDCClientID = "PERFUSION_OIDC_CLIENT_ID"
	envOIDCScopes   = "PERFUSION_OIDC_SCOPES"
)

// webConfig is how serve faces browsers: the charting tablet and the API
// over Connect and gRPC-Web, on a port of its own beside native gRPC.
type webConfig struct {
	listen   string
	issuer   string
	clientID string
	scopes   string
}

func webFlags(fs *flag.FlagSet, env envFlags) *webConfig {
	c := &webConfig{}
	fs.StringVar(&c.listen, "http-listen", "127.0.0.1:7071",
		"address serving the charting tablet and the API to browsers (Connect, gRPC-Web); empty turns it off. Native gRPC (device gateways) stays on --listen (env "+envHTTPListen+")")
	fs.StringVar(&c.clientID, "oidc-client-id", "", "the tablet's client id at the identity provider; enables sign-in with OpenID Connect (env "+envOIDCClientID+")")
	fs.StringVar(&c.issuer, "oidc-issuer", "", "the identity provider the tablet signs in with; default --jwt-issuer (env "+envOIDCIssuer+")")
	fs.StringVar(&c.scopes, "oidc-scopes", "openid profile", "scopes the tablet asks for at sign-in (env "+envOIDCScopes+")")
	env["http-listen"], env["oidc-client-id"], env["oidc-issuer"], env["oidc-scopes"] = envHTTPListen, envOIDCClientID, envOIDCIssuer, envOIDCScopes
	return c
}

// check refuses an OpenID Connect sign-in that perfusiond could not
// verify: the tokens it yields must be checked against the provider's keys.
// The browser port is held to the gRPC port's transport rules: plaintext
// and development sign-in on loopback only.
func (c *webConfig) check(a *authConfig) error {
	if c.listen != "" && !listensOnLoopback(c.listen) {
		if a.tlsCert == "" && !a.allowPlaintext {
			return usageErrorf("refusing plaintext on the non-loopback --http-listen %s: give --tls-cert and --tls-key, or --allow-plaintext behind a TLS-terminating proxy", c.listen)
		}
		if a.devTokens || a.devHeaderAuth {
			return usageErrorf("development authentication needs a loopback --http-listen, and %s is not", c.listen)
		}
	}
	if c.clientID == "" {
		return nil
	}
	if a.jwksFile == "" && a.jwksURL == "" {
		return usageErrorf("--oidc-client-id needs the identity provider's keys: give --jwks-url (or --jwks-file), --jwt-issuer and --jwt-audience")
	}
	if c.issuer == "" {
		c.issuer = a.issuer
	}
	return nil
}

// httpService is an http.Server running on its listener: the browser
// face and the metrics endpoint.
type httpService struct {
	name string // for the log line should it stop on its own
	srv  *http.Server
	lis  net.Listener
	done chan error
}

// serveHTTP serves srv on served (lis, perhaps wrapped), with TLS when
// srv.TLSConfig is set, until shutdown.
func serveHTTP(name string, srv *http.Server, lis, served net.Listener) *httpService {
	h := &httpService{name: name, srv: srv, lis: lis, done: make(chan error, 1)}
	if srv.TLSConfig != nil {
		go func() { h.done <- srv.ServeTLS(served, "", "") }()
	} else {
		go func() { h.done <- srv.Serve(served) }()
	}
	return h
}

// shutdown lets calls finish until ctx ends, then closes what is left
// (WatchCase streams on the browser face).
func (h *httpService) shutdown(ctx context.Context) {
	if h == nil {
		return
	}
	if err := h.srv.Shutdown(ctx); err != nil {
		h.srv.Close()
	}
	if err := <-h.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		slog.Default().Warn(h.name+" stopped", "err", err.Error())
	}
}

// start listens and serves the browser face, or returns nil when
// --http-listen is empty. grpcSrv supplies the API; devKey, when the
// development tokens are trusted, enables the tablet's development
// sign-in.
func (c *webConfig) start(grpcSrv *server.Server, auth *authConfig, tlsCfg *tls.Config, devKey *server.DevKey, do2iThreshold float64, log *slog.Logger) (*httpService, error) {
	if c.listen == "" {
		return nil, nil
	}
	api, err := grpcSrv.HTTPHandler()
	if err != nil {
		return nil, err
	}
	var oidc *web.OIDC
	if c.clientID != "" {
		oidc = &web.OIDC{Issuer: c.issuer, ClientID: c.clientID, Scopes: c.scopes, Audience: auth.audience}
	}
	h, err := web.Handler(web.Config{API: api, App: tablet.Files, DevKey: devKey, OIDC: oidc, SignAuthMaxAge: auth.signAuthMaxAge, DO2iThreshold: do2iThreshold, Logger: log})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", c.listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (--http-listen): %w", c.listen, err)
	}
	if tlsCfg == nil && !isLoopback(lis.Addr()) && !auth.allowPlaintext {
		lis.Close()
		return nil, usageErrorf("refusing plaintext on the non-loopback address %s (--http-listen): give --tls-cert and --tls-key, or --allow-plaintext behind a TLS-terminating proxy", lis.Addr())
	}
	if devKey != nil && !isLoopback(lis.Addr()) {
		lis.Close()
		return nil, usageErrorf("development sign-in needs a loopback --http-listen, and %s is not", lis.Addr())
	}
	limits := grpcSrv.Limits()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: limits.ConnectionTimeout,
		IdleTimeout:       limits.MaxConnectionIdle,
		MaxHeaderBytes:    limits.MaxHeaderListSize,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if tlsCfg != nil {
		// ServeTLS offers HTTP/2 and HTTP/1.1 by ALPN; client
		// certificates are asked for but not required, as on --listen.
		srv.TLSConfig = tlsCfg.Clone()
		srv.TLSConfig.NextProtos = nil
	}
	w := serveHTTP("browser face", srv, lis, netutil.LimitListener(lis, limits.MaxConnections))
	log.Info("serving the charting tablet and the browser API", "addr", lis.Addr().String(), "tls", tlsCfg != nil, "dev_sign_in", devKey != nil, "oidc", oidc != nil)
	return w, nil
}

// webShutdownGrace bounds how long open WatchCase streams hold shutdown:
// they never end on their own, and the tablet resumes from its position.
const webShutdownGrace = 2 * time.Second
