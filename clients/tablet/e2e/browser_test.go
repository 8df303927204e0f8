package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium, installed by .ci/run.
const chromiumPath = "/usr/bin/chromium"

// requireChromium skips the test, naming it, when chromium is missing on
// a developer machine, and fails it in CI: a pipeline must not pass by
// skipping the browser.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s: %s is missing; .ci/run installs the chromium package", t.Name(), chromiumPath)
		}
		t.Skipf("%s: %s is missing (apt-get install chromium); skipping the browser test", t.Name(), chromiumPath)
	}
}

// tab is one browser (its own process and profile) with one page.
type tab struct {
	t       *testing.T
	ctx     context.Context
	console *lockedBuffer
	name    string
}

// defaultWait bounds each step that waits for the page.
const defaultWait = 30 * time.Second

// newTab starts a headless chromium with a fresh profile and a viewport of
// width × height CSS pixels. It is closed when the test ends; on failure
// the page's console is logged.
func newTab(t *testing.T, name string, width, height int64) *tab {
	t.Helper()
	requireChromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.Flag("no-sandbox", true),
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(int(width), int(height)),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	tb := &tab{t: t, ctx: ctx, console: &lockedBuffer{}, name: name}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s: console:\n%s", name, tail(tb.console.String(), 80))
		}
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound to ctx only
		t.Fatalf("%s: start chromium: %v", name, err)
	}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			fmt.Fprintf(tb.console, "%s %s\n", time.Now().Format("15:04:05.000"), m.String())
		}
	}()
	// Binding actions (close, sign, void) may ask with confirm(): say yes.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			fmt.Fprintf(tb.console, "dialog %s: %q (accepted)\n", ev.Type, ev.Message)
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	tb.do("set the viewport", chromedp.EmulateViewport(width, height))
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("%s: network domain: %v", name, err)
	}
	return tb
}

// do runs actions, failing the test on error with what it was doing.
func (b *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, defaultWait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %s: %v (page %s)", b.name, what, err, b.location())
	}
}

// location is the page's URL, for failure messages.
func (b *tab) location() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "unknown"
	}
	return u
}

// navigate opens a URL and waits for its load event.
func (b *tab) navigate(url string) {
	b.t.Helper()
	b.do("open "+url, chromedp.Navigate(url))
}

// reload reloads the page and waits for its load event.
func (b *tab) reload() {
	b.t.Helper()
	b.do("reload", chromedp.Reload())
}

// testid is the CSS selector of [data-testid=id].
func testid(id string) string { return fmt.Sprintf("[data-testid=%q]", id) }

// click clicks the first visible element matching sel with the mouse, at
// its centre, as a finger would. When something else covers that point (a
// toast over a dialog's button) it waits until the element is uncovered,
// up to defaultWait, and logs what covered it and for how long: a person
// would have tapped the cover.
func (b *tab) click(sel string) {
	b.t.Helper()
	b.waitVisible(sel)
	start := time.Now()
	var cover, firstCover string
	for {
		cover = call[string](b, `s => new Promise(r => {
			const e = document.querySelector(s);
			e.scrollIntoView({block: "nearest"});
			requestAnimationFrame(() => {
				const b = e.getBoundingClientRect();
				const h = document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2);
				r(!h || h === e || e.contains(h) ? "" : h.outerHTML.slice(0, 120));
			});
		})`, sel)
		if cover == "" {
			break
		}
		if firstCover == "" {
			firstCover = cover
		}
		if time.Since(start) > defaultWait {
			b.t.Fatalf("%s: %s stays covered by %s", b.name, sel, cover)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d := time.Since(start); firstCover != "" {
		b.t.Logf("%s: %s was covered for %s (by %s) before it could be tapped", b.name, sel, d.Round(100*time.Millisecond), firstCover)
	}
	b.do("click "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// waitVisible waits for an element matching sel to be visible.
func (b *tab) waitVisible(sel string) {
	b.t.Helper()
	b.do("wait for "+sel+" to show", chromedp.WaitVisible(chromedp.CSS(sel)))
}

// eval evaluates a JavaScript expression; a Promise is awaited.
func eval[T any](b *tab, expr string) T {
	b.t.Helper()
	v, err := evalErr[T](b, expr)
	if err != nil {
		short := strings.Join(strings.Fields(expr), " ")
		if len(short) > 100 {
			short = short[:100] + "…"
		}
		b.t.Fatalf("%s: eval %s: %v", b.name, short, err)
	}
	return v
}

func evalErr[T any](b *tab, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, defaultWait)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, awaitPromise))
}

func awaitPromise(p *runtime.EvaluateParams) { p.AwaitPromise = new(true) }

// call calls the JavaScript function fn with args (JSON-encoded).
func call[T any](b *tab, fn string, args ...any) T {
	b.t.Helper()
	enc := make([]string, len(args))
	for i, a := range args {
		j, err := json.Marshal(a)
		if err != nil {
			b.t.Fatal(err)
		}
		enc[i] = string(j)
	}
	return eval[T](b, fmt.Sprintf("(%s)(%s)", fn, strings.Join(enc, ", ")))
}

// waitJS waits until the JavaScript expression is truthy, evaluating it
// anew every 100 ms (so it survives reloads), and fails after limit.
func (b *tab) waitJS(limit time.Duration, what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		ok, err := evalErr[bool](b, "!!("+expr+")")
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("%s: %s: not within %s (%s; last error %v)", b.name, what, limit, expr, last)
}

// count is the number of elements matching sel.
func (b *tab) count(sel string) int {
	b.t.Helper()
	return call[int](b, `s => document.querySelectorAll(s).length`, sel)
}

// attr is an attribute of the first element matching sel ("" if none).
func (b *tab) attr(sel, name string) string {
	b.t.Helper()
	return call[string](b, `(s, n) => { const e = document.querySelector(s); return (e && e.getAttribute(n)) || "" }`, sel, name)
}

// text is the trimmed text of the first element matching sel.
func (b *tab) text(sel string) string {
	b.t.Helper()
	return call[string](b, `s => { const e = document.querySelector(s); return e ? e.textContent.trim() : "" }`, sel)
}

// fill sets the named fields under the element matching within, as the
// person would: through the element's own value setter, then input and
// change events, so any view library sees it. Booleans set checkboxes.
func (b *tab) fill(within string, fields map[string]any) {
	b.t.Helper()
	b.waitVisible(within)
	call[bool](b, `(within, fields) => {
		const root = document.querySelector(within);
		for (const [name, v] of Object.entries(fields)) {
			const el = root.querySelector('[name="' + name + '"]');
			if (!el) throw new Error("no field named " + name + " in " + within);
			if (el.type === "radio") {
				// A group: the radio of that value.
				const r = root.querySelector('[name="' + name + '"][value="' + v + '"]');
				if (!r) throw new Error("radio group " + name + " has no value " + v);
				r.checked = true;
				r.dispatchEvent(new Event("input", {bubbles: true}));
				r.dispatchEvent(new Event("change", {bubbles: true}));
				continue;
			} else if (typeof v === "boolean") {
				el.checked = v;
			} else {
				let value = String(v);
				if (el instanceof HTMLSelectElement && ![...el.options].some(o => o.value === value)) {
					// An option by its text, or a value that contains it
					// (e.g. "mosteller" for BSA_FORMULA_MOSTELLER).
					const want = value.toLowerCase();
					const o = [...el.options].find(o => o.text.trim().toLowerCase() === want)
						|| [...el.options].find(o => o.value.toLowerCase().includes(want) || o.text.toLowerCase().includes(want));
					if (!o) throw new Error("select " + name + " has no option " + v);
					value = o.value;
				}
				const proto = el instanceof HTMLSelectElement ? HTMLSelectElement.prototype
					: el instanceof HTMLTextAreaElement ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
				Object.getOwnPropertyDescriptor(proto, "value").set.call(el, value);
			}
			el.dispatchEvent(new Event("input", {bubbles: true}));
			el.dispatchEvent(new Event("change", {bubbles: true}));
		}
		return true;
	}`, within, fields)
}

// fieldNames lists the names of the form fields under within.
func (b *tab) fieldNames(within string) []string {
	b.t.Helper()
	return call[[]string](b, `w => [...new Set([...document.querySelector(w).querySelectorAll("[name]")].map(e => e.name))]`, within)
}

// screenshot writes a PNG of the viewport to path.
func (b *tab) screenshot(path string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, defaultWait)
	defer cancel()
	res, err := chromedp.Call(ctx, page.CaptureScreenshot, page.CaptureScreenshotParams{Format: page.CaptureScreenshotFormatPng})
	if err != nil {
		b.t.Fatalf("%s: screenshot: %v", b.name, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, res.Data, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// setOffline cuts the page off the network, or gives it back: every
// request fails while offline, and navigator.onLine and the online and
// offline events follow.
func (b *tab) setOffline(offline bool) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, defaultWait)
	defer cancel()
	var rules []*network.Conditions
	if offline {
		rules = []*network.Conditions{{Offline: true, DownloadThroughput: -1, UploadThroughput: -1}}
	}
	if _, err := chromedp.Call(ctx, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{MatchedNetworkConditions: rules}); err != nil {
		b.t.Fatalf("%s: network conditions: %v", b.name, err)
	}
	if _, err := chromedp.Call(ctx, network.OverrideNetworkState, network.OverrideNetworkStateParams{Offline: offline, DownloadThroughput: -1, UploadThroughput: -1}); err != nil {
		b.t.Fatalf("%s: network state: %v", b.name, err)
	}
}

// blockAPI makes every API call fail (the server unreachable) while the
// page itself still loads, or lifts that.
func (b *tab) blockAPI(block bool) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, defaultWait)
	defer cancel()
	var patterns []*network.BlockPattern
	if block {
		patterns = []*network.BlockPattern{{URLPattern: "*://*:*/perfusion.v1.*", Block: true}}
	}
	if _, err := chromedp.Call(ctx, network.SetBlockedURLs, network.SetBlockedURLsParams{URLPatterns: patterns}); err != nil {
		b.t.Fatalf("%s: block API: %v", b.name, err)
	}
}

// rewriteRequests pauses the page's requests whose URL matches pattern
// (Fetch domain wildcards) and continues each with the body edit(body)
// returns. It stays on until the test ends.
func (b *tab) rewriteRequests(pattern string, edit func(body []byte) []byte) {
	b.t.Helper()
	paused := chromedp.Events(b.ctx, fetch.RequestPaused)
	if _, err := chromedp.Call(b.ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: pattern}}}); err != nil {
		b.t.Fatalf("%s: fetch domain: %v", b.name, err)
	}
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			p := fetch.ContinueRequestParams{RequestID: ev.RequestID}
			if ev.Request != nil && ev.Request.HasPostData {
				var body []byte
				for _, e := range ev.Request.PostDataEntries {
					body = append(body, e.Bytes...)
				}
				p.PostData = edit(body)
			}
			chromedp.Call(b.ctx, fetch.ContinueRequest, p)
		}
	}()
}
