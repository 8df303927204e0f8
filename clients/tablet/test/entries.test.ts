// The timeline keeps everything charted: corrected and voided entries stay
// as rows with their reason; pending and refused outbox items show too.

import assert from "node:assert/strict";
import { test } from "node:test";
import { create, toJson } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { buildRows, currentEntries, describe } from "../src/entries";
import { CorrectEntryRequestSchema, RecordEntryRequestSchema } from "../src/gen/perfusion/v1/charting_pb";
import { EntrySchema, EventType, Route, type Entry } from "../src/gen/perfusion/v1/entry_pb";
import type { OutboxItem } from "../src/outbox";

const T = 1_700_000_000_000;

function drug(id: string, dose: number, at: number, extra: { supersedesEntryId?: string; correctionReason?: string; recordedAt?: Entry["recordedAt"] } = {}): Entry {
  return create(EntrySchema, {
    entryId: id,
    caseId: "c",
    occurredAt: timestampFromMs(at),
    recordedAt: timestampFromMs(at + 1000),
    detail: { case: "drug", value: { drug: "heparin", dose, unit: "[iU]", route: Route.INTRAVENOUS } },
    ...extra,
  });
}

test("describe says what was charted", () => {
  assert.equal(describe(drug("a", 30000, T)), "heparin 30000 IU IV");
  const ev = create(EntrySchema, { detail: { case: "event", value: { type: EventType.BYPASS_ON } } });
  assert.equal(describe(ev), "Bypass on");
});

test("corrections and voids keep the superseded value as a row", () => {
  const a = drug("a", 30000, T);
  const a2 = drug("a2", 25000, T, { supersedesEntryId: "a", correctionReason: "wrong dose", recordedAt: timestampFromMs(T + 5000) });
  const b = drug("b", 5000, T + 60000);
  const bv = create(EntrySchema, { entryId: "bv", caseId: "c", occurredAt: b.occurredAt, supersedesEntryId: "b", correctionReason: "wrong patient", void: true });
  const server = new Map([a, a2, b, bv].map((e) => [e.entryId, e]));
  const rows = buildRows(server, []);
  const by = Object.fromEntries(rows.map((r) => [r.id, r]));
  assert.equal(by.a.status, "corrected");
  assert.equal(by.a.reason, "wrong dose");
  assert.equal(by.a2.status, "stored");
  assert.equal(by.a2.supersedes?.entryId, "a");
  assert.equal(by.b.status, "voided");
  assert.equal(by.b.reason, "wrong patient");
  assert.equal(by.bv, undefined); // folded into the voided row
  assert.deepEqual(
    currentEntries(server).map((e) => e.entryId),
    ["a2"],
  );
  assert.equal(rows[0].id, "b"); // newest first
});

test("outbox items show as pending or conflict until the server has them", () => {
  const a = drug("a", 30000, T);
  const rec = (id: string, state: OutboxItem["state"]): OutboxItem => ({
    id,
    caseId: "c",
    subject: "pat",
    kind: "record",
    payload: toJson(RecordEntryRequestSchema, create(RecordEntryRequestSchema, { entry: drug(id, 100, T + 1) })),
    createdAt: T,
    seq: 1,
    state,
    attempts: 0,
  });
  const voidItem: OutboxItem = {
    id: "v",
    caseId: "c",
    subject: "pat",
    kind: "correct",
    payload: toJson(CorrectEntryRequestSchema, create(CorrectEntryRequestSchema, { caseId: "c", entryId: "v", supersedesEntryId: "a", reason: "r", void: true })),
    createdAt: T + 2,
    seq: 3,
    state: "pending",
    attempts: 0,
  };
  const server = new Map([[a.entryId, a]]);
  const rows = buildRows(server, [rec("p", "pending"), rec("x", "conflict"), voidItem, rec("a", "pending")]);
  const by = Object.fromEntries(rows.map((r) => [r.id, r]));
  assert.equal(by.p.status, "pending");
  assert.equal(by.x.status, "conflict");
  assert.equal(by.v.isVoid, true);
  assert.equal(by.v.entry.entryId, "a");
  assert.equal(by.a.status, "stored"); // acknowledged: the server's copy wins
  assert.equal(rows.filter((r) => r.id === "a").length, 1);
});
