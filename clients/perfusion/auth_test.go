package perfusion_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
	"perfusion/clients/perfusion"
	"perfusion/server"
	"perfusion/server/servertest"
)

// TestTokenFileRotation: a token file is re-read when it changes, so a
// long-running client follows the tokens rotated into it.
func TestTokenFileRotation(t *testing.T) {
	dir := t.TempDir()
	key, err := server.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := server.NewJWTAuthenticator(server.JWTConfig{Keys: key.Keys(), Issuer: server.DevIssuer, Audience: server.DevAudience})
	if err != nil {
		t.Fatal(err)
	}
	addr := servertest.Start(t, func(c *server.Config) { c.Authenticator = auth })
	path := filepath.Join(dir, "token")
	write := func(issued time.Time, ttl time.Duration) {
		t.Helper()
		tok, err := key.Issue(server.DevTokenClaims{Subject: "gateway-1", Roles: []server.Role{server.RolePerfusionist}, Sites: []string{"MAIN"}, TTL: ttl}, issued)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(time.Now(), time.Hour)
	opts, err := perfusion.Credentials{TokenFile: path}.Options(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := perfusion.Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	list := func() error {
		_, err := c.CaseService().ListCases(ctx, &pb.ListCasesRequest{})
		return err
	}
	if err := list(); err != nil {
		t.Fatalf("first token: %v", err)
	}
	write(time.Now().Add(-2*time.Hour), time.Hour) // an expired token rotated in
	if err := list(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("after an expired token was written: %v, want Unauthenticated", err)
	}
	write(time.Now(), time.Hour)
	if err := list(); err != nil {
		t.Fatalf("after a fresh token was written: %v", err)
	}
	if _, err := (perfusion.Credentials{TokenFile: filepath.Join(dir, "missing")}).Options(nil); err == nil {
		t.Fatal("a missing token file was accepted")
	}
}
