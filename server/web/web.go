// Package web is perfusiond's browser face: one http.Handler that serves
// the charting tablet's files, its configuration, the development sign-in
// on a developer's machine, and the API (Connect, gRPC-Web, gRPC) through
// server.HTTPHandler.
//
// It holds no session: the tablet keeps its bearer token and sends it on
// every call, so there are no cookies to forge across sites, and every
// call is authenticated, authorised and audited by the same interceptors
// as a native gRPC call.
package web

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"perfusion/server"
)

// OIDC is how the tablet signs people in with the hospital's identity
// provider: authorization code with PKCE, a public client.
type OIDC struct {
	// Issuer is the provider's issuer URL; its discovery document
	// (/.well-known/openid-configuration) gives the endpoints.
	Issuer string `json:"issuer"`
	// ClientID is the tablet's client id at the provider.
	ClientID string `json:"clientId"`
	// Scopes are requested at sign-in, space-separated.
	Scopes string `json:"scopes"`
	// Audience is the aud perfusiond requires of access tokens; sent as
	// the audience parameter for providers that need it.
	Audience string `json:"audience"`
}

// Config is what Handler serves.
type Config struct {
	// API serves the API's paths (server.HTTPHandler). Required.
	API http.Handler
	// App holds the tablet's built files (index.html at its root); nil
	// serves no tablet.
	App fs.FS
	// DevKey, when set, enables the development sign-in
	// (POST /tablet/dev-sign-in), which mints tokens this key signs. Only
	// perfusiond's development configuration (embedded store or
	// --dev-tokens, on loopback) sets it.
	DevKey *server.DevKey
	// OIDC, when set, offers sign-in with the identity provider.
	OIDC *OIDC
	// SignAuthMaxAge is how recent a signer's authentication must be; the
	// tablet asks for a fresh one before signing when it is older.
	SignAuthMaxAge time.Duration
	// DO2iThreshold is the site's DO2i target (mL/min/m²) of the quality
	// metrics, which the tablet draws and counts minutes below live; 0
	// leaves the tablet to its default. A patient population's own target
	// (--metrics-populations) reaches it with the record's metrics.
	DO2iThreshold float64
	// Logger receives refusals of the development sign-in; nil means
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock of minted tokens; nil means time.Now.
	Now func() time.Time
}

// Handler returns the browser face described by cfg.
func Handler(cfg Config) (http.Handler, error) {
	if cfg.API == nil {
		return nil, fmt.Errorf("web: no API handler")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &handler{cfg: cfg}
	if cfg.App != nil {
		assets, err := loadAssets(cfg.App)
		if err != nil {
			return nil, err
		}
		h.assets = assets
	}
	h.csp = contentSecurityPolicy(cfg.OIDC)
	return h, nil
}

type handler struct {
	cfg    Config
	assets map[string]*asset
	csp    string
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case server.IsAPIPath(p):
		h.cfg.API.ServeHTTP(w, r)
	case p == "/tablet/config.json":
		h.config(w, r)
	case p == "/tablet/dev-sign-in":
		h.devSignIn(w, r)
	default:
		h.static(w, r)
	}
}

// clientConfig is GET /tablet/config.json: how the tablet signs in.
type clientConfig struct {
	DevSignIn             bool    `json:"devSignIn"`
	OIDC                  *OIDC   `json:"oidc"`
	SignAuthMaxAgeSeconds int64   `json:"signAuthMaxAgeSeconds"`
	DO2iThreshold         float64 `json:"do2iThreshold,omitempty"`
}

func (h *handler) config(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, clientConfig{
		DevSignIn:             h.cfg.DevKey != nil,
		OIDC:                  h.cfg.OIDC,
		SignAuthMaxAgeSeconds: int64(h.cfg.SignAuthMaxAge / time.Second),
		DO2iThreshold:         h.cfg.DO2iThreshold,
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client has gone if this fails
}

// contentSecurityPolicy lets the tablet load only its own files and talk
// only to this server and, for sign-in, the identity provider's origin.
func contentSecurityPolicy(o *OIDC) string {
	connect := "'self'"
	if o != nil {
		if u, err := url.Parse(o.Issuer); err == nil && u.Scheme != "" && u.Host != "" {
			connect += " " + u.Scheme + "://" + u.Host
		}
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
		"connect-src " + connect + "; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

// asset is one of the tablet's files, held with its gzip form: the
// embedded files never change while the process runs.
type asset struct {
	name        string
	contentType string
	body, gz    []byte
	etag        string
}

func loadAssets(app fs.FS) (map[string]*asset, error) {
	assets := map[string]*asset{}
	err := fs.WalkDir(app, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(app, p)
		if err != nil {
			return err
		}
		a := &asset{name: p, body: body, contentType: mime.TypeByExtension(path.Ext(p))}
		if a.contentType == "" {
			a.contentType = "application/octet-stream"
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		if buf.Len() < len(body) {
			a.gz = buf.Bytes()
		}
		a.etag = fmt.Sprintf(`"%x"`, hash(body))
		assets["/"+p] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: read the tablet's files: %w", err)
	}
	if assets["/index.html"] == nil {
		return nil, fmt.Errorf("web: the tablet's files have no index.html")
	}
	return assets, nil
}

// hash is FNV-1a, enough for an ETag of files fixed at build time.
func hash(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// static serves the tablet. A path that names no file and no file or
// service (isAppRoute) is one of the single-page app's own routes, so it
// gets index.html.
func (h *handler) static(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if h.assets == nil {
		http.NotFound(w, r)
		return
	}
	a := h.assets[r.URL.Path]
	if a == nil && isAppRoute(r.URL.Path) {
		a = h.assets["/index.html"]
	}
	if a == nil {
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Security-Policy", h.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-cache") // revalidate: a new build must reach every tablet
	hd.Set("ETag", a.etag)
	hd.Set("Content-Type", a.contentType)
	hd.Add("Vary", "Accept-Encoding")
	if r.Header.Get("If-None-Match") == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if a.gz != nil && acceptsGzip(r) {
		hd.Set("Content-Encoding", "gzip")
		body = a.gz
	}
	hd.Set("Content-Length", fmt.Sprint(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(body)
}

// isAppRoute reports whether a path is one of the single-page app's own
// routes (/case/<id>): no part of it has a dot, as file names and RPC
// service names do.
func isAppRoute(p string) bool {
	return !strings.Contains(p, ".")
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}
