// Live DO2i and minutes below the target, by the definitions of the signed
// metrics (charting/metrics_track.go do2i, charting/metrics_window.go):
//
//   DO2i = pump flow / BSA × CaO2 × 10,  CaO2 = 1.34 × Hb × SaO2 + 0.003 × PaO2
//
// at each pump-flow sample, from the Hb, SaO2 and PaO2 in force then: the
// in-line value while fresh (within the hold), else the latest arterial lab
// result. Each sample stands until the next one, at most the hold (1 min).
// Minutes below count only over full-flow (established) bypass: each run
// bypass_on → bypass_off (a run still open runs to now; no charted bypass:
// the span of the data, as on ECMO), from the charted full_flow to the
// charted weaning_start, else the flow rule (flow held at ≥ 80 % of the
// run's time-weighted median flow for 1 min), else the minutes rule (5 min
// after on, 10 before off), less charted circulatory arrest.
//
// The server computes the signed figure from the raw samples when the case
// is closed; the tablet computes it live from the trend buckets it holds,
// so the live figure may differ from the signed one by a bucket's width.

export interface Point {
  t: number;
  v: number;
  skip: boolean;
}

export type Track = Point[];

interface Span {
  from: number;
  to: number;
}

/** Thresholds of the site (charting.MetricsConfig defaults). */
export interface Do2iConfig {
  threshold: number; // mL/min/m²
  holdMs: number; // 60 000
  fullFlowPct: number; // 80
  fullFlowSustainMinutes: number; // 1
  fullFlowAfterOnMinutes: number; // 5
  weaningBeforeOffMinutes: number; // 10
}

export const DEFAULT_DO2I_CONFIG: Do2iConfig = {
  threshold: 280,
  holdMs: 60_000,
  fullFlowPct: 80,
  fullFlowSustainMinutes: 1,
  fullFlowAfterOnMinutes: 5,
  weaningBeforeOffMinutes: 10,
};

export type EventName =
  | "bypass_on"
  | "bypass_off"
  | "full_flow"
  | "weaning_start"
  | "circulatory_arrest_start"
  | "circulatory_arrest_end";

export interface Do2iInput {
  bsaM2: number;
  /** In-line tracks by channel: pump_flow, inline_hb, inline_sao2, inline_po2. */
  flow: Track;
  hb: Track;
  sao2: Track;
  po2: Track;
  /** Current arterial (or unsited) lab results, time-ordered. */
  labHb: Track;
  labSao2: Track;
  labPo2: Track;
  /** Current event times by name, ascending. */
  events: Partial<Record<EventName, number[]>>;
  /** First and last time of any device data (the ECMO window). */
  extent: [number, number] | null;
  /** Now, for a run still open. */
  now: number;
  cfg: Do2iConfig;
}

export type WindowSource = "charted" | "flow_rule" | "minutes_rule" | "none";

export interface Do2iResult {
  /** DO2i at every flow sample (null where skipped). */
  t: number[];
  v: (number | null)[];
  /** The latest usable DO2i. */
  current: { t: number; v: number } | null;
  minutesBelow: number;
  minutesSkipped: number;
  nadir: number | null;
  fullFlowMinutes: number;
  /** How the full-flow window was found (worst end over the runs). */
  source: WindowSource;
  /** Whether now lies in a full-flow window (minutes below are accumulating). */
  inFullFlow: boolean;
  windows: Span[];
}

/** The value in force at t: the latest sample at or before t, if usable and less than hold old. */
export function valueAt(tr: Track, t: number, hold: number): number | null {
  let lo = 0;
  let hi = tr.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (tr[mid].t <= t) lo = mid + 1;
    else hi = mid;
  }
  const i = lo - 1;
  if (i < 0 || tr[i].skip || t - tr[i].t >= hold) return null;
  return tr[i].v;
}

function segmentsOf(tr: Track, windows: Span[], hold: number): { from: number; to: number; v: number; skip: boolean }[] {
  const out: { from: number; to: number; v: number; skip: boolean }[] = [];
  for (let i = 0; i < tr.length; i++) {
    const p = tr[i];
    let end = p.t + hold;
    if (i + 1 < tr.length) end = Math.min(end, tr[i + 1].t);
    for (const w of windows) {
      const from = Math.max(p.t, w.from);
      const to = Math.min(end, w.to);
      if (to > from) out.push({ from, to, v: p.v, skip: p.skip });
    }
  }
  return out;
}

/** Pairs each start with the first end after it; a repeated start before the end: the later one counts. */
export function intervals(starts: number[] = [], ends: number[] = []): Span[] {
  const out: Span[] = [];
  let j = 0;
  for (let i = 0; i < starts.length; i++) {
    const s = starts[i];
    const nextEnd = ends.find((x) => x > s) ?? Infinity;
    if (i + 1 < starts.length && starts[i + 1] < nextEnd) continue;
    while (j < ends.length && ends[j] <= s) j++;
    if (j < ends.length) {
      out.push({ from: s, to: ends[j] });
      j++;
    }
  }
  return out;
}

function subtract(w: Span, cut: Span[]): Span[] {
  let out = [w];
  for (const c of cut) {
    const next: Span[] = [];
    for (const s of out) {
      if (c.to <= s.from || c.from >= s.to) {
        next.push(s);
        continue;
      }
      if (c.from > s.from) next.push({ from: s.from, to: c.from });
      if (c.to < s.to) next.push({ from: c.to, to: s.to });
    }
    out = next;
  }
  return out;
}

const rank: Record<WindowSource, number> = { charted: 1, flow_rule: 2, minutes_rule: 3, none: 0 };

/** Computes the live DO2i series and minutes below the target. */
export function computeDo2i(x: Do2iInput): Do2iResult {
  const { cfg } = x;
  const hold = cfg.holdMs;
  const ev = x.events;

  // DO2i at each flow sample.
  const t: number[] = new Array(x.flow.length);
  const v: (number | null)[] = new Array(x.flow.length);
  const track: Track = new Array(x.flow.length);
  let current: { t: number; v: number } | null = null;
  for (let i = 0; i < x.flow.length; i++) {
    const p = x.flow[i];
    const hb = valueAt(x.hb, p.t, hold) ?? valueAt(x.labHb, p.t, Infinity);
    const sa = valueAt(x.sao2, p.t, hold) ?? valueAt(x.labSao2, p.t, Infinity);
    const po = valueAt(x.po2, p.t, hold) ?? valueAt(x.labPo2, p.t, Infinity);
    const skip = p.skip || hb === null || sa === null || po === null || !(x.bsaM2 > 0);
    const d = skip ? NaN : (p.v / x.bsaM2) * (1.34 * hb! * (sa! / 100) + 0.003 * po!) * 10;
    t[i] = p.t;
    v[i] = skip ? null : d;
    track[i] = { t: p.t, v: d, skip };
    if (!skip) current = { t: p.t, v: d };
  }

  // Bypass runs: charted pairs, a run still open, or the span of the data.
  let runs = intervals(ev.bypass_on, ev.bypass_off);
  const ons = ev.bypass_on ?? [];
  const offs = ev.bypass_off ?? [];
  const lastOn = ons.length ? ons[ons.length - 1] : undefined;
  if (lastOn !== undefined && !offs.some((o) => o > lastOn)) {
    const lastFlow = x.flow.length ? x.flow[x.flow.length - 1].t : lastOn;
    const end = Math.min(x.now, Math.max(lastFlow + hold, lastOn));
    if (end > lastOn && !runs.some((r) => r.from === lastOn)) runs = [...runs, { from: lastOn, to: end }];
  }
  if (runs.length === 0 && x.extent && x.extent[1] > x.extent[0]) {
    runs = [{ from: x.extent[0], to: x.extent[1] }];
  }

  const arrest = intervals(ev.circulatory_arrest_start, ev.circulatory_arrest_end);
  const windows: Span[] = [];
  let worst: WindowSource = "charted";
  let any = false;
  for (const r of runs) {
    const { parts, fs, ts } = fullFlowParts(r, x, cfg);
    if (parts.length === 0) continue;
    any = true;
    for (const p of parts) windows.push(...subtract(p, arrest));
    for (const s of [fs, ts]) if (rank[s] > rank[worst]) worst = s;
  }
  const source: WindowSource = any ? worst : "none";

  const segs = segmentsOf(track, windows, hold);
  let below = 0;
  let skipped = 0;
  let nadir: number | null = null;
  for (const s of segs) {
    const d = s.to - s.from;
    if (s.skip) {
      skipped += d;
      continue;
    }
    if (nadir === null || s.v < nadir) nadir = s.v;
    if (s.v < cfg.threshold) below += d;
  }
  const ff = windows.reduce((a, w) => a + (w.to - w.from), 0);
  const lastT = x.flow.length ? x.flow[x.flow.length - 1].t : -Infinity;
  const inFullFlow = windows.some((w) => lastT >= w.from && lastT < w.to + hold);
  return {
    t,
    v,
    current,
    minutesBelow: below / 60000,
    minutesSkipped: skipped / 60000,
    nadir,
    fullFlowMinutes: ff / 60000,
    source,
    inFullFlow,
    windows,
  };
}

function fullFlowParts(r: Span, x: Do2iInput, cfg: Do2iConfig): { parts: Span[]; fs: WindowSource; ts: WindowSource } {
  const parts: Span[] = [];
  let [from, fs] = fullFlowFrom(r, x, cfg);
  let ts: WindowSource = "none";
  if (fs === "none") return { parts, fs, ts };
  for (;;) {
    const [to, src] = fullFlowTo(r, from, x, cfg);
    if (src === "none" || to <= from) return { parts, fs, ts };
    parts.push({ from, to });
    ts = src;
    if (src !== "charted") return { parts, fs, ts };
    const again = (x.events.full_flow ?? []).find((t) => t >= to && t < r.to);
    if (again === undefined) return { parts, fs, ts };
    from = again;
  }
}

function chartedWeaning(r: Span, from: number, x: Do2iInput): number | undefined {
  return (x.events.weaning_start ?? []).find((t) => t > from && t <= r.to);
}

function hasFlow(r: Span, x: Do2iInput): boolean {
  return x.flow.some((p) => !p.skip && p.t >= r.from && p.t < r.to);
}

/** FullFlowPct of the run's time-weighted median flow; null when the rule is off or there is no positive flow. */
function fullFlowLevel(r: Span, x: Do2iInput, cfg: Do2iConfig): number | null {
  if (cfg.fullFlowPct <= 0) return null;
  const segs = segmentsOf(x.flow, [r], cfg.holdMs).filter((s) => !s.skip);
  if (segs.length === 0) return null;
  segs.sort((a, b) => a.v - b.v);
  const total = segs.reduce((a, s) => a + (s.to - s.from), 0);
  let acc = 0;
  let level = NaN;
  for (const s of segs) {
    acc += s.to - s.from;
    if (2 * acc >= total) {
      level = s.v;
      break;
    }
  }
  if (!(level > 0)) return null;
  return (level * cfg.fullFlowPct) / 100;
}

function fullFlowFrom(r: Span, x: Do2iInput, cfg: Do2iConfig): [number, WindowSource] {
  const ff = (x.events.full_flow ?? []).find((t) => t >= r.from && t < r.to);
  if (ff !== undefined) return [ff, "charted"];
  const end = chartedWeaning(r, r.from - 1, x) ?? r.to;
  const thr = fullFlowLevel(r, x, cfg);
  if (thr !== null) {
    const sustain = cfg.fullFlowSustainMinutes * 60000;
    let stretch = -1;
    let prev = 0;
    for (const p of x.flow) {
      if (p.skip || p.t < r.from) continue;
      if (p.t >= end) break;
      if (stretch >= 0 && p.t - prev > cfg.holdMs) stretch = -1;
      prev = p.t;
      if (p.v < thr) stretch = -1;
      else if (stretch < 0) stretch = p.t;
      if (stretch >= 0 && p.t - stretch >= sustain) return [stretch, "flow_rule"];
    }
  }
  if (!hasFlow(r, x)) {
    const t = r.from + cfg.fullFlowAfterOnMinutes * 60000;
    if (t < end) return [t, "minutes_rule"];
  }
  return [0, "none"];
}

function fullFlowTo(r: Span, from: number, x: Do2iInput, cfg: Do2iConfig): [number, WindowSource] {
  const w = chartedWeaning(r, from, x);
  if (w !== undefined) return [w, "charted"];
  const thr = fullFlowLevel(r, x, cfg);
  if (thr !== null) {
    let last = -1;
    x.flow.forEach((p, i) => {
      if (!p.skip && p.t >= from && p.t < r.to && p.v >= thr) last = i;
    });
    if (last >= 0) {
      for (const p of x.flow.slice(last + 1)) {
        if (p.t >= r.to) break;
        if (!p.skip) return [p.t, "flow_rule"];
      }
      return [r.to, "flow_rule"];
    }
  }
  if (!hasFlow(r, x)) {
    const t = r.to - cfg.weaningBeforeOffMinutes * 60000;
    if (t > from) return [t, "minutes_rule"];
  }
  return [0, "none"];
}
