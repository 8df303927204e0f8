// The case board: today's cases of my sites (and any still running from an
// earlier day, such as an ECMO run), by room, with their status; and the
// form that creates a case.

import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { useEffect, useMemo, useState } from "preact/hooks";
import { cases, Code, ConnectError, errorText } from "../api";
import { fromLocalInput, toLocalInput } from "../components/Dialog";
import { BSA_FORMULAS, bsa, bsaFormulaText, KIND_TEXT, num, STATUS_TEXT } from "../domain";
import { clock, tsMs } from "../entries";
import { uuid } from "../forms";
import {
  BsaFormula,
  CaseKind,
  CaseStatus,
  CreateCaseRequestSchema,
  PumpType,
  ReservoirType,
  Sex,
  type Case,
} from "../gen/perfusion/v1/case_pb";
import { expireSession, navigate, showError, useApp } from "../store";

function startOfToday(): number {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

function patientName(c: Case): string {
  const p = c.details?.patient;
  if (!p || (!p.familyName && !p.givenName)) return "Patient not named";
  return [p.familyName.toUpperCase(), p.givenName].filter(Boolean).join(", ");
}

export function Board() {
  const app = useApp();
  const [list, setList] = useState<Case[] | null>(null);
  const [creating, setCreating] = useState(false);
  const sites = app.session?.claims.sites ?? [];

  const load = async () => {
    const from = startOfToday();
    const to = from + 24 * 3600 * 1000;
    const scope = sites.length === 0 || sites.includes("*") ? [""] : sites;
    try {
      const all = await Promise.all(
        scope.flatMap((site) => [
          cases.listCases({ site, scheduledFrom: timestampFromMs(from), scheduledTo: timestampFromMs(to), pageSize: 200 }),
          cases.listCases({ site, status: CaseStatus.IN_PROGRESS, pageSize: 200 }),
        ]),
      );
      const byId = new Map<string, Case>();
      for (const r of all) for (const c of r.cases) byId.set(c.caseId, c);
      setList([...byId.values()]);
    } catch (e) {
      if (ConnectError.from(e).code === Code.Unauthenticated) expireSession();
      else showError(errorText(e));
    }
  };

  useEffect(() => {
    void load();
    const t = setInterval(() => void load(), 15000);
    return () => clearInterval(t);
  }, [app.session?.token]);

  const rooms = useMemo(() => {
    const m = new Map<string, Case[]>();
    for (const c of list ?? []) {
      const k = sites.length > 1 || sites.includes("*") ? `${c.site} · ${c.room}` : c.room;
      m.set(k, [...(m.get(k) ?? []), c]);
    }
    // Cancelled and moved bookings go last in their room.
    for (const v of m.values()) v.sort((a, b) => Number(cancelled(a)) - Number(cancelled(b)) || tsMs(a.scheduledStart) - tsMs(b.scheduledStart));
    return [...m.entries()].sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true }));
  }, [list]);

  return (
    <main class="board" data-testid="board">
      <div class="board-head">
        <h1>Today</h1>
        <span class="muted">{sites.includes("*") ? "all sites" : sites.join(", ")}</span>
        <span class="spacer" />
        <button type="button" class="btn" onClick={() => void load()}>
          Refresh
        </button>
        <button type="button" class="btn btn-primary" data-testid="new-case" onClick={() => setCreating(true)}>
          + New case
        </button>
      </div>
      {list === null && <p class="muted">Loading cases…</p>}
      {list !== null && rooms.length === 0 && <p class="muted empty">No cases today. Create one with “New case”.</p>}
      <div class="rooms">
        {rooms.map(([room, cs]) => (
          <section class="room" key={room} aria-label={`Room ${room}`}>
            <h2>{room}</h2>
            {cs.map((c) => (
              <button
                type="button"
                class={`case-card status-${CaseStatus[c.status].toLowerCase()}${cancelled(c) ? " booking-cancelled" : ""}`}
                data-testid="case-card"
                data-case-id={c.caseId}
                key={c.caseId}
                onClick={() => navigate({ name: "case", id: c.caseId })}
              >
                <span class="card-top">
                  <span class="card-time">{clock(tsMs(c.scheduledStart)).slice(0, 5)}</span>
                  <span class="chip">{KIND_TEXT[c.kind]}</span>
                  <span class={`chip status`}>{cancelled(c) ? bookingText(c) : STATUS_TEXT[c.status]}</span>
                </span>
                <span class="card-name">{patientName(c)}</span>
                <span class="card-sub">
                  {c.details?.procedure?.description || "—"}
                  {c.details?.team?.surgeon?.displayName ? ` · ${c.details.team.surgeon.displayName}` : ""}
                </span>
              </button>
            ))}
          </section>
        ))}
      </div>
      {creating && <CaseForm sites={sites} onClose={() => setCreating(false)} />}
    </main>
  );
}

// cancelled: the OR schedule (SIU, or a FHIR Appointment) cancelled or
// moved this planned case's booking; nothing was charted on it.
function cancelled(c: Case): boolean {
  return c.status === CaseStatus.PLANNED && !!c.details?.booking?.cancelled;
}

function bookingText(c: Case): string {
  return c.details?.booking?.replacedBy ? "moved" : "cancelled";
}

type F = Record<string, string>;

const FORMULA_VALUE: Record<string, BsaFormula> = { mosteller: BsaFormula.MOSTELLER, dubois: BsaFormula.DUBOIS, haycock: BsaFormula.HAYCOCK };

function CaseForm({ sites, onClose }: { sites: string[]; onClose: () => void }) {
  const app = useApp();
  const me = app.session?.claims;
  const fixedSites = sites.filter((s) => s !== "*");
  const [f, setF] = useState<F>(() => ({
    kind: "cpb",
    site: fixedSites[0] ?? "",
    room: "",
    scheduled_start: toLocalInput(Math.floor(Date.now() / 60000) * 60000),
    encounter: "",
    mrn: "",
    mrn_assigning_authority: "",
    family_name: "",
    given_name: "",
    birth_date: "",
    sex: "0",
    height_cm: "",
    weight_kg: "",
    bsa_formula: "mosteller",
    blood_type: "",
    allergies: "",
    procedure: "",
    surgeon: "",
    anesthesiologist: "",
    perfusionist: me?.name || me?.sub || "",
    arterial_pump: "0",
    oxygenator: "",
    oxygenator_lot: "",
    reservoir: "0",
    cardioplegia_system: "",
    prime_fluid: "Plasma-Lyte A",
    prime_volume_ml: "",
    rap_volume_ml: "",
  }));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [caseId] = useState(uuid); // idempotent on retry
  useEffect(() => showError(null), []); // the form shows its own errors
  const set = (k: string) => (e: Event) => setF((o) => ({ ...o, [k]: (e.currentTarget as HTMLInputElement).value }));
  const n = (k: string) => {
    const x = parseFloat(f[k].replace(",", "."));
    return Number.isFinite(x) ? x : 0;
  };
  const formula = FORMULA_VALUE[f.bsa_formula] ?? BsaFormula.MOSTELLER;
  const bsaM2 = bsa(formula, n("height_cm"), n("weight_kg"));
  const prime = n("prime_volume_ml");
  const npvi = bsaM2 > 0 && prime > 0 ? (prime - n("rap_volume_ml")) / bsaM2 : NaN;

  const submit = async (e: Event) => {
    e.preventDefault();
    const missing = (["kind", "site", "room", "scheduled_start"] as const).filter((k) => !f[k].trim());
    if (missing.length) {
      setError(`Required: ${missing.join(", ")}.`);
      return;
    }
    const start = fromLocalInput(f.scheduled_start);
    if (!Number.isFinite(start)) {
      setError("Scheduled start is not a valid time.");
      return;
    }
    const staff = (name: string) => (name.trim() ? { staffId: name.trim(), displayName: name.trim() } : undefined);
    const req = create(CreateCaseRequestSchema, {
      caseId,
      kind: f.kind === "ecmo" ? CaseKind.ECMO : CaseKind.CPB,
      site: f.site.trim(),
      room: f.room.trim(),
      scheduledStart: timestampFromMs(start),
      details: {
        patient: {
          mrn: f.mrn.trim(),
          mrnAssigningAuthority: f.mrn_assigning_authority.trim(),
          familyName: f.family_name.trim(),
          givenName: f.given_name.trim(),
          birthDate: f.birth_date,
          sex: Number(f.sex) as Sex,
          heightCm: n("height_cm"),
          weightKg: n("weight_kg"),
          bsaFormula: formula,
          bloodType: f.blood_type.trim(),
          allergies: f.allergies
            .split(/[,;\n]/)
            .map((s) => s.trim())
            .filter(Boolean),
        },
        team: {
          surgeon: staff(f.surgeon),
          anesthesiologist: staff(f.anesthesiologist),
          perfusionists: staff(f.perfusionist) ? [staff(f.perfusionist)!] : [],
        },
        procedure: { description: f.procedure.trim(), encounterId: f.encounter.trim() },
        circuit: {
          arterialPump: Number(f.arterial_pump) as PumpType,
          oxygenator: f.oxygenator.trim() || f.oxygenator_lot.trim() ? { model: f.oxygenator.trim(), lot: f.oxygenator_lot.trim() } : undefined,
          reservoir: Number(f.reservoir) as ReservoirType,
          cardioplegiaSystem: f.cardioplegia_system.trim(),
        },
        prime: {
          components: prime > 0 ? [{ name: f.prime_fluid.trim() || "prime", volumeMl: prime }] : [],
          rapVolumeMl: n("rap_volume_ml"),
        },
      },
    });
    setBusy(true);
    setError(null);
    try {
      const r = await cases.createCase(req);
      onClose();
      navigate({ name: "case", id: r.case?.caseId ?? caseId });
    } catch (err) {
      if (ConnectError.from(err).code === Code.Unauthenticated) expireSession();
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const input = (k: string, label: string, props: Record<string, unknown> = {}) => (
    <div class={`field${props.wide ? " wide" : ""}`}>
      <label for={`cf-${k}`}>
        {label}
        {props.unit ? <span class="unit"> ({String(props.unit)})</span> : null}
        {props.required ? <span class="req"> *</span> : null}
      </label>
      <input
        id={`cf-${k}`}
        name={k}
        value={f[k]}
        onInput={set(k)}
        type={((props.type as string) ?? "text") as "text"}
        inputMode={props.type === "number" ? "decimal" : undefined}
        step={props.type === "number" ? "any" : props.type === "datetime-local" ? "1" : undefined}
        required={!!props.required}
        autoComplete="off"
      />
    </div>
  );
  const select = (k: string, label: string, options: [string, string][], required = false) => (
    <div class="field">
      <label for={`cf-${k}`}>
        {label}
        {required ? <span class="req"> *</span> : null}
      </label>
      <select id={`cf-${k}`} name={k} value={f[k]} onChange={set(k)} required={required}>
        {options.map(([v, t]) => (
          <option value={v} key={v}>
            {t}
          </option>
        ))}
      </select>
    </div>
  );

  return (
    <div class="overlay">
      <div class="dialog wide" role="dialog" aria-modal="true" aria-labelledby="cf-title">
      <form class="case-form" data-testid="case-form" onSubmit={submit} noValidate>
        <h2 id="cf-title">New case</h2>
        <div class="fields">
          <h3 class="field-section wide">Case</h3>
          {select("kind", "Kind", [["cpb", "CPB"], ["ecmo", "ECMO"]], true)}
          {fixedSites.length > 0
            ? select(
                "site",
                "Site",
                fixedSites.map((s) => [s, s]),
                true,
              )
            : input("site", "Site", { required: true })}
          {input("room", "Room", { required: true })}
          {input("scheduled_start", "Scheduled start", { type: "datetime-local", required: true })}
          {input("encounter", "Encounter (visit number)")}
          {input("procedure", "Procedure", { wide: true })}
          <h3 class="field-section wide">Patient</h3>
          {input("mrn", "MRN")}
          {input("mrn_assigning_authority", "MRN authority")}
          {input("family_name", "Family name")}
          {input("given_name", "Given name")}
          {input("birth_date", "Birth date", { type: "date" })}
          {select("sex", "Sex", [
            ["0", "—"],
            [String(Sex.FEMALE), "female"],
            [String(Sex.MALE), "male"],
            [String(Sex.OTHER), "other"],
            [String(Sex.UNKNOWN), "unknown"],
          ])}
          {input("height_cm", "Height", { type: "number", unit: "cm" })}
          {input("weight_kg", "Weight", { type: "number", unit: "kg" })}
          {select(
            "bsa_formula",
            "BSA formula",
            BSA_FORMULAS.map(([v, t]) => [BsaFormula[v].toLowerCase(), t]),
          )}
          <div class="field bsa-out">
            <span class="label">BSA</span>
            <output data-testid="bsa" aria-live="polite">
              <strong>{bsaM2 > 0 ? `${bsaM2.toFixed(3)} m²` : "—"}</strong> <small>{bsaFormulaText(formula)}</small>
            </output>
          </div>
          {input("blood_type", "Blood type")}
          {input("allergies", "Allergies (comma-separated)")}
          <h3 class="field-section wide">Team</h3>
          {input("surgeon", "Surgeon")}
          {input("anesthesiologist", "Anaesthesiologist")}
          {input("perfusionist", "Perfusionist")}
          <h3 class="field-section wide">Circuit and prime</h3>
          {select("arterial_pump", "Arterial pump", [
            ["0", "—"],
            [String(PumpType.ROLLER), "roller"],
            [String(PumpType.CENTRIFUGAL), "centrifugal"],
          ])}
          {input("oxygenator", "Oxygenator model")}
          {input("oxygenator_lot", "Oxygenator lot")}
          {select("reservoir", "Reservoir", [
            ["0", "—"],
            [String(ReservoirType.HARD_SHELL), "hard-shell"],
            [String(ReservoirType.SOFT_BAG), "soft bag"],
          ])}
          {input("cardioplegia_system", "Cardioplegia system")}
          {input("prime_fluid", "Prime fluid")}
          {input("prime_volume_ml", "Prime volume", { type: "number", unit: "mL" })}
          {input("rap_volume_ml", "RAP volume", { type: "number", unit: "mL" })}
          <div class="field">
            <span class="label">Net prime volume index</span>
            <output>{Number.isFinite(npvi) ? `${num(npvi, 0)} mL/m²` : "—"}</output>
          </div>
        </div>
        {error && (
          <p class="dialog-error" role="alert" data-testid="error">
            {error}
          </p>
        )}
        <div class="dialog-actions">
          <button type="button" class="btn" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class="btn btn-primary" data-testid="case-submit" disabled={busy}>
            {busy ? "Creating…" : "Create case"}
          </button>
        </div>
      </form>
      </div>
    </div>
  );
}
