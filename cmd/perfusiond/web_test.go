package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
)

// webCall is a Connect client of one unary method on the browser face,
// speaking protocol opts (Connect JSON by default, gRPC-Web on request)
// as the tablet does, with a bearer token.
func webCall[Req, Res any](t *testing.T, base, method, token string, req *Req, opts ...connect.ClientOption) (*Res, error) {
	t.Helper()
	c := connect.NewClient[Req, Res](http.DefaultClient, base+method, opts...)
	r := connect.NewRequest(req)
	if token != "" {
		r.Header().Set("Authorization", "Bearer "+token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.CallUnary(ctx, r)
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// devSignIn asks the browser face for a development token.
func devSignIn(t *testing.T, base, host string, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/tablet/dev-sign-in", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("dev sign-in answered %d without JSON: %v", resp.StatusCode, err)
	}
	return resp, out
}

// TestBrowserFace serves the embedded quick start and uses its browser
// face the way the tablet does: its files, its configuration, the
// development sign-in, and the API over Connect and gRPC-Web through the
// same interceptors as native gRPC (authentication, validation with field
// violations, the access audit).
func TestBrowserFace(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, map[string]string{envDataDir: dir}, "--log-format", "text", "--metrics-do2i-threshold", "310")
	if srv.web == nil {
		t.Fatal("the browser face is not listening by default")
	}
	base := "http://" + srv.web.String()
	createCase(t, srv.addr, dir) // waits until the store is serving

	t.Run("tablet files", func(t *testing.T) {
		for _, path := range []string{"/", "/index.html", "/case/" + uuid.NewString()} {
			req, _ := http.NewRequest(http.MethodGet, base+path, nil)
			req.Header.Set("Accept-Encoding", "gzip")
			resp, err := http.DefaultTransport.RoundTrip(req) // no transparent decompression
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
			}
			if resp.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Contains(bytes.ToLower(body), []byte("<!doctype html>")) {
				t.Errorf("GET %s: not the tablet's index.html: %.80q", path, body)
			}
		}
		for path, want := range map[string]int{"/no-such-file.js": http.StatusNotFound, "/perfusion.v1.CaseService/NoSuchMethod": http.StatusNotFound} {
			resp, err := http.Post(base+path, "application/json", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if path == "/no-such-file.js" {
				want = http.StatusMethodNotAllowed // POST to a file
			}
			if resp.StatusCode != want {
				t.Errorf("POST %s: %d, want %d", path, resp.StatusCode, want)
			}
		}
	})

	t.Run("config", func(t *testing.T) {
		resp, err := http.Get(base + "/tablet/config.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var cfg struct {
			DevSignIn             bool            `json:"devSignIn"`
			OIDC                  json.RawMessage `json:"oidc"`
			SignAuthMaxAgeSeconds int             `json:"signAuthMaxAgeSeconds"`
			DO2iThreshold         float64         `json:"do2iThreshold"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil {
			t.Fatal(err)
		}
		if !cfg.DevSignIn || string(cfg.OIDC) != "null" || cfg.SignAuthMaxAgeSeconds <= 0 || cfg.DO2iThreshold != 310 {
			t.Errorf("config on the embedded quick start: %+v (oidc %s)", cfg, cfg.OIDC)
		}
	})

	resp, out := devSignIn(t, base, "", `{"subject":"perfusionist-7","roles":["perfusionist"],"sites":["MAIN"]}`)
	token, _ := out["token"].(string)
	if resp.StatusCode != http.StatusOK || token == "" {
		t.Fatalf("dev sign-in: %d %v", resp.StatusCode, out)
	}

	t.Run("dev sign-in refusals", func(t *testing.T) {
		for name, c := range map[string]struct {
			host, body string
			code       int
		}{
			"rebound host":      {"evil.example:80", `{"subject":"x","roles":["perfusionist"]}`, http.StatusForbidden},
			"device role":       {"", `{"subject":"x","roles":["device"]}`, http.StatusBadRequest},
			"device name":       {"", `{"subject":"device:pump-1","roles":["perfusionist"]}`, http.StatusBadRequest},
			"no roles":          {"", `{"subject":"x"}`, http.StatusBadRequest},
			"ttl beyond a week": {"", `{"subject":"x","roles":["perfusionist"],"ttlSeconds":604801}`, http.StatusBadRequest},
			"unknown field":     {"", `{"subject":"x","roles":["perfusionist"],"admin":true}`, http.StatusBadRequest},
		} {
			resp, out := devSignIn(t, base, c.host, c.body)
			if resp.StatusCode != c.code || out["token"] != nil {
				t.Errorf("%s: %d %v, want %d and no token", name, resp.StatusCode, out, c.code)
			}
		}
		resp, err := http.Post(base+"/tablet/dev-sign-in", "text/plain", strings.NewReader(`{"subject":"x","roles":["perfusionist"]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("a form-like text/plain post: %d, want 415", resp.StatusCode)
		}
	})

	caseID := uuid.NewString()
	t.Run("connect and grpc-web", func(t *testing.T) {
		create := &pb.CreateCaseRequest{CaseId: caseID, Kind: pb.CaseKind_CASE_KIND_CPB, Site: "MAIN", Room: "OR-3", ScheduledStart: timestamppb.Now()}
		if _, err := webCall[pb.CreateCaseRequest, pb.CreateCaseResponse](t, base, "/perfusion.v1.CaseService/CreateCase", "", create, connect.WithProtoJSON()); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("without a token: %v, want Unauthenticated", err)
		}
		if _, err := webCall[pb.CreateCaseRequest, pb.CreateCaseResponse](t, base, "/perfusion.v1.CaseService/CreateCase", "not.a.token", create, connect.WithProtoJSON()); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("with a forged token: %v, want Unauthenticated", err)
		}
		got, err := webCall[pb.CreateCaseRequest, pb.CreateCaseResponse](t, base, "/perfusion.v1.CaseService/CreateCase", token, create, connect.WithProtoJSON())
		if err != nil || got.GetCase().GetCaseId() != caseID {
			t.Fatalf("CreateCase over Connect JSON: %v %v", got, err)
		}
		// Bad input keeps its field violations across the transcoder.
		_, err = webCall[pb.CreateCaseRequest, pb.CreateCaseResponse](t, base, "/perfusion.v1.CaseService/CreateCase", token,
			&pb.CreateCaseRequest{CaseId: "not-a-uuid", Site: "MAIN"}, connect.WithProtoJSON())
		if !hasFieldViolation(err, "case_id") {
			t.Fatalf("bad CreateCase over Connect: %v, want InvalidArgument naming case_id", err)
		}
		// gRPC-Web, binary: the other protocol the tablet may speak.
		cases, err := webCall[pb.ListCasesRequest, pb.ListCasesResponse](t, base, "/perfusion.v1.CaseService/ListCases", token, &pb.ListCasesRequest{}, connect.WithGRPCWeb())
		if err != nil {
			t.Fatalf("ListCases over gRPC-Web: %v", err)
		}
		found := false
		for _, c := range cases.GetCases() {
			found = found || c.GetCaseId() == caseID
		}
		if !found {
			t.Errorf("ListCases over gRPC-Web does not list the case created over Connect")
		}
	})

	t.Run("watch stream", func(t *testing.T) {
		c := connect.NewClient[pb.WatchCaseRequest, pb.WatchCaseResponse](http.DefaultClient, base+"/perfusion.v1.ChartingService/WatchCase", connect.WithProtoJSON())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req := connect.NewRequest(&pb.WatchCaseRequest{CaseId: caseID})
		req.Header().Set("Authorization", "Bearer "+token)
		stream, err := c.CallServerStream(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		caughtUp := false
		for !caughtUp && stream.Receive() {
			caughtUp = stream.Msg().GetCaughtUp()
		}
		if !caughtUp {
			t.Fatalf("WatchCase over Connect ended before catching up: %v", stream.Err())
		}
	})

	t.Run("access audit", func(t *testing.T) {
		_, out := devSignIn(t, base, "", `{"subject":"auditor-1","roles":["admin"],"sites":["*"]}`)
		admin, _ := out["token"].(string)
		got, err := webCall[pb.ListAccessEventsRequest, pb.ListAccessEventsResponse](t, base, "/perfusion.v1.AccessService/ListAccessEvents", admin,
			&pb.ListAccessEventsRequest{Method: "/perfusion.v1.CaseService/CreateCase", PageSize: 100}, connect.WithProtoJSON())
		if err != nil {
			t.Fatal(err)
		}
		var allowed, refused int
		for _, e := range got.GetEvents() {
			switch {
			case e.GetPrincipal() == "perfusionist-7" && e.GetCaseId() == caseID && e.GetCode() == "OK" && e.GetReason() == "":
				allowed++
			case e.GetCode() == "Unauthenticated":
				refused++
			}
		}
		if allowed != 1 || refused < 2 {
			t.Errorf("access audit of the browser's CreateCase: %d allowed (want 1), %d refused (want ≥ 2)", allowed, refused)
		}
	})
}

// hasFieldViolation reports whether err is InvalidArgument with a
// BadRequest field violation naming field.
func hasFieldViolation(err error, field string) bool {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument {
		return false
	}
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			continue
		}
		if br, ok := v.(*errdetails.BadRequest); ok {
			for _, fv := range br.GetFieldViolations() {
				if fv.GetField() == field {
					return true
				}
			}
		}
	}
	return false
}

// TestBrowserFaceSettings: sign-in with an identity provider replaces the
// development sign-in, needs the provider's keys, and plaintext beyond
// loopback is refused on the browser port as on the gRPC one.
func TestBrowserFaceSettings(t *testing.T) {
	dir := t.TempDir()
	idp := devKeyJWKS(t, dir)
	idp[3] = "https://idp.example/realms/hospital" // --jwt-issuer: a URL, as a provider's is
	srv := startServe(t, map[string]string{envDataDir: dir}, append([]string{"--oidc-client-id", "perfusion-tablet", "--oidc-scopes", "openid profile roles"}, idp...)...)
	base := "http://" + srv.web.String()
	resp, err := http.Get(base + "/tablet/config.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		DevSignIn bool
		OIDC      *struct{ Issuer, ClientID, Scopes, Audience string }
	}
	err = json.NewDecoder(resp.Body).Decode(&cfg)
	resp.Body.Close()
	if err != nil || cfg.DevSignIn || cfg.OIDC == nil || cfg.OIDC.ClientID != "perfusion-tablet" || cfg.OIDC.Issuer == "" || cfg.OIDC.Audience == "" || cfg.OIDC.Scopes != "openid profile roles" {
		t.Fatalf("config with an identity provider: %+v %v", cfg, err)
	}
	if r, _ := devSignIn(t, base, "", `{"subject":"x","roles":["perfusionist"]}`); r.StatusCode != http.StatusNotFound {
		t.Errorf("dev sign-in beside an identity provider: %d, want 404", r.StatusCode)
	}
	page, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page.Body.Close()
	if csp := page.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self' https://idp.example;") {
		t.Errorf("the page may not reach the identity provider: %q", csp)
	}

	for name, args := range map[string][]string{
		"oidc without keys":  {"--oidc-client-id", "perfusion-tablet"},
		"plaintext http lan": {"--http-listen", "0.0.0.0:0", "--jwks-file", idp[1], "--jwt-issuer", "x", "--jwt-audience", "y"},
	} {
		a, _, errb := testApp(map[string]string{envDataDir: t.TempDir()})
		if code := a.run(context.Background(), append([]string{"serve"}, args...)); code != exitUsage {
			t.Errorf("%s: exit %d, want usage error:\n%s", name, code, errb)
		}
	}
}
