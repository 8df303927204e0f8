package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// JWKS defaults.
const (
	// DefaultJWKSRefresh is how long fetched keys are used before they
	// are fetched again, so a rotated-out key stops being trusted.
	DefaultJWKSRefresh = 15 * time.Minute
	// DefaultJWKSMinRefetch bounds refetches caused by tokens with an
	// unknown key id: a key rotation is picked up at once, while a flood of
	// forged key ids cannot turn the server into a load on the provider.
	DefaultJWKSMinRefetch = 30 * time.Second
	// maxJWKSBytes bounds a key set document.
	maxJWKSBytes = 1 << 20
)

// JWKSConfig says where a key set comes from.
type JWKSConfig struct {
	// URL of the provider's jwks_uri (https), or
	URL string
	// File holding the key set, re-read on refresh.
	File string
	// Refresh and MinRefetch: 0 means the defaults above.
	Refresh, MinRefetch time.Duration
	// Client fetches URL; nil means a client with a 10 s timeout.
	Client *http.Client
	// Logger is told of failed refreshes; nil means slog.Default().
	Logger *slog.Logger
}

// JWKS is a cached JSON Web Key Set: fetched on first use, refreshed after
// Refresh, refetched early (at most once per MinRefetch) when a token names
// a key id it does not hold. A due refresh runs in the background while the
// keys held keep verifying, and when it fails they are kept, so a slow or
// failed provider neither stalls nor locks out callers whose keys are
// known. Only a caller that needs new keys (none held yet, or an unknown
// key id) waits for a fetch.
type JWKS struct {
	cfg JWKSConfig
	now func() time.Time

	mu        sync.Mutex
	keys      map[string]any
	fetchedAt time.Time     // last successful fetch
	triedAt   time.Time     // last attempt started
	inflight  chan struct{} // closed when the fetch in flight ends; nil when none
}

// NewJWKS returns a key set for cfg; nothing is fetched until first use.
func NewJWKS(cfg JWKSConfig) (*JWKS, error) {
	if (cfg.URL == "") == (cfg.File == "") {
		return nil, errors.New("jwks: exactly one of URL and File is required")
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultJWKSRefresh
	}
	if cfg.MinRefetch <= 0 {
		cfg.MinRefetch = DefaultJWKSMinRefetch
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &JWKS{cfg: cfg, now: time.Now}, nil
}

// PublicKey returns the key with id kid. An empty kid is accepted when the
// set holds exactly one key.
func (j *JWKS) PublicKey(ctx context.Context, kid string) (any, error) {
	j.mu.Lock()
	now := j.now()
	mayFetch := j.triedAt.IsZero() || now.Sub(j.triedAt) >= j.cfg.MinRefetch
	if j.keys != nil && now.Sub(j.fetchedAt) >= j.cfg.Refresh && mayFetch {
		j.startFetch(now) // in the background: the held keys still serve
		mayFetch = false
	}
	if k, ok := j.lookup(kid); ok {
		j.mu.Unlock()
		return k, nil
	}
	// No keys yet, or an unknown key id (perhaps the provider rotated its
	// keys): wait for a fetch, a new one at most once per MinRefetch.
	wait := j.inflight
	if wait == nil && (mayFetch || j.keys == nil && now.Sub(j.triedAt) >= time.Second) {
		wait = j.startFetch(now)
	}
	j.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, status.Error(codes.Unavailable, "the identity provider's keys are being fetched; retry")
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if k, ok := j.lookup(kid); ok {
		return k, nil
	}
	if j.keys == nil {
		return nil, status.Error(codes.Unavailable, "the identity provider's keys cannot be fetched; retry later")
	}
	return nil, status.Error(codes.Unauthenticated, "invalid token: unknown key id")
}

func (j *JWKS) lookup(kid string) (any, bool) {
	if kid == "" && len(j.keys) == 1 {
		for _, k := range j.keys {
			return k, true
		}
	}
	k, ok := j.keys[kid]
	return k, ok
}

// startFetch starts a fetch unless one is in flight and returns the
// channel closed when it ends. j.mu must be held. The fetch is not bound
// to any caller's context: its result serves every caller.
func (j *JWKS) startFetch(now time.Time) chan struct{} {
	if j.inflight != nil {
		return j.inflight
	}
	done := make(chan struct{})
	j.inflight, j.triedAt = done, now
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		keys, err := j.fetch(ctx)
		j.mu.Lock()
		defer j.mu.Unlock()
		j.inflight = nil
		if err != nil {
			j.cfg.Logger.Warn("jwks refresh failed; keeping the keys held", "err", err.Error(), "keys_held", len(j.keys))
			return
		}
		j.keys, j.fetchedAt = keys, now
	}()
	return done
}

func (j *JWKS) fetch(ctx context.Context) (map[string]any, error) {
	var r io.Reader
	if j.cfg.File != "" {
		f, err := os.Open(j.cfg.File)
		if err != nil {
			return nil, fmt.Errorf("open jwks file: %w", err)
		}
		defer f.Close()
		r = f
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.cfg.URL, nil)
		if err != nil {
			return nil, fmt.Errorf("jwks request: %w", err)
		}
		resp, err := j.cfg.Client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetch jwks: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetch jwks: HTTP %d", resp.StatusCode)
		}
		r = resp.Body
	}
	body, err := io.ReadAll(io.LimitReader(r, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read jwks: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("jwks larger than 1 MiB")
	}
	return ParseJWKS(body)
}

// ParseJWKS parses a key set, keeping the public RSA and EC signature keys
// by key id. Private or symmetric keys are refused: a key set is public.
func ParseJWKS(body []byte) (map[string]any, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("parse jwks: %w", err)
	}
	keys := map[string]any{}
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch k.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey:
			keys[k.KeyID] = k.Key
		default:
			return nil, fmt.Errorf("parse jwks: key %q is not a public RSA or EC key", k.KeyID)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("parse jwks: no signature keys")
	}
	return keys, nil
}
