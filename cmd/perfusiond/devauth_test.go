package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
)

// devKeyJWKS writes the development key of dataDir as a JWKS file and
// returns the flags that trust it as an identity provider's: the
// legitimate way for tests on PostgreSQL or off loopback, where
// development tokens themselves are refused, to log in with
// `perfusiond token`-style tokens.
func devKeyJWKS(t *testing.T, dataDir string) []string {
	t.Helper()
	key, err := server.LoadOrCreateDevKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.Key.PublicKey, KeyID: key.KID, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--jwks-file", path, "--jwt-issuer", server.DevIssuer, "--jwt-audience", server.DevAudience}
}

// TestDevAuthRefusedBesideProductionSettings: development authentication
// (development tokens, and the header switch of test builds) is refused at
// start beside anything that marks a real deployment: a JWKS, PostgreSQL,
// TLS, a non-loopback address. Before, each of these started, and the
// development switch then won over the identity provider.
func TestDevAuthRefusedBesideProductionSettings(t *testing.T) {
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json") // never read: refused first
	idp := []string{"--jwks-file", jwks, "--jwt-issuer", "https://idp.example", "--jwt-audience", "perfusion"}
	tls := []string{"--tls-cert", filepath.Join(dir, "c.pem"), "--tls-key", filepath.Join(dir, "k.pem")}
	mtls := append(append([]string{}, tls...), "--tls-client-ca", filepath.Join(dir, "ca.pem"), "--client-cert-roles", "device", "--client-cert-sites", "MAIN")
	pg := []string{"--database-url", "postgres://127.0.0.1:1/never"}
	open := []string{"--listen", "0.0.0.0:0", "--allow-plaintext"}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		headerAuth bool // a test build (-tags devauth)
		args       []string
		env        map[string]string
		want       string
	}{
		{"dev tokens with a JWKS", false, cat([]string{"--dev-tokens"}, idp), nil, "JWKS"},
		{"dev tokens with PostgreSQL", false, cat([]string{"--dev-tokens"}, pg), nil, "PostgreSQL"},
		{"dev tokens with TLS", false, cat([]string{"--dev-tokens"}, tls), nil, "TLS"},
		{"dev tokens with mutual TLS", false, cat([]string{"--dev-tokens"}, mtls), nil, "TLS"},
		{"dev tokens on 0.0.0.0", false, cat([]string{"--dev-tokens"}, open), nil, "loopback"},
		{"dev tokens on a LAN address", false, []string{"--dev-tokens", "--listen", "10.1.2.3:0", "--allow-plaintext"}, nil, "loopback"},
		{"dev tokens by environment on 0.0.0.0", false, open, map[string]string{envDevTokens: "true"}, "loopback"},
		{"implicit dev tokens on 0.0.0.0", false, open, nil, "no authentication configured"},
		{"implicit dev tokens with TLS", false, tls, nil, "no authentication configured"},
		{"header switch in an ordinary build", false, []string{"--dev-header-auth"}, nil, "not in this build"},
		{"header switch by environment in an ordinary build", false, nil, map[string]string{envDevHeaderAuth: "true"}, "not in this build"},
		{"header switch in an ordinary build with PostgreSQL", false, cat([]string{"--dev-header-auth"}, pg), nil, "not in this build"},
		{"header switch with a JWKS", true, cat([]string{"--dev-header-auth"}, idp), nil, "JWKS"},
		{"header switch by environment with a JWKS", true, idp, map[string]string{envDevHeaderAuth: "true"}, "JWKS"},
		{"header switch with TLS", true, cat([]string{"--dev-header-auth"}, tls), nil, "TLS"},
		{"header switch with mutual TLS", true, cat([]string{"--dev-header-auth"}, mtls), nil, "TLS"},
		{"header switch on 0.0.0.0", true, cat([]string{"--dev-header-auth"}, open), nil, "loopback"},
		{"header switch with PostgreSQL on 0.0.0.0", true, cat([]string{"--dev-header-auth"}, pg, open), nil, "loopback"},
		{"header switch with dev tokens", true, []string{"--dev-header-auth", "--dev-tokens"}, nil, "not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{envDataDir: t.TempDir()}
			for k, v := range tc.env {
				env[k] = v
			}
			a, _, errb := testApp(env)
			a.devHeaderAuth = tc.headerAuth
			if code := a.run(context.Background(), append([]string{"serve"}, tc.args...)); code != exitUsage || !strings.Contains(errb.String(), tc.want) {
				t.Fatalf("serve %v exited %d, want %d with %q:\n%s", tc.args, code, exitUsage, tc.want, errb)
			}
		})
	}
}

// TestDevAuthOnLoopback: what stays allowed — the embedded quick start on
// loopback (development tokens, implicitly), the header switch of a test
// build on loopback, and an explicit "off" of the header variable in an
// ordinary build.
func TestDevAuthOnLoopback(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, map[string]string{envDataDir: dir, envDevHeaderAuth: "false"}, "--listen", "127.0.0.1:0", "--log-format", "text")
	createCase(t, srv.addr, dir)

	hdr := startServeApp(t, map[string]string{envDataDir: t.TempDir()}, func(a *app) { a.devHeaderAuth = true },
		"--listen", "127.0.0.1:0", "--dev-header-auth", "--log-format", "text")
	if err := headerCall(t, hdr.addr.String()); err != nil {
		t.Fatalf("test build with --dev-header-auth on loopback: %v", err)
	}
}

// headerCall lists cases naming the caller with the development header.
func headerCall(t *testing.T, addr string) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitServing(t, conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-perfusion-principal", "mallory")
	_, err = pb.NewCaseServiceClient(conn).ListCases(ctx, &pb.ListCasesRequest{Site: "MAIN"})
	return err
}
