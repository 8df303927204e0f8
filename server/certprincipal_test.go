package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
)

// TestCertificatePrincipal: a client certificate is a service principal
// named in its role's namespace, so a gateway whose common name equals a
// person's id ("perf-main") never writes as that person; it has the one
// configured role on the configured sites only; a token may not take a
// service principal's name; and a mapping without explicit sites, with
// all sites, or with the retired integration role or a person's role is
// refused.
func TestCertificatePrincipal(t *testing.T) {
	for _, bad := range []struct {
		role  server.Role
		sites []string
		want  string
	}{
		{server.RetiredRoleIntegration, []string{"MAIN"}, `"device"`},
		{server.RolePerfusionist, []string{"MAIN"}, "tokens"},
		{server.RoleDevice, nil, "no all-sites default"},
		{server.RoleDevice, []string{"*"}, "not allowed"},
		{server.RoleInterface, []string{"MAIN", "*"}, "not allowed"},
	} {
		if _, err := server.NewCertAuthenticator(bad.role, bad.sites, nil); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("certificates as %s on %v: %v, want a refusal saying %q", bad.role, bad.sites, err, bad.want)
		}
	}

	dir := t.TempDir()
	ca := newCA(t, "Hospital Devices CA")
	now := time.Now()
	certFile, keyFile := writePEM(t, dir, "server", ca.issue(t, "perfusiond", true, now.Add(-time.Hour), now.Add(time.Hour)))
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
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
	e := start(t, sqliteBackend(t), func(c *server.Config) { c.TLS, c.Authenticator = tlsCfg, certAuth })

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	dial := func(certs ...tls.Certificate) *grpc.ClientConn {
		conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: certs})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	tokenConn := dial()
	tok := func(sub string, roles []server.Role, sites ...string) context.Context {
		s, err := key.Issue(server.DevTokenClaims{Subject: sub, Roles: roles, Sites: sites, TTL: time.Hour}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return withBearer(context.Background(), s)
	}
	person := tok("perf-main", rolePerf, "MAIN", "NORTH")
	cases := pb.NewCaseServiceClient(tokenConn)
	create := func(site string) string {
		resp, err := cases.CreateCase(person, &pb.CreateCaseRequest{CaseId: uuid.NewString(), Kind: pb.CaseKind_CASE_KIND_CPB, Site: site, Room: "OR-1",
			ScheduledStart: timestamppb.New(time.Now().Truncate(time.Minute)), Details: sampleDetails()})
		if err != nil {
			t.Fatalf("create case: %v", err)
		}
		return resp.GetCase().GetCaseId()
	}
	main, north := create("MAIN"), create("NORTH")

	// The gateway's certificate has the person's id as its common name.
	gwConn := dial(ca.issue(t, "perf-main", false, now.Add(-time.Hour), now.Add(time.Hour)))
	gw := pb.NewChartingServiceClient(gwConn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ss, err := gw.StreamSamples(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ss.Send(openMsg(main, "hlm-1"))
	if _, err := ss.Recv(); err != nil {
		t.Fatalf("gateway opening a MAIN case: %v", err)
	}
	ss.Send(batchMsg(flowBatch("hlm-1", 1, now.Add(-time.Minute).UnixMilli(), 10)))
	if _, err := ss.Recv(); err != nil {
		t.Fatalf("gateway batch: %v", err)
	}
	ss.CloseSend()

	trail, err := pb.NewRecordServiceClient(tokenConn).GetAuditTrail(person, &pb.GetAuditTrailRequest{CaseId: main})
	if err != nil {
		t.Fatal(err)
	}
	var actors []string
	for _, ev := range trail.GetEvents() {
		actors = append(actors, ev.GetKind()+" by "+ev.GetActor())
	}
	if got := strings.Join(actors, ", "); !strings.HasSuffix(got, ", samples by device:perf-main") || strings.Count(got, "device:") != 1 {
		t.Fatalf("audit trail: %s; want the samples attributed to device:perf-main, not to the person perf-main", got)
	}
	events, err := pb.NewAccessServiceClient(tokenConn).ListAccessEvents(tok("auditor", roleAdmin), &pb.ListAccessEventsRequest{Principal: "device:perf-main"})
	if err != nil {
		t.Fatal(err)
	}
	if len(events.GetEvents()) == 0 || events.GetEvents()[0].GetVia() != server.ViaMTLS || events.GetEvents()[0].GetRoles() != "device" {
		t.Fatalf("access events of the certificate: %v", events.GetEvents())
	}

	// Only its role, only its sites.
	_, err = pb.NewCaseServiceClient(gwConn).GetCase(ctx, &pb.GetCaseRequest{CaseId: main})
	wantCode(t, "the gateway reading the patient", err, codes.PermissionDenied)
	_, err = gw.ListSources(ctx, &pb.ListSourcesRequest{CaseId: north})
	wantCode(t, "the MAIN gateway reaching a NORTH case", err, codes.PermissionDenied)
	_, err = pb.NewExportServiceClient(gwConn).RenderHL7(ctx, &pb.RenderHL7Request{CaseId: main})
	wantCode(t, "the gateway rendering HL7", err, codes.PermissionDenied)

	// A token may not pass itself off as the certificate.
	_, err = pb.NewChartingServiceClient(tokenConn).ListSources(tok("device:perf-main", []server.Role{server.RoleDevice}, "MAIN"), &pb.ListSourcesRequest{CaseId: main})
	wantCode(t, "a token naming a service principal", err, codes.Unauthenticated)
}
