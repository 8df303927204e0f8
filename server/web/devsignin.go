package web

import (
	"encoding/json"
	"mime"
	"net"
	"net/http"
	"slices"
	"time"

	"perfusion/server"
)

// Bounds of a development token's life, in seconds: short ones let tests
// watch a token expire, and no token outlives what `perfusiond token`
// allows.
const (
	devMinTTL     = 1
	devMaxTTL     = 7 * 24 * 3600
	devDefaultTTL = 12 * 3600
)

// devRoles are the roles the development sign-in grants: people's roles.
// Device and interface principals are certificate-only names, never a
// sign-in's.
var devRoles = []server.Role{server.RolePerfusionist, server.RoleAnesthesiologist, server.RoleReviewer, server.RoleAdmin, server.RoleIdentified}

type devSignInRequest struct {
	Subject    string   `json:"subject"`
	Roles      []string `json:"roles"`
	Sites      []string `json:"sites"`
	TTLSeconds int      `json:"ttlSeconds"`
}

type devSignInResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

type problem struct {
	Error string `json:"error"`
}

// devSignIn mints a development token, as `perfusiond token` does, for
// the tablet on a developer's machine. Its auth_time is now, so signing in
// again is the fresh authentication SignCase asks for.
//
// Only a same-origin request on loopback gets one: the Host must be a
// loopback name (a DNS-rebinding page names its own host), and the body
// must be JSON, which no cross-site form can send without a CORS
// preflight that this handler never grants.
func (h *handler) devSignIn(w http.ResponseWriter, r *http.Request) {
	if h.cfg.DevKey == nil {
		writeJSON(w, http.StatusNotFound, problem{"development sign-in is off: sign in with the identity provider"})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSON(w, http.StatusMethodNotAllowed, problem{"use POST"})
		return
	}
	if !loopbackHost(r.Host) {
		h.cfg.Logger.Warn("development sign-in refused: not a loopback host")
		writeJSON(w, http.StatusForbidden, problem{"development sign-in answers only on a loopback address (localhost, 127.0.0.1, [::1])"})
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, problem{"send application/json"})
		return
	}
	var req devSignInRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, problem{"body must be {\"subject\", \"roles\", \"sites\", \"ttlSeconds\"}"})
		return
	}
	claims, msg := req.claims()
	if msg != "" {
		writeJSON(w, http.StatusBadRequest, problem{msg})
		return
	}
	now := h.cfg.Now()
	tok, err := h.cfg.DevKey.Issue(claims, now)
	if err != nil {
		h.cfg.Logger.Error("development sign-in", "err", err.Error())
		writeJSON(w, http.StatusInternalServerError, problem{"could not sign a token"})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, devSignInResponse{Token: tok, ExpiresAt: now.Add(claims.TTL).UTC()})
}

// claims checks the request and turns it into token claims, or says what
// is wrong with it.
func (req devSignInRequest) claims() (server.DevTokenClaims, string) {
	c := server.DevTokenClaims{Subject: req.Subject, Sites: req.Sites, TTL: time.Duration(req.TTLSeconds) * time.Second}
	if !server.ValidPrincipalName(req.Subject) {
		return c, "subject must be 1 to 128 printable characters and not a device or interface name"
	}
	if len(req.Roles) == 0 {
		return c, "roles: give at least one of perfusionist, anesthesiologist, reviewer, admin, identified"
	}
	for _, r := range req.Roles {
		if !slices.Contains(devRoles, server.Role(r)) {
			return c, "roles: " + r + " is not a role a person signs in with (perfusionist, anesthesiologist, reviewer, admin, identified)"
		}
		c.Roles = append(c.Roles, server.Role(r))
	}
	if len(c.Sites) == 0 {
		c.Sites = []string{"MAIN"}
	}
	for _, s := range c.Sites {
		if s == "" || len(s) > 64 {
			return c, "sites: each site is 1 to 64 characters"
		}
	}
	switch {
	case req.TTLSeconds == 0:
		c.TTL = devDefaultTTL * time.Second
	case req.TTLSeconds < devMinTTL || req.TTLSeconds > devMaxTTL:
		return c, "ttlSeconds must be from 1 to 604800"
	}
	return c, ""
}

// loopbackHost reports whether an HTTP Host names this machine only.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
