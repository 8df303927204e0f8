// The live DO2i follows the signed metric's definitions: these cases are
// charting/metrics_test.go TestFullFlowWindows, with the same expected
// values (BSA 2 m², CaO2 14 mL/dL from labs: DO2i = 70 × flow).

import assert from "node:assert/strict";
import { test } from "node:test";
import { computeDo2i, DEFAULT_DO2I_CONFIG, intervals, type EventName, type Track } from "../src/do2i";
import { bsa, cao2, do2i } from "../src/domain";
import { BsaFormula } from "../src/gen/perfusion/v1/case_pb";

const MIN = 60000;
const T0 = 1_700_000_000_000;
const at = (m: number) => T0 + m * MIN;

function minutes(from: number, to: number, f: (m: number) => number): Track {
  const out: Track = [];
  for (let m = from; m <= to; m++) out.push({ t: at(m), v: f(m), skip: false });
  return out;
}

const ramp = (m: number) => (m < 5 ? 2 : m >= 50 ? 1 : 4);

function run(events: Partial<Record<EventName, number[]>>, flow: Track) {
  const ev: Partial<Record<EventName, number[]>> = {};
  for (const [k, v] of Object.entries(events)) ev[k as EventName] = v!.map(at);
  return computeDo2i({
    bsaM2: 2,
    flow,
    hb: [],
    sao2: [],
    po2: [],
    labHb: [{ t: at(-1), v: 10, skip: false }],
    labSao2: [{ t: at(-1), v: 100, skip: false }],
    labPo2: [{ t: at(-1), v: 200, skip: false }],
    events: ev,
    extent: flow.length ? [flow[0].t, flow[flow.length - 1].t] : null,
    now: at(1000),
    cfg: DEFAULT_DO2I_CONFIG,
  });
}

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-6, `${a} ≠ ${b}`);

test("charted full flow and weaning", () => {
  const r = run({ bypass_on: [0], full_flow: [5], weaning_start: [50], bypass_off: [60] }, minutes(0, 59, ramp));
  close(r.fullFlowMinutes, 45);
  assert.equal(r.source, "charted");
  close(r.nadir!, 280);
  close(r.minutesBelow, 0);
  close(r.minutesSkipped, 0);
});

test("no full_flow or weaning charted: the flow rule", () => {
  const r = run({ bypass_on: [0], bypass_off: [60] }, minutes(0, 59, ramp));
  close(r.fullFlowMinutes, 45);
  assert.equal(r.source, "flow_rule");
  close(r.nadir!, 280);
  close(r.minutesBelow, 0);
});

test("full flow charted early, weaning by the flow rule", () => {
  const r = run({ bypass_on: [0], full_flow: [3], bypass_off: [60] }, minutes(0, 59, ramp));
  close(r.fullFlowMinutes, 47);
  assert.equal(r.source, "flow_rule");
  close(r.nadir!, 140);
  close(r.minutesBelow, 2);
});

test("a failed wean charted as full flow again is left out", () => {
  const r = run(
    { bypass_on: [0], full_flow: [5, 34], weaning_start: [30, 50], bypass_off: [60] },
    minutes(0, 59, (m) => (m >= 30 && m < 34 ? 2 : ramp(m))),
  );
  close(r.fullFlowMinutes, 41);
  close(r.nadir!, 280);
  close(r.minutesBelow, 0);
});

test("two runs, each with its own full-flow part", () => {
  const flow = [...minutes(0, 59, ramp), ...minutes(70, 89, (m) => (m < 72 ? 2 : m >= 85 ? 1 : 4))];
  const r = run({ bypass_on: [0, 70], full_flow: [5, 72], weaning_start: [50], bypass_off: [60, 90] }, flow);
  close(r.fullFlowMinutes, 58);
  assert.equal(r.source, "flow_rule");
  close(r.nadir!, 280);
});

test("flow never held at its level: no full-flow window", () => {
  const r = run({ bypass_on: [0], bypass_off: [60] }, minutes(0, 59, (m) => 4 * (m % 2)));
  close(r.fullFlowMinutes, 0);
  assert.equal(r.source, "none");
  assert.equal(r.nadir, null);
});

test("a run still open counts live up to now", () => {
  // On bypass at 0, full flow at 5, flow dropping to 3.5 (DO2i 245) from minute 20; now is minute 30.
  const flow = minutes(0, 29, (m) => (m < 5 ? 2 : m < 20 ? 4 : 3.5));
  const ev = { bypass_on: [at(0)], full_flow: [at(5)] };
  const r = computeDo2i({
    bsaM2: 2,
    flow,
    hb: [],
    sao2: [],
    po2: [],
    labHb: [{ t: at(-1), v: 10, skip: false }],
    labSao2: [{ t: at(-1), v: 100, skip: false }],
    labPo2: [{ t: at(-1), v: 200, skip: false }],
    events: ev,
    extent: [flow[0].t, flow[flow.length - 1].t],
    now: at(30),
    cfg: DEFAULT_DO2I_CONFIG,
  });
  assert.equal(r.source, "flow_rule"); // from charted, to by the flow rule: the run's end (now)
  assert.ok(r.inFullFlow);
  close(r.minutesBelow, 10); // minutes 20–29 (the last sample stands until now, minute 30)
  close(r.current!.v, 245);
});

test("in-line values win while fresh; missing inputs skip", () => {
  const flow = minutes(0, 9, () => 4);
  const r = computeDo2i({
    bsaM2: 2,
    flow,
    hb: minutes(0, 4, () => 12),
    sao2: minutes(0, 4, () => 100),
    po2: minutes(0, 4, () => 300),
    labHb: [],
    labSao2: [],
    labPo2: [],
    events: {},
    extent: [flow[0].t, flow[flow.length - 1].t],
    now: at(10),
    cfg: DEFAULT_DO2I_CONFIG,
  });
  // CaO2 = 1.34·12 + 0.9 = 16.98; DO2i = 2 · 16.98 · 10 = 339.6 for minutes 0–4; inputs stale after.
  close(r.v[0]!, 339.6);
  assert.equal(r.v[6], null);
  assert.equal(r.source, "flow_rule"); // ECMO-like: the span of the data is the run
});

test("intervals pair starts and ends like the server", () => {
  assert.deepEqual(intervals([1, 5], [3, 9]), [
    { from: 1, to: 3 },
    { from: 5, to: 9 },
  ]);
  assert.deepEqual(intervals([1, 2], [3]), [{ from: 2, to: 3 }]);
  assert.deepEqual(intervals([5], [3]), []);
});

test("formulas match the data dictionary and the server", () => {
  assert.equal(bsa(BsaFormula.MOSTELLER, 170, 70), 1.818); // README walk-through
  assert.equal(bsa(BsaFormula.UNSPECIFIED, 170, 70), 1.818);
  assert.equal(bsa(BsaFormula.DUBOIS, 170, 70), Math.round(0.007184 * 70 ** 0.425 * 170 ** 0.725 * 1000) / 1000);
  assert.equal(bsa(BsaFormula.HAYCOCK, 50, 3.5), Math.round(0.024265 * 3.5 ** 0.5378 * 50 ** 0.3964 * 1000) / 1000);
  assert.equal(bsa(BsaFormula.MOSTELLER, 0, 70), 0);
  close(cao2(10, 1, 200), 14);
  close(do2i(4, 2, 14), 280);
  assert.ok(Number.isNaN(do2i(4, 0, 14)));
});
