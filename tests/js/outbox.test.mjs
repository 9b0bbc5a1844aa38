// The durable outbox: what a page keeps of its unacknowledged messages, and how the next page
// (or another tab) carries them into a new session that names the one they were numbered in.
// In Node there is no IndexedDB: the outbox falls back to memory (shared by the clients of one
// process), which stands in for the browser's storage here; tests/browser/test_mobile.py runs
// the real thing in Chromium.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Client, PeerState, Transport } from "../../src/ladder/static/client.js";
import { carriedFrom, DurableOutbox, memoryStore, snapshot } from "../../src/ladder/static/outbox.js";

console.warn = () => {}; // "IndexedDB is not available …": expected here, checked in the first test

const settle = () => new Promise((resolve) => setImmediate(resolve));

class FakeTransport extends Transport {
  constructor(rung, ctx, net) {
    super(rung, ctx);
    this.sent = [];
    net.opened.push(this);
  }

  open(hello) {
    this.hello = hello;
    return this.opening();
  }

  send(frames) {
    this.sent.push(...structuredClone(frames));
    return Promise.resolve();
  }

  welcomeWith(fields = {}) {
    this.greet([{ t: "welcome", v: 1, sid: "S1", rt: "R1", cid: "C1", resumed: false, ack: 0, seq: 0, hb: 20_000, ttl: 120_000, poll: 25_000, ...fields }]);
  }
}

let hubs = 0;

/** Time stands still: no timer ever fires (and none keeps the process alive). */
const still = { now: () => 0, setTimeout: () => 0, clearTimeout: () => {} };

/** A "tab": clients made by `page()` share its sessionStorage, as reloads of one tab do. */
function tab(options = {}) {
  const storage = new Map();
  const url = `http://outbox.example/hub${(hubs += 1)}`;
  const page = (more = {}) => {
    const net = { opened: [] };
    const client = new Client(url, {
      outbox: true,
      browserEvents: false,
      transports: ["websocket"],
      random: () => 0.5,
      clock: still,
      storage: { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v) },
      transportFactory: (rung, ctx) => new FakeTransport(rung, ctx, net),
      ...options,
      ...more,
    });
    return { client, net, last: () => net.opened.at(-1) };
  };
  return { page, url };
}

/** A page's client, started and welcomed (with `welcome`'s fields) by its connection. */
async function welcomed(made, welcome) {
  made.client.start();
  await settle();
  made.last().welcomeWith(welcome);
  await settle();
  return made;
}

const messages = (conn) => conn.sent.filter((f) => f.t === "emit").map((f) => [f.i, f.d]);

describe("durable outbox", () => {
  test("without IndexedDB it is kept in memory, and the client says so", async () => {
    const { page } = tab();
    const { client } = page();
    client.start();
    await client.persisted();
    assert.equal(client.outboxStorage, "memory");
    assert.match(client.outboxReason, /IndexedDB is not available/);
    await client.close();
  });

  test("messages no server saw go out first from the next page, naming no session", async () => {
    const { page } = tab();
    const first = page();
    first.client.start();
    for (let n = 0; n < 3; n++) first.client.emit("record", n);
    await first.client.persisted(); // the page dies here: no close, no bye
    const next = page();
    next.client.emit("record", "new");
    next.client.start();
    await settle();
    const conn = next.last();
    assert.equal(next.client.restored, 3);
    assert.equal(conn.hello.psid, undefined, "nothing to name: they never reached a server");
    conn.welcomeWith();
    await settle();
    assert.deepEqual(messages(conn), [[1, 0], [2, 1], [3, 2], [4, "new"]], "the old ones first, in order");
  });

  test("the restored messages are told as the app sent them, in the order they go out", async () => {
    const { page } = tab();
    const first = page();
    first.client.start();
    first.client.emit("record", { n: 0 });
    first.client.call("chat.send", { text: "hi" }, { timeout: null }).catch(() => {});
    first.client.publish("room:1", [1, 2], { timeout: null }).catch(() => {});
    await first.client.persisted(); // the page dies here
    const next = page();
    assert.deepEqual(next.client.restoredMessages, [], "none before it looked");
    const told = [];
    next.client.on("restored", (event) => told.push(event));
    next.client.start();
    await settle();
    assert.deepEqual(told, [{ count: 3, messages: next.client.restoredMessages }], "told once, with them");
    assert.deepEqual(next.client.restoredMessages, [
      { kind: "emit", event: "record", channel: null, data: { n: 0 } },
      { kind: "call", event: "chat.send", channel: null, data: { text: "hi" } },
      { kind: "publish", event: null, channel: "room:1", data: [1, 2] },
    ]);
    assert.equal(next.client.restored, 3);
    next.client.restoredMessages[0].data.n = 99; // the app's copy
    const conn = next.last();
    conn.welcomeWith();
    await settle();
    assert.deepEqual(messages(conn), [[1, { n: 0 }]], "what goes out is what was sent");
  });

  test("messages of a session go out in a new session that names it: psid, prt, pids", async () => {
    const { page } = tab();
    const first = await welcomed(page(), { sid: "S1", rt: "R1" });
    first.client.subscribe("room"); // not durable: the page's own
    for (let n = 0; n < 4; n++) first.client.emit("record", n);
    await settle();
    first.last().receive([{ t: "ack", i: 2 }]); // the sub and record 0 applied
    await first.client.persisted();
    const next = page();
    next.client.start();
    await settle();
    const conn = next.last();
    assert.deepEqual([conn.hello.psid, conn.hello.prt, conn.hello.pids], ["S1", "R1", "3-5"]);
    assert.equal(conn.hello.sid, undefined, "a new session: the old one's inbox and subscriptions were the old page's");
    conn.welcomeWith({ sid: "S2", rt: "R2" });
    await settle();
    assert.deepEqual(messages(conn), [[1, 1], [2, 2], [3, 3]]);
  });

  test("a page that reloads again before connecting names the same lost session", async () => {
    const { page } = tab();
    const first = await welcomed(page(), { sid: "S1", rt: "R1" });
    first.client.emit("record", "a");
    first.client.emit("record", "b");
    await first.client.persisted();
    const second = page();
    second.client.start();
    await settle(); // restored; never connected
    second.client.emit("record", "c");
    await second.client.persisted();
    const third = page();
    third.client.start();
    await settle();
    const conn = third.last();
    assert.deepEqual([conn.hello.psid, conn.hello.pids], ["S1", "1-2"], "only a and b came from S1");
    conn.welcomeWith({ sid: "S3", rt: "R3" });
    await settle();
    assert.deepEqual(messages(conn), [[1, "a"], [2, "b"], [3, "c"]]);
  });

  test("acknowledged messages leave the store; close() forgets what is left", async () => {
    const { page, url } = tab();
    const { client, last } = await welcomed(page());
    client.emit("record", 1);
    client.emit("record", 2);
    await client.persisted();
    const store = memoryStore();
    assert.deepEqual((await store.load(url))[0].messages.map(([id]) => id), [1, 2]);
    last().receive([{ t: "ack", i: 1 }]);
    await client.persisted();
    assert.deepEqual((await store.load(url))[0].messages.map(([id]) => id), [2]);
    await client.close();
    assert.deepEqual(await store.load(url), []);
  });

  test("a message reaches the wire only once it is kept with its session (written ahead)", async () => {
    const { page } = tab();
    const { client, last } = await welcomed(page());
    const box = client._outbox;
    const save = box.store.save;
    let release;
    box.store.save = (record) => new Promise((resolve) => (release = () => resolve(save(record))));
    client.emit("record", 1);
    await settle();
    assert.deepEqual(messages(last()), [], "not yet kept: not yet sent");
    release();
    await settle();
    assert.deepEqual(messages(last()), [[1, 1]]);
    await client.close();
  });

  test("a write IndexedDB refuses (a full disk) moves the outbox to memory; nothing is held back", async () => {
    const { page } = tab();
    const { client, last } = await welcomed(page());
    const box = client._outbox;
    box.store = { ...memoryStore(), kind: "indexeddb", save: () => Promise.reject(new Error("QuotaExceededError")) };
    client.emit("record", 1);
    await settle();
    assert.deepEqual(messages(last()), [[1, 1]]);
    assert.equal(client.outboxStorage, "memory");
    assert.match(client.outboxReason, /IndexedDB refused a write \(Error: QuotaExceededError\)/);
    await client.close();
  });

  test("bounded in bytes (outboxBytes): queue_full, and later messages still fit", async () => {
    const { page } = tab();
    const { client } = page({ outboxBytes: 200 });
    client.start();
    client.emit("record", "x".repeat(100));
    assert.throws(() => client.emit("record", "y".repeat(100)), (e) => e.code === "queue_full" && /outboxBytes = 200/.test(e.reason));
    client.emit("record", 1);
    await client.close();
  });

  test("outbox: false keeps nothing", async () => {
    const { page, url } = tab({ outbox: false });
    const { client } = page();
    client.start();
    client.emit("record", 1);
    await client.persisted();
    assert.equal(client.outboxStorage, "off");
    assert.deepEqual(await memoryStore().load(url), []);
    const next = page();
    next.client.start();
    await settle();
    assert.equal(next.client.restored, 0);
  });
});

describe("pieces", () => {
  test("PeerState.restore puts the restored messages first and names their session", () => {
    const peer = new PeerState(10);
    peer.submit({ t: "emit", ev: "queued" });
    const moved = peer.restore(["S1", "R1"], [7, 9], [{ t: "emit", ev: "a" }, { t: "call", ev: "b" }]);
    assert.deepEqual(moved, [[1, 3]]);
    assert.deepEqual(peer.outbox.after(0).map(([i, f]) => [i, f.ev]), [[1, "a"], [2, "b"], [3, "queued"]]);
    const hello = peer.hello(null);
    assert.deepEqual([hello.psid, hello.prt, hello.pids], ["S1", "R1", "7,9"]);
    peer.welcome({ t: "welcome", sid: "S2", rt: "R2", resumed: false });
    assert.equal(peer.lost, null);
    assert.equal(peer.lostIds, null);
    assert.throws(() => peer.restore(null, null, []), /only before any session/);
  });

  test("snapshot and carriedFrom: a record numbered in a session names it; only durable kinds are kept", () => {
    const peer = new PeerState(10);
    peer.welcome({ t: "welcome", sid: "S1", rt: "R1", resumed: false });
    peer.submit({ t: "sub", ch: "x" });
    peer.submit({ t: "emit", ev: "e" });
    peer.submit({ t: "presence", ch: "x" });
    peer.submit({ t: "pub", ch: "x", d: 1 });
    const record = snapshot(peer, "owner", "url");
    assert.deepEqual(record.messages.map(([id, f]) => [id, f.t]), [[2, "emit"], [4, "pub"]]);
    const carried = carriedFrom(record);
    assert.deepEqual([carried.lost, carried.ids, carried.frames.map((f) => f.t)], [["S1", "R1"], [2, 4], ["emit", "pub"]]);
    peer.onAck(4);
    assert.deepEqual(snapshot(peer, "owner", "url").messages, [], "nothing left: nothing (and no resume token) to keep");
  });

  test("the record keeps whose session its messages were written in, and the next page's hello says it", () => {
    const peer = new PeerState(10);
    peer.welcome({ t: "welcome", sid: "S1", rt: "R1", u: "alice", resumed: false });
    peer.submit({ t: "emit", ev: "e" });
    assert.equal(snapshot(peer, "owner", "url").user, "alice");
    peer.forgetSession();
    peer.submit({ t: "call", ev: "e" }); // queued while no session: named with the lost session's
    const record = snapshot(peer, "owner", "url");
    assert.deepEqual([record.lost, record.user], [["S1", "R1"], "alice"]);
    const { lost, ids, frames, user } = carriedFrom(record);
    // (a page whose session was lost names it: the lost session may have applied the emit)
    assert.deepEqual([lost, ids], [["S1", "R1"], [1, 2]]);
    const next = new PeerState(10);
    next.submit({ t: "emit", ev: "mine" }); // the new page's own, queued before it restored
    next.restore(lost, ids, frames, user);
    assert.deepEqual(next.hello(), { t: "hello", v: 1, psid: "S1", prt: "R1", pids: "1-2", pu: "alice" });
    const older = carriedFrom({ ...record, user: undefined }); // a record kept before users were
    const unknown = new PeerState(10);
    unknown.restore(older.lost, older.ids, older.frames, older.user);
    assert.equal(unknown.hello().pu, undefined, "not known: the server decides by what it knows");
  });

  test("claim: a record whose owner's lock is free is taken over; a held one is left alone", async () => {
    const url = "http://claim.example/hub";
    const store = memoryStore();
    const record = (owner, saved) => ({ owner, url, sid: `S-${owner}`, rt: "R", lost: null, lostIds: null, messages: [[1, { t: "emit", ev: "e", i: 1 }]], saved });
    await store.save(record("gone", 2));
    await store.save(record("alive", 1));
    const held = ["ladder-outbox:alive"];
    const locks = { query: async () => ({ held: held.map((name) => ({ name })), pending: [] }) };
    const box = new DurableOutbox({ url, store, owner: "me", release: null });
    const taken = await box.claim(/** @type {any} */ (locks));
    assert.equal(taken.sid, "S-gone");
    assert.deepEqual((await store.load(url)).map((r) => r.owner).sort(), ["alive", "me"]);
    held.push("ladder-outbox:me"); // the page that took it over lives on
    assert.equal(await new DurableOutbox({ url, store, owner: "other", release: null }).claim(/** @type {any} */ (locks)), null);
    await store.remove("me");
    await store.remove("alive");
  });

  test("a write still under way when the page goes is stashed, and the next page claims the stash", async () => {
    const url = "http://stash.example/hub";
    const stash = fakeStorage();
    const kept = memoryStore();
    // The IndexedDB write the going page started never finishes (the browser aborts it with the page).
    const dying = { ...kept, kind: /** @type {const} */ ("indexeddb"), save: () => new Promise(() => {}) };
    const going = new DurableOutbox({ url, store: dying, owner: "tab", release: null, stash });
    const bytes = new Uint8Array([0, 1, 255]);
    const record = { owner: "tab", url, sid: "S1", rt: "R1", lost: null, lostIds: null, messages: [[7, { t: "emit", ev: "e", i: 7, d: { bytes } }]], saved: 5 };
    going.follow(() => record);
    going.changed();
    await settle();
    assert.equal(going.pending, true, "the write is under way");
    going.stash(); // pagehide
    assert.equal(stash.length, 1);

    const locks = { query: async () => ({ held: [{ name: "ladder-outbox:tab" }], pending: [] }) };
    const other = new DurableOutbox({ url, store: kept, owner: "other", release: null, stash });
    assert.equal(await other.claim(/** @type {any} */ (locks)), null, "another tab leaves a stash whose page lives (the back/forward cache)");
    assert.equal(stash.length, 1);

    const next = new DurableOutbox({ url, store: kept, owner: "tab", release: null, stash }); // the reloaded page
    const taken = await next.claim(/** @type {any} */ (locks));
    assert.deepEqual([taken.sid, taken.messages.map(([id]) => id)], ["S1", [7]]);
    assert.deepEqual(taken.messages[0][1].d.bytes, bytes, "bytes come back as bytes");
    assert.equal(stash.length, 0, "the stash is gone once it is in the store");
    await kept.remove("tab");
  });

  test("a stash is dropped by the write that covers it, and a page with nothing unwritten stashes nothing", async () => {
    const url = "http://stash2.example/hub";
    const stash = fakeStorage();
    const store = { ...memoryStore(), kind: /** @type {const} */ ("indexeddb") };
    const box = new DurableOutbox({ url, store, owner: "tab", release: null, stash });
    const record = { owner: "tab", url, sid: "S1", rt: "R1", lost: null, lostIds: null, messages: [[1, { t: "emit", ev: "e", i: 1 }]], saved: 1 };
    box.follow(() => record);
    box.changed();
    box.stash(); // pagehide before the write started; the page then came back from the cache
    assert.equal(stash.length, 1);
    await box.saved();
    assert.equal(stash.length, 0);
    box.stash();
    assert.equal(stash.length, 0, "nothing pending: nothing stashed");
    await store.remove("tab");
  });
});

/** A `localStorage` stand-in. */
function fakeStorage() {
  const items = new Map();
  return {
    get length() {
      return items.size;
    },
    key: (n) => [...items.keys()][n] ?? null,
    getItem: (k) => items.get(k) ?? null,
    setItem: (k, v) => void items.set(k, String(v)),
    removeItem: (k) => void items.delete(k),
  };
}
