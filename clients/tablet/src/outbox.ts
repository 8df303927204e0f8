// The outbox: every entry the perfusionist charts is written here first,
// keyed by its client-made entry id, and sent from here. It is removed only
// when the server acknowledged it (RecordEntry, CorrectEntry and
// AddAddendum are idempotent on that id, so a resend after a lost answer
// stores one copy). It survives reload, restart, sign-out and token expiry
// because it lives in IndexedDB (idb.ts), behind the tiny OutboxStore
// interface so this module is tested without a browser.
//
// Sending is strictly in charting order, one at a time: a correction never
// overtakes the entry it corrects. A network failure stops the round (the
// rest wait, in order); an expired sign-in stops it and asks for a new one;
// a refusal by the server (the case was closed meanwhile, or the entry is
// invalid) marks that item "conflict" with the server's message — shown,
// never dropped — and the round goes on.

/** What an outbox item sends. */
export type OutboxKind = "record" | "correct" | "addendum";

export interface OutboxItem {
  /** The client-made entry (or addendum) id: the idempotency key. */
  id: string;
  caseId: string;
  /** Who charted it: only their session sends it, so the record's author is who charted. */
  subject: string;
  kind: OutboxKind;
  /** The request message as protobuf JSON. */
  payload: unknown;
  /** Charting order (ms epoch, then seq). */
  createdAt: number;
  seq: number;
  state: "pending" | "conflict";
  /** The server's message for a conflict, or the last network failure. */
  error?: string;
  attempts: number;
}

/** Persistence of the outbox; IndexedDB in the browser, a Map in tests. */
export interface OutboxStore {
  all(): Promise<OutboxItem[]>;
  put(item: OutboxItem): Promise<void>;
  delete(id: string): Promise<void>;
}

/** How one send ended. */
export type SendOutcome =
  | { kind: "ok"; result?: unknown }
  | { kind: "retry"; message: string } // network down, server unavailable: try again later
  | { kind: "auth"; message: string } // sign-in expired: keep everything, sign in again
  | { kind: "conflict"; message: string }; // refused for good: show it, keep it

export type Sender = (item: OutboxItem) => Promise<SendOutcome>;

/** Why a flush round ended. */
export type FlushEnd = "done" | "network" | "auth";

export class MemoryOutboxStore implements OutboxStore {
  readonly items = new Map<string, OutboxItem>();
  async all(): Promise<OutboxItem[]> {
    return [...this.items.values()].map((i) => structuredClone(i));
  }
  async put(item: OutboxItem): Promise<void> {
    this.items.set(item.id, structuredClone(item));
  }
  async delete(id: string): Promise<void> {
    this.items.delete(id);
  }
}

function order(a: OutboxItem, b: OutboxItem): number {
  return a.createdAt - b.createdAt || a.seq - b.seq || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export class Outbox {
  private items: OutboxItem[] = [];
  private subs = new Set<() => void>();
  private running: Promise<FlushEnd> | null = null;
  private seq = 0;
  /** Called with each acknowledged item and the server's answer. */
  onAck: (item: OutboxItem, result: unknown) => void = () => {};

  constructor(
    private readonly store: OutboxStore,
    private readonly send: Sender,
  ) {}

  /** Reads the stored items (another tab may have changed them). */
  async load(): Promise<void> {
    this.items = (await this.store.all()).sort(order);
    this.seq = this.items.reduce((m, i) => Math.max(m, i.seq), this.seq);
    this.emit();
  }

  /** Every item, in charting order. */
  list(): readonly OutboxItem[] {
    return this.items;
  }

  /** Items not yet acknowledged by the server (pending and conflicts). */
  get unacknowledged(): number {
    return this.items.length;
  }

  subscribe(fn: () => void): () => void {
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }

  private emit(): void {
    for (const fn of this.subs) fn();
  }

  /** Stores a new item; it is durable when this resolves. */
  async add(x: Omit<OutboxItem, "seq" | "state" | "attempts" | "createdAt"> & { createdAt?: number }): Promise<OutboxItem> {
    const item: OutboxItem = { createdAt: Date.now(), ...x, seq: ++this.seq, state: "pending", attempts: 0 };
    await this.store.put(item);
    this.items = [...this.items.filter((i) => i.id !== item.id), item].sort(order);
    this.emit();
    return item;
  }

  /** Puts a conflict back in line (after the person fixed the cause, e.g. signed in with access). */
  async retry(id: string): Promise<void> {
    const it = this.items.find((i) => i.id === id);
    if (!it || it.state !== "conflict") return;
    const next: OutboxItem = { ...it, state: "pending", error: undefined };
    await this.store.put(next);
    this.items = this.items.map((i) => (i.id === id ? next : i));
    this.emit();
  }

  /** Removes an item the person chose to discard (only ever on their explicit, confirmed request). */
  async discard(id: string): Promise<void> {
    await this.store.delete(id);
    this.items = this.items.filter((i) => i.id !== id);
    this.emit();
  }

  /**
   * Sends the pending items of subject in order. Concurrent calls share one
   * round; a call during a round makes it go round once more.
   */
  flush(subject: string): Promise<FlushEnd> {
    if (this.running) {
      this.again = subject;
      return this.running;
    }
    this.running = (async () => {
      let end: FlushEnd = "done";
      try {
        do {
          this.again = null;
          end = await this.round(subject);
        } while (this.again !== null && end === "done");
      } finally {
        this.running = null;
      }
      return end;
    })();
    return this.running;
  }

  private again: string | null = null;

  private async round(subject: string): Promise<FlushEnd> {
    for (;;) {
      const next = this.items.find((i) => i.state === "pending" && i.subject === subject);
      if (!next) return "done";
      let out: SendOutcome;
      try {
        out = await this.send(next);
      } catch (e) {
        out = { kind: "retry", message: e instanceof Error ? e.message : String(e) };
      }
      switch (out.kind) {
        case "ok":
          await this.store.delete(next.id);
          this.items = this.items.filter((i) => i.id !== next.id);
          this.emit();
          this.onAck(next, out.result);
          break;
        case "conflict": {
          const c: OutboxItem = { ...next, state: "conflict", error: out.message, attempts: next.attempts + 1 };
          await this.store.put(c);
          this.items = this.items.map((i) => (i.id === c.id ? c : i));
          this.emit();
          break;
        }
        case "retry":
        case "auth": {
          const r: OutboxItem = { ...next, error: out.message, attempts: next.attempts + 1 };
          await this.store.put(r);
          this.items = this.items.map((i) => (i.id === r.id ? r : i));
          this.emit();
          return out.kind === "auth" ? "auth" : "network";
        }
      }
    }
  }
}
