// The frame of every screen: the top bar (network state, outbox count,
// who is signed in), the error banner, the toast, and the current screen.

import { Board } from "../screens/Board";
import { CaseView } from "../screens/CaseView";
import { SignIn } from "../screens/SignIn";
import { outbox, showError, signOut, useApp } from "../store";

export function App() {
  const app = useApp();
  const s = app.session;
  const pending = outbox.unacknowledged;
  const conflicts = outbox.list().filter((i) => i.state === "conflict").length;
  return (
    <div class="app">
      <header class="topbar">
        <span class="brand">Perfusion</span>
        <span class={`net net-${app.online ? "online" : "offline"}`} role="status" aria-label="Network">
          <span class="dot" aria-hidden="true" />
          <span data-testid="net-state">{app.online ? "online" : "offline"}</span>
        </span>
        <span class={`outbox${pending ? " has" : ""}`} role="status" aria-label="Entries not yet stored on the server">
          <span data-testid="outbox-count">{pending}</span> unsent
          {conflicts > 0 && <span class="tag tag-conflict"> {conflicts} not stored</span>}
        </span>
        <span class="spacer" />
        {s && (
          <>
            <span class="whoami" data-testid="whoami" title={`roles: ${s.claims.roles.join(", ")}; sites: ${s.claims.sites.join(", ")}`}>
              {s.claims.name || s.claims.sub}
              <span class="muted small"> · {s.claims.roles.filter((r) => r !== "identified").join(", ")}</span>
            </span>
            <button type="button" class="btn btn-small" data-testid="sign-out" onClick={signOut}>
              Sign out
            </button>
          </>
        )}
      </header>
      {app.outboxBroken && (
        <p class="banner error" role="alert">
          This browser cannot keep an outbox ({app.outboxBroken}): entries are held in memory only until sent. Do not reload while offline.
        </p>
      )}
      {app.error && (
        <div class="banner error" role="alert">
          <span data-testid="error">{app.error}</span>
          <button type="button" class="btn btn-small" onClick={() => showError(null)} aria-label="Dismiss the error">
            Dismiss
          </button>
        </div>
      )}
      {!s ? <SignIn /> : app.route.name === "case" ? <CaseView key={app.route.id} id={app.route.id} /> : <Board />}
      {app.toast && !app.toast.undoable && (
        <div class="toast" role="status">
          {app.toast.text}
        </div>
      )}
    </div>
  );
}
