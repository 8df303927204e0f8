package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBrowserHarness checks the browser helpers the scenarios rely on,
// on a page of its own: fill reaches inputs, selects and textareas through
// their events; setOffline fails every request and flips navigator.onLine
// (and back); blockAPI fails only the API paths while the page reloads;
// rewriteRequests edits a request body on its way.
func TestBrowserHarness(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><form data-testid="f"><input name="a"><select name="s"><option>x</option><option>y</option></select>
<textarea name="n"></textarea></form><p data-testid="seen"></p>
<script>
document.querySelector("form").addEventListener("input", e => { document.querySelector("[data-testid=seen]").textContent += e.target.name; });
</script>`)
	})
	mux.HandleFunc("/perfusion.v1.CaseService/GetCase", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "{}") })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b := newTab(t, "harness", 1280, 800)
	b.navigate(srv.URL)
	b.fill(testid("f"), map[string]any{"a": "1", "s": "y", "n": "note"})
	if got := b.text(testid("seen")); got != "ans" { // fields in key order
		t.Fatalf("input events seen for %q", got)
	}
	if v := eval[string](b, `document.querySelector("[name=s]").value`); v != "y" {
		t.Fatalf("select value %q", v)
	}
	fetchOK := func(path string) bool {
		return eval[bool](b, `fetch("`+path+`", {method: "POST", body: "x"}).then(r => r.ok, () => false)`)
	}
	if !fetchOK("/perfusion.v1.CaseService/GetCase") {
		t.Fatal("fetch failed online")
	}
	b.setOffline(true)
	if fetchOK("/perfusion.v1.CaseService/GetCase") || eval[bool](b, `navigator.onLine`) {
		t.Fatal("offline: a fetch succeeded or navigator.onLine stayed true")
	}
	b.setOffline(false)
	b.waitJS(5*time.Second, "online again", `navigator.onLine`)
	if !fetchOK("/perfusion.v1.CaseService/GetCase") {
		t.Fatal("fetch failed online again")
	}
	b.blockAPI(true)
	b.reload()
	b.waitVisible(testid("f"))
	if fetchOK("/perfusion.v1.CaseService/GetCase") || !fetchOK("/echo") {
		t.Fatal("blockAPI: the API path was not blocked, or another path was")
	}
	b.blockAPI(false)
	if !fetchOK("/perfusion.v1.CaseService/GetCase") {
		t.Fatal("the API path stayed blocked")
	}
	b.rewriteRequests("*/echo", func(body []byte) []byte { return []byte(strings.ToUpper(string(body))) })
	if got := eval[string](b, `fetch("/echo", {method: "POST", body: "abc"}).then(r => r.text())`); got != "ABC" {
		t.Fatalf("rewritten body %q", got)
	}
}
