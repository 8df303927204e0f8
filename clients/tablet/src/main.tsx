// Entry point: loads the server's configuration, finishes an OpenID
// Connect redirect if this load is one, registers the service worker that
// keeps the app itself available offline, and renders the app.

import "uplot/dist/uPlot.min.css";
import "./app.css";
import { render } from "preact";
import { loadConfig, oidcComplete } from "./auth";
import "./bench";
import { App } from "./components/App";
import { flushOutbox, outbox, setState, showError, startSession } from "./store";

async function boot(): Promise<void> {
  render(<App />, document.getElementById("app")!);
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js").catch(() => {
      /* the app works without it, only not from a reload while offline */
    });
  }
  try {
    await outbox.load();
  } catch (e) {
    setState({ outboxBroken: e instanceof Error ? e.message : String(e) });
  }
  try {
    const config = await loadConfig();
    setState({ config });
    const back = await oidcComplete(config);
    if (back) {
      startSession(back.session);
      setState({ oidcReturned: true, route: back.returnTo.startsWith("/case/") ? { name: "case", id: back.returnTo.slice(6).replace(/\/$/, "") } : { name: "board" } });
    }
  } catch (e) {
    showError(e instanceof Error ? e.message : String(e));
  }
  void flushOutbox();
}

void boot();
