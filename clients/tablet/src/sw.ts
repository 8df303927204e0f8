// The service worker keeps the app's own files (index.html, app.js,
// app.css, config.json) so the tablet reloads and restarts without network;
// the outbox in IndexedDB then still holds every entry charted. Network
// first, cache as fallback: an online tablet always runs the newest build.
// API calls (POST) are never touched.

declare const BUILD_ID: string;
const sw = self as unknown as ServiceWorkerGlobalScope;

const CACHE = `perfusion-tablet-${BUILD_ID}`;
const SHELL = ["/", "/app.js", "/app.css", "/tablet/config.json"];

sw.addEventListener("install", (e) => {
  e.waitUntil(
    caches
      .open(CACHE)
      .then((c) => c.addAll(SHELL))
      .then(() => sw.skipWaiting()),
  );
});

sw.addEventListener("activate", (e) => {
  e.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("perfusion-tablet-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => sw.clients.claim()),
  );
});

sw.addEventListener("fetch", (e) => {
  const req = e.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (url.origin !== sw.location.origin) return;
  const shell = req.mode === "navigate" ? "/" : SHELL.includes(url.pathname) ? url.pathname : null;
  if (!shell) return;
  e.respondWith(
    fetch(req)
      .then((res) => {
        if (res.ok) {
          const copy = res.clone();
          void caches.open(CACHE).then((c) => c.put(shell, copy));
        }
        return res;
      })
      .catch(async () => (await caches.match(shell)) ?? Response.error()),
  );
});

export {};
