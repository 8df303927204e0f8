// The live state of one open case: the case itself, its entries (history),
// its trend buckets, its device sources and the live DO2i. It follows the
// case with WatchCase: first the backlog from position 0 at a bucket width
// that suits the case's length, then live 5-second buckets from the
// position the backlog reached. After a disconnect it calls again with
// after_position = the last position received, so it gets exactly what it
// missed. It also keeps a copy of the case and its entries in
// sessionStorage so a reload without network still shows the case.

import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { cases, charting, Code, ConnectError, errorText, isNetworkError, records, review } from "./api";
import { computeDo2i, DEFAULT_DO2I_CONFIG, type Do2iResult, type EventName, type Track } from "./do2i";
import { DO2I_INPUTS, WATCHED_CHANNELS } from "./domain";
import { currentEntries, tsMs } from "./entries";
import { CaseSchema, CaseStatus, type Case } from "./gen/perfusion/v1/case_pb";
import type { SourceSummary, WatchCaseResponse } from "./gen/perfusion/v1/charting_pb";
import { EntrySchema, EventType, SampleSite, type Entry } from "./gen/perfusion/v1/entry_pb";
import { SeriesStore } from "./series";
import { acks, expireSession, getState } from "./store";

export const LIVE_WIDTH_MS = 5000;
const NICE_WIDTHS = [5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000, 900000, 1800000, 3600000];

/** The backlog's bucket width: about 1,500 buckets over the case so far, at least the live width. */
export function backlogWidth(spanMs: number): number {
  const want = spanMs / 1500;
  return NICE_WIDTHS.find((w) => w >= want) ?? NICE_WIDTHS[NICE_WIDTHS.length - 1];
}

export type WatchState = "loading" | "backlog" | "live" | "reconnecting" | "ended" | "failed";

export interface VerifyState {
  text: string; // verified | failed: … | unknown
  detail?: string;
}

const CACHE_KEY = "perfusion.case-cache";

declare global {
  interface Window {
    __tabletPerf?: { caseOpenedAt: number; firstTrendDrawnAt: number | null };
  }
}

/** Waits ms, or less when aborted or when the network comes back. */
const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(t);
      window.removeEventListener("online", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    window.addEventListener("online", done);
    signal.addEventListener("abort", done);
  });

export class CaseController {
  c: Case | null = null;
  readonly entries = new Map<string, Entry>();
  readonly series = new SeriesStore();
  sources: SourceSummary[] = [];
  readonly implausible = new Set<string>();
  position = 0n;
  watch: WatchState = "loading";
  loadError: string | null = null;
  fromCache = false;
  verify: VerifyState = { text: "unknown" };
  do2i: Do2iResult | null = null;
  /** The server's metrics of a closed or signed case (GetCaseMetrics): the signed figures. */
  signed: { minutesBelow: number | null; threshold: number } | null = null;
  threshold: number;
  thresholdSource: "server" | "default";
  /** Changes with every update, so views know to redraw trends. */
  version = 0;

  private readonly abort = new AbortController();
  private subs = new Set<() => void>();
  private pending = false;
  private sourcesTimer: number | undefined;
  private unAck: () => void;
  private watchStarted = false;

  constructor(readonly caseId: string) {
    const t = getState().config?.do2iThreshold;
    this.threshold = t && t > 0 ? t : DEFAULT_DO2I_CONFIG.threshold;
    this.thresholdSource = t && t > 0 ? "server" : "default";
    const onAck = (caseId: string, result: unknown) => {
      if (caseId !== this.caseId || !result) return;
      const e = result as Entry;
      if (e.entryId) {
        this.entries.set(e.entryId, e);
        this.changed();
      }
    };
    acks.add(onAck);
    this.unAck = () => acks.delete(onAck);
  }

  subscribe(fn: () => void): () => void {
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }

  /** Coalesces updates into one per frame. */
  changed(): void {
    this.version++;
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.recomputeDo2i();
      for (const f of this.subs) f();
    });
  }

  start(): void {
    void this.load();
  }

  stop(): void {
    this.abort.abort();
    clearTimeout(this.sourcesTimer);
    this.unAck();
  }

  get state(): "open" | "closed" | "signed" {
    const s = this.c?.status;
    return s === CaseStatus.SIGNED ? "signed" : s === CaseStatus.CLOSED ? "closed" : "open";
  }

  private async load(): Promise<void> {
    const signal = this.abort.signal;
    try {
      // The case first (its span sets the backlog's bucket width), then the
      // watch and the history in parallel: the first trend waits for nothing else.
      const entries = charting.listEntries({ caseId: this.caseId, includeHistory: true }, { signal });
      entries.catch(() => {}); // awaited below; never an unhandled rejection
      const cr = await cases.getCase({ caseId: this.caseId }, { signal });
      this.c = cr.case ?? null;
      this.watchStarted = true;
      void this.watchLoop();
      const er = await entries;
      for (const e of er.entries) this.entries.set(e.entryId, e);
      this.fromCache = false;
      this.saveCache();
    } catch (e) {
      if (signal.aborted) return;
      const err = ConnectError.from(e);
      if (err.code === Code.Unauthenticated) {
        expireSession();
        return;
      }
      if (!this.restoreCache()) {
        this.loadError = errorText(err);
        this.watch = "failed";
        this.changed();
        if (!isNetworkError(err)) return;
      }
    }
    this.changed();
    if (this.c && this.c.status >= CaseStatus.CLOSED) {
      void this.runVerify();
      void this.loadMetrics();
    }
    void this.refreshSources();
    if (!this.watchStarted) {
      this.watchStarted = true;
      void this.watchLoop();
    }
  }

  private saveCache(): void {
    if (!this.c) return;
    try {
      sessionStorage.setItem(
        CACHE_KEY,
        JSON.stringify({ caseId: this.caseId, case: toJson(CaseSchema, this.c), entries: [...this.entries.values()].map((e) => toJson(EntrySchema, e)) }),
      );
    } catch {
      /* too big for sessionStorage: the cache is a convenience only */
    }
  }

  private restoreCache(): boolean {
    try {
      const raw = sessionStorage.getItem(CACHE_KEY);
      if (!raw) return false;
      const x = JSON.parse(raw) as { caseId: string; case: JsonValue; entries: JsonValue[] };
      if (x.caseId !== this.caseId) return false;
      this.c = fromJson(CaseSchema, x.case);
      for (const j of x.entries) {
        const e = fromJson(EntrySchema, j);
        this.entries.set(e.entryId, e);
      }
      this.fromCache = true;
      return true;
    } catch {
      return false;
    }
  }

  /** Follows the case: backlog, then live; resumes from the last position after any break. */
  private async watchLoop(): Promise<void> {
    const signal = this.abort.signal;
    // The case's data spans from its scheduled start or its first datum,
    // whichever is earlier (a case charted after the fact has device times
    // long before it started on this server).
    const now = Date.now();
    const starts = this.c ? [tsMs(this.c.scheduledStart), tsMs(this.c.startedAt), tsMs(this.c.createdAt)].filter((t) => t > 0 && t < now) : [];
    const started = starts.length ? Math.min(...starts) : now;
    let width = this.position === 0n ? backlogWidth(Math.max(0, now - started)) : LIVE_WIDTH_MS;
    let backoff = 1000;
    while (!signal.aborted) {
      const one = new AbortController();
      const stop = () => one.abort();
      signal.addEventListener("abort", stop);
      let switchToLive = false;
      try {
        this.watch = width === LIVE_WIDTH_MS && this.position > 0n ? "live" : "backlog";
        const stream = charting.watchCase(
          { caseId: this.caseId, afterPosition: this.position, bucketWidthMs: BigInt(width), channels: WATCHED_CHANNELS },
          { signal: one.signal },
        );
        for await (const m of stream) {
          backoff = 1000;
          this.apply(m);
          if (m.caughtUp) {
            if (this.watch !== "live") {
              this.watch = "live";
              this.changed();
            }
            if (width !== LIVE_WIDTH_MS) {
              switchToLive = true;
              break;
            }
          }
          if (m.final) break;
        }
        if ((this.watch as WatchState) === "ended") return;
        if (switchToLive) {
          width = LIVE_WIDTH_MS;
          continue;
        }
        // The server ended the stream without final (restart, proxy): resume.
        await sleep(backoff, signal);
      } catch (e) {
        if (signal.aborted) return;
        const err = ConnectError.from(e);
        if (err.code === Code.Unauthenticated) {
          this.watch = "reconnecting";
          this.changed();
          expireSession();
          await this.untilSignedIn(signal);
          continue;
        }
        if (!isNetworkError(err) && err.code !== Code.Internal && err.code !== Code.ResourceExhausted) {
          this.watch = "failed";
          this.loadError = errorText(err);
          this.changed();
          return;
        }
        this.watch = "reconnecting";
        this.changed();
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 10000);
      } finally {
        signal.removeEventListener("abort", stop);
        one.abort();
      }
    }
  }

  private untilSignedIn(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (getState().session || signal.aborted) {
          clearInterval(t);
          resolve();
        }
      };
      const t = setInterval(check, 500);
    });
  }

  private apply(m: WatchCaseResponse): void {
    if (this.fromCache || this.loadError) {
      // Opened offline from the copy: the server answers again, so read the real thing.
      this.fromCache = false;
      this.loadError = null;
      void this.refreshCase();
      void this.refreshEntries();
    }
    if (m.position > this.position) this.position = m.position;
    for (const s of m.samples) {
      this.series.add(
        s.channel,
        s.buckets.map((b) => ({ start: Number(b.startUnixMs), count: Number(b.count), min: b.min, max: b.max, mean: b.mean })),
      );
    }
    for (const e of m.entries) this.entries.set(e.entryId, e);
    if (m.entries.length && this.c && this.c.status === CaseStatus.PLANNED) this.c.status = CaseStatus.IN_PROGRESS;
    for (const ic of m.implausibleClocks) this.implausible.add(ic.sourceId);
    if (m.implausibleClocks.length) void this.refreshSources();
    if (m.status !== CaseStatus.UNSPECIFIED) void this.refreshCase();
    if (m.final) {
      this.watch = "ended";
      void this.refreshEntries();
    }
    if (m.samples.length && this.c?.status === CaseStatus.PLANNED) this.c.status = CaseStatus.IN_PROGRESS;
    this.changed();
  }

  /** Re-reads the case (after a lifecycle change, a signature). */
  async refreshCase(): Promise<void> {
    try {
      const r = await cases.getCase({ caseId: this.caseId }, { signal: this.abort.signal });
      if (r.case) this.c = r.case;
      this.saveCache();
      if (this.c && this.c.status >= CaseStatus.CLOSED) {
        void this.runVerify();
        void this.loadMetrics();
      }
      this.changed();
    } catch {
      /* the watch reports connection problems */
    }
  }

  /** Re-reads the history (addenda come by ListEntries after the watch ended). */
  async refreshEntries(): Promise<void> {
    try {
      const r = await charting.listEntries({ caseId: this.caseId, includeHistory: true }, { signal: this.abort.signal });
      for (const e of r.entries) this.entries.set(e.entryId, e);
      this.saveCache();
      this.changed();
    } catch {
      /* shown as offline elsewhere */
    }
  }

  async refreshSources(): Promise<void> {
    clearTimeout(this.sourcesTimer);
    try {
      const r = await charting.listSources({ caseId: this.caseId }, { signal: this.abort.signal });
      this.sources = r.sources;
      this.changed();
    } catch {
      /* keep the last known */
    }
    if (!this.abort.signal.aborted && this.state === "open") this.sourcesTimer = window.setTimeout(() => void this.refreshSources(), 10000);
  }

  /** Reads the server's metrics of a closed case: the signed DO2i minutes below and the target they used. */
  async loadMetrics(): Promise<void> {
    try {
      const r = await review.getCaseMetrics({ caseId: this.caseId }, { signal: this.abort.signal });
      const t = r.thresholds?.do2iThreshold;
      if (t && t > 0) {
        this.threshold = t;
        this.thresholdSource = "server";
      }
      const v = r.case?.metrics["minutes_do2i_below"];
      this.signed = { minutesBelow: v === undefined ? null : v, threshold: this.threshold };
      this.changed();
    } catch {
      /* metrics are computed at close; until then the live figure stands */
    }
  }

  async runVerify(): Promise<void> {
    try {
      const r = await records.verifyRecord({ caseId: this.caseId }, { signal: this.abort.signal });
      this.verify = r.ok
        ? { text: "verified", detail: `${r.linksVerified} links, ${r.entriesVerified} entries, ${r.sampleBatchesVerified} sample batches re-hashed` }
        : { text: `failed: ${r.firstBadLink?.detail || "the record does not verify"}`, detail: r.firstBadLink ? `link ${r.firstBadLink.sequence} (${r.firstBadLink.kind} ${r.firstBadLink.ref})` : undefined };
    } catch (e) {
      this.verify = { text: "unknown", detail: errorText(e) };
    }
    this.changed();
  }

  /** Recomputes the live DO2i from the buckets held and the current entries. */
  private recomputeDo2i(): void {
    const bsa = this.c?.details?.patient?.bsaM2 ?? 0;
    const cur = currentEntries(this.entries);
    const marks = cur.flatMap((e) => (e.detail.case === "artifactMark" ? [e.detail.value] : []));
    const track = (ch: string): Track => {
      const s = this.series.get(ch);
      if (!s) return [];
      const m = marks.filter((x) => x.channel === ch).map((x) => [tsMs(x.start), tsMs(x.end)] as const);
      const out: Track = new Array(s.length);
      for (let i = 0; i < s.length; i++) {
        const t = s.t[i];
        out[i] = { t, v: s.mean[i], skip: s.count[i] === 0 || m.some(([a, b]) => t >= a && t < b) };
      }
      return out;
    };
    const lab = (analyte: string): Track =>
      cur
        .flatMap((e) =>
          e.detail.case === "labResult" &&
          e.detail.value.analyte === analyte &&
          (analyte === "hb" || e.detail.value.site === SampleSite.UNSPECIFIED || e.detail.value.site === SampleSite.ARTERIAL)
            ? [{ t: tsMs(e.occurredAt), v: e.detail.value.value, skip: false }]
            : [],
        )
        .sort((a, b) => a.t - b.t);
    const names: [EventType, EventName][] = [
      [EventType.BYPASS_ON, "bypass_on"],
      [EventType.BYPASS_OFF, "bypass_off"],
      [EventType.FULL_FLOW, "full_flow"],
      [EventType.WEANING_START, "weaning_start"],
      [EventType.CIRCULATORY_ARREST_START, "circulatory_arrest_start"],
      [EventType.CIRCULATORY_ARREST_END, "circulatory_arrest_end"],
    ];
    const events: Partial<Record<EventName, number[]>> = {};
    for (const e of cur) {
      if (e.detail.case !== "event") continue;
      const n = names.find(([t]) => t === (e.detail.value as { type: EventType }).type)?.[1];
      if (n) (events[n] ??= []).push(tsMs(e.occurredAt));
    }
    for (const k of Object.keys(events) as EventName[]) events[k]!.sort((a, b) => a - b);
    const [flow, hb, sao2, po2] = DO2I_INPUTS.map(track);
    this.do2i = computeDo2i({
      bsaM2: bsa,
      flow,
      hb,
      sao2,
      po2,
      labHb: lab("hb"),
      labSao2: lab("sao2"),
      labPo2: lab("po2"),
      events,
      extent: this.series.extent(),
      now: Date.now(),
      cfg: { ...DEFAULT_DO2I_CONFIG, threshold: this.threshold },
    });
  }

  /** The case's status as the tablet last knew it, for lifecycle buttons. */
  setCase(c: Case | undefined): void {
    if (!c) return;
    this.c = c;
    this.saveCache();
    if (c.status >= CaseStatus.CLOSED) {
      void this.runVerify();
      void this.loadMetrics();
    }
    this.changed();
  }
}
