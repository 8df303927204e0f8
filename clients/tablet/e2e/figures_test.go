package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The figures below are measured and logged, never asserted: the machine
// is shared and a slow run must not fail. The README quotes them with the
// command that produced them:
//
//	go test ./clients/tablet/e2e -run 'TestFigures|TestECMO24h' -v

// waitFirstTrend waits for the open case's first drawn trend and returns
// the time from opening the case to it, as the page measured it
// (window.__tabletPerf, performance.now() milliseconds).
func waitFirstTrend(a *app) time.Duration {
	a.t.Helper()
	a.waitJS(defaultWait, "window.__tabletPerf.firstTrendDrawnAt",
		`window.__tabletPerf && window.__tabletPerf.firstTrendDrawnAt > 0 && window.__tabletPerf.firstTrendDrawnAt >= window.__tabletPerf.caseOpenedAt`)
	ms := eval[float64](a.tab, `window.__tabletPerf.firstTrendDrawnAt - window.__tabletPerf.caseOpenedAt`)
	return msDuration(ms)
}

// tapRoundTrip confirms the open entry dialog and returns the time until
// the new entry shows as stored (acknowledged by the server), measured in
// the page with a MutationObserver.
func tapRoundTrip(a *app) time.Duration {
	a.t.Helper()
	ms := eval[float64](a.tab, `new Promise(resolve => {
		const before = new Set([...document.querySelectorAll("[data-testid=entry]")].map(e => e.dataset.entryId));
		const t0 = performance.now();
		const check = () => {
			for (const e of document.querySelectorAll("[data-testid=entry][data-status=stored]"))
				if (!before.has(e.dataset.entryId)) { obs.disconnect(); resolve(performance.now() - t0); return; }
		};
		const obs = new MutationObserver(check);
		obs.observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"]});
		document.querySelector("[data-testid=entry-confirm]").click();
		setTimeout(() => { obs.disconnect(); resolve(-1); }, 20000);
	})`)
	if ms < 0 {
		a.t.Fatalf("%s: the entry was not stored within 20 s", a.name)
	}
	return msDuration(ms)
}

// eventLoopDelay is how late a setTimeout(0) fires: a page busy drawing
// answers taps late by as much.
func eventLoopDelay(a *app) time.Duration {
	a.t.Helper()
	ms := eval[float64](a.tab, `new Promise(r => { const t = performance.now(); setTimeout(() => r(performance.now() - t), 0); })`)
	return msDuration(ms)
}

// msDuration turns the page's milliseconds (performance.now(), coarsened
// to 0.1 ms) into a duration.
func msDuration(ms float64) time.Duration {
	return time.Duration(ms * float64(time.Millisecond)).Round(100 * time.Microsecond)
}

// drawBench draws hours × channels through the case view's trend component
// n times (window.__tabletBench.drawTrend) and returns the times.
func drawBench(a *app, hours, channels, n int) []time.Duration {
	a.t.Helper()
	var d []time.Duration
	for range n {
		d = append(d, msDuration(eval[float64](a.tab, fmt.Sprintf(`window.__tabletBench.drawTrend(%d, %d)`, hours, channels))))
	}
	return d
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestFigures measures, on loopback with pumpsim streaming: the time from
// opening a running case to its first drawn trend (goal ≤ 1 s), drawing
// 4 h × 10 channels through the case view's trend component (goal ≤
// 100 ms), a tap's round trip, and the app's compressed transfer size
// (goal ≤ 250 kB).
func TestFigures(t *testing.T) {
	srv := startDev(t)
	witness := srv.client(t)
	sim := srv.startPumpsim(t, "--speed", "120", "--duration", "4h")
	eventually(t, 2*time.Minute, "pumpsim charted its first entries", func() error {
		if n := len(witness.entries(t, sim.caseID, false)); n < 3 {
			return fmt.Errorf("%d entries", n)
		}
		return nil
	})
	a := openApp(t, srv, "tablet", wideW, wideH)
	a.signInDev("pat", "perfusionist")

	var opens []time.Duration
	for range 3 {
		a.navigate(srv.base + "/") // a fresh page each time
		a.openCase(sim.caseID)
		opens = append(opens, waitFirstTrend(a))
	}
	t.Logf("FIGURE open running case → first drawn trend: median %s (runs %v; goal ≤ 1 s)", median(opens), opens)

	draws := drawBench(a, 4, 10, 5)
	t.Logf("FIGURE draw 4 h × 10 channels: median %s (runs %v; goal ≤ 100 ms)", median(draws), draws)

	var taps []time.Duration
	for i := range 5 {
		a.click(testid("add-note"))
		a.waitVisible(testid("entry-dialog"))
		a.fill(testid("entry-dialog"), map[string]any{"text": fmt.Sprintf("round trip %d", i)})
		taps = append(taps, tapRoundTrip(a))
	}
	t.Logf("FIGURE tap round trip (confirm → stored) on a running case: median %s (runs %v)", median(taps), taps)

	wire, files := transferSize(t, srv)
	var names []string
	total := int64(0)
	for u, n := range files {
		names = append(names, fmt.Sprintf("%s %d B", u, n))
		total += n
	}
	sort.Strings(names)
	t.Logf("FIGURE app transfer on first load: %.1f kB on the wire (%d responses: %s)", float64(wire)/1000, len(files), strings.Join(names, ", "))
	if gz, raw, n := gzipDist(t); n > 0 {
		t.Logf("FIGURE app compressed size: %.1f kB gzip -9 of the %d embedded dist files (%.1f kB raw; goal ≤ 250 kB)", float64(gz)/1000, n, float64(raw)/1000)
	}
}

// transferSize loads the tablet in a fresh browser with the cache off and
// sums the encodedDataLength of every response that is part of the app
// (everything but API calls), until the sign-in screen is shown and the
// network is quiet.
func transferSize(t *testing.T, srv *perfusiond) (int64, map[string]int64) {
	t.Helper()
	b := newTab(t, "transfer", wideW, wideH)
	if _, err := chromedp.Call(b.ctx, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: true}); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(b.ctx)
	// Two subscriptions, two goroutines: a request's events may be read in
	// either order, so they are joined by request id at the end.
	var mu sync.Mutex
	urls := map[network.RequestID]string{}
	lengths := map[network.RequestID]int64{}
	sent := chromedp.Events(ctx, network.RequestWillBeSent)
	done := chromedp.Events(ctx, network.LoadingFinished)
	var wg sync.WaitGroup
	wg.Go(func() {
		for ev, err := range sent {
			if err != nil {
				return
			}
			mu.Lock()
			urls[ev.RequestID] = ev.Request.URL
			mu.Unlock()
		}
	})
	wg.Go(func() {
		for ev, err := range done {
			if err != nil {
				return
			}
			mu.Lock()
			lengths[ev.RequestID] += int64(ev.EncodedDataLength)
			mu.Unlock()
		}
	})
	b.navigate(srv.base + "/")
	b.waitVisible(testid("signin"))
	time.Sleep(1500 * time.Millisecond) // late chunks, fonts, icons
	stop()
	wg.Wait()
	sizes := map[string]int64{}
	for id, n := range lengths {
		u := strings.TrimPrefix(urls[id], srv.base)
		if u == "" || strings.HasPrefix(u, "/perfusion.v1.") {
			continue
		}
		sizes[u] += n
	}
	var total int64
	for _, n := range sizes {
		total += n
	}
	return total, sizes
}

// gzipDist gzips (best compression) every file of the embedded app,
// clients/tablet/dist, and returns the compressed and raw totals and the
// number of files; 0 files when there is no dist directory.
func gzipDist(t *testing.T) (gz, raw int64, files int) {
	t.Helper()
	dist := filepath.Join("..", "dist")
	err := filepath.WalkDir(dist, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		w.Write(data)
		w.Close()
		gz += int64(buf.Len())
		raw += int64(len(data))
		files++
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return gz, raw, files
}

// TestECMO24h fills a 24-hour ECMO case (pumpsim unpaced) and opens it:
// the trends draw the whole run, and the page stays responsive — the time
// to the first trend, a tap's round trip and the event loop's delay are
// logged.
func TestECMO24h(t *testing.T) {
	srv := startDev(t)
	// pumpsim --speed 0 places the run so that it ends when it starts.
	ends := time.Now()
	sim := srv.startPumpsim(t, "--ecmo", "--duration", "24h", "--speed", "0")
	sim.wait(t, 10*time.Minute)
	t.Logf("pumpsim: %s", tail(strings.TrimSpace(sim.out.String()), 1))
	a := openApp(t, srv, "tablet", wideW, wideH)
	a.signInDev("pat", "perfusionist")
	start := time.Now()
	a.openCase(sim.caseID)
	first := waitFirstTrend(a)
	t.Logf("FIGURE 24 h ECMO: open → first drawn trend %s (page), %s from the tap as the test saw it", first, time.Since(start).Round(time.Millisecond))
	// The first trend is drawn while the backlog still streams in; the
	// case is on screen when the 1 Hz strips reach the run's end.
	strips := []string{"trend-flows", "trend-pressures", "trend-temperatures"}
	ids, _ := json.Marshal(strips)
	whole := eval[float64](a.tab, fmt.Sprintf(`new Promise(r => {
		const ids = %s, target = %d;
		const done = () => ids.every(id => +(document.querySelector("[data-testid=" + id + "]")?.dataset.lastTime || 0) >= target);
		const iv = setInterval(() => { if (done()) { clearInterval(iv); r(performance.now() - window.__tabletPerf.caseOpenedAt); } }, 10);
		setTimeout(() => { clearInterval(iv); r(-1); }, 25000);
	})`, ids, ends.Add(-2*time.Minute).UnixMilli()))
	for _, s := range strips {
		last := eval[float64](a.tab, fmt.Sprintf(`+document.querySelector(%q).dataset.lastTime`, testid(s)))
		t.Logf("%s: %s points, newest drawn point %s before the run's end", s, a.attr(testid(s), "data-points"), ends.Sub(time.UnixMilli(int64(last))).Round(time.Second))
	}
	if whole < 0 {
		t.Fatalf("the 24 h backlog was not drawn to the run's end within 25 s of opening the case")
	}
	t.Logf("FIGURE 24 h ECMO: open → the whole 24 h drawn to its end %s (page)", msDuration(whole))
	var taps, loops []time.Duration
	for i := range 5 {
		a.click(testid("add-note"))
		a.waitVisible(testid("entry-dialog"))
		a.fill(testid("entry-dialog"), map[string]any{"text": fmt.Sprintf("24 h round trip %d", i)})
		taps = append(taps, tapRoundTrip(a))
		loops = append(loops, eventLoopDelay(a))
	}
	day := drawBench(a, 24, 10, 3)
	t.Logf("FIGURE 24 h ECMO: drawing 24 h × 10 channels median %s (runs %v)", median(day), day)
	t.Logf("FIGURE 24 h ECMO: tap round trip (confirm → stored) median %s (runs %v); event-loop delay median %s (runs %v)",
		median(taps), taps, median(loops), loops)
	a.waitOutbox(0, defaultWait)
}

// shot writes a screenshot to docs/tablet/name when -update-screenshots
// is given.
func shot(t *testing.T, b *tab, name string) {
	t.Helper()
	if !*updateScreenshots {
		return
	}
	path := filepath.Join("..", "..", "..", "docs", "tablet", name)
	b.screenshot(path)
	t.Logf("wrote %s", path)
}

// TestScreenshots shows the board, a running case (1280×800 and
// 1024×768) and a signed case, each checked for what it must show; with
// -update-screenshots it writes them to docs/tablet/ for the README.
func TestScreenshots(t *testing.T) {
	srv := startDev(t)
	witness := srv.client(t)
	createCase(t, witness, "OR-2")
	createCase(t, witness, "OR-4")
	sim := srv.startPumpsim(t, "--speed", "120", "--duration", "4h")
	done := srv.startPumpsim(t, "--speed", "0", "--duration", "3h", "--seed", "7")
	done.wait(t, 5*time.Minute)
	eventually(t, 2*time.Minute, "the running case is on bypass", func() error {
		for _, e := range witness.entries(t, sim.caseID, false) {
			if kindOf(e) == "event:CROSS_CLAMP_ON" {
				return nil
			}
		}
		return errNotYet
	})

	a := openApp(t, srv, "tablet", wideW, wideH)
	a.signInDev("pat", "perfusionist")
	a.waitVisible(caseCard(sim.caseID))
	a.waitVisible(caseCard(done.caseID))
	time.Sleep(500 * time.Millisecond)
	shot(t, a.tab, "board.png")

	a.openCase(sim.caseID)
	waitFirstTrend(a)
	a.waitJS(defaultWait, "a connected source", `!!document.querySelector("[data-testid=source][data-state=connected]")`)
	time.Sleep(2 * time.Second) // a few live updates
	shot(t, a.tab, "case-1280x800.png")

	n := openApp(t, srv, "narrow", narrowW, narrowH)
	n.signInDev("pat", "perfusionist")
	n.openCase(sim.caseID)
	waitFirstTrend(n)
	time.Sleep(2 * time.Second)
	shot(t, n.tab, "case-1024x768.png")

	a.navigate(srv.base + "/")
	a.openCase(done.caseID)
	waitFirstTrend(a)
	signOff(t, a, done.caseID, func() {})
	time.Sleep(500 * time.Millisecond)
	shot(t, a.tab, "sign-off.png")
}
