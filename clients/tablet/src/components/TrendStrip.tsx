// A trend strip of the case view: the chart (trend.ts) and, beside it, the
// newest value of each series in large numerals. The DO2i strip draws the
// live DO2i against the target and shows the minutes below it.

import { useEffect, useRef } from "preact/hooks";
import type { CaseController } from "../casectl";
import { CHANNELS, num, unitText, type Strip } from "../domain";
import { Trend, type Column, type Marker } from "../trend";

function sliceSeries(ctl: CaseController, key: string, from: number, to: number): Column {
  const s = ctl.series.get(key);
  if (!s) return { t: [], y: [] };
  const a = s.lowerBound(from);
  const b = s.lowerBound(to + 1);
  const t = s.t.slice(a, b);
  const y: (number | null)[] = new Array(b - a);
  for (let i = a; i < b; i++) y[i - a] = s.y(i);
  return { t, y };
}

function do2iColumns(ctl: CaseController, from: number, to: number): Column[] {
  const d = ctl.do2i;
  const thr: Column = { t: [from, to], y: [ctl.threshold, ctl.threshold] };
  if (!d) return [{ t: [], y: [] }, thr];
  let a = 0;
  while (a < d.t.length && d.t[a] < from) a++;
  let b = a;
  while (b < d.t.length && d.t[b] <= to) b++;
  return [{ t: d.t.slice(a, b), y: d.v.slice(a, b) }, thr];
}

export function TrendStrip({
  ctl,
  strip,
  from,
  to,
  version,
  markers,
}: {
  ctl: CaseController;
  strip: Strip;
  from: number;
  to: number;
  version: number;
  markers: Marker[];
}) {
  const el = useRef<HTMLDivElement>(null);
  const trend = useRef<Trend | null>(null);

  useEffect(() => {
    trend.current = new Trend(
      el.current!,
      strip.series.map((s) => ({ label: s.label, color: s.color, dash: s.dash, spanGaps: s.key === "do2i_target" })),
      { yLabel: unitText(strip.series[0].unit), markerLabels: strip.id === "flows" },
    );
    return () => {
      trend.current?.destroy();
      trend.current = null;
    };
  }, []);

  useEffect(() => {
    const t = trend.current;
    if (!t) return;
    t.setMarkers(markers);
    const cols = strip.id === "do2i" ? do2iColumns(ctl, from, to) : strip.series.map((s) => sliceSeries(ctl, s.key, from, to));
    void t.setData(cols, from, to).then(() => {
      const perf = window.__tabletPerf;
      if (perf && perf.firstTrendDrawnAt === null && strip.id !== "do2i" && Number(el.current?.dataset.points ?? 0) > 0) {
        perf.firstTrendDrawnAt = performance.now();
      }
    });
  }, [version, from, to]);

  const d = ctl.do2i;
  return (
    <section class={`strip strip-${strip.id}`} aria-label={`${strip.title} trend`}>
      <div class="strip-chart" ref={el} data-testid={`trend-${strip.id}`} role="img" aria-label={`${strip.title} over time`} />
      <div class={`strip-values${strip.series.length > 2 ? " grid" : ""}`}>
        {strip.id === "do2i" ? (
          <>
            <div class="value big" style={{ color: strip.series[0].color }}>
              <span class="v-label" title="mL/min/m²">DO2i</span>
              <span class="v-num">{num(d?.current?.v, 0)}</span>
            </div>
            <div class="value small-line" title={ctl.thresholdSource === "default" ? "the default target; the server states none" : "the site's target"}>
              target {ctl.threshold}
              {ctl.thresholdSource === "default" ? "*" : ""} · below{" "}
              <strong>
                <span data-testid="do2i-below">{num(ctl.signed?.minutesBelow ?? d?.minutesBelow ?? 0, 1)}</span> min
              </strong>
              {ctl.signed?.minutesBelow != null && <span class="tiny"> (record's metric)</span>}
            </div>
            <div class="value tiny muted">
              {!(ctl.c?.details?.patient?.bsaM2 ?? 0)
                ? "no BSA (height, weight)"
                : d?.inFullFlow
                  ? `full flow (${d.source === "charted" ? "charted" : d.source === "flow_rule" ? "flow rule" : "minutes rule"})`
                  : "not on full flow: not counting"}
            </div>
          </>
        ) : (
          strip.series.map((s) => {
            const last = ctl.series.get(s.key)?.latest();
            return (
              <div class="value" key={s.key} style={{ color: s.color }}>
                <span class="v-label">{s.label}</span>
                <span class="v-num">{num(last?.v, CHANNELS[s.key]?.digits ?? s.digits)}</span>
                {strip.series.length <= 2 && <span class="v-unit">{unitText(s.unit)}</span>}
              </div>
            );
          })
        )}
      </div>
    </section>
  );
}
