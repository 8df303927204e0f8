// IndexedDB behind the outbox's OutboxStore interface: one database, one
// object store keyed by entry id. Each put is its own transaction and
// resolves only when the transaction completed, so an item the outbox
// reports as added is on disk.

import type { OutboxItem, OutboxStore } from "./outbox";

const DB = "perfusion-tablet";
const STORE = "outbox";

function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}

export class IdbOutboxStore implements OutboxStore {
  private db: Promise<IDBDatabase>;

  constructor() {
    this.db = new Promise((resolve, reject) => {
      const open = indexedDB.open(DB, 1);
      open.onupgradeneeded = () => {
        if (!open.result.objectStoreNames.contains(STORE)) open.result.createObjectStore(STORE, { keyPath: "id" });
      };
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
      open.onblocked = () => reject(new Error("IndexedDB is blocked by another tab"));
    });
  }

  async all(): Promise<OutboxItem[]> {
    const db = await this.db;
    return req(db.transaction(STORE, "readonly").objectStore(STORE).getAll() as IDBRequest<OutboxItem[]>);
  }

  async put(item: OutboxItem): Promise<void> {
    const db = await this.db;
    const tx = db.transaction(STORE, "readwrite", { durability: "strict" });
    tx.objectStore(STORE).put(item);
    await done(tx);
  }

  async delete(id: string): Promise<void> {
    const db = await this.db;
    const tx = db.transaction(STORE, "readwrite", { durability: "strict" });
    tx.objectStore(STORE).delete(id);
    await done(tx);
  }
}
