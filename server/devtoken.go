package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The development token issuer: perfusiond signs tokens with a key kept in
// its data directory, and the embedded quick start trusts that key, so a
// developer needs no identity provider. It is never trusted unless
// perfusiond is told to (see cmd/perfusiond).
const (
	// DevIssuer is the iss of development tokens.
	DevIssuer = "perfusiond-dev"
	// DevAudience is their aud.
	DevAudience = "perfusion"
	// DevKeyFile is the key's file name in the data directory.
	DevKeyFile = "dev-token-key.pem"
)

// DevKey is the development signing key and its key id.
type DevKey struct {
	Key *ecdsa.PrivateKey
	// KID is derived from the public key, so tokens of a replaced key are
	// refused as of an unknown key.
	KID string
}

// LoadOrCreateDevKey reads the ES256 key from dir, creating it (mode 0600)
// on first use.
func LoadOrCreateDevKey(dir string) (*DevKey, error) {
	path := filepath.Join(dir, DevKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createDevKey(dir, path)
	} else if err != nil {
		return nil, fmt.Errorf("read dev token key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("dev token key %s: not PEM", path)
	}
	k, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("dev token key %s: %w", path, err)
	}
	return devKey(k)
}

func createDevKey(dir, path string) (*DevKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate dev token key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode dev token key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	// Written aside and linked into place, so a concurrent reader (the
	// token command while the server starts) never sees half a key, and
	// the first of two creators wins.
	f, err := os.CreateTemp(dir, DevKeyFile+".*")
	if err != nil {
		return nil, fmt.Errorf("create dev token key: %w", err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("create dev token key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("write dev token key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write dev token key: %w", err)
	}
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return LoadOrCreateDevKey(dir) // another process created it first
	} else if err != nil {
		return nil, fmt.Errorf("install dev token key: %w", err)
	}
	return devKey(k)
}

func devKey(k *ecdsa.PrivateKey) (*DevKey, error) {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encode dev token public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return &DevKey{Key: k, KID: "dev-" + hex.EncodeToString(sum[:8])}, nil
}

// Keys returns the key set that verifies the key's tokens.
func (d *DevKey) Keys() StaticKeys { return StaticKeys{d.KID: &d.Key.PublicKey} }

// DevTokenClaims is what a development token asserts.
type DevTokenClaims struct {
	Subject string
	Roles   []Role
	Sites   []string
	TTL     time.Duration
	// AuthTime is when the subject signed in; zero means now.
	AuthTime time.Time
}

// Issue signs a development token valid from now for c.TTL, with
// auth_time c.AuthTime (now when unset).
func (d *DevKey) Issue(c DevTokenClaims, now time.Time) (string, error) {
	roles := make([]string, len(c.Roles))
	for i, r := range c.Roles {
		roles[i] = string(r)
	}
	authTime := c.AuthTime
	if authTime.IsZero() {
		authTime = now
	}
	claims := jwt.MapClaims{
		"iss": DevIssuer, "aud": DevAudience, "sub": c.Subject,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(c.TTL).Unix(), "auth_time": authTime.Unix(),
		"roles": roles, "sites": c.Sites,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = d.KID
	s, err := t.SignedString(d.Key)
	if err != nil {
		return "", fmt.Errorf("sign dev token: %w", err)
	}
	return s, nil
}
