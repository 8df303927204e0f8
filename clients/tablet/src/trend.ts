// One trend strip: a uPlot chart drawn from columnar data. The strip's
// series may have different sample times, so they are aligned onto one
// time axis by a k-way merge (gaps are null and drawn as gaps). Every draw
// writes data-points (points drawn) and data-last-time (ms epoch of the
// newest drawn point) on the strip's element for the browser tests.

import uPlot from "uplot";

export interface TrendSeriesSpec {
  label: string;
  color: string;
  dash?: number[];
  /** Draw a line across gaps (a constant target line). */
  spanGaps?: boolean;
}

/** One series' data: times (ms epoch, ascending) and values (null: a gap). */
export interface Column {
  t: ArrayLike<number>;
  y: ArrayLike<number | null>;
}

/** Aligns columns onto the union of their times. */
export function align(cols: Column[]): uPlot.AlignedData {
  const k = cols.length;
  if (k === 0) return [[]];
  // Fast path: identical times in every column.
  const t0 = cols[0].t;
  let same = true;
  for (const c of cols) {
    if (c.t.length !== t0.length || (t0.length && (c.t[0] !== t0[0] || c.t[t0.length - 1] !== t0[t0.length - 1]))) {
      same = false;
      break;
    }
  }
  if (same) {
    return [Array.from(t0), ...cols.map((c) => Array.from(c.y))] as uPlot.AlignedData;
  }
  const idx = new Array<number>(k).fill(0);
  const xs: number[] = [];
  const ys: (number | null)[][] = cols.map(() => []);
  for (;;) {
    let m = Infinity;
    for (let j = 0; j < k; j++) if (idx[j] < cols[j].t.length && cols[j].t[idx[j]] < m) m = cols[j].t[idx[j]];
    if (m === Infinity) break;
    xs.push(m);
    for (let j = 0; j < k; j++) {
      if (idx[j] < cols[j].t.length && cols[j].t[idx[j]] === m) {
        ys[j].push(cols[j].y[idx[j]]);
        idx[j]++;
      } else ys[j].push(null);
    }
  }
  return [xs, ...ys] as uPlot.AlignedData;
}

/** 24-hour wall-clock time of a tick (with seconds when ticks are less than a minute apart). */
function hhmm(ms: number, seconds: boolean): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}${seconds ? `:${p(d.getSeconds())}` : ""}`;
}

/** A charted event drawn on the trends. */
export interface Marker {
  t: number;
  label: string;
}

const MARKER = "#8b98a8";
const MARKER_TEXT = "#d7dee7";
const AXIS = "#b7c0cc";
const GRID = "#26303b";

export class Trend {
  readonly plot: uPlot;
  private xMin = 0;
  private xMax = 1;
  private waiters: (() => void)[] = [];
  private ro: ResizeObserver | null = null;
  private readonly counted: boolean[];
  private markers: Marker[] = [];
  private readonly labels: boolean;

  constructor(
    private readonly el: HTMLElement,
    specs: TrendSeriesSpec[],
    opts: { yLabel?: string; markerLabels?: boolean } = {},
  ) {
    this.labels = !!opts.markerLabels;
    this.counted = specs.map((s) => !s.spanGaps); // a constant target line is not data
    const rect = el.getBoundingClientRect();
    this.plot = new uPlot(
      {
        width: Math.max(100, Math.floor(rect.width)),
        height: Math.max(60, Math.floor(rect.height)),
        ms: 1,
        legend: { show: false },
        cursor: { drag: { x: false, y: false }, points: { show: false } },
        scales: {
          x: { time: true, range: () => [this.xMin, this.xMax] },
          y: { auto: true },
        },
        axes: [
          {
            stroke: AXIS,
            grid: { stroke: GRID, width: 1 },
            ticks: { stroke: GRID },
            font: "13px system-ui, sans-serif",
            size: 26,
            values: (_u: uPlot, splits: number[], _ax: number, _space: number, incr: number) => splits.map((v) => hhmm(v, incr < 60000)),
          },
          {
            stroke: AXIS,
            grid: { stroke: GRID, width: 1 },
            ticks: { stroke: GRID },
            font: "13px system-ui, sans-serif",
            size: 48,
            label: opts.yLabel,
            labelFont: "12px system-ui, sans-serif",
            labelSize: opts.yLabel ? 16 : 0,
          },
        ],
        series: [{}, ...specs.map((s) => ({ label: s.label, stroke: s.color, width: 2, dash: s.dash, spanGaps: !!s.spanGaps, points: { show: false } }))],
        hooks: {
          draw: [(u: uPlot) => this.drawMarkers(u), (u: uPlot) => this.drawn(u)],
        },
      },
      [[], ...specs.map(() => [])] as unknown as uPlot.AlignedData,
      el,
    );
    if (typeof ResizeObserver !== "undefined") {
      this.ro = new ResizeObserver(() => this.fit());
      this.ro.observe(el);
    }
  }

  /** Resizes the chart to its element. */
  fit(): void {
    const r = this.el.getBoundingClientRect();
    const w = Math.max(100, Math.floor(r.width));
    const h = Math.max(60, Math.floor(r.height));
    if (w !== this.plot.width || h !== this.plot.height) this.plot.setSize({ width: w, height: h });
  }

  /** Draws columns over the time range [from, to] (ms); resolves when drawn. */
  setData(cols: Column[], from: number, to: number): Promise<void> {
    this.xMin = from;
    this.xMax = to;
    const p = new Promise<void>((resolve) => this.waiters.push(resolve));
    this.plot.setData(align(cols), true);
    return p;
  }

  /** Charted events to draw as vertical lines (with their names when markerLabels is set); redrawn on the next draw. */
  setMarkers(m: Marker[]): void {
    this.markers = m;
  }

  private drawMarkers(u: uPlot): void {
    if (!this.markers.length) return;
    const { ctx, bbox } = u;
    const px = devicePixelRatio || 1;
    ctx.save();
    ctx.beginPath();
    ctx.rect(bbox.left, bbox.top, bbox.width, bbox.height);
    ctx.clip();
    ctx.strokeStyle = MARKER;
    ctx.fillStyle = MARKER_TEXT;
    ctx.lineWidth = px;
    ctx.setLineDash([4 * px, 4 * px]);
    ctx.font = `${12 * px}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    let lastLabelEnd = -Infinity;
    for (const m of this.markers) {
      if (m.t < this.xMin || m.t > this.xMax) continue;
      const x = Math.round(u.valToPos(m.t, "x", true));
      ctx.beginPath();
      ctx.moveTo(x, bbox.top);
      ctx.lineTo(x, bbox.top + bbox.height);
      ctx.stroke();
      if (this.labels && x > lastLabelEnd) {
        ctx.fillText(m.label, x + 3 * px, bbox.top + 2 * px);
        lastLabelEnd = x + ctx.measureText(m.label).width + 8 * px;
      }
    }
    ctx.restore();
  }

  private drawn(u: uPlot): void {
    const xs = u.data[0] as ArrayLike<number>;
    let points = 0;
    let last = 0;
    for (let j = 1; j < u.data.length; j++) {
      if (!this.counted[j - 1]) continue;
      const ys = u.data[j] as ArrayLike<number | null>;
      for (let i = 0; i < ys.length; i++) {
        if (ys[i] !== null && ys[i] !== undefined) {
          points++;
          if (xs[i] > last) last = xs[i];
        }
      }
    }
    this.el.dataset.points = String(points);
    this.el.dataset.lastTime = String(Math.round(last));
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  destroy(): void {
    this.ro?.disconnect();
    this.plot.destroy();
    for (const f of this.waiters) f();
    this.waiters = [];
  }
}
