// Sign-in: the development sign-in of perfusiond (POST /tablet/dev-sign-in,
// only on a server that trusts development tokens) and OpenID Connect
// authorization code with PKCE (S256) against the configured issuer. The
// bearer sent to perfusiond is the access token. Tokens live in
// sessionStorage only (gone when the tab closes; never localStorage); the
// outbox lives in IndexedDB and outlives every session.
//
// Fresh authentication for signing: SignCase needs a token whose auth_time
// is recent (perfusiond --sign-auth-max-age). A development session asks
// for a new token (its auth_time is now); an OIDC session sends the person
// to the identity provider with max_age=0&prompt=login and finishes the
// signature when they come back (the intent is kept in sessionStorage).

/** GET /tablet/config.json */
export interface TabletConfig {
  devSignIn: boolean;
  oidc: null | { issuer: string; clientId: string; scopes: string; audience: string };
  signAuthMaxAgeSeconds: number;
  /** Optional: the site's DO2i target, when the server states it. */
  do2iThreshold?: number;
}

export interface Claims {
  sub: string;
  roles: string[];
  sites: string[];
  exp?: number;
  auth_time?: number;
  name?: string;
}

export interface DevIdentity {
  subject: string;
  roles: string[];
  sites: string[];
  /** Token lifetime; the server's default (12 h) when unset. */
  ttlSeconds?: number;
}

export interface Session {
  token: string;
  claims: Claims;
  via: "dev" | "oidc";
  /** For a development session: what to ask for again on fresh authentication. */
  dev?: DevIdentity;
}

/** Something to finish after coming back from the identity provider. */
export interface SignIntent {
  kind: "sign";
  caseId: string;
  meaning: number;
  displayName: string;
  expectedHead?: { sequence: string; hash: string };
}

const SESSION_KEY = "perfusion.session";
const OIDC_KEY = "perfusion.oidc";
const INTENT_KEY = "perfusion.intent";
const CONFIG_KEY = "perfusion.config";

export async function loadConfig(): Promise<TabletConfig> {
  try {
    const r = await fetch("/tablet/config.json", { cache: "no-store" });
    if (!r.ok) throw new Error(`config: HTTP ${r.status}`);
    const cfg = (await r.json()) as TabletConfig;
    try {
      localStorage.setItem(CONFIG_KEY, JSON.stringify(cfg)); // no patient data: lets the app start offline
    } catch {
      /* storage full or disabled: not needed online */
    }
    return cfg;
  } catch (e) {
    const saved = localStorage.getItem(CONFIG_KEY);
    if (saved) return JSON.parse(saved) as TabletConfig;
    throw e;
  }
}

function b64urlDecode(s: string): string {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(s.length / 4) * 4, "="));
  return new TextDecoder().decode(Uint8Array.from(b, (c) => c.charCodeAt(0)));
}

function list(v: unknown): string[] {
  if (Array.isArray(v)) return v.map(String);
  if (typeof v === "string") return v.split(/\s+/).filter(Boolean);
  return [];
}

/** Reads a JWT's claims (not verified: the server verifies; the tablet only displays and schedules). */
export function decodeClaims(token: string): Claims {
  const parts = token.split(".");
  if (parts.length < 2) throw new Error("not a JWT");
  const c = JSON.parse(b64urlDecode(parts[1])) as Record<string, unknown>;
  return {
    sub: String(c.sub ?? ""),
    roles: list(c.roles),
    sites: list(c.sites),
    exp: typeof c.exp === "number" ? c.exp : undefined,
    auth_time: typeof c.auth_time === "number" ? c.auth_time : undefined,
    name: typeof c.name === "string" ? c.name : undefined,
  };
}

export function loadSession(): Session | null {
  const s = sessionStorage.getItem(SESSION_KEY);
  if (!s) return null;
  try {
    return JSON.parse(s) as Session;
  } catch {
    return null;
  }
}

export function saveSession(s: Session | null): void {
  if (s) sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
  else sessionStorage.removeItem(SESSION_KEY);
}

/** Seconds until the token expires (negative: expired); Infinity without exp. */
export function secondsLeft(s: Session, now = Date.now()): number {
  return s.claims.exp === undefined ? Infinity : s.claims.exp - now / 1000;
}

/** Whether a SignCase with this session would need a fresh authentication first. */
export function needsFreshAuth(s: Session, maxAgeSeconds: number, now = Date.now()): boolean {
  if (s.claims.auth_time === undefined) return true;
  // A margin so the token is still fresh when the call arrives.
  return now / 1000 - s.claims.auth_time > Math.max(0, maxAgeSeconds - 60);
}

export async function devSignIn(id: DevIdentity): Promise<Session> {
  const r = await fetch("/tablet/dev-sign-in", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ subject: id.subject, roles: id.roles, sites: id.sites, ...(id.ttlSeconds ? { ttlSeconds: id.ttlSeconds } : {}) }),
  });
  if (!r.ok) {
    const text = (await r.text()).trim();
    let msg = text;
    try {
      msg = (JSON.parse(text) as { error?: string }).error ?? text; // {"error": "…"}
    } catch {
      /* plain text */
    }
    throw new Error(msg || (r.status === 404 ? "Development sign-in is not enabled on this server." : `Sign-in failed (HTTP ${r.status}).`));
  }
  const body = (await r.json()) as { token: string; expiresAt: string };
  return { token: body.token, claims: decodeClaims(body.token), via: "dev", dev: id };
}

// ------------------------------------------------------------------- OIDC

function b64url(bytes: ArrayBuffer | Uint8Array): string {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = "";
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(n: number): string {
  return b64url(crypto.getRandomValues(new Uint8Array(n)));
}

/** PKCE S256 challenge of a verifier (RFC 7636). */
export async function pkceChallenge(verifier: string): Promise<string> {
  return b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
}

interface Discovery {
  authorization_endpoint: string;
  token_endpoint: string;
}

async function discover(issuer: string): Promise<Discovery> {
  const r = await fetch(issuer.replace(/\/+$/, "") + "/.well-known/openid-configuration");
  if (!r.ok) throw new Error(`The identity provider's discovery document is unavailable (HTTP ${r.status}).`);
  return (await r.json()) as Discovery;
}

interface PendingOidc {
  state: string;
  verifier: string;
  tokenEndpoint: string;
  returnTo: string;
}

/** Sends the browser to the identity provider. fresh asks it to authenticate the person again (for signing). */
export async function oidcBegin(cfg: NonNullable<TabletConfig["oidc"]>, fresh: boolean, intent?: SignIntent): Promise<never> {
  const d = await discover(cfg.issuer);
  const verifier = randomString(32);
  const state = randomString(16);
  const pending: PendingOidc = { state, verifier, tokenEndpoint: d.token_endpoint, returnTo: location.pathname };
  sessionStorage.setItem(OIDC_KEY, JSON.stringify(pending));
  if (intent) sessionStorage.setItem(INTENT_KEY, JSON.stringify(intent));
  const u = new URL(d.authorization_endpoint);
  u.searchParams.set("response_type", "code");
  u.searchParams.set("client_id", cfg.clientId);
  u.searchParams.set("redirect_uri", location.origin + "/");
  u.searchParams.set("scope", cfg.scopes || "openid profile");
  u.searchParams.set("state", state);
  u.searchParams.set("code_challenge", await pkceChallenge(verifier));
  u.searchParams.set("code_challenge_method", "S256");
  if (cfg.audience) u.searchParams.set("audience", cfg.audience);
  if (fresh) {
    u.searchParams.set("max_age", "0");
    u.searchParams.set("prompt", "login");
  }
  location.assign(u.toString());
  return new Promise<never>(() => {});
}

/**
 * Finishes an authorization-code redirect (?code=&state= on load): checks
 * the state, redeems the code with the PKCE verifier and returns the new
 * session and where to go. null when the URL is not a redirect.
 */
export async function oidcComplete(cfg: TabletConfig): Promise<{ session: Session; returnTo: string } | null> {
  const q = new URLSearchParams(location.search);
  const code = q.get("code");
  const error = q.get("error");
  if (!code && !error) return null;
  const raw = sessionStorage.getItem(OIDC_KEY);
  sessionStorage.removeItem(OIDC_KEY);
  const pending = raw ? (JSON.parse(raw) as PendingOidc) : null;
  history.replaceState(null, "", pending?.returnTo || "/");
  if (error) throw new Error(`Sign-in was not completed: ${q.get("error_description") || error}`);
  if (!pending || q.get("state") !== pending.state) throw new Error("Sign-in answer does not match this tablet's request; please sign in again.");
  if (!cfg.oidc) throw new Error("OpenID Connect is not configured on this server.");
  const body = new URLSearchParams({
    grant_type: "authorization_code",
    code: code!,
    redirect_uri: location.origin + "/",
    client_id: cfg.oidc.clientId,
    code_verifier: pending.verifier,
  });
  const r = await fetch(pending.tokenEndpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body,
  });
  if (!r.ok) throw new Error(`The identity provider refused the sign-in (HTTP ${r.status}).`);
  const tok = (await r.json()) as { access_token?: string };
  if (!tok.access_token) throw new Error("The identity provider returned no access token.");
  return { session: { token: tok.access_token, claims: decodeClaims(tok.access_token), via: "oidc" }, returnTo: pending.returnTo };
}

/** The signature to finish after a fresh authentication, if one is waiting. */
export function takeIntent(): SignIntent | null {
  const raw = sessionStorage.getItem(INTENT_KEY);
  sessionStorage.removeItem(INTENT_KEY);
  return raw ? (JSON.parse(raw) as SignIntent) : null;
}
