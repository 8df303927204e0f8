// The entry forms: for each kind of entry, its fields (named after the
// proto fields: dose, unit, route, value, volume_ml, …) and how the values
// become Entry messages. Quick entries (heparin, ACT, protamine,
// cardioplegia) and the panels (blood gas, checklist) may make several
// entries from one form; a correction always replaces one entry with one of
// the same kind.

import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { FieldSpec, Values } from "./components/Dialog";
import { fromLocalInput, toLocalInput } from "./components/Dialog";
import {
  ANALYTES,
  ANALYTE_BY_KEY,
  BLOOD_TEXT,
  CHANNELS,
  CHECK_STATE_TEXT,
  CHECKLIST,
  COMMON_DRUGS,
  CPG_PHASE_TEXT,
  CPG_ROUTE_TEXT,
  DOSE_UNITS,
  EVENT_TEXT,
  FLUID_TEXT,
  ROUTE_TEXT,
  SITE_TEXT,
  TEMP_CORRECTION_TEXT,
  unitText,
} from "./domain";
import { tsMs } from "./entries";
import {
  CardioplegiaPhase,
  CardioplegiaRoute,
  ChecklistItemState,
  EntrySchema,
  EventType,
  Route,
  type Entry,
} from "./gen/perfusion/v1/entry_pb";

/** A client-made UUID (crypto.randomUUID where the context allows it). */
export function uuid(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

type Detail = Entry["detail"];

export function entry(caseId: string, occurredAt: number, detail: Detail, id = uuid()): Entry {
  return create(EntrySchema, { entryId: id, caseId, occurredAt: timestampFromMs(occurredAt), detail });
}

const opts = <T extends number>(pairs: [T, string][], none?: string): [string, string][] => [
  ...(none !== undefined ? ([["0", none]] as [string, string][]) : []),
  ...pairs.map(([v, t]) => [String(v), t] as [string, string]),
];

const timeField: FieldSpec = { name: "time", label: "Time", type: "datetime", required: true, hint: "Defaults to now; change it if charting later." };

function num(v: Values, name: string): number {
  const x = parseFloat((v[name] ?? "").replace(",", "."));
  return Number.isFinite(x) ? x : NaN;
}

function need(v: Values, name: string, label: string, positive = true): number {
  const x = num(v, name);
  if (!Number.isFinite(x) || (positive && x <= 0)) throw new Error(`${label} must be a number${positive ? " above 0" : ""}.`);
  return x;
}

function time(v: Values): number {
  const t = fromLocalInput(v.time);
  if (!Number.isFinite(t)) throw new Error("Time is required.");
  return t;
}

/** What a form makes: entries, or an error text. */
export type Build = (v: Values) => { time: number; details: Detail[] };

export interface FormSpec {
  title: string;
  fields: FieldSpec[];
  initial: Values;
  build: Build;
  wide?: boolean;
}

function base(now: number, extra: Values = {}): Values {
  return { time: toLocalInput(now), ...extra };
}

// ------------------------------------------------------------ single kinds

const eventOptions = opts(
  (Object.keys(EVENT_TEXT) as unknown as string[])
    .map(Number)
    .filter((n) => n !== EventType.UNSPECIFIED)
    .map((n) => [n as EventType, EVENT_TEXT[n as EventType]] as [EventType, string]),
);

export function eventForm(now: number, init?: Partial<{ type: EventType; comment: string }>): FormSpec {
  return {
    title: "Event",
    fields: [
      { name: "type", label: "Event", type: "select", options: eventOptions, required: true },
      { name: "comment", label: "Comment", type: "text", wide: true },
      timeField,
    ],
    initial: base(now, { type: String(init?.type ?? EventType.DEVICE_MARK), comment: init?.comment ?? "" }),
    build: (v) => ({
      time: time(v),
      details: [{ case: "event", value: { $typeName: "perfusion.v1.Event", type: Number(v.type) as EventType, comment: v.comment.trim() } }],
    }),
  };
}

export function drugForm(now: number, init: Partial<{ drug: string; dose: string; unit: string; route: string }> = {}, title = "Drug"): FormSpec {
  return {
    title,
    fields: [
      { name: "drug", label: "Drug", type: "text", required: true, suggest: COMMON_DRUGS },
      { name: "dose", label: "Dose", type: "number", required: true, min: 0 },
      { name: "unit", label: "Unit", type: "select", options: DOSE_UNITS.map((u) => [u, unitText(u)]), required: true },
      { name: "route", label: "Route", type: "select", options: opts(ROUTE_TEXT, "—") },
      timeField,
    ],
    initial: base(now, { drug: "", dose: "", unit: "mg", route: String(Route.INTRAVENOUS), ...init }),
    build: (v) => ({
      time: time(v),
      details: [
        {
          case: "drug",
          value: { $typeName: "perfusion.v1.DrugDose", drug: v.drug.trim(), dose: need(v, "dose", "Dose"), unit: v.unit, route: Number(v.route) as Route },
        },
      ],
    }),
  };
}

export function fluidForm(now: number, init: Values = {}): FormSpec {
  return {
    title: "Fluid",
    fields: [
      { name: "kind", label: "Kind", type: "select", options: opts(FLUID_TEXT), required: true },
      { name: "name", label: "Product", type: "text", suggest: ["Plasma-Lyte A", "Ringer's lactate", "NaCl 0.9%", "albumin 5%", "albumin 20%"] },
      { name: "volume_ml", label: "Volume", unit: "mL", type: "number", required: true, min: 0 },
      timeField,
    ],
    initial: base(now, { kind: String(FLUID_TEXT[0][0]), name: "", volume_ml: "", ...init }),
    build: (v) => ({
      time: time(v),
      details: [
        { case: "fluid", value: { $typeName: "perfusion.v1.Fluid", kind: Number(v.kind), name: v.name.trim(), volumeMl: need(v, "volume_ml", "Volume") } },
      ],
    }),
  };
}

export function bloodForm(now: number, init: Values = {}): FormSpec {
  return {
    title: "Blood product",
    fields: [
      { name: "type", label: "Product", type: "select", options: opts(BLOOD_TEXT), required: true },
      { name: "units", label: "Units", type: "number", step: "1", required: true, min: 1, max: 100 },
      { name: "volume_ml", label: "Volume", unit: "mL", type: "number", min: 0 },
      { name: "route", label: "Given into", type: "select", options: opts(ROUTE_TEXT, "—") },
      timeField,
    ],
    initial: base(now, { type: String(BLOOD_TEXT[0][0]), units: "1", volume_ml: "", route: String(Route.INTRAVENOUS), ...init }),
    build: (v) => {
      const units = need(v, "units", "Units");
      if (!Number.isInteger(units)) throw new Error("Units must be a whole number.");
      const vol = num(v, "volume_ml");
      return {
        time: time(v),
        details: [
          {
            case: "bloodProduct",
            value: {
              $typeName: "perfusion.v1.BloodProduct",
              type: Number(v.type),
              units,
              volumeMl: Number.isFinite(vol) ? vol : 0,
              route: Number(v.route) as Route,
            },
          },
        ],
      };
    },
  };
}

const siteOptions = opts(SITE_TEXT, "—");
const tcOptions = opts(TEMP_CORRECTION_TEXT, "—");

function checkAnalyte(key: string, value: number): void {
  const a = ANALYTE_BY_KEY[key];
  if (!a) throw new Error(`Unknown analyte ${key}.`);
  if (value < a.min || value > a.max) throw new Error(`${a.label} ${value} is outside ${a.min} to ${a.max} ${unitText(a.unit)}.`);
}

/** One lab result (the correction form of a lab entry). */
export function labForm(now: number, init: Values = {}): FormSpec {
  return {
    title: "Lab result",
    fields: [
      { name: "analyte", label: "Analyte", type: "select", options: ANALYTES.map((a) => [a.key, `${a.label} (${unitText(a.unit) || "pH"})`]), required: true },
      { name: "value", label: "Value", type: "number", required: true },
      { name: "site", label: "Sample site", type: "select", options: siteOptions },
      { name: "temperature_correction", label: "Temperature correction", type: "select", options: tcOptions },
      { name: "device", label: "Analyser", type: "text" },
      timeField,
    ],
    initial: base(now, { analyte: "act", value: "", site: "0", temperature_correction: "0", device: "", ...init }),
    build: (v) => {
      const value = need(v, "value", "Value", false);
      checkAnalyte(v.analyte, value);
      return {
        time: time(v),
        details: [
          {
            case: "labResult",
            value: {
              $typeName: "perfusion.v1.LabResult",
              analyte: v.analyte,
              value,
              unit: ANALYTE_BY_KEY[v.analyte].unit,
              site: Number(v.site),
              temperatureCorrection: Number(v.temperature_correction),
              device: v.device.trim(),
            },
          },
        ],
      };
    },
  };
}

/** The blood-gas panel: one lab entry per filled analyte, all at the sample's time. */
export function labPanelForm(now: number): FormSpec {
  const rows: FieldSpec[] = ANALYTES.filter((a) => a.key !== "act").map((a) => ({
    name: a.key,
    label: a.label,
    unit: unitText(a.unit) || undefined,
    type: "number",
  }));
  return {
    title: "Blood gas panel",
    wide: true,
    fields: [
      { name: "site", label: "Sample site", type: "select", options: siteOptions },
      { name: "temperature_correction", label: "Temperature correction", type: "select", options: tcOptions },
      { name: "device", label: "Analyser", type: "text", suggest: ["i-STAT", "ABL90", "GEM Premier"] },
      timeField,
      ...rows,
    ],
    initial: base(now, { site: "1", temperature_correction: "1", device: "" }),
    build: (v) => {
      const details: Detail[] = [];
      for (const a of ANALYTES) {
        const raw = (v[a.key] ?? "").trim();
        if (!raw) continue;
        const value = num(v, a.key);
        if (!Number.isFinite(value)) throw new Error(`${a.label} must be a number.`);
        checkAnalyte(a.key, value);
        details.push({
          case: "labResult",
          value: {
            $typeName: "perfusion.v1.LabResult",
            analyte: a.key,
            value,
            unit: a.unit,
            site: Number(v.site),
            temperatureCorrection: Number(v.temperature_correction),
            device: v.device.trim(),
          },
        });
      }
      if (!details.length) throw new Error("Enter at least one result.");
      return { time: time(v), details };
    },
  };
}

const stateOptions = opts(CHECK_STATE_TEXT);

/** One checklist item (the correction form). */
export function checklistItemForm(now: number, init: Values = {}): FormSpec {
  return {
    title: "Checklist item",
    fields: [
      { name: "section", label: "Section", type: "text", required: true, suggest: CHECKLIST.map(([s]) => s) },
      { name: "item", label: "Item", type: "text", required: true },
      { name: "state", label: "State", type: "select", options: stateOptions, required: true },
      timeField,
    ],
    initial: base(now, { section: "", item: "", state: String(ChecklistItemState.CHECKED), ...init }),
    build: (v) => ({
      time: time(v),
      details: [
        {
          case: "checklistItem",
          value: { $typeName: "perfusion.v1.ChecklistItem", section: v.section.trim(), item: v.item.trim(), state: Number(v.state) as ChecklistItemState },
        },
      ],
    }),
  };
}

/** The AmSECT pre-bypass checklist: one entry per item marked (checked or not applicable). */
export function checklistForm(now: number, done: Set<string>): FormSpec {
  const fields: FieldSpec[] = [timeField];
  for (const [section, items] of CHECKLIST) {
    items.forEach((item, i) => {
      const key = `${section}|${item}`;
      fields.push({
        name: key,
        label: item + (done.has(key) ? " (charted)" : ""),
        type: "radio",
        section: i === 0 ? section : undefined,
        options: [
          ["", "—"],
          ["checked", "✓ checked"],
          ["not_applicable", "n/a"],
        ],
      });
    });
  }
  return {
    title: "Pre-bypass checklist (AmSECT)",
    wide: true,
    fields,
    initial: base(now),
    build: (v) => {
      const details: Detail[] = [];
      for (const [section, items] of CHECKLIST) {
        for (const item of items) {
          const s = v[`${section}|${item}`];
          if (!s) continue;
          details.push({
            case: "checklistItem",
            value: {
              $typeName: "perfusion.v1.ChecklistItem",
              section,
              item,
              state: s === "checked" ? ChecklistItemState.CHECKED : ChecklistItemState.NOT_APPLICABLE,
            },
          });
        }
      }
      if (!details.length) throw new Error("Mark at least one item.");
      return { time: time(v), details };
    },
  };
}

export function noteForm(now: number, init: Values = {}): FormSpec {
  return {
    title: "Note",
    fields: [{ name: "text", label: "Note", type: "textarea", required: true, wide: true }, timeField],
    initial: base(now, { text: "", ...init }),
    build: (v) => {
      if (v.text.length > 8000) throw new Error("A note holds at most 8,000 characters.");
      return { time: time(v), details: [{ case: "note", value: { $typeName: "perfusion.v1.Note", text: v.text.trim() } }] };
    },
  };
}

export function artifactForm(now: number, sources: string[], init: Values = {}): FormSpec {
  return {
    title: "Artifact mark",
    fields: [
      {
        name: "channel",
        label: "Channel",
        type: "select",
        options: Object.values(CHANNELS).map((c) => [c.key, `${c.label} (${c.key})`]),
        required: true,
      },
      { name: "source_id", label: "Source", type: "select", options: [["", "every source"], ...sources.map((s) => [s, s] as [string, string])] },
      { name: "start", label: "From", type: "datetime", required: true },
      { name: "end", label: "To", type: "datetime", required: true },
      { name: "reason", label: "Reason", type: "text", required: true, suggest: ["line flush", "transducer zeroing", "blood sampling", "probe displaced"], wide: true },
      timeField,
    ],
    initial: base(now, { channel: "map", source_id: "", start: toLocalInput(now - 60000), end: toLocalInput(now), reason: "", ...init }),
    build: (v) => {
      const start = fromLocalInput(v.start);
      const end = fromLocalInput(v.end);
      if (!Number.isFinite(start) || !Number.isFinite(end) || end <= start) throw new Error("The mark needs a start and an end after it.");
      return {
        time: time(v),
        details: [
          {
            case: "artifactMark",
            value: {
              $typeName: "perfusion.v1.ArtifactMark",
              channel: v.channel,
              sourceId: v.source_id,
              start: timestampFromMs(start),
              end: timestampFromMs(end),
              reason: v.reason.trim(),
            },
          },
        ],
      };
    },
  };
}

export function cardioplegiaForm(now: number, init: Values = {}): FormSpec {
  return {
    title: "Cardioplegia dose",
    fields: [
      { name: "solution", label: "Solution", type: "text", required: true, suggest: ["del Nido", "blood 4:1", "crystalloid", "Custodiol HTK"] },
      { name: "volume_ml", label: "Volume", unit: "mL", type: "number", required: true, min: 0 },
      { name: "route", label: "Route", type: "select", options: opts(CPG_ROUTE_TEXT, "—") },
      { name: "temperature_c", label: "Temperature", unit: "°C", type: "number", min: 0, max: 42 },
      { name: "phase", label: "Phase", type: "select", options: opts(CPG_PHASE_TEXT, "—") },
      timeField,
    ],
    initial: base(now, { solution: "", volume_ml: "", route: String(CardioplegiaRoute.ANTEGRADE), temperature_c: "", phase: String(CardioplegiaPhase.INDUCTION), ...init }),
    build: (v) => {
      const t = num(v, "temperature_c");
      return {
        time: time(v),
        details: [
          {
            case: "cardioplegia",
            value: {
              $typeName: "perfusion.v1.CardioplegiaDose",
              solution: v.solution.trim(),
              volumeMl: need(v, "volume_ml", "Volume"),
              route: Number(v.route) as CardioplegiaRoute,
              temperatureC: Number.isFinite(t) ? t : 0,
              phase: Number(v.phase) as CardioplegiaPhase,
            },
          },
        ],
      };
    },
  };
}

// ----------------------------------------------------------- quick entries

/** Heparin: the dose as a drug entry and the heparin-given event at the same time (entry.proto). */
export function heparinForm(now: number): FormSpec {
  const f = drugForm(now, { drug: "heparin", unit: "[iU]" }, "Heparin");
  return {
    title: "Heparin",
    fields: [
      { name: "dose", label: "Dose", unit: "IU", type: "number", required: true, min: 0 },
      { name: "route", label: "Route", type: "select", options: opts(ROUTE_TEXT, "—") },
      timeField,
    ],
    initial: f.initial,
    build: (v) => {
      const d = f.build({ ...v, drug: "heparin", unit: "[iU]" });
      return { time: d.time, details: [...d.details, { case: "event", value: { $typeName: "perfusion.v1.Event", type: EventType.HEPARIN_GIVEN, comment: "" } }] };
    },
  };
}

/** Protamine: the dose as a drug entry and the protamine-given event. */
export function protamineForm(now: number): FormSpec {
  const f = drugForm(now, { drug: "protamine", unit: "mg" }, "Protamine");
  return {
    title: "Protamine",
    fields: [
      { name: "dose", label: "Dose", unit: "mg", type: "number", required: true, min: 0 },
      { name: "route", label: "Route", type: "select", options: opts(ROUTE_TEXT, "—") },
      timeField,
    ],
    initial: f.initial,
    build: (v) => {
      const d = f.build({ ...v, drug: "protamine", unit: "mg" });
      return { time: d.time, details: [...d.details, { case: "event", value: { $typeName: "perfusion.v1.Event", type: EventType.PROTAMINE_GIVEN, comment: "" } }] };
    },
  };
}

/** ACT: the result as a lab entry; "adequate for bypass" also charts that event. */
export function actForm(now: number): FormSpec {
  return {
    title: "ACT",
    fields: [
      { name: "value", label: "ACT", unit: "s", type: "number", required: true, min: 0 },
      { name: "adequate", label: "Adequate for bypass (charts the event too)", type: "checkbox" },
      timeField,
    ],
    initial: base(now, { value: "", adequate: "" }),
    build: (v) => {
      const value = need(v, "value", "ACT");
      const details: Detail[] = [
        { case: "labResult", value: { $typeName: "perfusion.v1.LabResult", analyte: "act", value, unit: "s", site: 0, temperatureCorrection: 0, device: "" } },
      ];
      if (v.adequate === "true") details.push({ case: "event", value: { $typeName: "perfusion.v1.Event", type: EventType.ACT_ADEQUATE, comment: "" } });
      return { time: time(v), details };
    },
  };
}

// ------------------------------------------------------------- corrections

/** The form that corrects one entry: its kind's form, filled with its values. */
export function correctionForm(e: Entry, sources: string[]): FormSpec | null {
  const at = tsMs(e.occurredAt);
  const d = e.detail;
  switch (d.case) {
    case "event":
      return eventForm(at, { type: d.value.type, comment: d.value.comment });
    case "drug":
      return drugForm(at, { drug: d.value.drug, dose: String(d.value.dose), unit: d.value.unit, route: String(d.value.route) });
    case "fluid":
      return fluidForm(at, { kind: String(d.value.kind), name: d.value.name, volume_ml: String(d.value.volumeMl) });
    case "bloodProduct":
      return bloodForm(at, {
        type: String(d.value.type),
        units: String(d.value.units),
        volume_ml: d.value.volumeMl ? String(d.value.volumeMl) : "",
        route: String(d.value.route),
      });
    case "labResult":
      return labForm(at, {
        analyte: d.value.analyte,
        value: String(d.value.value),
        site: String(d.value.site),
        temperature_correction: String(d.value.temperatureCorrection),
        device: d.value.device,
      });
    case "checklistItem":
      return checklistItemForm(at, { section: d.value.section, item: d.value.item, state: String(d.value.state) });
    case "note":
      return noteForm(at, { text: d.value.text });
    case "artifactMark":
      return artifactForm(at, sources, {
        channel: d.value.channel,
        source_id: d.value.sourceId,
        start: toLocalInput(tsMs(d.value.start)),
        end: toLocalInput(tsMs(d.value.end)),
        reason: d.value.reason,
      });
    case "cardioplegia":
      return cardioplegiaForm(at, {
        solution: d.value.solution,
        volume_ml: String(d.value.volumeMl),
        route: String(d.value.route),
        temperature_c: d.value.temperatureC ? String(d.value.temperatureC) : "",
        phase: String(d.value.phase),
      });
    default:
      return null;
  }
}
