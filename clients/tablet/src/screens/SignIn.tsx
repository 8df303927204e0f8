// Sign-in: the hospital's identity provider (OpenID Connect) when
// configured, and the development sign-in on a server that trusts
// development tokens (the embedded default on loopback).

import { useState } from "preact/hooks";
import { devSignIn, oidcBegin } from "../auth";
import { outbox, showError, startSession, useApp } from "../store";

const ROLES: [string, string, string[]][] = [
  ["perfusionist", "Perfusionist", ["perfusionist"]],
  ["anesthesiologist", "Anaesthesiologist", ["anesthesiologist"]],
  ["reviewer", "Reviewer (identified)", ["reviewer", "identified"]],
  ["admin", "Administrator", ["admin"]],
];

export function SignIn() {
  const app = useApp();
  const cfg = app.config;
  const [subject, setSubject] = useState(() => sessionStorage.getItem("perfusion.last-subject") ?? "");
  const [role, setRole] = useState("perfusionist");
  const [sites, setSites] = useState("MAIN, SIM"); // SIM: pumpsim's site
  const [ttl, setTtl] = useState("");
  const [busy, setBusy] = useState(false);
  const setError = showError;
  const pending = outbox.unacknowledged;

  const dev = async (e: Event) => {
    e.preventDefault();
    const sub = subject.trim();
    if (!sub) {
      setError("Enter your staff id.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const roles = ROLES.find(([k]) => k === role)?.[2] ?? [role];
      const siteList = sites.split(/[\s,]+/).filter(Boolean);
      const s = await devSignIn({ subject: sub, roles, sites: siteList.length ? siteList : ["MAIN"], ttlSeconds: Number(ttl) || undefined });
      sessionStorage.setItem("perfusion.last-subject", sub);
      startSession(s);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  const oidc = async () => {
    if (!cfg?.oidc) return;
    setBusy(true);
    setError(null);
    try {
      await oidcBegin(cfg.oidc, false);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
      setBusy(false);
    }
  };

  return (
    <main class="signin" data-testid="signin">
      <div class="signin-card">
        <h1>Perfusion record</h1>
        <p class="muted">Sign in to chart.</p>
        {app.notice && (
          <p class="notice" role="status">
            {app.notice}
          </p>
        )}
        {!app.notice && pending > 0 && (
          <p class="notice" role="status">
            {pending} charted {pending === 1 ? "entry is" : "entries are"} kept on this tablet and will be sent after sign-in.
          </p>
        )}
        {cfg?.oidc && (
          <button type="button" class="btn btn-primary btn-block" data-testid="oidc-sign-in" onClick={oidc} disabled={busy}>
            Sign in with the hospital account
          </button>
        )}
        {cfg?.devSignIn && (
          <form class="dev-form" onSubmit={dev}>
            <h2>Development sign-in</h2>
            <p class="muted small">This server trusts development tokens (embedded store on loopback). Never in production.</p>
            <div class="field">
              <label for="si-subject">Staff id</label>
              <input id="si-subject" name="subject" autoComplete="username" value={subject} onInput={(e) => setSubject(e.currentTarget.value)} />
            </div>
            <div class="field">
              <label for="si-role">Role</label>
              <select id="si-role" name="role" value={role} onChange={(e) => setRole(e.currentTarget.value)}>
                {ROLES.map(([k, t]) => (
                  <option value={k} key={k}>
                    {t}
                  </option>
                ))}
              </select>
            </div>
            <div class="field">
              <label for="si-sites">Sites</label>
              <input id="si-sites" name="sites" value={sites} onInput={(e) => setSites(e.currentTarget.value)} />
            </div>
            <div class="field">
              <label for="si-ttl">Session length</label>
              <select id="si-ttl" name="ttl_seconds" value={ttl} onChange={(e) => setTtl(e.currentTarget.value)}>
                <option value="">12 hours (default)</option>
                <option value="3600">1 hour</option>
                <option value="900">15 minutes</option>
                <option value="60">1 minute</option>
                <option value="10">10 seconds (to try an expiring session)</option>
              </select>
            </div>
            <button type="submit" class="btn btn-primary btn-block" data-testid="dev-sign-in" disabled={busy}>
              {busy ? "Signing in…" : "Sign in"}
            </button>
          </form>
        )}
        {cfg && !cfg.oidc && !cfg.devSignIn && <p class="notice">No sign-in method is configured on this server (see the README: --oidc-client-id).</p>}
        {!cfg && <p class="muted">Loading…</p>}
      </div>
    </main>
  );
}
