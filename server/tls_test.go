package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
)

// testCA is a certificate authority for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a leaf certificate valid from notBefore to notAfter.
func (ca *testCA) issue(t *testing.T, cn string, server bool, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, dir, name string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	kder, _ := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// TestMutualTLS: TLS 1.3 only; a gateway's certificate from the client CA
// makes it a device principal; none falls back to tokens; an expired
// one or one from another CA fails the handshake.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := newCA(t, "Hospital Devices CA"), newCA(t, "Someone Else CA")
	now := time.Now()
	certFile, keyFile := writePEM(t, dir, "server", ca.issue(t, "perfusiond", true, now.Add(-time.Hour), now.Add(time.Hour)))
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, ca.pem, 0o600)
	tlsCfg, err := server.TLSConfig(certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := server.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	jwtAuth, err := server.NewJWTAuthenticator(server.JWTConfig{Keys: key.Keys(), Issuer: server.DevIssuer, Audience: server.DevAudience})
	if err != nil {
		t.Fatal(err)
	}
	certAuth, err := server.NewCertAuthenticator(server.RoleDevice, []string{"MAIN"}, jwtAuth)
	if err != nil {
		t.Fatal(err)
	}
	e := startTLS(t, tlsCfg, certAuth)

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	dial := func(cfg *tls.Config) pb.CaseServiceClient {
		cfg.RootCAs, cfg.ServerName = roots, "127.0.0.1"
		conn, err := grpc.NewClient(e, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return pb.NewCaseServiceClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A gateway with a good certificate is a device principal: it
	// may not list cases (a clinician's read), which proves it was
	// authenticated as itself rather than refused.
	gw := dial(&tls.Config{Certificates: []tls.Certificate{ca.issue(t, "gateway-hlm-1", false, now.Add(-time.Hour), now.Add(time.Hour))}})
	_, err = gw.ListCases(ctx, &pb.ListCasesRequest{})
	wantCode(t, "gateway ListCases", err, codes.PermissionDenied)

	// No certificate: the token decides.
	none := dial(&tls.Config{})
	_, err = none.ListCases(ctx, &pb.ListCasesRequest{})
	wantCode(t, "no certificate, no token", err, codes.Unauthenticated)
	tok, _ := key.Issue(server.DevTokenClaims{Subject: "p1", Roles: []server.Role{server.RolePerfusionist}, Sites: []string{"MAIN"}, TTL: time.Hour}, now)
	if _, err := none.ListCases(withBearer(ctx, tok), &pb.ListCasesRequest{}); err != nil {
		t.Fatalf("no certificate, a token: %v", err)
	}

	for name, c := range map[string]tls.Certificate{
		"expired":    ca.issue(t, "gateway-old", false, now.Add(-48*time.Hour), now.Add(-24*time.Hour)),
		"wrong CA":   other.issue(t, "gateway-rogue", false, now.Add(-time.Hour), now.Add(time.Hour)),
		"not yet ok": ca.issue(t, "gateway-future", false, now.Add(24*time.Hour), now.Add(48*time.Hour)),
	} {
		// Sent whatever the server's acceptable CAs: Go's client would
		// otherwise hold back a certificate of another CA.
		send := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
		_, err := dial(&tls.Config{GetClientCertificate: send}).ListCases(ctx, &pb.ListCasesRequest{})
		if code := status.Code(err); code != codes.Unavailable {
			t.Errorf("%s certificate: %v, want the handshake to fail (Unavailable)", name, err)
		}
	}

	// TLS 1.2 is refused.
	_, err = dial(&tls.Config{MaxVersion: tls.VersionTLS12}).ListCases(ctx, &pb.ListCasesRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("TLS 1.2 client: %v, want a failed handshake", err)
	}
}

func withBearer(ctx context.Context, tok string) context.Context {
	return metadataAppend(ctx, "authorization", "Bearer "+tok)
}

// startTLS serves TLS with auth on a fresh embedded store and returns the
// address.
func startTLS(t *testing.T, cfg *tls.Config, auth server.Authenticator) string {
	t.Helper()
	e := start(t, sqliteBackend(t), func(c *server.Config) { c.TLS, c.Authenticator = cfg, auth })
	return e.addr
}

func metadataAppend(ctx context.Context, kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, kv...)
}
