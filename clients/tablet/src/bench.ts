// Performance hooks for the browser tests: window.__tabletBench.drawTrend
// draws synthetic data (1 point per second per channel, as QuerySamples or
// WatchCase deliver a 1-second-downsampled trend) through the same Trend
// class the case view uses, and resolves with the milliseconds from
// handing over the columns to the finished draw.

import { Trend, type Column } from "./trend";

const COLORS = ["#4fc3f7", "#c5e1a5", "#ff6e6e", "#ffb74d", "#90caf9", "#ce93d8", "#ff8a65", "#4dd0e1", "#fff176", "#bcaaa4"];

async function drawTrend(hours: number, channels: number): Promise<number> {
  const n = Math.round(hours * 3600);
  const t0 = Date.now() - n * 1000;
  const t = new Float64Array(n);
  for (let i = 0; i < n; i++) t[i] = t0 + i * 1000;
  const cols: Column[] = [];
  for (let c = 0; c < channels; c++) {
    const y = new Array<number | null>(n);
    for (let i = 0; i < n; i++) y[i] = 50 + 20 * Math.sin(i / (300 + c * 37)) + ((i * 7919 + c * 104729) % 100) / 20;
    cols.push({ t, y });
  }
  const host = document.createElement("div");
  host.style.cssText = "position:fixed;left:0;top:0;width:900px;height:160px;opacity:0;pointer-events:none";
  host.dataset.testid = "bench-trend";
  document.body.appendChild(host);
  const trend = new Trend(
    host,
    cols.map((_, i) => ({ label: `ch${i}`, color: COLORS[i % COLORS.length] })),
  );
  try {
    const start = performance.now();
    await trend.setData(cols, t0, t0 + n * 1000);
    return performance.now() - start;
  } finally {
    trend.destroy();
    host.remove();
  }
}

declare global {
  interface Window {
    __tabletBench?: { drawTrend: (hours: number, channels: number) => Promise<number> };
  }
}

window.__tabletBench = { drawTrend };
