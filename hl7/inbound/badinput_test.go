package inbound_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"perfusion/hl7/inbound"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
)

// TestBadInput: input that is not HL7, a truncated frame, a 10 MB message
// and a sender not on the allowlist close the connection; a message whose
// header cannot be parsed (wrong encoding characters, text that is not
// UTF-8) is answered AE naming its control id; content errors (a birth date
// with SQL in it, a weight in an unknown unit, an identifier without an
// authority) are AE with the field named. None of them changes the record
// or the patient index; SQL in a text field is stored as the text it is.
func TestBadInput(t *testing.T) {
	forBackends(t, func(t *testing.T, b store.Backend) {
		e := newEnv(t, b)
		ctx := context.Background()
		good := e.fixture("adt_a08.hl7", nil)

		// Connection-level refusals: nothing journaled.
		for name, send := range map[string]func(c *conn){
			"not HL7 in a frame": func(c *conn) { _ = writeRaw(c, "\x0bGET / HTTP/1.1\r\nHost: x\r\n\x1c\r") },
			"not MLLP at all":    func(c *conn) { _ = writeRaw(c, "GET / HTTP/1.1\r\n\r\n") },
			"truncated frame": func(c *conn) {
				_ = writeRaw(c, "\x0b"+good[:len(good)/2])
				_ = c.c.(*net.TCPConn).CloseWrite()
			},
			"10 MB message": func(c *conn) {
				big := "\x0b" + strings.TrimSuffix(good, "\r") + "\rNTE|1||" + strings.Repeat("A", 10<<20) + "\r\x1c\r"
				_ = writeRaw(c, big) // the server stops reading past its limit: the write may fail
			},
		} {
			c := e.dial()
			send(c)
			if !c.closed() {
				t.Fatalf("%s: the connection stayed open", name)
			}
		}
		if n := len(e.journal()); n != 0 {
			t.Fatalf("refused input was journaled: %d rows", n)
		}

		c := e.dial()
		// Header errors: AE with the control id, nothing journaled.
		for name, tc := range map[string]struct {
			msg  string
			code v2.ErrorCode
		}{
			"duplicate encoding characters": {strings.Replace(good, "MSH|^~\\&|", "MSH|^^\\&|", 1), v2.ErrDataType},
			"three encoding characters":     {strings.Replace(good, "MSH|^~\\&|", "MSH|^~\\|", 1), v2.ErrDataType},
			"not UTF-8, no MSH-18":          {strings.Replace(good, "^John^", "^J\xf6hn^", 1), v2.ErrDataType},
			"no control id":                 {ctlPattern.ReplaceAllString(good, "||"), v2.ErrRequiredFieldMissing},
		} {
			a, _ := c.send(e.fresh(tc.msg))
			if a.Code != v2.AE || a.ErrorCode != tc.code || (tc.code != v2.ErrRequiredFieldMissing && !strings.HasPrefix(a.ControlID, "CTL")) {
				t.Fatalf("%s: ACK %+v", name, a)
			}
		}
		if n := len(e.journal()); n != 0 {
			t.Fatalf("messages without a usable header were journaled: %d rows", n)
		}

		// Latin-1 declared in MSH-18 is converted.
		latin := strings.Replace(e.fresh(good), "|P|2.5.1", "|P|2.5.1||||||8859/1", 1)
		latin = strings.Replace(latin, "^John^", "^J\xf6hn^", 1)
		a, _ := c.send(latin)
		wantAck(t, a, v2.AA, "")
		if p, err := e.ib.InboundPatient(ctx, "HOSP", "MRN-1001"); err != nil || p.GivenName != "Jöhn" {
			t.Fatalf("Latin-1: %+v %v", p, err)
		}

		// Content errors: AE naming the field, the record untouched.
		start, _ := startAt(7, 30)
		a, _ = c.send(e.fixture("siu_s12.hl7", vars{"START": start}))
		wantAck(t, a, v2.AA, "")
		pc := e.caseOf("MAIN", "A-100^OPTIME")
		index, _ := e.ib.InboundPatient(ctx, "HOSP", "MRN-1001")
		for name, tc := range map[string]struct {
			msg   string
			code  v2.ErrorCode
			where string
		}{
			"SQL in the birth date":   {e.fixture("adt_a08.hl7", vars{"DOB": "19580312' OR '1'='1"}), v2.ErrDataType, "PID-7"},
			"weight in stone":         {strings.Replace(e.fixture("adt_a08.hl7", nil), "|82|kg|", "|13|st|", 1), v2.ErrDataType, "OBX[1]-6"},
			"weight not a number":     {strings.Replace(e.fixture("adt_a08.hl7", nil), "|82|kg|", "|82;DROP TABLE cases|kg|", 1), v2.ErrDataType, "OBX[1]-5"},
			"no authority":            {strings.Replace(e.fixture("adt_a08.hl7", nil), "MRN-1001^^^HOSP^MR", "MRN-1001^^^^MR", 1), v2.ErrRequiredFieldMissing, "PID-3.4"},
			"no PID":                  {strings.Replace(e.fixture("adt_a08.hl7", nil), "\rPID|", "\rZPD|", 1), v2.ErrSegmentSequence, "PID"},
			"a start that is no time": {e.fixture("siu_s12.hl7", vars{"START": "tomorrow", "APPT": "A-9"}), v2.ErrDataType, "AIS-4"},
			"an implausible weight":   {e.fixture("adt_a08.hl7", vars{"WEIGHT": "7000"}), v2.ErrDataType, "OBX"},
		} {
			a, _ := c.send(tc.msg)
			if a.Code != v2.AE || a.ErrorCode != tc.code || !strings.Contains(a.Text, tc.where) {
				t.Fatalf("%s: ACK %+v, want AE %s at %s", name, a, tc.code, tc.where)
			}
			if strings.Contains(a.Text, "1958") || strings.Contains(a.Text, "MRN-1001") {
				t.Fatalf("%s: the ACK text carries patient data: %q", name, a.Text)
			}
		}
		if now := e.get(pc.ID); now.Head != pc.Head {
			t.Fatal("a refused message changed the planned case")
		}
		if p, _ := e.ib.InboundPatient(ctx, "HOSP", "MRN-1001"); p.WeightKg != index.WeightKg || p.BirthDate != index.BirthDate {
			t.Fatalf("a refused message changed the patient index: %+v", p)
		}
		for _, m := range e.journal() {
			if m.AckCode == "AE" && len(m.Outcome.Changes) != 0 {
				t.Fatalf("an AE journal row lists changes: %+v", m.Outcome)
			}
		}

		// SQL in text fields is text: stored verbatim, the tables intact.
		bobby := "Robert'); DROP TABLE cases;--"
		a, _ = c.send(e.fixture("adt_a08.hl7", vars{"FAMILY": bobby}))
		wantAck(t, a, v2.AA, "")
		if got := e.get(pc.ID).Details.Patient.FamilyName; got != bobby {
			t.Fatalf("family name %q", got)
		}
		a, _ = c.send(e.fixture("siu_s12.hl7", vars{"APPT": "X'; DELETE FROM cases; --", "START": start, "ROOM": "CVOR-5"}))
		wantAck(t, a, v2.AA, "")
		if n := e.caseCount(); n != 2 {
			t.Fatalf("%d cases after SQL in fields, want 2", n)
		}
		e.noPHI(bobby, "MRN-1001", "Jöhn")
	})
}

func writeRaw(c *conn, s string) error {
	_ = c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.c.Write([]byte(s))
	return err
}

// pki is a test CA with a server certificate for 127.0.0.1 and client
// certificates by common name.
type pki struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	server tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{ca: ca, caKey: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.server = p.cert(t, "localhost", true)
	return p
}

func (p *pki) cert(t *testing.T, cn string, server bool) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage, tmpl.IPAddresses = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func withTLS(t *testing.T, p *pki) envOption {
	return func(_ *inbound.Config, l *inbound.ListenerConfig) {
		if p != nil {
			l.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool}
		}
	}
}

// TestAllowlist: by address, and by client certificate over TLS: the
// allowed engine's messages are answered, an address or certificate not
// on the list is closed before anything is read, a client without a
// certificate fails the handshake; nothing of theirs is stored.
func TestAllowlist(t *testing.T) {
	forBackends(t, func(t *testing.T, b store.Backend) {
		// By address: 127.0.0.1 is not 10.9.9.0/24.
		e := newEnv(t, b, func(_ *inbound.Config, l *inbound.ListenerConfig) {
			allow, err := inbound.ParseAllowlist("engine=10.9.9.0/24")
			if err != nil {
				t.Fatal(err)
			}
			l.Allow = allow
		})
		c := e.dial()
		_ = writeRaw(c, "\x0b"+e.fixture("adt_a08.hl7", nil)+"\x1c\r")
		if !c.closed() {
			t.Fatal("a sender not allowed was answered")
		}
		if n := len(e.journal()); n != 0 {
			t.Fatalf("%d journal rows from a sender not allowed", n)
		}
		if !strings.Contains(e.logs.String(), "sender not allowed") {
			t.Fatal("the refusal is not logged")
		}
	})
	forBackends(t, func(t *testing.T, b store.Backend) {
		p := newPKI(t)
		e := newEnv(t, b, withTLS(t, p), func(_ *inbound.Config, l *inbound.ListenerConfig) {
			allow, err := inbound.ParseAllowlist("cn:engine-1")
			if err != nil {
				t.Fatal(err)
			}
			l.Allow = allow
		})
		client := func(cn string) *tls.Config {
			cfg := &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
			if cn != "" {
				cfg.Certificates = []tls.Certificate{p.cert(t, cn, false)}
			}
			return cfg
		}
		ok, err := dialTLS(t, e.l.Addr().String(), client("engine-1"))
		if err != nil {
			t.Fatal(err)
		}
		a, _ := ok.send(e.fixture("adt_a08.hl7", nil))
		wantAck(t, a, v2.AA, "")
		rows := e.journal()
		if len(rows) != 1 || rows[0].Sender != "engine-1" {
			t.Fatalf("journal %+v", rows)
		}
		if bad, err := dialTLS(t, e.l.Addr().String(), client("intruder")); err == nil {
			_ = writeRaw(bad, "\x0b"+e.fixture("adt_a08.hl7", nil)+"\x1c\r")
			if !bad.closed() {
				t.Fatal("a certificate not on the allowlist was answered")
			}
		}
		if none, err := dialTLS(t, e.l.Addr().String(), client("")); err == nil {
			_ = writeRaw(none, "\x0b"+e.fixture("adt_a08.hl7", nil)+"\x1c\r")
			if !none.closed() {
				t.Fatal("a client without a certificate was answered")
			}
		}
		if n := len(e.journal()); n != 1 {
			t.Fatalf("%d journal rows, want only the allowed engine's", n)
		}
	})
}
