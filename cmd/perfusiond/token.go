package main

import (
	"context"
	"fmt"
	"time"

	"perfusion/server"
)

// token prints a development token signed by the key in the data
// directory (created on first use), which `perfusiond serve` trusts with
// the embedded store or --dev-tokens. It is how the walk-through logs in
// without an identity provider.
func (a *app) token(_ context.Context, args []string) error {
	fs := a.newFlagSet("token", "token --subject NAME --roles R[,R] [--sites S[,S]] [flags]")
	env := envFlags{}
	c := a.commonFlags(fs, env)
	subject := fs.String("subject", "", "who the token names (a staff id or a device id)")
	roles := fs.String("roles", "", "comma-separated roles: perfusionist, anesthesiologist, reviewer, device, interface, admin, identified")
	sites := fs.String("sites", "MAIN", "comma-separated sites the holder may reach, * for all")
	ttl := fs.Duration("ttl", 12*time.Hour, "how long the token is valid")
	if err := a.parse(fs, env, args); err != nil {
		return err
	}
	if *subject == "" || *roles == "" || *ttl <= 0 || *ttl > 7*24*time.Hour {
		return usageErrorf("--subject and --roles are required; --ttl must be positive and at most 168h")
	}
	known := map[server.Role]bool{}
	for _, r := range server.AllRoles() {
		known[r] = true
	}
	claims := server.DevTokenClaims{Subject: *subject, Sites: splitList(*sites), TTL: *ttl}
	for _, r := range splitList(*roles) {
		if !known[server.Role(r)] {
			return usageErrorf("unknown role %q", r)
		}
		claims.Roles = append(claims.Roles, server.Role(r))
	}
	key, err := server.LoadOrCreateDevKey(c.dataDir)
	if err != nil {
		return err
	}
	tok, err := key.Issue(claims, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(a.stdout, tok)
	return err
}
