package web

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"perfusion/server"
)

func testHandler(t testing.TB) http.Handler {
	t.Helper()
	key, err := server.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h, err := Handler(Config{API: api, DevKey: key, SignAuthMaxAge: 5 * time.Minute, Logger: slog.New(slog.DiscardHandler),
		App: fstest.MapFS{"index.html": {Data: []byte("<!doctype html><p>tablet")}, "app.js": {Data: []byte(strings.Repeat("console.log(1);", 100))}}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRouting: API paths go to the API handler and nowhere else; the
// single-page app's own routes get index.html; a missing asset is 404.
func TestRouting(t *testing.T) {
	h := testHandler(t)
	for _, c := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"POST", "/perfusion.v1.CaseService/CreateCase", http.StatusTeapot, ""},
		{"POST", "/grpc.health.v1.Health/Check", http.StatusTeapot, ""},
		{"GET", "/", 200, "tablet"},
		{"GET", "/case/123", 200, "tablet"},
		{"GET", "/app.js", 200, "console.log"},
		{"GET", "/missing.js", 404, ""},
		{"DELETE", "/", 405, ""},
		{"GET", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", 404, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.body) {
			t.Errorf("%s %s: %d %.40q, want %d with %q", c.method, c.path, rec.Code, rec.Body.String(), c.code, c.body)
		}
	}
}

// FuzzDevSignIn: whatever is posted, the development sign-in answers 200
// with a token, or a 4xx with a reason and no token; never a 5xx.
func FuzzDevSignIn(f *testing.F) {
	for _, s := range []string{
		`{"subject":"pat","roles":["perfusionist"],"sites":["MAIN"]}`,
		`{"subject":"pat","roles":["device"]}`,
		`{"subject":"","roles":[]}`,
		`{"subject":"pat","roles":["admin"],"ttlSeconds":-1}`,
		`{"subject":"a\u0000b","roles":["reviewer"]}`,
		`[1,2,3]`, `null`, `{`, ``,
	} {
		f.Add(s)
	}
	h := testHandler(f)
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/tablet/dev-sign-in", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Host = "127.0.0.1:7071"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer is not JSON: %d %q", rec.Code, rec.Body.String())
		}
		switch {
		case rec.Code == http.StatusOK:
			if tok, _ := out["token"].(string); tok == "" {
				t.Fatalf("200 without a token for %q", body)
			}
		case rec.Code >= 400 && rec.Code < 500:
			if out["token"] != nil || out["error"] == "" {
				t.Fatalf("%d with a token or without a reason for %q: %v", rec.Code, body, out)
			}
		default:
			t.Fatalf("%d for %q", rec.Code, body)
		}
	})
}
