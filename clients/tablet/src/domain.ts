// Clinical vocabulary of the tablet: the channels it draws, the analytes of
// the blood-gas panel, event names, the AmSECT pre-bypass checklist and the
// formulas (BSA, CaO2, DO2i). Everything here restates the server's
// catalogue (charting/channels.go) and the data dictionary
// (docs/domain.md); nothing clinical is invented here.

import { BsaFormula, CaseKind, CaseStatus } from "./gen/perfusion/v1/case_pb";
import {
  BloodProductType,
  CardioplegiaPhase,
  CardioplegiaRoute,
  ChecklistItemState,
  EventType,
  FluidKind,
  Route,
  SampleSite,
  TemperatureCorrection,
} from "./gen/perfusion/v1/entry_pb";

/** UCUM unit → what a person reads. */
export function unitText(ucum: string): string {
  switch (ucum) {
    case "mm[Hg]":
      return "mmHg";
    case "Cel":
      return "°C";
    case "[pH]":
      return "";
    case "[iU]":
      return "IU";
    case "ug":
      return "µg";
    case "mL/min/m2":
      return "mL/min/m²";
    case "/min":
      return "/min";
    default:
      return ucum;
  }
}

/** A channel of the server's catalogue that the tablet draws. */
export interface ChannelInfo {
  key: string;
  label: string;
  unit: string; // UCUM
  digits: number; // decimals shown
}

const ch = (key: string, label: string, unit: string, digits: number): ChannelInfo => ({ key, label, unit, digits });

/** Channels by key (names and units as charting/channels.go). */
export const CHANNELS: Record<string, ChannelInfo> = Object.fromEntries(
  [
    ch("pump_flow", "Pump flow", "L/min", 2),
    ch("pump_speed", "Pump speed", "/min", 0),
    ch("cardioplegia_flow", "Cardioplegia flow", "mL/min", 0),
    ch("cardioplegia_pressure", "Cardioplegia pressure", "mm[Hg]", 0),
    ch("arterial_line_pressure", "Art. line", "mm[Hg]", 0),
    ch("venous_line_pressure", "Ven. line", "mm[Hg]", 0),
    ch("reservoir_level", "Reservoir level", "mL", 0),
    ch("sweep_flow", "Sweep", "L/min", 2),
    ch("sweep_o2_flow", "Sweep O2", "L/min", 2),
    ch("sweep_air_flow", "Sweep air", "L/min", 2),
    ch("sweep_co2_flow", "Sweep CO2", "L/min", 2),
    ch("fio2", "FiO2", "%", 0),
    ch("volatile_agent", "Volatile agent", "%", 1),
    ch("temp_arterial_outlet", "Art. out", "Cel", 1),
    ch("temp_venous_inlet", "Ven. in", "Cel", 1),
    ch("temp_nasopharyngeal", "Naso.", "Cel", 1),
    ch("temp_bladder", "Bladder", "Cel", 1),
    ch("temp_rectal", "Rectal", "Cel", 1),
    ch("temp_cardioplegia", "Cardioplegia temp.", "Cel", 1),
    ch("temp_heater_cooler_water", "Heater-cooler water", "Cel", 1),
    ch("map", "MAP", "mm[Hg]", 0),
    ch("sbp", "Systolic", "mm[Hg]", 0),
    ch("dbp", "Diastolic", "mm[Hg]", 0),
    ch("cvp", "CVP", "mm[Hg]", 0),
    ch("pap", "PAP", "mm[Hg]", 0),
    ch("heart_rate", "Heart rate", "/min", 0),
    ch("spo2", "SpO2", "%", 0),
    ch("nirs_left", "NIRS left", "%", 0),
    ch("nirs_right", "NIRS right", "%", 0),
    ch("nirs_site3", "NIRS site 3", "%", 0),
    ch("nirs_site4", "NIRS site 4", "%", 0),
    ch("inline_ph", "In-line pH", "[pH]", 2),
    ch("inline_pco2", "In-line pCO2", "mm[Hg]", 0),
    ch("inline_po2", "In-line pO2", "mm[Hg]", 0),
    ch("inline_k", "In-line K", "mmol/L", 1),
    ch("inline_hco3", "In-line HCO3", "mmol/L", 1),
    ch("inline_be", "In-line BE", "mmol/L", 1),
    ch("inline_sao2", "SaO2", "%", 0),
    ch("inline_svo2", "SvO2", "%", 0),
    ch("inline_hct", "Hct", "%", 0),
    ch("inline_hb", "Hb", "g/dL", 1),
    ch("urine_output", "Urine (cumulative)", "mL", 0),
  ].map((c) => [c.key, c]),
);

/** A series drawn in a strip. */
export interface StripSeries {
  key: string; // channel key, or "do2i" / "do2i_target"
  label: string;
  unit: string; // UCUM
  color: string;
  digits: number;
  dash?: number[];
}

/** One trend strip of the case view. */
export interface Strip {
  id: "flows" | "pressures" | "temperatures" | "blood" | "do2i";
  title: string;
  series: StripSeries[];
}

// Colours chosen for contrast on the dark background (each label is also
// written next to its value, so colour is never the only cue).
const s = (key: string, color: string, dash?: number[]): StripSeries => {
  const c = CHANNELS[key];
  return { key, label: c.label, unit: c.unit, color, digits: c.digits, dash };
};

export const STRIPS: Strip[] = [
  { id: "flows", title: "Flows", series: [s("pump_flow", "#4fc3f7"), s("sweep_flow", "#c5e1a5")] },
  {
    id: "pressures",
    title: "Pressures",
    series: [s("map", "#ff6e6e"), s("arterial_line_pressure", "#ffb74d"), s("venous_line_pressure", "#90caf9"), s("cvp", "#ce93d8")],
  },
  {
    id: "temperatures",
    title: "Temperatures",
    series: [s("temp_arterial_outlet", "#ff8a65"), s("temp_venous_inlet", "#4dd0e1"), s("temp_nasopharyngeal", "#fff176"), s("temp_bladder", "#bcaaa4")],
  },
  { id: "blood", title: "Hct / SvO2", series: [s("inline_hct", "#ef9a9a"), s("inline_svo2", "#80cbc4")] },
  {
    id: "do2i",
    title: "DO2i",
    series: [
      { key: "do2i", label: "DO2i", unit: "mL/min/m2", color: "#9ccc65", digits: 0 },
      { key: "do2i_target", label: "Target", unit: "mL/min/m2", color: "#ffd54f", digits: 0, dash: [8, 6] },
    ],
  },
];

/** Channels whose samples feed DO2i (charting/metrics_track.go do2i). */
export const DO2I_INPUTS = ["pump_flow", "inline_hb", "inline_sao2", "inline_po2"];

/** Every channel the case view watches. */
export const WATCHED_CHANNELS: string[] = Array.from(
  new Set([...STRIPS.flatMap((st) => st.series.map((x) => x.key)).filter((k) => k in CHANNELS), ...DO2I_INPUTS]),
).sort();

// ---------------------------------------------------------------- formulas

/** BSA formulas as the server computes them (charting/case.go BSA), m², rounded to 3 decimals. */
export function bsa(formula: BsaFormula, heightCm: number, weightKg: number): number {
  if (!(heightCm > 0) || !(weightKg > 0)) return 0;
  let v: number;
  switch (formula) {
    case BsaFormula.DUBOIS:
      v = 0.007184 * Math.pow(weightKg, 0.425) * Math.pow(heightCm, 0.725);
      break;
    case BsaFormula.HAYCOCK:
      v = 0.024265 * Math.pow(weightKg, 0.5378) * Math.pow(heightCm, 0.3964);
      break;
    default:
      v = Math.sqrt((heightCm * weightKg) / 3600);
  }
  return Math.round(v * 1000) / 1000;
}

/** The formula as written in the data dictionary, shown next to the value. */
export function bsaFormulaText(formula: BsaFormula): string {
  switch (formula) {
    case BsaFormula.DUBOIS:
      return "DuBois: 0.007184 × W^0.425 × H^0.725";
    case BsaFormula.HAYCOCK:
      return "Haycock: 0.024265 × W^0.5378 × H^0.3964";
    default:
      return "Mosteller: √(H × W / 3600)";
  }
}

export const BSA_FORMULAS: [BsaFormula, string][] = [
  [BsaFormula.MOSTELLER, "Mosteller"],
  [BsaFormula.DUBOIS, "DuBois"],
  [BsaFormula.HAYCOCK, "Haycock (children)"],
];

/** CaO2 in mL/dL: Hb g/dL, SaO2 as a fraction, PaO2 mmHg (docs/domain.md "Oxygen delivery"). */
export function cao2(hbGdl: number, sao2Frac: number, pao2: number): number {
  return 1.34 * hbGdl * sao2Frac + 0.003 * pao2;
}

/** DO2i in mL/min/m²: flow L/min, BSA m², CaO2 mL/dL; NaN without a BSA. */
export function do2i(flowLmin: number, bsaM2: number, cao2MlDl: number): number {
  if (!(bsaM2 > 0)) return NaN;
  return (flowLmin / bsaM2) * cao2MlDl * 10;
}

/** The site default DO2i threshold when the server names none (charting DefaultMetricsConfig, GIFT trial). */
export const DEFAULT_DO2I_THRESHOLD = 280;

// ------------------------------------------------------------- vocabulary

export const STATUS_TEXT: Record<CaseStatus, string> = {
  [CaseStatus.UNSPECIFIED]: "unknown",
  [CaseStatus.PLANNED]: "planned",
  [CaseStatus.IN_PROGRESS]: "in progress",
  [CaseStatus.CLOSED]: "closed",
  [CaseStatus.SIGNED]: "signed",
};

export const KIND_TEXT: Record<CaseKind, string> = {
  [CaseKind.UNSPECIFIED]: "?",
  [CaseKind.CPB]: "CPB",
  [CaseKind.ECMO]: "ECMO",
};

export const EVENT_TEXT: Record<EventType, string> = {
  [EventType.UNSPECIFIED]: "Event",
  [EventType.HEPARIN_GIVEN]: "Heparin given",
  [EventType.ACT_ADEQUATE]: "ACT adequate",
  [EventType.BYPASS_ON]: "Bypass on",
  [EventType.FULL_FLOW]: "Full flow",
  [EventType.COOLING_START]: "Cooling start",
  [EventType.CROSS_CLAMP_ON]: "Cross-clamp on",
  [EventType.CROSS_CLAMP_OFF]: "Cross-clamp off",
  [EventType.CIRCULATORY_ARREST_START]: "Circulatory arrest start",
  [EventType.CIRCULATORY_ARREST_END]: "Circulatory arrest end",
  [EventType.SELECTIVE_CEREBRAL_PERFUSION_START]: "Selective cerebral perfusion start",
  [EventType.SELECTIVE_CEREBRAL_PERFUSION_END]: "Selective cerebral perfusion end",
  [EventType.REWARMING_START]: "Rewarming start",
  [EventType.WEANING_START]: "Weaning start",
  [EventType.BYPASS_OFF]: "Bypass off",
  [EventType.PROTAMINE_GIVEN]: "Protamine given",
  [EventType.SUCKERS_STOPPED]: "Suckers stopped",
  [EventType.DECANNULATION]: "Decannulation",
  [EventType.CONVERSION_TO_ON_PUMP]: "Conversion to on-pump",
  [EventType.ALARM]: "Device alarm",
  [EventType.DEVICE_MARK]: "Device mark",
  [EventType.PERFUSIONIST_HANDOFF]: "Perfusionist hand-off",
  [EventType.CANNULATION]: "Cannulation",
  [EventType.COMPLICATION]: "Complication",
};

export const ROUTE_TEXT: [Route, string][] = [
  [Route.INTRAVENOUS, "IV"],
  [Route.CIRCUIT, "Circuit"],
  [Route.OTHER, "Other"],
];

export const FLUID_TEXT: [FluidKind, string][] = [
  [FluidKind.CRYSTALLOID, "Crystalloid"],
  [FluidKind.COLLOID, "Colloid"],
  [FluidKind.ULTRAFILTRATION_REMOVED, "Ultrafiltration removed"],
  [FluidKind.CELL_SAVER_RETURNED, "Cell saver returned"],
  [FluidKind.URINE_OUTPUT, "Urine output"],
];

export const BLOOD_TEXT: [BloodProductType, string][] = [
  [BloodProductType.PRBC, "PRBC"],
  [BloodProductType.FFP, "FFP"],
  [BloodProductType.PLATELETS, "Platelets"],
  [BloodProductType.CRYOPRECIPITATE, "Cryoprecipitate"],
  [BloodProductType.WHOLE_BLOOD, "Whole blood"],
];

export const SITE_TEXT: [SampleSite, string][] = [
  [SampleSite.ARTERIAL, "arterial"],
  [SampleSite.VENOUS, "venous"],
  [SampleSite.MIXED_VENOUS, "mixed venous"],
  [SampleSite.CAPILLARY, "capillary"],
];

export const TEMP_CORRECTION_TEXT: [TemperatureCorrection, string][] = [
  [TemperatureCorrection.ALPHA_STAT, "alpha-stat (37 °C)"],
  [TemperatureCorrection.PH_STAT, "pH-stat (patient temp.)"],
];

export const CPG_ROUTE_TEXT: [CardioplegiaRoute, string][] = [
  [CardioplegiaRoute.ANTEGRADE, "antegrade"],
  [CardioplegiaRoute.RETROGRADE, "retrograde"],
  [CardioplegiaRoute.OSTIAL, "ostial"],
];

export const CPG_PHASE_TEXT: [CardioplegiaPhase, string][] = [
  [CardioplegiaPhase.INDUCTION, "induction"],
  [CardioplegiaPhase.MAINTENANCE, "maintenance"],
];

export const CHECK_STATE_TEXT: [ChecklistItemState, string][] = [
  [ChecklistItemState.CHECKED, "checked"],
  [ChecklistItemState.NOT_APPLICABLE, "not applicable"],
];

/** Dose units the drug form offers (UCUM). */
export const DOSE_UNITS = ["[iU]", "mg", "ug", "g", "mL", "mmol", "mEq"];

/** Drugs the data dictionary names, offered as suggestions (free text is allowed). */
export const COMMON_DRUGS = [
  "heparin",
  "protamine",
  "phenylephrine",
  "norepinephrine",
  "vasopressin",
  "mannitol",
  "sodium bicarbonate",
  "calcium chloride",
  "magnesium sulfate",
  "insulin",
  "tranexamic acid",
];

/** A lab analyte of the server's catalogue (charting/channels.go Analytes). */
export interface Analyte {
  key: string;
  label: string;
  unit: string; // UCUM, must equal the catalogue's
  min: number;
  max: number;
}

/** The blood-gas panel, in the order a point-of-care analyser prints it. */
export const ANALYTES: Analyte[] = [
  { key: "ph", label: "pH", unit: "[pH]", min: 6.8, max: 7.8 },
  { key: "pco2", label: "pCO2", unit: "mm[Hg]", min: 0, max: Infinity },
  { key: "po2", label: "pO2", unit: "mm[Hg]", min: 0, max: 700 },
  { key: "hco3", label: "HCO3", unit: "mmol/L", min: 0, max: Infinity },
  { key: "be", label: "BE", unit: "mmol/L", min: -Infinity, max: Infinity },
  { key: "sao2", label: "SaO2", unit: "%", min: 0, max: 100 },
  { key: "svo2", label: "SvO2", unit: "%", min: 0, max: 100 },
  { key: "hb", label: "Hb", unit: "g/dL", min: 0, max: Infinity },
  { key: "hct", label: "Hct", unit: "%", min: 0, max: 100 },
  { key: "na", label: "Na", unit: "mmol/L", min: 0, max: Infinity },
  { key: "k", label: "K", unit: "mmol/L", min: 0, max: Infinity },
  { key: "ica", label: "iCa", unit: "mmol/L", min: 0, max: Infinity },
  { key: "glucose", label: "Glucose", unit: "mmol/L", min: 0, max: Infinity },
  { key: "lactate", label: "Lactate", unit: "mmol/L", min: 0, max: Infinity },
  { key: "act", label: "ACT", unit: "s", min: 0, max: Infinity },
];

export const ANALYTE_BY_KEY: Record<string, Analyte> = Object.fromEntries(ANALYTES.map((a) => [a.key, a]));

/**
 * The AmSECT pre-bypass checklist as the data dictionary lists it
 * (docs/domain.md "Pre-bypass checklist"): section → items.
 */
export const CHECKLIST: [string, string[]][] = [
  ["patient", ["identity", "procedure", "blood type/antibodies", "allergies", "MRN", "chart reviewed"]],
  ["sterility", ["sterility"]],
  ["pump", ["occlusion", "flow-meter direction", "flow-meter calibration"]],
  ["electrical", ["electrical and batteries"]],
  ["cardioplegia", ["cardioplegia"]],
  ["gas supply", ["gas supply", "volatile scavenge line"]],
  ["components", ["tubing traced", "one-way valves"]],
  ["safety devices", ["alarms audible and engaged", "level detector", "bubble detector", "venous occluder tested"]],
  ["vacuum relief valves", ["vacuum relief valves"]],
  ["temperature probes", ["temperature probes"]],
  ["pressure transducers", ["pressure transducers"]],
];

/** Formats a number for display with the given decimals; "—" when not finite. */
export function num(v: number | null | undefined, digits: number): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  return v.toFixed(digits);
}
