// The outbox never loses an entry: it sends in charting order, keeps what
// the network or an expired sign-in did not let through, marks refusals as
// conflicts (kept, shown), survives a "reload" (a new Outbox on the same
// store), and sends each person's entries only in their own session.

import assert from "node:assert/strict";
import { test } from "node:test";
import { MemoryOutboxStore, Outbox, type OutboxItem, type SendOutcome } from "../src/outbox";

function item(id: string, subject = "pat", caseId = "c1") {
  return { id, caseId, subject, kind: "record" as const, payload: { entry: { entryId: id } } };
}

/** A server that answers by a script, and remembers what it stored (idempotent on id). */
function server(script: (it: OutboxItem, n: number) => SendOutcome["kind"]) {
  const stored = new Map<string, number>();
  const sent: string[] = [];
  let n = 0;
  const send = async (it: OutboxItem): Promise<SendOutcome> => {
    sent.push(it.id);
    const k = script(it, n++);
    if (k === "ok") stored.set(it.id, (stored.get(it.id) ?? 0) + 1);
    if (k === "ok") return { kind: "ok", result: { entryId: it.id } };
    return { kind: k, message: k };
  };
  return { send, stored, sent };
}

test("sends in charting order and removes what was acknowledged", async () => {
  const store = new MemoryOutboxStore();
  const srv = server(() => "ok");
  const ob = new Outbox(store, srv.send);
  const acked: string[] = [];
  ob.onAck = (it) => acked.push(it.id);
  for (const id of ["a", "b", "c"]) await ob.add(item(id));
  assert.equal(ob.unacknowledged, 3);
  assert.equal(await ob.flush("pat"), "done");
  assert.deepEqual(srv.sent, ["a", "b", "c"]);
  assert.deepEqual(acked, ["a", "b", "c"]);
  assert.equal(ob.unacknowledged, 0);
  assert.equal(store.items.size, 0);
});

test("offline: nothing is lost, a reload keeps the items, the resend stores each once", async () => {
  const store = new MemoryOutboxStore();
  let online = false;
  const srv = server(() => (online ? "ok" : "retry"));
  const ob = new Outbox(store, srv.send);
  for (const id of ["1", "2", "3", "4", "5"]) await ob.add(item(id));
  assert.equal(await ob.flush("pat"), "network");
  assert.equal(ob.unacknowledged, 5);

  // Reload: a new outbox on the same store.
  const again = new Outbox(store, srv.send);
  await again.load();
  assert.deepEqual(
    again.list().map((i) => i.id),
    ["1", "2", "3", "4", "5"],
  );
  online = true;
  assert.equal(await again.flush("pat"), "done");
  assert.equal(again.unacknowledged, 0);
  assert.deepEqual([...srv.stored.entries()].sort(), [
    ["1", 1],
    ["2", 1],
    ["3", 1],
    ["4", 1],
    ["5", 1],
  ]);
});

test("a lost answer is resent and stays one copy (idempotent ids)", async () => {
  const store = new MemoryOutboxStore();
  const stored = new Set<string>();
  let drop = true;
  const ob = new Outbox(store, async (it) => {
    stored.add(it.id); // the server stored it…
    if (drop) {
      drop = false;
      return { kind: "retry", message: "connection reset" }; // …but the answer was lost
    }
    return { kind: "ok" };
  });
  await ob.add(item("x"));
  assert.equal(await ob.flush("pat"), "network");
  assert.equal(ob.unacknowledged, 1);
  assert.equal(await ob.flush("pat"), "done");
  assert.equal(stored.size, 1);
  assert.equal(ob.unacknowledged, 0);
});

test("an expired sign-in stops the round and keeps everything", async () => {
  const store = new MemoryOutboxStore();
  const srv = server((it) => (it.id === "b" ? "auth" : "ok"));
  const ob = new Outbox(store, srv.send);
  for (const id of ["a", "b", "c"]) await ob.add(item(id));
  assert.equal(await ob.flush("pat"), "auth");
  assert.deepEqual(
    ob.list().map((i) => [i.id, i.state]),
    [
      ["b", "pending"],
      ["c", "pending"],
    ],
  );
  assert.deepEqual(srv.sent, ["a", "b"]); // c never overtakes b
});

test("a refusal (case closed) becomes a conflict: kept, shown, the rest goes on", async () => {
  const store = new MemoryOutboxStore();
  const srv = server((it) => (it.id === "late" ? "conflict" : "ok"));
  const ob = new Outbox(store, srv.send);
  for (const id of ["a", "late", "c"]) await ob.add(item(id));
  assert.equal(await ob.flush("pat"), "done");
  assert.deepEqual(
    ob.list().map((i) => [i.id, i.state, i.error]),
    [["late", "conflict", "conflict"]],
  );
  assert.equal(store.items.get("late")?.state, "conflict");
  // Not resent by later rounds until the person asks.
  await ob.flush("pat");
  assert.equal(srv.sent.filter((s) => s === "late").length, 1);
  await ob.retry("late");
  assert.equal(ob.list()[0].state, "pending");
});

test("only the charting person's session sends their entries", async () => {
  const store = new MemoryOutboxStore();
  const srv = server(() => "ok");
  const ob = new Outbox(store, srv.send);
  await ob.add(item("mine", "pat"));
  await ob.add(item("theirs", "sam"));
  assert.equal(await ob.flush("pat"), "done");
  assert.deepEqual(srv.sent, ["mine"]);
  assert.deepEqual(
    ob.list().map((i) => i.id),
    ["theirs"],
  );
});

test("concurrent flushes share one round and send each item once", async () => {
  const store = new MemoryOutboxStore();
  const srv = server(() => "ok");
  const ob = new Outbox(store, srv.send);
  for (const id of ["a", "b"]) await ob.add(item(id));
  const [x, y] = await Promise.all([ob.flush("pat"), ob.flush("pat")]);
  assert.equal(x, "done");
  assert.equal(y, "done");
  assert.deepEqual(srv.sent, ["a", "b"]);
});

test("a sender that throws counts as a network failure, not a loss", async () => {
  const store = new MemoryOutboxStore();
  const ob = new Outbox(store, async () => {
    throw new Error("boom");
  });
  await ob.add(item("a"));
  assert.equal(await ob.flush("pat"), "network");
  assert.equal(ob.unacknowledged, 1);
  assert.equal(ob.list()[0].attempts, 1);
});
