// Entries as the timeline shows them: what each says in words, and the
// rows of the timeline built from the server's history (entries,
// corrections, voids) and the outbox (pending and conflicting items).
// Nothing charted disappears: a corrected or voided entry stays as a row,
// its value struck through, with the reason.

import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  AddAddendumRequestSchema,
} from "./gen/perfusion/v1/case_pb";
import { CorrectEntryRequestSchema, RecordEntryRequestSchema } from "./gen/perfusion/v1/charting_pb";
import { EntrySchema, type Entry } from "./gen/perfusion/v1/entry_pb";
import {
  ANALYTE_BY_KEY,
  BLOOD_TEXT,
  CHANNELS,
  CHECK_STATE_TEXT,
  CPG_PHASE_TEXT,
  CPG_ROUTE_TEXT,
  EVENT_TEXT,
  FLUID_TEXT,
  ROUTE_TEXT,
  SITE_TEXT,
  unitText,
} from "./domain";
import type { OutboxItem } from "./outbox";

export function tsMs(t: Timestamp | undefined): number {
  return t ? timestampMs(t) : 0;
}

function pick<T>(pairs: [T, string][], v: T): string {
  return pairs.find(([k]) => k === v)?.[1] ?? "";
}

/** Local wall-clock time, HH:MM:SS. */
export function clock(ms: number): string {
  if (!ms) return "--:--:--";
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function numText(v: number): string {
  return String(Math.round(v * 1000) / 1000);
}

/** What an entry says, in one line. */
export function describe(e: Entry): string {
  const d = e.detail;
  switch (d.case) {
    case "event":
      return EVENT_TEXT[d.value.type] + (d.value.comment ? ` — ${d.value.comment}` : "");
    case "drug": {
      const r = pick(ROUTE_TEXT, d.value.route);
      return `${d.value.drug} ${numText(d.value.dose)} ${unitText(d.value.unit)}${r ? ` ${r}` : ""}`;
    }
    case "fluid":
      return `${pick(FLUID_TEXT, d.value.kind)}${d.value.name ? ` ${d.value.name}` : ""} ${numText(d.value.volumeMl)} mL`;
    case "bloodProduct": {
      const v = d.value;
      return `${pick(BLOOD_TEXT, v.type)} ${v.units} unit${v.units === 1 ? "" : "s"}${v.volumeMl ? ` ${numText(v.volumeMl)} mL` : ""}${
        v.route ? ` ${pick(ROUTE_TEXT, v.route)}` : ""
      }`;
    }
    case "labResult": {
      const v = d.value;
      const a = ANALYTE_BY_KEY[v.analyte];
      const site = pick(SITE_TEXT, v.site);
      return [a?.label ?? v.analyte, numText(v.value), unitText(v.unit), site ? `(${site})` : ""].filter(Boolean).join(" ");
    }
    case "checklistItem":
      return `Checklist · ${d.value.section}: ${d.value.item} — ${pick(CHECK_STATE_TEXT, d.value.state)}`;
    case "note":
      return `Note: ${d.value.text}`;
    case "artifactMark": {
      const v = d.value;
      const c = CHANNELS[v.channel]?.label ?? v.channel;
      return `Artifact ${c}${v.sourceId ? ` (${v.sourceId})` : ""} ${clock(tsMs(v.start))}–${clock(tsMs(v.end))}: ${v.reason}`;
    }
    case "cardioplegia": {
      const v = d.value;
      const parts = [`Cardioplegia ${v.solution} ${numText(v.volumeMl)} mL`];
      const r = pick(CPG_ROUTE_TEXT, v.route);
      if (r) parts.push(r);
      if (v.temperatureC) parts.push(`${numText(v.temperatureC)} °C`);
      const p = pick(CPG_PHASE_TEXT, v.phase);
      if (p) parts.push(p);
      return parts.join(" ");
    }
    case "addendum":
      return `Addendum: ${d.value.text} (${d.value.reason})`;
    default:
      return e.void ? "Void" : "Entry";
  }
}

export type RowStatus = "pending" | "stored" | "corrected" | "voided" | "conflict";

/** One row of the timeline. */
export interface Row {
  id: string;
  status: RowStatus;
  /** The entry (for a pending void: the voided entry). */
  entry: Entry;
  time: number;
  /** Order among rows at the same time (recorded or charted time). */
  order: number;
  /** For a correction or a void: the superseded entry, shown struck through. */
  supersedes?: Entry;
  /** This row voids supersedes (pending only; stored voids fold into the voided row). */
  isVoid?: boolean;
  /** Why it was corrected or voided. */
  reason?: string;
  /** For a corrected row: the entry that replaced it. */
  replacedBy?: Entry;
  /** The outbox item behind a pending or conflict row. */
  item?: OutboxItem;
}

/** The entry an outbox item carries, as the timeline shows it. */
export function itemEntry(item: OutboxItem): { entry: Entry; isVoid: boolean; supersedes: string; reason: string } {
  const p = item.payload as JsonValue;
  switch (item.kind) {
    case "record":
      return { entry: fromJson(RecordEntryRequestSchema, p).entry ?? create(EntrySchema), isVoid: false, supersedes: "", reason: "" };
    case "correct": {
      const r = fromJson(CorrectEntryRequestSchema, p);
      const entry = r.replacement ?? create(EntrySchema);
      entry.entryId = r.entryId;
      entry.caseId = r.caseId;
      entry.supersedesEntryId = r.supersedesEntryId;
      entry.correctionReason = r.reason;
      entry.void = r.void;
      return { entry, isVoid: r.void, supersedes: r.supersedesEntryId, reason: r.reason };
    }
    case "addendum": {
      const r = fromJson(AddAddendumRequestSchema, p);
      const entry = create(EntrySchema, {
        entryId: r.addendumId,
        caseId: r.caseId,
        detail: { case: "addendum", value: { text: r.text, reason: r.reason } },
      });
      return { entry, isVoid: false, supersedes: "", reason: "" };
    }
  }
}

/**
 * Builds the timeline, newest first, from the server's entries (history:
 * superseded ones and voids included) and this case's outbox items.
 */
export function buildRows(server: ReadonlyMap<string, Entry>, items: readonly OutboxItem[]): Row[] {
  const by = new Map<string, Entry>(); // superseded id → the entry that superseded it
  for (const e of server.values()) if (e.supersedesEntryId) by.set(e.supersedesEntryId, e);
  const rows: Row[] = [];
  for (const e of server.values()) {
    if (e.void) continue; // shown on the row it voids
    const next = by.get(e.entryId);
    const row: Row = {
      id: e.entryId,
      status: next ? (next.void ? "voided" : "corrected") : "stored",
      entry: e,
      time: tsMs(e.occurredAt),
      order: tsMs(e.recordedAt),
    };
    if (next) {
      row.reason = next.correctionReason;
      if (!next.void) row.replacedBy = next;
    }
    if (e.supersedesEntryId) {
      row.supersedes = server.get(e.supersedesEntryId);
      row.reason = e.correctionReason;
    }
    rows.push(row);
  }
  for (const item of items) {
    if (server.has(item.id)) continue; // acknowledged meanwhile
    const { entry, isVoid, supersedes, reason } = itemEntry(item);
    const old = supersedes ? server.get(supersedes) ?? pendingEntry(items, supersedes) : undefined;
    rows.push({
      id: item.id,
      status: item.state === "conflict" ? "conflict" : "pending",
      entry: isVoid && old ? old : entry,
      time: isVoid && old ? tsMs(old.occurredAt) : tsMs(entry.occurredAt) || item.createdAt,
      order: item.createdAt,
      supersedes: old,
      isVoid,
      reason: reason || undefined,
      item,
    });
  }
  rows.sort((a, b) => b.time - a.time || b.order - a.order || (a.id < b.id ? 1 : -1));
  return rows;
}

function pendingEntry(items: readonly OutboxItem[], id: string): Entry | undefined {
  const it = items.find((i) => i.id === id);
  return it ? itemEntry(it).entry : undefined;
}

/** The current view: entries in force (not superseded, not voids), like ListEntries without history. */
export function currentEntries(server: ReadonlyMap<string, Entry>): Entry[] {
  const superseded = new Set<string>();
  for (const e of server.values()) if (e.supersedesEntryId) superseded.add(e.supersedesEntryId);
  return [...server.values()].filter((e) => !e.void && !superseded.has(e.entryId));
}
