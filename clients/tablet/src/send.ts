// Sends one outbox item with its idempotent RPC and says how it ended, for
// the outbox (outbox.ts). Every write the tablet charts is one of these.

import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { cases, charting, Code, ConnectError, errorText, isNetworkError } from "./api";
import { AddAddendumRequestSchema } from "./gen/perfusion/v1/case_pb";
import { CorrectEntryRequestSchema, RecordEntryRequestSchema } from "./gen/perfusion/v1/charting_pb";
import type { Entry } from "./gen/perfusion/v1/entry_pb";
import type { OutboxItem, SendOutcome } from "./outbox";

const TIMEOUT_MS = 15000;

/** The stored entry an acknowledged item returned. */
export type AckResult = Entry | undefined;

export async function sendItem(item: OutboxItem): Promise<SendOutcome> {
  if (!navigator.onLine) return { kind: "retry", message: "offline" };
  const p = item.payload as JsonValue;
  try {
    let entry: Entry | undefined;
    switch (item.kind) {
      case "record":
        entry = (await charting.recordEntry(fromJson(RecordEntryRequestSchema, p), { timeoutMs: TIMEOUT_MS })).entry;
        break;
      case "correct":
        entry = (await charting.correctEntry(fromJson(CorrectEntryRequestSchema, p), { timeoutMs: TIMEOUT_MS })).entry;
        break;
      case "addendum":
        entry = (await cases.addAddendum(fromJson(AddAddendumRequestSchema, p), { timeoutMs: TIMEOUT_MS })).entry;
        break;
    }
    return { kind: "ok", result: entry };
  } catch (e) {
    const err = ConnectError.from(e);
    if (err.code === Code.Unauthenticated) return { kind: "auth", message: errorText(err) };
    if (isNetworkError(err) || err.code === Code.Aborted || err.code === Code.ResourceExhausted || err.code === Code.Internal) {
      return { kind: "retry", message: errorText(err) };
    }
    // FailedPrecondition (the case was closed), InvalidArgument, AlreadyExists,
    // NotFound, PermissionDenied: the server will not take it as it is.
    return { kind: "conflict", message: errorText(err) };
  }
}
