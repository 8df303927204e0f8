// The case: live trend strips, device sources, quick entry, the other entry
// kinds, the timeline with corrections and voids, and the lifecycle (close,
// sign with fresh authentication, verification, addenda).

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { addendum, chartEntries, correct } from "../actions";
import { cases, Code, ConnectError, errorText } from "../api";
import { needsFreshAuth, takeIntent, type SignIntent } from "../auth";
import { CaseController } from "../casectl";
import { Dialog, type DialogSpec, type Values } from "../components/Dialog";
import { TrendStrip } from "../components/TrendStrip";
import { EVENT_TEXT, KIND_TEXT, STATUS_TEXT, STRIPS } from "../domain";
import { buildRows, clock, currentEntries, describe, tsMs, type Row } from "../entries";
import {
  actForm,
  artifactForm,
  bloodForm,
  cardioplegiaForm,
  checklistForm,
  correctionForm,
  drugForm,
  entry,
  eventForm,
  fluidForm,
  heparinForm,
  labPanelForm,
  noteForm,
  protamineForm,
  type FormSpec,
} from "../forms";
import { CardioplegiaPhase, EventType, type Entry } from "../gen/perfusion/v1/entry_pb";
import { SignatureMeaning, type Case } from "../gen/perfusion/v1/case_pb";
import type { SourceSummary } from "../gen/perfusion/v1/charting_pb";
import { expireSession, flushOutbox, freshAuth, getState, navigate, outbox, showError, showToast, useApp } from "../store";

const WINDOWS: [string, number][] = [
  ["15 min", 15 * 60000],
  ["1 h", 3600000],
  ["4 h", 4 * 3600000],
  ["All", 0],
];

const MARKED = new Set([
  EventType.BYPASS_ON,
  EventType.FULL_FLOW,
  EventType.CROSS_CLAMP_ON,
  EventType.CROSS_CLAMP_OFF,
  EventType.CIRCULATORY_ARREST_START,
  EventType.CIRCULATORY_ARREST_END,
  EventType.COOLING_START,
  EventType.REWARMING_START,
  EventType.WEANING_START,
  EventType.BYPASS_OFF,
]);

const SHORT: Partial<Record<EventType, string>> = {
  [EventType.BYPASS_ON]: "on",
  [EventType.FULL_FLOW]: "full",
  [EventType.CROSS_CLAMP_ON]: "XC on",
  [EventType.CROSS_CLAMP_OFF]: "XC off",
  [EventType.CIRCULATORY_ARREST_START]: "arrest",
  [EventType.CIRCULATORY_ARREST_END]: "arrest end",
  [EventType.COOLING_START]: "cool",
  [EventType.REWARMING_START]: "rewarm",
  [EventType.WEANING_START]: "wean",
  [EventType.BYPASS_OFF]: "off",
};

type QuickDef = { id: string; label: string; event?: EventType; form?: (now: number) => FormSpec };

function patientLine(c: Case | null): string {
  const p = c?.details?.patient;
  if (!p) return "";
  const name = [p.familyName.toUpperCase(), p.givenName].filter(Boolean).join(", ") || "Patient not named";
  return `${name}${p.mrn ? ` · MRN ${p.mrn}` : ""}`;
}

export function CaseView({ id }: { id: string }) {
  const app = useApp();
  const ctl = useMemo(() => new CaseController(id), [id]);
  const [, setTick] = useState(0);
  const [dialog, setDialog] = useState<DialogSpec | null>(null);
  const [win, setWin] = useState(3600000);
  const lastQuick = useRef<{ id: string; at: number }>({ id: "", at: 0 });

  useEffect(() => {
    window.__tabletPerf = { caseOpenedAt: performance.now(), firstTrendDrawnAt: null };
    const off = ctl.subscribe(() => setTick((n) => n + 1));
    ctl.start();
    const clockTick = setInterval(() => setTick((n) => n + 1), 5000);
    return () => {
      off();
      ctl.stop();
      clearInterval(clockTick);
    };
  }, [ctl]);

  // Finish a signature begun before a fresh sign-in at the identity provider
  // (only once this load has the provider's new token, never with the old one).
  useEffect(() => {
    if (!app.oidcReturned || !app.session || !ctl.c) return;
    const intent = takeIntent();
    if (intent && intent.caseId === id)
      void doSign(intent, true).then((err) => {
        if (err) showError(err);
      });
  }, [app.oidcReturned, app.session?.token, !!ctl.c]);

  // A refusal usually means the case moved on (closed elsewhere): read it again.
  const conflicts = outbox.list().filter((i) => i.caseId === id && i.state === "conflict").length;
  useEffect(() => {
    if (conflicts > 0) void ctl.refreshCase();
  }, [conflicts]);

  const c = ctl.c;
  const state = ctl.state;
  const open = state === "open";
  const items = outbox.list().filter((i) => i.caseId === id);
  const rows = buildRows(ctl.entries, items);
  const sourceIds = ctl.sources.map((s) => s.sourceId);

  // The trend window: anchored at the newest data (device time), so a
  // source running behind the wall clock still shows.
  const ext = ctl.series.extent();
  const to = ext ? ext[1] + 5000 : Date.now();
  const from = win === 0 ? (ext ? ext[0] : to - 3600000) : to - win;

  const fail = (e: unknown) => {
    if (ConnectError.from(e).code === Code.Unauthenticated) expireSession();
    else showError(errorText(e));
  };

  // ------------------------------------------------------------ charting

  const openForm = (f: FormSpec, kind: string) =>
    setDialog({
      title: f.title,
      kind,
      fields: f.fields,
      initial: f.initial,
      wide: f.wide,
      confirmText: "Chart",
      onConfirm: async (v) => {
        const b = f.build(v);
        await chartEntries(
          id,
          b.details.map((d) => entry(id, b.time, d)),
        );
        showToast({ text: `${f.title} charted at ${clock(b.time)}.` });
      },
    });

  const quickEvent = async (q: QuickDef, type: EventType) => {
    const now = Date.now();
    if (lastQuick.current.id === q.id && now - lastQuick.current.at < 1500) return; // a double tap charts once
    lastQuick.current = { id: q.id, at: now };
    const e = entry(id, now, { case: "event", value: { $typeName: "perfusion.v1.Event", type, comment: "" } });
    try {
      await chartEntries(id, [e]);
      showToast({ text: `${EVENT_TEXT[type]} charted at ${clock(now)}.`, entryId: e.entryId, caseId: id, undoable: true });
    } catch (err) {
      showError(errorText(err));
    }
  };

  const cur = currentEntries(ctl.entries);
  const arrestRunning = (() => {
    const ev = cur.filter((e) => e.detail.case === "event").sort((a, b) => tsMs(a.occurredAt) - tsMs(b.occurredAt));
    let on = false;
    for (const e of ev) {
      const t = (e.detail.value as { type: EventType }).type;
      if (t === EventType.CIRCULATORY_ARREST_START) on = true;
      if (t === EventType.CIRCULATORY_ARREST_END) on = false;
    }
    return on;
  })();
  const hadCardioplegia = cur.some((e) => e.detail.case === "cardioplegia");
  // Charted events on the trends (the ones that shape a case), oldest first.
  const markers = cur
    .flatMap((e) => (e.detail.case === "event" && MARKED.has(e.detail.value.type) ? [{ t: tsMs(e.occurredAt), label: SHORT[e.detail.value.type] ?? EVENT_TEXT[e.detail.value.type] }] : []))
    .sort((a, b) => a.t - b.t);

  const QUICK: QuickDef[] = [
    { id: "heparin", label: "Heparin", form: heparinForm },
    { id: "act", label: "ACT", form: actForm },
    { id: "bypass-on", label: "Bypass on", event: EventType.BYPASS_ON },
    { id: "full-flow", label: "Full flow", event: EventType.FULL_FLOW },
    { id: "xclamp-on", label: "X-clamp on", event: EventType.CROSS_CLAMP_ON },
    {
      id: "cardioplegia",
      label: "Cardio\u00adplegia",
      form: (now) => {
        const f = cardioplegiaForm(now, {
          solution: c?.details?.circuit?.cardioplegiaSystem ?? "",
          phase: String(hadCardioplegia ? CardioplegiaPhase.MAINTENANCE : CardioplegiaPhase.INDUCTION),
        });
        return f;
      },
    },
    { id: "cooling", label: "Cooling", event: EventType.COOLING_START },
    { id: "rewarming", label: "Rewarming", event: EventType.REWARMING_START },
    {
      id: "arrest",
      label: arrestRunning ? "Arrest end" : "Arrest start",
      event: arrestRunning ? EventType.CIRCULATORY_ARREST_END : EventType.CIRCULATORY_ARREST_START,
    },
    { id: "xclamp-off", label: "X-clamp off", event: EventType.CROSS_CLAMP_OFF },
    { id: "weaning", label: "Weaning", event: EventType.WEANING_START },
    { id: "bypass-off", label: "Bypass off", event: EventType.BYPASS_OFF },
    { id: "protamine", label: "Protamine", form: protamineForm },
  ];

  const checklistDone = new Set(
    cur.flatMap((e) => (e.detail.case === "checklistItem" ? [`${e.detail.value.section}|${e.detail.value.item}`] : [])),
  );
  const OTHER: [string, string, () => FormSpec][] = [
    ["add-drug", "Drug", () => drugForm(Date.now())],
    ["add-fluid", "Fluid", () => fluidForm(Date.now())],
    ["add-blood-product", "Blood product", () => bloodForm(Date.now())],
    ["add-lab", "Blood gas / lab", () => labPanelForm(Date.now())],
    ["add-checklist", "Checklist", () => checklistForm(Date.now(), checklistDone)],
    ["add-note", "Note", () => noteForm(Date.now())],
    ["add-artifact", "Artifact", () => artifactForm(Date.now(), sourceIds)],
    ["add-event", "Other event", () => eventForm(Date.now())],
  ];

  // --------------------------------------------------------- corrections

  const correctRow = (row: Row) => {
    const f = correctionForm(row.entry, sourceIds);
    if (!f) return;
    setDialog({
      title: `Correct: ${f.title}`,
      kind: "correct",
      message: (
        <p>
          Replaces <del>{describe(row.entry)}</del> at {clock(tsMs(row.entry.occurredAt))}. The original stays on the record, struck through.
        </p>
      ),
      fields: [...f.fields, { name: "reason", label: "Reason for the correction", type: "textarea", required: true, wide: true }],
      initial: { ...f.initial, reason: "" },
      confirmText: "Correct",
      onConfirm: async (v: Values) => {
        const b = f.build(v);
        if (b.details.length !== 1) return "A correction replaces one entry.";
        await correct(id, row.id, v.reason.trim(), entry(id, b.time, b.details[0]));
        showToast({ text: "Correction charted." });
        return undefined;
      },
    });
  };

  const voidRow = (row: Row) =>
    setDialog({
      title: "Void entry",
      kind: "void",
      danger: true,
      message: (
        <p>
          Void <strong>{describe(row.entry)}</strong> at {clock(tsMs(row.entry.occurredAt))}? It stays on the record, struck through, with your reason.
        </p>
      ),
      fields: [{ name: "reason", label: "Reason", type: "textarea", required: true, wide: true }],
      initial: { reason: "" },
      confirmText: "Void",
      onConfirm: async (v) => {
        await correct(id, row.id, v.reason.trim());
        showToast({ text: "Entry voided." });
      },
    });

  // The toast's undo (a void) and edit (a correction) of a quick entry.
  const undoQuick = async (entryId: string) => {
    showToast(null);
    await correct(id, entryId, "Undone at the tablet right after charting (entered in error).");
  };
  const editQuick = (entryId: string) => {
    showToast(null);
    const row = buildRows(ctl.entries, outbox.list().filter((i) => i.caseId === id)).find((r) => r.id === entryId);
    if (row) correctRow(row);
  };

  const discardRow = (row: Row) =>
    setDialog({
      title: "Discard an entry the server refused",
      kind: "discard",
      danger: true,
      message: (
        <p>
          Discard <strong>{describe(row.entry)}</strong>? It was never stored on the record ({row.item?.error}); after this it is gone from this tablet
          too. Chart it again (or as an addendum) if it still belongs on the record.
        </p>
      ),
      fields: [],
      confirmText: "Discard",
      onConfirm: async () => {
        if (row.item) await outbox.discard(row.item.id);
      },
    });

  // ----------------------------------------------------------- lifecycle

  const closeCase = () => {
    const waiting = items.filter((i) => i.state === "pending").length;
    setDialog({
      title: "Close the case",
      kind: "close",
      danger: true,
      message: (
        <>
          <p>Close charting on this case? Afterwards no entries or device data are accepted; only sign-off and addenda.</p>
          {waiting > 0 && (
            <p class="warn">
              {waiting} {waiting === 1 ? "entry is" : "entries are"} not yet stored on the server. They are sent first; the case is closed only when none is
              waiting.
            </p>
          )}
        </>
      ),
      fields: [],
      confirmText: "Close case",
      onConfirm: async () => {
        await flushOutbox();
        const left = outbox.list().filter((i) => i.caseId === id && i.state === "pending").length;
        if (left) return `${left} ${left === 1 ? "entry is" : "entries are"} still waiting to be sent. Close when the tablet is online and they are stored.`;
        try {
          const r = await cases.closeCase({ caseId: id });
          ctl.setCase(r.case);
          showToast({ text: "Case closed. Sign it when you have reviewed the record." });
          return undefined;
        } catch (e) {
          return errorText(e);
        }
      },
    });
  };

  const doSign = async (intent: SignIntent, afterFresh = false): Promise<string | void> => {
    const cfg = getState().config;
    let s = getState().session;
    if (!s) return "Not signed in.";
    try {
      if (!afterFresh && needsFreshAuth(s, cfg?.signAuthMaxAgeSeconds ?? 900)) {
        s = await freshAuth(intent); // an OIDC session leaves here and returns with the intent
        afterFresh = true;
      }
      const send = () =>
        cases.signCase({
          caseId: id,
          meaning: intent.meaning as SignatureMeaning,
          signerDisplayName: intent.displayName,
          expectedLedgerHead: intent.expectedHead ? { sequence: BigInt(intent.expectedHead.sequence), hash: intent.expectedHead.hash } : undefined,
        });
      let r;
      try {
        r = await send();
      } catch (e) {
        if (ConnectError.from(e).code !== Code.Unauthenticated || afterFresh) throw e;
        await freshAuth(intent);
        r = await send();
      }
      ctl.setCase(r.case);
      void ctl.refreshEntries();
      showToast({ text: r.duplicate ? "You had already signed with this meaning; nothing was added." : "Signed." });
      return undefined;
    } catch (e) {
      return errorText(e);
    }
  };

  const signCase = async () => {
    let head = c?.ledgerHead;
    try {
      const r = await cases.getCase({ caseId: id });
      ctl.setCase(r.case);
      head = r.case?.ledgerHead;
    } catch (e) {
      fail(e);
      return;
    }
    const claims = getState().session?.claims;
    const reviewer = claims?.roles.includes("reviewer");
    setDialog({
      title: "Sign the record",
      kind: "sign",
      message: (
        <p>
          You sign the record as it stands now (ledger link {String(head?.sequence ?? "?")}). Signing needs a recent sign-in: you may be asked to sign in
          again.
        </p>
      ),
      fields: [
        {
          name: "meaning",
          label: "Meaning",
          type: "select",
          options: [
            [String(SignatureMeaning.AUTHORED), "authored"],
            [String(SignatureMeaning.REVIEWED), "reviewed"],
            [String(SignatureMeaning.APPROVED), "approved"],
          ],
          required: true,
        },
        { name: "signer_display_name", label: "Your name as shown on the record", type: "text", required: true },
      ],
      initial: {
        meaning: String(reviewer ? SignatureMeaning.REVIEWED : SignatureMeaning.AUTHORED),
        signer_display_name: claims?.name || claims?.sub || "",
      },
      confirmText: "Sign",
      onConfirm: (v) =>
        doSign({
          kind: "sign",
          caseId: id,
          meaning: Number(v.meaning),
          displayName: v.signer_display_name.trim(),
          expectedHead: head ? { sequence: String(head.sequence), hash: head.hash } : undefined,
        }),
    });
  };

  const addAddendum = () =>
    setDialog({
      title: "Addendum",
      kind: "addendum",
      message: <p>An addendum is appended to the signed record; the record itself does not change.</p>,
      fields: [
        { name: "text", label: "Text", type: "textarea", required: true, wide: true },
        { name: "reason", label: "Why it is needed", type: "text", required: true, wide: true },
      ],
      initial: { text: "", reason: "" },
      confirmText: "Add addendum",
      onConfirm: async (v) => {
        await addendum(id, v.text.trim(), v.reason.trim());
        showToast({ text: "Addendum charted." });
      },
    });

  // ---------------------------------------------------------------- view

  const p = c?.details?.patient;
  return (
    <main class="case" data-testid="case-view" data-case-id={id} data-state={state}>
      <header class="case-head">
        <button type="button" class="btn" onClick={() => navigate({ name: "board" })} aria-label="Back to the board">
          ← Board
        </button>
        <div class="case-title">
          <h1>{patientLine(c) || (ctl.loadError ? "Case unavailable" : "Loading…")}</h1>
          <div class="muted small">
            {c ? `${KIND_TEXT[c.kind]} · ${c.site} ${c.room} · ${c.details?.procedure?.description || "procedure not recorded"}` : ""}
            {p?.bsaM2 ? ` · BSA ${p.bsaM2.toFixed(2)} m² · ${p.weightKg} kg` : ""}
          </div>
        </div>
        <span class={`chip status state-${state}`} aria-label="Case status">
          {c ? STATUS_TEXT[c.status] : "…"}
        </span>
        <span class="verify">
          Record:{" "}
          <span data-testid="verify-state" title={ctl.verify.detail}>
            {ctl.verify.text}
          </span>
          <button type="button" class="btn btn-small" onClick={() => void ctl.runVerify()} aria-label="Verify the record now">
            Verify
          </button>
        </span>
        {open && (
          <button type="button" class="btn btn-danger" data-testid="close-case" onClick={closeCase} disabled={!c}>
            Close case
          </button>
        )}
        {!open && (
          <button type="button" class="btn btn-primary" data-testid="sign-case" onClick={() => void signCase()}>
            Sign
          </button>
        )}
        {state === "signed" && (
          <button type="button" class="btn" data-testid="add-addendum" onClick={addAddendum}>
            Addendum
          </button>
        )}
      </header>
      {(ctl.fromCache || ctl.loadError || ctl.watch === "reconnecting") && (
        <p class="banner warn" role="status">
          {ctl.loadError
            ? ctl.loadError
            : ctl.fromCache
              ? "Offline: showing the case as last loaded. Entries you chart are kept and sent when the server is back."
              : "Reconnecting to the live record…"}
        </p>
      )}
      {c && c.signatures.length > 0 && (
        <p class="signatures small">
          {c.signatures.map((s, i) => (
            <span key={i}>
              Signed ({SignatureMeaning[s.meaning].toLowerCase()}) by {s.signerDisplayName || s.signer} at {clock(tsMs(s.signedAt))}
              {i < c.signatures.length - 1 ? "; " : ""}
            </span>
          ))}
        </p>
      )}
      <div class="case-body">
        <div class="left">
          <div class="window-select" role="group" aria-label="Trend window">
            {WINDOWS.map(([label, ms]) => (
              <button type="button" key={label} class={`btn btn-small${win === ms ? " on" : ""}`} aria-pressed={win === ms} onClick={() => setWin(ms)}>
                {label}
              </button>
            ))}
            <span class="muted small">{ctl.watch === "live" ? "live" : ctl.watch}</span>
          </div>
          <div class="strips">
            {STRIPS.map((s) => (
              <TrendStrip key={s.id} ctl={ctl} strip={s} from={from} to={to} version={ctl.version} markers={markers} />
            ))}
          </div>
          <Sources sources={ctl.sources} ended={!open} />
        </div>
        <div class="right">
          <section class="quick" aria-label="Quick entry">
            {QUICK.map((q) => (
              <button
                type="button"
                key={q.id}
                class={`btn quick-btn${q.form ? " has-form" : ""}`}
                data-testid={`quick-${q.id}`}
                disabled={!open}
                onClick={() => (q.form ? openForm(q.form(Date.now()), q.id) : void quickEvent(q, q.event!))}
              >
                {q.form ? `${q.label}\u2060…` : q.label}
              </button>
            ))}
          </section>
          <section class="other" aria-label="Other entries">
            {OTHER.map(([tid, label, f]) => (
              <button type="button" key={tid} class="btn other-btn" data-testid={tid} disabled={!open} onClick={() => openForm(f(), tid)}>
                {label}…
              </button>
            ))}
          </section>
          <Timeline rows={rows} open={open} onCorrect={correctRow} onVoid={voidRow} onDiscard={discardRow} />
        </div>
      </div>
      {app.toast?.undoable && app.toast.caseId === id && app.toast.entryId && open && !items.some((i) => i.id === app.toast!.entryId && i.state === "conflict") && (
        <div class="toast" role="status" data-testid="toast">
          <span>{app.toast.text}</span>
          <button type="button" class="btn btn-small" data-testid="toast-undo" onClick={() => void undoQuick(app.toast!.entryId!)}>
            Undo
          </button>
          <button type="button" class="btn btn-small" data-testid="toast-edit" onClick={() => editQuick(app.toast!.entryId!)}>
            Edit time
          </button>
        </div>
      )}
      {dialog && <Dialog spec={dialog} onClose={() => setDialog(null)} />}
    </main>
  );
}

type RowActions = { open: boolean; onCorrect: (r: Row) => void; onVoid: (r: Row) => void; onDiscard: (r: Row) => void };

function Timeline({ rows, ...act }: { rows: Row[] } & RowActions) {
  return (
    <section class="timeline-wrap" aria-label="Timeline">
      <h2 class="sr-only">Timeline</h2>
      <ol class="timeline" data-testid="timeline">
        {rows.length === 0 && <li class="muted empty">Nothing charted yet.</li>}
        {rows.map((r) => (
          <TimelineRow key={r.id} r={r} {...act} />
        ))}
      </ol>
    </section>
  );
}

const STATUS_LABEL: Record<Row["status"], string> = {
  pending: "pending",
  stored: "",
  corrected: "corrected",
  voided: "voided",
  conflict: "not stored",
};

function TimelineRow({ r, open, onCorrect, onVoid, onDiscard }: { r: Row } & RowActions) {
  const e: Entry = r.entry;
  const struck = r.status === "corrected" || r.status === "voided";
  const canEdit = open && (r.status === "stored" || r.status === "pending") && !r.isVoid && e.detail.case !== "addendum";
  return (
    <li class={`entry st-${r.status}`} data-testid="entry" data-entry-id={r.id} data-status={r.status}>
      <div class="entry-main">
        <time class="entry-time" dateTime={new Date(r.time).toISOString()}>
          {clock(r.time)}
        </time>
        <div class="entry-what">
          {r.isVoid ? (
            <>
              <span class="tag">void</span> <del>{describe(e)}</del>
            </>
          ) : r.supersedes ? (
            <>
              <del>
                {tsMs(r.supersedes.occurredAt) !== tsMs(e.occurredAt) ? `${clock(tsMs(r.supersedes.occurredAt))} ` : ""}
                {describe(r.supersedes)}
              </del>{" "}
              <span aria-hidden="true">→</span> <span class="sr-only">replaced by</span> {describe(e)}
            </>
          ) : struck ? (
            <del>{describe(e)}</del>
          ) : (
            describe(e)
          )}
          {STATUS_LABEL[r.status] && <span class={`tag tag-${r.status}`}>{STATUS_LABEL[r.status]}</span>}
          {e.late && <span class="tag">late</span>}
        </div>
      </div>
      <div class="entry-foot">
        <div class="entry-meta small muted">
          {[
            r.reason ? <span>reason: {r.reason}</span> : null,
            r.status === "conflict" ? <span class="conflict-msg">not stored: {r.item?.error}</span> : null,
            r.status === "pending" ? <span>kept on this tablet until the server has it</span> : null,
            e.author ? <span>by {e.author}</span> : null,
            tsMs(e.recordedAt) > 0 ? <span>recorded {clock(tsMs(e.recordedAt))}</span> : null,
          ]
            .filter(Boolean)
            .map((x, i) => (
              <>
                {i > 0 && " · "}
                {x}
              </>
            ))}
        </div>
        {canEdit && (
          <div class="entry-actions">
            <button type="button" class="btn btn-small" data-testid="entry-correct" onClick={() => onCorrect(r)} aria-label={`Correct ${describe(e)}`}>
              Correct
            </button>
            <button type="button" class="btn btn-small" data-testid="entry-void" onClick={() => onVoid(r)} aria-label={`Void ${describe(e)}`}>
              Void
            </button>
          </div>
        )}
        {r.status === "conflict" && r.item && (
          <div class="entry-actions">
            <button type="button" class="btn btn-small" onClick={() => void outbox.retry(r.item!.id).then(() => flushOutbox())}>
              Retry
            </button>
            <button type="button" class="btn btn-small btn-danger" onClick={() => onDiscard(r)}>
              Discard
            </button>
          </div>
        )}
      </div>
    </li>
  );
}

/** A short duration from seconds: "4 s", "12 min", "2.8 h". */
function duration(sec: number): string {
  if (sec < 90) return `${Math.round(sec)} s`;
  if (sec < 90 * 60) return `${Math.round(sec / 60)} min`;
  if (sec < 48 * 3600) return `${(sec / 3600).toFixed(1)} h`;
  return `${Math.round(sec / 86400)} d`;
}

function Sources({ sources, ended }: { sources: SourceSummary[]; ended: boolean }) {
  const now = Date.now();
  return (
    <section class="sources" data-testid="sources" aria-label="Device sources">
      <h2>Sources</h2>
      {sources.length === 0 && <span class="muted small">No device data yet.</span>}
      {sources.map((s) => {
        const age = tsMs(s.lastReceivedAt) ? (now - tsMs(s.lastReceivedAt)) / 1000 : Infinity;
        // ListSources is the truth: a watch message naming a source only makes the tablet ask sooner.
        const off = s.lastBatchImplausible;
        const st = off ? "implausible" : age <= 30 && !ended ? "connected" : "stale";
        const lag = Number(s.minReceiptLagMs) / 1000;
        return (
          <div class={`source src-${st}`} data-testid="source" data-source-id={s.sourceId} data-state={st} key={s.sourceId}>
            <strong>{s.sourceId}</strong>
            <span class="tag">{st === "implausible" ? "clock implausible" : st}</span>
            <span class="small muted">
              {Number.isFinite(age) ? duration(Math.max(0, age)) : "—"} ago · clock{" "}
              {Math.abs(lag) < 1 ? "in step" : `${duration(Math.abs(lag))} ${lag > 0 ? "behind" : "ahead"}`}
              {s.clockImplausible && !off ? ` · ${s.implausibleBatches} batches mistimed` : ""}
            </span>
          </div>
        );
      })}
    </section>
  );
}
