// The one store of app-wide state that the screens read: configuration,
// session, route, network state, outbox, error banner and toast. Screens
// subscribe with useApp(); changes go through the functions here.

import { useEffect, useState } from "preact/hooks";
import { net } from "./api";
import {
  devSignIn,
  loadSession,
  oidcBegin,
  saveSession,
  secondsLeft,
  type DevIdentity,
  type Session,
  type SignIntent,
  type TabletConfig,
} from "./auth";
import { IdbOutboxStore } from "./idb";
import { Outbox, MemoryOutboxStore } from "./outbox";
import { sendItem } from "./send";

export type Route = { name: "board" } | { name: "case"; id: string };

export interface Toast {
  text: string;
  entryId?: string;
  caseId?: string;
  /** When set, the toast offers undo and edit of this quick entry. */
  undoable?: boolean;
  at: number;
}

export interface AppState {
  config: TabletConfig | null;
  session: Session | null;
  route: Route;
  /** The browser says it is online and the last call reached the server. */
  online: boolean;
  error: string | null;
  /** Why the sign-in screen is shown (expired session…). */
  notice: string | null;
  toast: Toast | null;
  /** The outbox could not be opened (private mode…): charting is refused rather than lost. */
  outboxBroken: string | null;
  /** Set when this page load finished a sign-in at the identity provider (a waiting signature may now be made). */
  oidcReturned: boolean;
}

function parseRoute(path: string): Route {
  const m = /^\/case\/([0-9a-fA-F-]{36})\/?$/.exec(path);
  return m ? { name: "case", id: m[1].toLowerCase() } : { name: "board" };
}

let state: AppState = {
  config: null,
  session: loadSession(),
  route: parseRoute(location.pathname),
  online: navigator.onLine,
  error: null,
  notice: null,
  toast: null,
  outboxBroken: null,
  oidcReturned: false,
};

const subs = new Set<() => void>();

export function getState(): AppState {
  return state;
}

export function setState(patch: Partial<AppState>): void {
  state = { ...state, ...patch };
  for (const f of subs) f();
}

/** Re-renders the caller on every change of the store or the outbox. */
export function useApp(): AppState {
  const [, force] = useState(0);
  useEffect(() => {
    const f = () => force((n) => n + 1);
    subs.add(f);
    const off = outbox.subscribe(f);
    return () => {
      subs.delete(f);
      off();
    };
  }, []);
  return state;
}

// --------------------------------------------------------------- outbox

function makeStore() {
  try {
    if (typeof indexedDB === "undefined") throw new Error("IndexedDB is not available");
    return new IdbOutboxStore();
  } catch (e) {
    state.outboxBroken = e instanceof Error ? e.message : String(e);
    return new MemoryOutboxStore();
  }
}

export const outbox = new Outbox(makeStore(), sendItem);

/** Listeners told about each acknowledged item (the case view merges the stored entry). */
export const acks = new Set<(caseId: string, result: unknown) => void>();
outbox.onAck = (item, result) => {
  for (const f of acks) f(item.caseId, result);
};

let flushTimer: number | undefined;

/** Sends what is pending now, and keeps trying while anything is. */
export async function flushOutbox(): Promise<void> {
  const s = state.session;
  if (!s) return;
  const run = async () => {
    await outbox.load(); // another tab may have sent or added items
    return outbox.flush(s.claims.sub);
  };
  let end;
  try {
    end = navigator.locks ? await navigator.locks.request("perfusion-outbox", run) : await run();
  } catch (e) {
    setState({ error: e instanceof Error ? e.message : String(e) });
    end = "network";
  }
  if (end === "auth") {
    expireSession();
    return;
  }
  if (end === "network") setState({ online: false });
  clearTimeout(flushTimer);
  if (outbox.list().some((i) => i.state === "pending" && i.subject === s.claims.sub)) {
    flushTimer = window.setTimeout(() => void flushOutbox(), end === "network" ? 3000 : 500);
  }
}

// -------------------------------------------------------------- session

net.token = () => state.session?.token ?? null;
net.reached = (ok) => {
  const online = ok && navigator.onLine;
  if (online !== state.online) {
    setState({ online });
    if (online) void flushOutbox();
  }
};

window.addEventListener("online", () => {
  setState({ online: true });
  void flushOutbox();
});
window.addEventListener("offline", () => setState({ online: false }));

let expiryTimer: number | undefined;

function scheduleExpiry(s: Session | null): void {
  clearTimeout(expiryTimer);
  if (!s) return;
  const left = secondsLeft(s);
  if (left === Infinity) return;
  expiryTimer = window.setTimeout(() => expireSession(), Math.max(0, Math.min(left * 1000, 2 ** 31 - 1)));
}

/** Starts a session (after sign-in), then sends what the outbox holds for this person. */
export function startSession(s: Session): void {
  saveSession(s);
  setState({ session: s, notice: null, error: null });
  scheduleExpiry(s);
  void flushOutbox();
}

/** The token expired or was refused: back to sign-in, keeping the outbox and the place. */
export function expireSession(): void {
  if (!state.session) return;
  saveSession(null);
  const n = outbox.unacknowledged;
  setState({
    session: null,
    notice: `Your sign-in has expired. Sign in again to continue${n ? `; ${n} charted ${n === 1 ? "entry is" : "entries are"} kept on this tablet and will be sent` : ""}.`,
  });
}

export function signOut(): void {
  saveSession(null);
  sessionStorage.removeItem("perfusion.case-cache");
  clearTimeout(expiryTimer);
  setState({ session: null, notice: null, error: null, route: { name: "board" } });
  history.pushState(null, "", "/");
}

/**
 * Makes the session freshly authenticated for SignCase. A development
 * session gets a new token at once; an OIDC session leaves for the identity
 * provider and the signature is finished on return (intent).
 */
export async function freshAuth(intent: SignIntent): Promise<Session> {
  const s = state.session;
  if (!s) throw new Error("Not signed in.");
  if (s.via === "dev" && s.dev) {
    const n = await devSignIn(s.dev as DevIdentity);
    startSession(n);
    return n;
  }
  if (!state.config?.oidc) throw new Error("Fresh sign-in is not possible: OpenID Connect is not configured.");
  return oidcBegin(state.config.oidc, true, intent);
}

scheduleExpiry(state.session);

// ---------------------------------------------------------------- routes

export function navigate(r: Route): void {
  const path = r.name === "case" ? `/case/${r.id}` : "/";
  if (location.pathname !== path) history.pushState(null, "", path);
  setState({ route: r, error: null });
}

window.addEventListener("popstate", () => setState({ route: parseRoute(location.pathname), error: null }));

export function showError(e: string | null): void {
  setState({ error: e });
}

let toastTimer: number | undefined;
export function showToast(t: Omit<Toast, "at"> | null): void {
  clearTimeout(toastTimer);
  setState({ toast: t ? { ...t, at: Date.now() } : null });
  if (t) toastTimer = window.setTimeout(() => setState({ toast: null }), t.undoable ? 12000 : 5000);
}
