package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"perfusion/server"
	"perfusion/server/servertest"
)

// writeCert issues a certificate for cn signed by ca (self-signed when ca
// is nil) and writes cert and key as PEM into dir.
func writeCert(t *testing.T, dir, name, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, isServer bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	switch {
	case ca == nil:
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
		ca, caKey = tmpl, key
	case isServer:
		tmpl.ExtKeyUsage, tmpl.IPAddresses = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []net.IP{net.ParseIP("127.0.0.1")}
	default:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, key
}

// TestTokenAndTLS: perfusionctl over TLS 1.3 with --ca-file and a token
// from --token-file or PERFUSION_TOKEN; a gateway's client certificate
// (--cert, --key) is a device principal; plaintext to a TLS server
// fails.
func TestTokenAndTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", "Test CA", nil, nil, false)
	writeCert(t, dir, "server", "perfusiond", ca, caKey, true)
	writeCert(t, dir, "gateway", "gateway-hlm-1", ca, caKey, false)
	f := func(n string) string { return filepath.Join(dir, n) }
	tlsCfg, err := server.TLSConfig(f("server.crt"), f("server.key"), f("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := server.LoadOrCreateDevKey(dir)
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
	addr := servertest.Start(t, func(c *server.Config) {
		c.TLS = tlsCfg
		c.Authenticator = certAuth
	})
	tok, err := key.Issue(server.DevTokenClaims{Subject: "perfusionist-1", Roles: []server.Role{server.RolePerfusionist}, Sites: []string{"MAIN"}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(f("token"), []byte(tok+"\n"), 0o600)

	ctlAs := func(env map[string]string, args ...string) result {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"--addr", addr, "--timeout", "5s"}, args...), &out, &errb)
		t.Logf("perfusionctl %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
		return result{code, out.String(), errb.String()}
	}
	none := map[string]string{"PERFUSION_TOKEN": "", "PERFUSION_PRINCIPAL": ""}
	create := []string{"case", "create", "--kind", "cpb", "--site", "MAIN", "--room", "OR-3", "--start", "2026-11-28T08:00:00Z", "--height", "170", "--weight", "70"}

	r := ctlAs(none, append([]string{"--ca-file", f("ca.crt"), "--token-file", f("token")}, create...)...)
	mustCode(t, r, exitOK)
	caseID := uuidRE.FindString(r.stdout)
	mustCode(t, ctlAs(map[string]string{"PERFUSION_TOKEN": tok}, "--ca-file", f("ca.crt"), "case", "show", caseID), exitOK)

	// The gateway's certificate: authenticated as a device principal,
	// which may not read cases.
	r = ctlAs(none, "--ca-file", f("ca.crt"), "--cert", f("gateway.crt"), "--key", f("gateway.key"), "case", "show", caseID)
	if r.code == exitOK || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("gateway certificate reading a case: exit %d, %s", r.code, r.stderr)
	}
	// No credentials at all: refused before dialing.
	mustCode(t, ctlAs(none, "--ca-file", f("ca.crt"), "case", "show", caseID), exitUsage)
	// Plaintext to the TLS server.
	r = ctlAs(map[string]string{"PERFUSION_TOKEN": tok}, "case", "show", caseID)
	if r.code == exitOK {
		t.Fatal("plaintext to a TLS server succeeded")
	}
	// A certificate without its key is a usage error.
	mustCode(t, ctlAs(none, "--ca-file", f("ca.crt"), "--cert", f("gateway.crt"), "case", "show", caseID), exitUsage)
}
