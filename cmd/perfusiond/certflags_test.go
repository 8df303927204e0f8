package main

import (
	"context"
	"strings"
	"testing"
)

// TestClientCertFlags: with --tls-client-ca every certificate the CA signs
// becomes a principal, so serve refuses to start unless its one service
// role and its sites are given explicitly: no all-sites default, no "*",
// no person's role, not both service roles, and the retired integration
// role is refused with the roles that replace it. The flags without a
// client CA are refused too (they would do nothing).
func TestClientCertFlags(t *testing.T) {
	dir := t.TempDir()
	tlsArgs := []string{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--client-cert-roles"},
		{[]string{"--client-cert-roles", "device"}, "no all-sites default"},
		{[]string{"--client-cert-roles", "device", "--client-cert-sites", "*"}, "not allowed"},
		{[]string{"--client-cert-roles", "integration", "--client-cert-sites", "MAIN"}, `use "device" for device gateways or "interface"`},
		{[]string{"--client-cert-roles", "device,interface", "--client-cert-sites", "MAIN"}, "one role"},
		{[]string{"--client-cert-roles", "perfusionist", "--client-cert-sites", "MAIN"}, "people authenticate with tokens"},
	} {
		a, _, errb := testApp(map[string]string{envDataDir: dir})
		args := append(append([]string{"serve"}, tlsArgs...), tc.args...)
		if code := a.run(context.Background(), args); code != exitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("serve %v: exit %d, %q; want a usage error saying %q", tc.args, code, errb, tc.want)
		}
	}
	a, _, errb := testApp(map[string]string{envDataDir: dir, envClientCertSites: "MAIN"})
	if code := a.run(context.Background(), []string{"serve", "--client-cert-roles", "device"}); code != exitUsage || !strings.Contains(errb.String(), "need --tls-client-ca") {
		t.Errorf("client-cert flags without a client CA: exit %d, %q", code, errb)
	}
	for _, ok := range []authConfig{
		{tlsCert: "c", tlsKey: "k", tlsClientCA: "ca", clientCertRoles: "device", clientCertSites: "MAIN"},
		{tlsCert: "c", tlsKey: "k", tlsClientCA: "ca", clientCertRoles: "interface", clientCertSites: "MAIN, NORTH"},
	} {
		if err := ok.checkClientCerts(); err != nil {
			t.Errorf("%s on %s: %v", ok.clientCertRoles, ok.clientCertSites, err)
		}
	}
}
