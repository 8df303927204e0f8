package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
)

// TestServeWithJWKSFile: serve trusts the provider's keys from a JWKS
// file and maps the configured claims; development tokens are then
// refused.
func TestServeWithJWKSFile(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "idp-1", Algorithm: "ES256", Use: "sig"}}})
	jwks := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwks, b, 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{envDataDir: dir, envJWTIssuer: "https://idp.example", envJWTAudience: "perfusion"}
	srv := startServe(t, env, "--listen", "127.0.0.1:0", "--jwks-file", jwks, "--roles-claim", "realm_access.roles", "--log-format", "text")
	if strings.Contains(srv.logs.String(), "development tokens") {
		t.Fatalf("development tokens trusted with a JWKS configured:\n%s", srv.logs)
	}
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": "https://idp.example", "aud": "perfusion", "sub": "staff-1",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "realm_access": map[string]any{"roles": []string{"perfusionist"}}, "sites": []string{"MAIN"}})
	tok.Header["kid"] = "idp-1"
	signed, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(srv.addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitServing(t, conn)
	cases := pb.NewCaseServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+signed)
	if _, err := cases.ListCases(ctx, &pb.ListCasesRequest{}); err != nil {
		t.Fatalf("provider token: %v", err)
	}
	a, out, _ := testApp(map[string]string{envDataDir: dir})
	if code := a.run(context.Background(), []string{"token", "--subject", "dev", "--roles", "admin"}); code != exitOK {
		t.Fatalf("token exited %d", code)
	}
	ctx = metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+strings.TrimSpace(out.String()))
	if _, err := cases.ListCases(ctx, &pb.ListCasesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("development token with a JWKS configured: %v", err)
	}
}

// TestAuthFlagErrors: contradictory or incomplete settings are usage
// errors before anything starts.
func TestAuthFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--jwks-file", "x.json"},
		{"--jwks-file", "x.json", "--jwks-url", "https://idp/jwks", "--jwt-issuer", "i", "--jwt-audience", "a"},
		{"--jwks-url", "https://idp/jwks", "--jwt-issuer", "i", "--jwt-audience", "a", "--dev-tokens"},
		{"--tls-cert", "c.pem"},
		{"--tls-client-ca", "ca.pem"},
		{"--break-glass-duration", "0s"},
		{"--database-url", "postgres://127.0.0.1:1/x"},
	} {
		a, _, errb := testApp(map[string]string{envDataDir: dir})
		if code := a.run(context.Background(), append([]string{"serve"}, args...)); code != exitUsage {
			t.Errorf("serve %v exited %d, want %d: %s", args, code, exitUsage, errb)
		}
	}
	for _, args := range [][]string{{"token"}, {"token", "--subject", "x"}, {"token", "--subject", "x", "--roles", "surgeon"}, {"token", "--subject", "x", "--roles", "admin", "--ttl", "1000h"}} {
		a, _, _ := testApp(map[string]string{envDataDir: dir})
		if code := a.run(context.Background(), args); code != exitUsage {
			t.Errorf("%v exited %d, want %d", args, code, exitUsage)
		}
	}
}
