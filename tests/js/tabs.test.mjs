// The hub that shares one client among tabs (tabs.js), with a stand-in client: one real
// subscription per channel counted across tabs, a later tab's catch-up from history before
// live publications, replies to the tab that asked, a tab that leaves.
import assert from "node:assert/strict";
import { test } from "node:test";

import { LadderError, Subscription, TabHub } from "../../src/ladder/static/client.js";

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** The parts of a Client the hub uses, scripted. */
class StandIn {
  constructor() {
    this.state = "connected";
    this.transport = "sse";
    this.sessionId = "s1";
    this.user = null;
    this.clientId = "c1";
    this.lastChange = null;
    this.lastFailure = null;
    this._limits = {};
    /** @type {Map<string, Subscription>} */
    this.subs = new Map();
    this.subscribed = [];
    this.unsubscribed = [];
    this.requests = [];
    this.closed = false;
    this.listeners = new Map();
  }

  start() {
    return this;
  }

  on(name, listener) {
    this.listeners.set(name, listener);
  }

  subscribe(channel, listener, { since, recent }) {
    this.subscribed.push({ channel, since, recent });
    const sub = new Subscription(channel, {
      since,
      recent,
      unsubscribe: async (s) => {
        s.end();
        this.unsubscribed.push(channel);
      },
    });
    sub.listen(listener);
    this.subs.set(channel, sub);
    return sub;
  }

  /** A request the test answers: resolves with what `answer(frame)` gives. */
  _request(frame) {
    return new Promise((resolve, reject) => this.requests.push({ frame, resolve, reject }));
  }

  call(event, data) {
    return Promise.resolve({ event, data });
  }

  async close() {
    this.closed = true;
    this.state = "closed";
  }

  /** The page is going away: closed, unsent messages kept (`outbound.leave`). */
  async _leave() {
    this.kept = true;
    return this.close();
  }
}

/** A tab: what the hub posted to it. */
function tab(hub, id) {
  const port = { id, got: [], postMessage: (m) => port.got.push(m) };
  hub.receive(port, { op: "join", tab: id, url: "http://h/ladder", options: {} });
  port.pubs = () => port.got.filter((m) => m.op === "pub").map((m) => m.o);
  return port;
}

/** The tabs `ports` all follow `channel`: the first subscribes, the server confirms it at `off`, the others join. */
async function following(hub, client, channel, off, ...ports) {
  const [first, ...others] = ports;
  hub.receive(first, { op: "sub", tab: first.id, ch: channel });
  const sub = client.subs.get(channel);
  sub.confirmed({ ep: "E", off, rec: true, n: 0 });
  await settle();
  for (const port of others) hub.receive(port, { op: "sub", tab: port.id, ch: channel });
  await settle();
  return sub;
}

function setUp() {
  const client = new StandIn();
  const hub = new TabHub(() => client);
  return { client, hub };
}

test("a channel is subscribed once for all tabs and unsubscribed with the last", async () => {
  const { client, hub } = setUp();
  const a = tab(hub, "a");
  const b = tab(hub, "b");
  assert.deepEqual(a.got.at(-1), { op: "tabs", count: 2 });
  hub.receive(a, { op: "sub", tab: "a", ch: "room" });
  const sub = client.subs.get("room");
  sub.confirmed({ ep: "E", off: 10, rec: true, n: 0 });
  await settle();
  hub.receive(b, { op: "sub", tab: "b", ch: "room" });
  await settle();
  assert.equal(client.subscribed.length, 1, "one real subscription");
  sub.deliver(11, "x");
  sub.deliver(12, "y");
  assert.deepEqual(a.pubs(), [11, 12]);
  assert.deepEqual(b.pubs(), [11, 12]);
  assert.deepEqual(b.got.find((m) => m.op === "subok").result, { channel: "room", epoch: "E", offset: 10, recovered: true, missed: 0 });
  hub.receive(a, { op: "unsub", tab: "a", ch: "room" });
  assert.deepEqual(client.unsubscribed, [], "b still follows it");
  sub.deliver(13, "z");
  assert.deepEqual(a.pubs(), [11, 12]);
  assert.deepEqual(b.pubs(), [11, 12, 13]);
  hub.receive(b, { op: "leave", tab: "b" });
  assert.deepEqual(client.unsubscribed, ["room"]);
  assert.equal(client.closed, false, "a is still there");
  hub.receive(a, { op: "leave", tab: "a" });
  assert.equal(client.closed, true, "the last tab ends the session");
});

test("a later tab gets what it asked for from history, then the live publications, each once", async () => {
  const { client, hub } = setUp();
  const a = tab(hub, "a");
  const b = tab(hub, "b");
  hub.receive(a, { op: "sub", tab: "a", ch: "room" });
  const sub = client.subs.get("room");
  sub.confirmed({ ep: "E", off: 3, rec: true, n: 0 });
  sub.deliver(4, "d");
  await settle();
  hub.receive(b, { op: "sub", tab: "b", ch: "room", since: { epoch: "E", offset: 1 } });
  sub.deliver(5, "e"); // before the hub looked where the channel stands: history covers it
  await settle();
  // The history request is on its way; live publications meanwhile wait for this tab.
  const [{ frame, resolve }] = client.requests;
  assert.deepEqual(frame, { t: "history", ch: "room", ep: "E", off: 1, limit: 4 });
  sub.deliver(6, "f");
  assert.deepEqual(b.pubs(), []);
  resolve({ ep: "E", off: 6, complete: true, pubs: [2, 3, 4, 5, 6].map((o) => ({ o, d: o })) });
  await settle();
  const order = b.got.filter((m) => m.op === "subok" || m.op === "pub").map((m) => (m.op === "pub" ? m.o : m.op));
  assert.deepEqual(order, ["subok", 2, 3, 4, 5, 6], "history up to the position, then the live ones, none twice");
  assert.equal(b.got.find((m) => m.op === "subok").result.recovered, true);
  assert.deepEqual(a.pubs(), [4, 5, 6]);
});

test("a later tab whose position is in another epoch is told it was not recovered", async () => {
  const { client, hub } = setUp();
  const a = tab(hub, "a");
  const b = tab(hub, "b");
  hub.receive(a, { op: "sub", tab: "a", ch: "room" });
  client.subs.get("room").confirmed({ ep: "NEW", off: 7, rec: true, n: 0 });
  await settle();
  hub.receive(b, { op: "sub", tab: "b", ch: "room", since: { epoch: "OLD", offset: 3 } });
  await settle();
  assert.equal(client.requests.length, 0);
  assert.deepEqual(b.got.find((m) => m.op === "subok").result, { channel: "room", epoch: "NEW", offset: 7, recovered: false, missed: 0 });
});

test("a later tab refused history is refused `recent` and not recovered from `since`, as alone", async () => {
  // The server refuses a `sub` with `recent` on a channel whose history the client may not
  // read, and answers a recovery `rec: false`; a tab joining a channel other tabs follow
  // reads history itself, and its `recent` was confirmed without the past instead.
  const { client, hub } = setUp();
  const [a, b, c] = ["a", "b", "c"].map((id) => tab(hub, id));
  hub.receive(a, { op: "sub", tab: "a", ch: "room" });
  client.subs.get("room").confirmed({ ep: "E", off: 7, rec: true, n: 0 });
  await settle();
  hub.receive(b, { op: "sub", tab: "b", ch: "room", recent: 5 });
  hub.receive(c, { op: "sub", tab: "c", ch: "room", since: { epoch: "E", offset: 3 } });
  await settle();
  assert.deepEqual(client.requests.map((r) => r.frame.t), ["history", "history"]);
  for (const { reject } of client.requests) reject(new LadderError("forbidden", "history on 'room' is not allowed"));
  await settle();
  assert.deepEqual(b.got.filter((m) => m.op === "subok" || m.op === "suberr").map((m) => [m.op, m.error?.code]), [["suberr", "forbidden"]]);
  assert.deepEqual(c.got.find((m) => m.op === "subok").result, { channel: "room", epoch: "E", offset: 7, recovered: false, missed: 0 });
  client.subs.get("room").deliver(8, "h");
  assert.deepEqual([a.pubs(), b.pubs(), c.pubs()], [[8], [], [8]], "the others go on");
});

test("a tab whose subscription could not recover hears it once, by its confirmation", async () => {
  // The client says `resync` as the subscription's answer arrives (before ready() settles):
  // held for the tab until its confirmation, which says recovered: false too, it made the
  // tab hear the same gap twice. A gap once the tab is live still reaches it.
  const { client, hub } = setUp();
  const a = tab(hub, "a");
  hub.receive(a, { op: "sub", tab: "a", ch: "room", since: { epoch: "OLD", offset: 3 } });
  const sub = client.subs.get("room");
  sub.confirmed({ ep: "NEW", off: 7, rec: false, n: 0 });
  client.listeners.get("resync")({ channel: "room", epoch: "NEW" });
  await settle();
  assert.equal(a.got.find((m) => m.op === "subok").result.recovered, false);
  assert.equal(a.got.filter((m) => m.op === "resync").length, 0, "told by its confirmation only");
  client.listeners.get("resync")({ channel: "room", epoch: "NEWER" });
  assert.equal(a.got.filter((m) => m.op === "resync").length, 1, "a later gap is told");
});

test("a reply goes to the tab that asked, and a tab that left gets nothing", async () => {
  const { hub } = setUp();
  const a = tab(hub, "a");
  const b = tab(hub, "b");
  hub.receive(a, { op: "req", tab: "a", id: 1, kind: "call", ev: "echo", d: 1 });
  hub.receive(b, { op: "req", tab: "b", id: 1, kind: "call", ev: "echo", d: 2 });
  hub.receive(b, { op: "leave", tab: "b" });
  await settle();
  assert.deepEqual(a.got.filter((m) => m.op === "reply"), [{ op: "reply", id: 1, ok: true, value: { event: "echo", data: 1 } }]);
  assert.deepEqual(b.got.filter((m) => m.op === "reply"), []);
});

test("with a broadcast, a publication for many tabs goes out once, naming them", async () => {
  const client = new StandIn();
  const sent = [];
  const hub = new TabHub(() => client, (message, tabs) => sent.push([message.o, tabs]));
  const a = tab(hub, "a");
  const b = tab(hub, "b");
  const sub = await following(hub, client, "room", 0, a, b);
  sub.deliver(1, "x");
  assert.deepEqual(sent, [[1, ["a", "b"]]]);
  assert.deepEqual(a.pubs(), []);
});

test("the last tab's app closing drops unsent messages; its page going away keeps them", async () => {
  for (const going of [false, true]) {
    const { client, hub } = setUp();
    tab(hub, "a");
    tab(hub, "b");
    hub.receive(null, { op: "leave", tab: "a", going });
    assert.equal(client.closed, false, "another tab still uses the connection");
    hub.receive(null, { op: "leave", tab: "b", going });
    assert.equal(client.closed, true);
    assert.equal(client.kept === true, going);
  }
});

test("a shared subscription ended after it was confirmed ends in every tab following it (a renewal refused for good)", async () => {
  const { client, hub } = setUp();
  const a = tab(hub, "a");
  const b = tab(hub, "b");
  const c = tab(hub, "c");
  const sub = await following(hub, client, "room", 10, a, b);
  hub.receive(c, { op: "sub", tab: "c", ch: "other" });
  await settle();
  // The client's session was lost and the server refused the renewal for good.
  sub.end(new LadderError("forbidden", "not any more"));
  await settle();
  for (const port of [a, b]) {
    assert.deepEqual(port.got.filter((m) => m.op === "suberr"), [{ op: "suberr", ch: "room", error: { code: "forbidden", reason: "not any more", retryAfter: undefined, details: undefined } }]);
  }
  assert.deepEqual(c.got.filter((m) => m.op === "suberr"), [], "a tab not following it hears nothing");
  // Subscribing again makes a new real subscription, and the tabs leaving do not unsubscribe the ended one.
  hub.receive(a, { op: "sub", tab: "a", ch: "room" });
  assert.equal(client.subscribed.length, 3, "room, other, room again");
  hub.receive(b, { op: "leave", tab: "b" });
  assert.deepEqual(client.unsubscribed, []);
});

test("the hub unsubscribing with the last tab tells no tab", async () => {
  const { client, hub } = setUp();
  const a = tab(hub, "a");
  const b = tab(hub, "b");
  await following(hub, client, "room", 1, a);
  hub.receive(a, { op: "unsub", tab: "a", ch: "room" });
  await settle();
  assert.deepEqual(client.unsubscribed, ["room"]);
  assert.deepEqual([...a.got, ...b.got].filter((m) => m.op === "suberr"), []);
});
