// @ts-check
/**
 * The durable outbox: the client's unacknowledged messages kept in IndexedDB, so that a
 * reload, a crashed or discarded tab, or another tab of the same browser can send them later,
 * each applied once (protocol §9.11). What is kept is the part of `PeerState` that decides
 * exactly-once: the session the messages were numbered in (`sid`, `rt`), or the lost session
 * they are carried from (`lost`, `lostIds`), and the messages with their ids. Whoever restores
 * a record starts a new session naming that one in its hello (`psid`, `prt`, `pids`): the
 * server then applies only what the named session had not applied.
 *
 * One record per owner (a client in one tab; the id survives reloads of that tab in
 * `sessionStorage`). An owner holds the Web Lock `ladder-outbox:<owner>` while it lives, so
 * a record whose lock is free belongs to nobody: any client of the same hub may take it over
 * (`claim`), which is how a reloaded page, or another tab, drains a closed tab's messages.
 *
 * An IndexedDB write still under way when the page goes is aborted with it, and a message
 * goes on the wire only once written: so at `pagehide` the record is also written where a
 * write is synchronous (`localStorage`, the *stash*), and the next claim prefers it.
 */

import { LadderError } from "./errors.js";
import { tagBytes, untagBytes } from "./codec.js";

/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./peer.js").PeerState} PeerState */
/** @typedef {Pick<Storage, "getItem" | "setItem" | "removeItem" | "key" | "length">} StashStorage */

/** Message kinds that outlive the page (queries and subscriptions belong to the page). */
export const DURABLE = new Set(["emit", "pub", "call"]);

/** ms IndexedDB may take to open (a connection can be blocked by another tab) before memory is used. */
const OPEN_TIMEOUT = 3000;
const DB_NAME = "ladder";
const STORE = "outbox";
const UTF8 = new TextEncoder();
const STASH = "ladder:outbox-stash:";

/**
 * What is kept of one owner's state.
 * @typedef {object} OutboxRecord
 * @property {string} owner
 * @property {string} url the hub
 * @property {string | null} sid the session the messages are numbered in (null: none yet)
 * @property {string | null} rt its resume token
 * @property {[string, string] | null} lost with no `sid`: the lost session the first messages come from
 * @property {number[] | null} lostIds their ids in that session (the hello's `pids`)
 * @property {string | null} [user] the user of that session (`sid`'s, else `lost`'s) as a hello says it (`pu`), when known: a new session of another user refuses them
 * @property {[number, Frame][]} messages unacknowledged durable messages, [id, frame], oldest first
 * @property {number} saved when it was written (ms since the epoch)
 */

/**
 * Where records live: IndexedDB, or this page's memory.
 * @typedef {object} Store
 * @property {"indexeddb" | "memory"} kind
 * @property {(url: string) => Promise<OutboxRecord[]>} load
 * @property {(record: OutboxRecord) => Promise<void>} save
 * @property {(owner: string) => Promise<void>} remove
 * @property {(from: string, record: OutboxRecord) => Promise<void>} move the record `from` becomes `record` (one transaction)
 */

/** @type {Map<string, OutboxRecord>} */
const memoryRecords = new Map();

/** Records in this page's memory: the fallback where IndexedDB is missing or refused. @returns {Store} */
export function memoryStore() {
  return {
    kind: "memory",
    load: async (url) => [...memoryRecords.values()].filter((r) => r.url === url).map((r) => structuredClone(r)),
    save: async (record) => void memoryRecords.set(record.owner, structuredClone(record)),
    remove: async (owner) => void memoryRecords.delete(owner),
    move: async (from, record) => {
      memoryRecords.delete(from);
      memoryRecords.set(record.owner, structuredClone(record));
    },
  };
}

/**
 * @template T
 * @param {IDBRequest<T> | IDBTransaction} request
 * @returns {Promise<T>}
 */
function done(request) {
  return new Promise((resolve, reject) => {
    if (request instanceof IDBTransaction) {
      request.oncomplete = () => resolve(/** @type {T} */ (undefined));
      request.onabort = request.onerror = () => reject(request.error ?? new Error("transaction aborted"));
    } else {
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    }
  });
}

/**
 * Records in IndexedDB (database `ladder`, object store `outbox`, keyed by owner). Rejects
 * when IndexedDB is missing or refuses to open (some private modes).
 * @param {IDBFactory | undefined} factory
 * @returns {Promise<Store>}
 */
export async function indexedDbStore(factory = globalThis.indexedDB) {
  if (!factory) throw new Error("no indexedDB in this context");
  const opening = factory.open(DB_NAME, 1);
  opening.onupgradeneeded = () => opening.result.createObjectStore(STORE, { keyPath: "owner" });
  /** @type {any} */
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`IndexedDB did not open within ${OPEN_TIMEOUT / 1000} s`)), OPEN_TIMEOUT);
  });
  /** @type {IDBDatabase} */
  const db = await Promise.race([done(opening), late]).finally(() => clearTimeout(timer));
  db.onversionchange = () => db.close();
  /** @param {IDBTransactionMode} mode */
  const tx = (mode) => db.transaction(STORE, mode, { durability: "strict" });
  return {
    kind: "indexeddb",
    load: async (url) => {
      /** @type {OutboxRecord[]} */
      const all = await done(tx("readonly").objectStore(STORE).getAll());
      return all.filter((r) => r.url === url);
    },
    save: async (record) => {
      const t = tx("readwrite");
      t.objectStore(STORE).put(record);
      await done(t);
    },
    remove: async (owner) => {
      const t = tx("readwrite");
      t.objectStore(STORE).delete(owner);
      await done(t);
    },
    move: async (from, record) => {
      const t = tx("readwrite");
      t.objectStore(STORE).delete(from);
      t.objectStore(STORE).put(record);
      await done(t);
    },
  };
}

/**
 * The encoded size of a message, in bytes (counted against `outboxBytes`).
 * @param {Frame} frame
 */
export function frameBytes(frame) {
  return UTF8.encode(JSON.stringify(frame, tagBytes)).length;
}

/**
 * What of `peer` must be kept: its durable unacknowledged messages and the session they belong to.
 * @param {PeerState} peer
 * @param {string} owner
 * @param {string} url
 * @returns {OutboxRecord}
 */
export function snapshot(peer, owner, url) {
  const messages = peer.outbox.after(0).filter(([, frame]) => DURABLE.has(String(frame.t)));
  const lost = peer.sid === null ? peer.lost : null;
  return {
    owner,
    url,
    sid: peer.sid,
    rt: peer.sid === null ? null : peer.token,
    lost,
    lostIds: lost === null ? null : peer.lostIds,
    user: peer.sid !== null ? peer.user : lost !== null ? peer.lostUser : null,
    messages: messages.map(([id, frame]) => [id, frame]),
    saved: Date.now(),
  };
}

/**
 * Turn a kept record into what a new `PeerState` carries: the session to name in the hello
 * and the messages, in order. A record numbered in a session names that session; one whose
 * session was lost, or never connected since it was restored, names the session it came from;
 * one with neither carries messages no server has seen.
 * @param {OutboxRecord} record
 * @returns {{lost: [string, string] | null, ids: number[] | null, frames: Frame[], user: string | null}}
 */
export function carriedFrom(record) {
  const frames = record.messages.map(([, frame]) => ({ ...frame }));
  const user = record.user ?? null; // (a record kept before users were: not known)
  if (record.sid !== null && record.rt !== null) {
    return { lost: [record.sid, record.rt], ids: record.messages.map(([id]) => id), frames, user };
  }
  if (record.lost !== null) {
    // Restored ones: only the first lostIds.length messages came from the lost session (later
    // ones are new). Else the messages kept their ids in it, as the hello would name them.
    const ids = record.lostIds ?? record.messages.map(([id]) => id);
    return { lost: record.lost, ids: ids.slice(0, frames.length), frames, user };
  }
  return { lost: null, ids: null, frames, user: null };
}

/**
 * A message a previous page left, as its app sent it: `kind` "emit" or "call" (with its
 * `event`; a restored call's answer goes nowhere) or "publish" (with its `channel`), and a
 * copy of its `data`.
 * @typedef {{kind: "emit" | "call" | "publish", event: string | null, channel: string | null, data: any}} RestoredMessage
 */

/**
 * What the app sent, of a kept message's frame (`emit`, `call` or `pub`).
 * @param {Frame} frame
 * @returns {RestoredMessage}
 */
export function restoredMessage(frame) {
  // The app's copy (the frame goes out as it is), as the server gets it: bytes as Uint8Array,
  // also those a shared connection was handed in their JSON form ({$b: base64}).
  const data = JSON.parse(JSON.stringify(frame.d ?? null, tagBytes), untagBytes);
  if (frame.t === "pub") return { kind: "publish", event: null, channel: String(frame.ch), data };
  return { kind: frame.t === "call" ? "call" : "emit", event: String(frame.ev), channel: null, data };
}

/** @param {() => number} random */
function newOwner(random) {
  return Array.from({ length: 4 }, () => Math.floor(random() * 2 ** 32).toString(36)).join("");
}

/**
 * Hold the Web Lock `name` until the returned function is called (it resolves once the lock
 * is free again); null when Web Locks are missing, or (`ifAvailable`) when someone else holds it.
 * @param {LockManager | undefined} locks
 * @param {string} name
 * @returns {Promise<(() => Promise<void>) | null>}
 */
async function holdLock(locks, name) {
  if (!locks) return null;
  /** @type {(value?: unknown) => void} */
  let release = () => {};
  const held = new Promise((resolve) => (release = resolve));
  /** @type {Promise<unknown>} settles once the lock is let go (the request's own promise) */
  let done = Promise.resolve();
  const got = await new Promise((resolve) => {
    done = locks
      .request(name, { ifAvailable: true }, (lock) => {
        resolve(lock !== null);
        return lock === null ? undefined : held;
      })
      .catch(() => resolve(false));
  });
  return got
    ? () => {
        release();
        return done.then(() => undefined);
      }
    : null;
}

/**
 * The owners whose lock nobody holds (their page is gone), among `owners`.
 * @param {LockManager | undefined} locks
 * @param {string[]} owners
 */
async function unheld(locks, owners) {
  if (!locks || !owners.length) return [];
  const { held = [], pending = [] } = await locks.query();
  const busy = new Set([...held, ...pending].map((lock) => lock.name));
  return owners.filter((owner) => !busy.has(lockName(owner)));
}

/** @param {string} owner */
function lockName(owner) {
  return `ladder-outbox:${owner}`;
}

/** This page's `localStorage`, or null (missing, or refused: some sandboxed frames throw). @returns {StashStorage | null} */
function localStash() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

/**
 * The stashed records of the hub at `url`, by owner (a stash that cannot be read is dropped).
 * @param {StashStorage} stash
 * @param {string} url
 * @returns {Map<string, OutboxRecord>}
 */
function stashedRecords(stash, url) {
  /** @type {Map<string, OutboxRecord>} */
  const found = new Map();
  const keys = [];
  for (let n = 0; n < stash.length; n++) {
    const key = stash.key(n);
    if (key?.startsWith(STASH)) keys.push(key);
  }
  for (const key of keys) {
    try {
      const record = JSON.parse(stash.getItem(key) ?? "null", untagBytes);
      if (record?.url === url) found.set(record.owner, record);
    } catch {
      stash.removeItem(key);
    }
  }
  return found;
}

/**
 * One client's durable outbox: which owner it is, where it keeps its record, and the writes
 * that keep the record up to date (coalesced: one write per burst of changes, one at a time).
 */
export class DurableOutbox {
  /**
   * @param {{url: string, store: Store, owner: string, release: (() => Promise<void>) | null, reason?: string | null, stash?: StashStorage | null}} options
   */
  constructor({ url, store, owner, release, reason = null, stash = null }) {
    this.url = url;
    this.store = store;
    this.owner = owner;
    /** Where the record is written synchronously when the page goes (null: nowhere). */
    this._stash = stash;
    /** The version last stashed (0: no stash of this owner is kept). */
    this._stashed = 0;
    /** Why the outbox is not in IndexedDB (null when it is). */
    this.reason = reason;
    this._release = release;
    /** Changes made, and changes written. */
    this._version = 0;
    this._written = 0;
    this._writing = false;
    /** Whether a record of this owner may be stored (an empty outbox deletes it, once). */
    this._stored = true;
    /** @type {(() => OutboxRecord) | null} */
    this._source = null;
    /** @type {{version: number, resolve: () => void}[]} */
    this._waiters = [];
    this.closed = false;
    /** @type {(() => void) | null} called when writes fall back to memory */
    this.onFallBack = null;
  }

  /**
   * Open the outbox of the hub at `url` for this tab: IndexedDB when it works, else memory
   * (`reason` says why). The owner id is this tab's (kept in `sessionStorage`), unless another
   * live page holds it (a duplicated tab): then a new one.
   * @param {{url: string, storage?: Pick<Storage, "getItem" | "setItem"> | null, factory?: IDBFactory, locks?: LockManager, random?: () => number, stash?: StashStorage | null}} options
   */
  static async open({ url, storage = null, factory = globalThis.indexedDB, locks = globalThis.navigator?.locks, random = Math.random, stash = localStash() }) {
    /** @type {Store} */
    let store;
    /** @type {string | null} */
    let reason = null;
    try {
      store = await indexedDbStore(factory);
    } catch (error) {
      store = memoryStore();
      reason = `IndexedDB is not available (${String(error)}): unsent messages are kept in memory and do not outlive the page`;
    }
    const key = `ladder:outbox:${url}`;
    let owner = null;
    try {
      owner = storage?.getItem(key) ?? null;
    } catch {
      owner = null;
    }
    let release = owner ? await holdLock(locks, lockName(owner)) : null;
    if (!owner || (locks && !release)) {
      owner = newOwner(random);
      release = await holdLock(locks, lockName(owner));
    }
    try {
      storage?.setItem(key, owner);
    } catch {
      // no sessionStorage: this page's record can still be claimed as an orphan
    }
    // A record in memory does not outlive the page: neither does its stash.
    return new DurableOutbox({ url, store, owner, release, reason, stash: store.kind === "indexeddb" ? stash : null });
  }

  /**
   * Take over what this tab's previous page left, or else the oldest record of a page that
   * is gone (its lock free): it becomes this owner's record. One at a time: a hello names one
   * lost session. Returns null when there is nothing to take over.
   * @param {LockManager | undefined} [locks]
   * @returns {Promise<OutboxRecord | null>}
   */
  async claim(locks = globalThis.navigator?.locks) {
    await this._unstash(locks);
    const records = (await this.store.load(this.url)).filter((r) => r.messages.length > 0 || r.owner === this.owner);
    let record = records.find((r) => r.owner === this.owner) ?? null;
    if (!record || !record.messages.length) {
      const free = new Set(await unheld(locks, records.filter((r) => r.owner !== this.owner).map((r) => r.owner)));
      const orphan = records.filter((r) => free.has(r.owner)).sort((a, b) => a.saved - b.saved)[0];
      if (orphan) {
        const taken = { ...orphan, owner: this.owner };
        await this.store.move(orphan.owner, taken);
        record = taken;
      }
    }
    return record && record.messages.length ? record : null;
  }

  /**
   * Stashes left by pages that went before their last write finished (this tab's previous
   * page, or a page whose lock is free) replace their owners' records when newer.
   * @param {LockManager | undefined} locks
   */
  async _unstash(locks) {
    if (!this._stash) return;
    const stashed = stashedRecords(this._stash, this.url);
    if (!stashed.size) return;
    const free = new Set(await unheld(locks, [...stashed.keys()].filter((owner) => owner !== this.owner)));
    const kept = new Map((await this.store.load(this.url)).map((r) => [r.owner, r]));
    for (const [owner, record] of stashed) {
      if (owner !== this.owner && !free.has(owner)) continue; // its page lives (the back/forward cache): its own
      const older = kept.get(owner);
      if (!older || older.saved <= record.saved) await this.store.save(record);
      this._stash.removeItem(STASH + owner);
    }
  }

  /**
   * The page is going (`pagehide`): if a change is not written yet, write the record where a
   * write is synchronous, so that the next page finds it even if the IndexedDB write dies
   * with this one. A later write that covers it removes it.
   */
  stash() {
    if (!this._stash || !this._source || this.closed || !this.pending) return;
    try {
      this._stash.setItem(STASH + this.owner, JSON.stringify(this._source(), tagBytes));
      this._stashed = this._version;
    } catch (error) {
      console.warn(`ladder: unsent messages could not be stashed as the page went (${String(error)})`);
    }
  }

  /**
   * Keep the record in step with `source()` from now on (call `changed()` after each change).
   * @param {() => OutboxRecord} source
   */
  follow(source) {
    this._source = source;
  }

  /** Something kept changed: write the record soon (once per burst of changes). */
  changed() {
    if (this.closed || !this._source) return;
    this._version += 1;
    if (!this._writing) queueMicrotask(() => this._write());
  }

  /** Whether changes wait to be written. */
  get pending() {
    return this._written < this._version;
  }

  /** Resolves once every change made so far is written. */
  saved() {
    if (this._written >= this._version) return Promise.resolve();
    const version = this._version;
    return new Promise((resolve) => this._waiters.push({ version, resolve: () => resolve(undefined) }));
  }

  async _write() {
    if (this._writing || !this._source) return;
    this._writing = true;
    try {
      while (this._written < this._version && !this.closed) {
        const version = this._version;
        const record = this._source();
        try {
          // Nothing to carry, nothing kept: a resume token is stored only while it protects messages.
          if (record.messages.length) await this.store.save(record);
          else if (this._stored) await this.store.remove(this.owner);
          this._stored = record.messages.length > 0;
          if (this._stashed && version >= this._stashed) this._dropStash();
        } catch (error) {
          // Never let a failed write hold the messages back: they go on, kept in memory.
          await this._fallBack(error, record).catch(() => {});
        }
        this._written = version;
        const ready = this._waiters.filter((w) => w.version <= version);
        this._waiters = this._waiters.filter((w) => w.version > version);
        for (const waiter of ready) waiter.resolve();
      }
    } finally {
      this._writing = false;
    }
  }

  _dropStash() {
    this._stashed = 0;
    try {
      this._stash?.removeItem(STASH + this.owner);
    } catch {
      // storage gone: nothing left to remove
    }
  }

  /**
   * A write failed (quota, a browser that dropped the database): keep going in memory.
   * @param {unknown} error
   * @param {OutboxRecord} record
   */
  async _fallBack(error, record) {
    if (this.store.kind === "memory") throw error;
    this.reason = `IndexedDB refused a write (${String(error)}): unsent messages are now kept in memory`;
    console.warn(`ladder: ${this.reason}`);
    this.store = memoryStore();
    this._dropStash();
    this._stash = null; // what is in memory does not outlive the page
    this.onFallBack?.();
    await this.store.save(record);
  }

  /**
   * The client closed for good (`forget`: its messages are dropped with it) or its page is
   * going away (the record stays for the next page).
   * @param {{forget: boolean}} options
   */
  async close({ forget }) {
    if (this.closed) return;
    if (!forget) await this.saved();
    this.closed = true;
    for (const waiter of this._waiters.splice(0)) waiter.resolve();
    if (forget) {
      this._dropStash();
      await this.store.remove(this.owner).catch(() => {});
    }
    const release = this._release;
    this._release = null;
    await release?.();
  }
}

/**
 * `queue_full` when adding `frame` would keep more than `limit` bytes of unacknowledged
 * messages (the durable outbox's bound, `outboxBytes`).
 * @param {PeerState} peer
 * @param {Frame} frame
 * @param {number} limit
 * @returns {LadderError | null}
 */
export function overLimit(peer, frame, limit) {
  let total = frameBytes(frame);
  for (const [, queued] of peer.outbox.after(0)) {
    total += sizeOf(queued);
    if (total > limit) {
      return new LadderError("queue_full", `unsent messages would take more than outboxBytes = ${limit} bytes`);
    }
  }
  return total > limit ? new LadderError("queue_full", `this ${frame.t} alone is more than outboxBytes = ${limit} bytes`) : null;
}

/** @type {WeakMap<Frame, number>} */
const sizes = new WeakMap();

/** @param {Frame} frame */
function sizeOf(frame) {
  let size = sizes.get(frame);
  if (size === undefined) sizes.set(frame, (size = frameBytes(frame)));
  return size;
}
