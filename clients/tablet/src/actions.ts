// Charting actions: every write of an entry, correction, void or addendum
// goes into the outbox first (durable in IndexedDB when the call returns)
// and is sent from there.

import { create, toJson } from "@bufbuild/protobuf";
import { AddAddendumRequestSchema } from "./gen/perfusion/v1/case_pb";
import { CorrectEntryRequestSchema, RecordEntryRequestSchema } from "./gen/perfusion/v1/charting_pb";
import type { Entry } from "./gen/perfusion/v1/entry_pb";
import { uuid } from "./forms";
import { flushOutbox, getState, outbox } from "./store";

function subject(): string {
  const s = getState().session;
  if (!s) throw new Error("Not signed in.");
  return s.claims.sub;
}

/** Charts entries (in this order). */
export async function chartEntries(caseId: string, entries: Entry[]): Promise<void> {
  const sub = subject();
  const now = Date.now();
  for (const entry of entries) {
    await outbox.add({
      id: entry.entryId,
      caseId,
      subject: sub,
      kind: "record",
      payload: toJson(RecordEntryRequestSchema, create(RecordEntryRequestSchema, { entry })),
      createdAt: now,
    });
  }
  void flushOutbox();
}

/** Corrects (replacement set) or voids (replacement unset) an entry, with a reason. Returns the correction's id. */
export async function correct(caseId: string, supersedes: string, reason: string, replacement?: Entry): Promise<string> {
  const id = replacement?.entryId ?? uuid();
  const req = create(CorrectEntryRequestSchema, {
    caseId,
    entryId: id,
    supersedesEntryId: supersedes,
    reason,
    replacement,
    void: !replacement,
  });
  await outbox.add({ id, caseId, subject: subject(), kind: "correct", payload: toJson(CorrectEntryRequestSchema, req) });
  void flushOutbox();
  return id;
}

export async function addendum(caseId: string, text: string, reason: string): Promise<void> {
  const id = uuid();
  const req = create(AddAddendumRequestSchema, { caseId, addendumId: id, text, reason });
  await outbox.add({ id, caseId, subject: subject(), kind: "addendum", payload: toJson(AddAddendumRequestSchema, req) });
  void flushOutbox();
}
