// The browser client's connection manager under a fake clock, with scripted transports:
// the race, resume and replay, new sessions, stepping down, probing up, liveness, acks.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Client, LadderError, race, Transport, TransportClosed } from "../../src/ladder/static/client.js";
import { atMost } from "../../src/ladder/static/clock.js";
import * as core from "../../src/ladder/static/core.js";

/** Let every pending promise callback run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

class FakeClock {
  constructor() {
    this.t = 0;
    this.seq = 0;
    /** @type {Map<number, {at: number, fn: () => void}>} */
    this.timers = new Map();
  }

  now() {
    return this.t;
  }

  /** Unix time, ms: the server's `exp` is Unix time. */
  wall() {
    return 1_700_000_000_000 + this.t;
  }

  setTimeout(fn, ms) {
    this.seq += 1;
    this.timers.set(this.seq, { at: this.t + Math.max(0, ms), fn });
    return this.seq;
  }

  clearTimeout(id) {
    this.timers.delete(id);
  }

  /** Move time forward by `ms`, running each timer at its due time. */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await settle();
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (next === null || timer.at < next[1].at)) next = [id, timer];
      }
      if (next === null) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
    await settle();
  }

  /** Move time forward without running timers (a frozen tab); they run late on the next advance. */
  freeze(ms) {
    this.t += ms;
  }
}

/** A transport the test scripts: it records what the client sends and opens when told. */
class FakeTransport extends Transport {
  constructor(rung, ctx, net) {
    super(rung, ctx);
    this.net = net;
    this.sent = [];
    this.pauses = 0;
    this.paused = false;
    this.unfetched = [];
    this.holdOpen = rung === "sse" && net.holdSse;
    this.separateUpstream = rung !== "websocket" && Boolean(net.posts);
    if (rung === "longpoll" || rung === "poll") {
      this.streaming = false;
      this.implicitAck = true;
    }
  }

  open(hello) {
    const opened = this.opening();
    this.hello = hello;
    this.net.opened.push(this);
    this.net.onOpen?.(this);
    return opened;
  }

  send(frames) {
    if (this.closed) return Promise.reject(new TransportClosed(`${this.name}: closed`));
    if (this.separateUpstream && this.net.failPosts > 0) {
      this.net.failPosts -= 1;
      return Promise.reject(new TransportClosed(`${this.name}: upstream POST failed (network)`));
    }
    const bytes = frames.map((frame) => JSON.stringify(frame)).join("\n").length;
    if (this.separateUpstream && this.net.maxBody !== undefined && bytes > this.net.maxBody) {
      this.net.tooLarge = (this.net.tooLarge ?? 0) + 1; // (a proxy's page: no code)
      const refused = new TransportClosed(`${this.name}: HTTP 413 from the server or a proxy`);
      refused.tooLarge = bytes;
      return Promise.reject(refused);
    }
    this.sent.push(...structuredClone(frames));
    if (this.net.pongs) {
      // A server that answers a POSTed ping on the stream at once (§3.4).
      const pongs = frames.filter((frame) => frame.t === "ping").map((frame) => ({ t: "pong", n: frame.n }));
      if (pongs.length) queueMicrotask(() => this.receive(pongs));
    }
    return Promise.resolve();
  }

  // A paused poll makes no request: what the server has for it waits until it resumes. (The
  // client no longer pauses polls; these keep a test honest should it start again.)
  pause() {
    this.pauses += 1;
    this.paused = true;
  }

  resume() {
    this.paused = false;
    super.receive(this.unfetched.splice(0));
  }

  receive(frames, size = 0) {
    if (this.paused) this.unfetched.push(...frames);
    else super.receive(frames, size);
  }

  welcomed(welcome) {
    if (this.holdOpen) this.held = welcome; // an SSE stream still proving itself
    else super.welcomed(welcome);
  }

  prove() {
    this.resolveOpen(this.held);
  }

  welcomeWith(fields = {}) {
    this.greet([
      { t: "welcome", v: 1, sid: "S1", rt: "R1", cid: "C1", u: null, resumed: false, ack: 0, seq: 0, hb: 20_000, ttl: 120_000, poll: 25_000, ...fields },
    ]);
  }

  /** Frames of type `t` the client wrote (messages and control frames). */
  wrote(t) {
    return this.sent.filter((frame) => frame.t === t);
  }
}

function setup({ storage = new Map(), ...options } = {}) {
  const clock = new FakeClock();
  const net = { opened: [], holdSse: false, fetched: [], answer: null };
  net.last = (rung) => net.opened.filter((t) => t.name === rung).at(-1);
  const client = new Client("http://test.example/ladder", {
    clock,
    random: () => 0,
    browserEvents: false,
    storage: { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v) },
    transportFactory: (rung, ctx) => new FakeTransport(rung, ctx, net),
    // What the server answers a question no transport could read (askWhy): a Ladder server
    // with nothing more to say, unless a test says otherwise.
    fetch: async (url, init) => {
      net.fetched.push([url, init?.method]);
      return net.answer?.(url) ?? new Response('{"t":"err","code":"bad_request","reason":"no sid"}', { status: 400 });
    },
    ...options,
  });
  const events = [];
  for (const name of ["open", "close", "transport", "resync", "session_lost", "resubscribed", "probe", "error", "state"]) {
    client.on(name, (event) => events.push({ name, ...event }));
  }
  const of = (name) => events.filter((e) => e.name === name);
  return { client, clock, net, events, of, storage };
}

describe("race", () => {
  test("rungs start staggered; a refusal starts the next at once", async () => {
    const { client, clock, net } = setup();
    client.start();
    await settle();
    assert.deepEqual(net.opened.map((t) => t.name), ["websocket"]);
    await clock.advance(299);
    assert.equal(net.opened.length, 1);
    await clock.advance(1);
    assert.deepEqual(net.opened.map((t) => t.name), ["websocket", "sse"]);
    net.last("websocket").fail("websocket: cannot connect");
    net.last("sse").fail("sse: cannot open the stream");
    await settle();
    assert.deepEqual(net.opened.map((t) => t.name), ["websocket", "sse", "longpoll"], "not waiting for 1 s");
    assert.equal(clock.now(), 300);
  });

  test("the first proven rung wins; the race says why better ones lost; a welcomed loser says bye", async () => {
    const { client, clock, net, of } = setup();
    net.holdSse = true;
    client.start();
    await clock.advance(300);
    net.last("sse").welcomeWith({ sid: "S-sse" }); // welcomed, still proving its stream
    await clock.advance(700);
    net.last("longpoll").welcomeWith({ sid: "S-lp" });
    await settle();
    assert.equal(client.transport, "longpoll");
    assert.equal(client.sessionId, "S-lp");
    const [change] = of("transport");
    assert.equal(change.old, null);
    assert.equal(change.new, "longpoll");
    assert.match(change.reason, /websocket: not proven within 1 s; sse: not proven within 1 s/);
    const sse = net.last("sse");
    assert.equal(sse.wrote("bye").length, 1, "the loser's own new session is ended");
    assert.equal(net.last("websocket").closed, true);
    await settle();
    assert.equal(sse.closed, true);
  });

  test("race() hands a rung that opened after the winner to onLoser", async () => {
    const opened = [];
    let release;
    const later = new Promise((resolve) => (release = resolve));
    const losers = [];
    const result = race(
      ["websocket", "sse"],
      (rung) => {
        opened.push(rung);
        return rung === "websocket" ? Promise.resolve({ name: rung }) : later;
      },
      [0, 0],
      { onLoser: (conn) => losers.push(conn) },
    );
    const { winner, failures } = await result;
    assert.equal(winner.name, "websocket");
    assert.deepEqual(failures, {});
    release({ name: "sse" });
    await settle();
    assert.deepEqual(losers, [{ name: "sse" }]);
  });
});

describe("reliability", () => {
  test("messages queued before connecting go out in order once connected; replies and pubs arrive once", async () => {
    const { client, net } = setup({ transports: ["websocket"] });
    client.start();
    const seen = [];
    const answer = client.call("echo", { x: 1 });
    client.emit("hello", 1);
    const sub = client.subscribe("room:a", (pub) => seen.push([pub.offset, pub.data]));
    await settle();
    const ws = net.last("websocket");
    assert.deepEqual(ws.hello, { t: "hello", v: 1 });
    ws.welcomeWith();
    await settle();
    assert.deepEqual(
      ws.sent.map((f) => [f.t, f.i]),
      [
        ["call", 1],
        ["emit", 2],
        ["sub", 3],
      ],
      "the subscription is sent once (not also from the queue)",
    );
    ws.receive([
      { s: 1, t: "reply", re: 1, d: { ok: true } },
      { s: 2, t: "reply", re: 3, d: { ch: "room:a", ep: "E", off: 0, rec: true, n: 0 } },
      { s: 4, t: "pub", ch: "room:a", o: 2, d: "b" },
      { s: 3, t: "pub", ch: "room:a", o: 1, d: "a" },
      { s: 3, t: "pub", ch: "room:a", o: 1, d: "a" },
      { s: 4, t: "pub", ch: "room:a", o: 2, d: "b" },
    ]);
    assert.deepEqual(await answer, { ok: true });
    assert.equal((await sub.ready()).epoch, "E");
    assert.deepEqual(seen, [
      [1, "a"],
      [2, "b"],
    ]);
  });

  test("a reply without d (a handler that returned None) resolves with null, as Python's None", async () => {
    const { client, net } = setup({ transports: ["websocket"] });
    client.start();
    const answer = client.call("nothing", null);
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    await settle();
    ws.receive([{ s: 1, t: "reply", re: 1 }]);
    assert.equal(await answer, null);
  });

  test("a dropped transport resumes the session: unacknowledged messages again, replays dropped", async () => {
    const { client, clock, net, of } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    const seen = [];
    const sub = client.subscribe("c", (pub) => seen.push(pub.offset));
    client.emit("a");
    await settle();
    ws.receive([
      { t: "ack", i: 1 },
      { s: 1, t: "reply", re: 1, d: { ch: "c", ep: "E", off: 0, rec: true, n: 0 } },
      { s: 2, t: "pub", ch: "c", o: 1, d: null },
    ]);
    client.emit("b"); // i = 3, lost with the transport
    ws.fail("websocket: connection lost (code 1006)");
    await clock.advance(0);
    assert.equal(of("close").at(-1).reason, "websocket: connection lost (code 1006)");
    const again = net.last("websocket");
    assert.notEqual(again, ws);
    assert.deepEqual(again.hello, { t: "hello", v: 1, why: "lost", sid: "S1", rt: "R1", ack: 2 });
    again.welcomeWith({ resumed: true, ack: 2 });
    await settle();
    assert.deepEqual(again.sent.filter((f) => "i" in f).map((f) => [f.t, f.ev, f.i]), [["emit", "b", 3]]);
    again.receive([
      { s: 2, t: "pub", ch: "c", o: 1, d: null },
      { s: 3, t: "pub", ch: "c", o: 2, d: null },
    ]);
    assert.deepEqual(seen, [1, 2]);
    assert.equal(sub.offset, 2);
    assert.equal(of("open").at(-1).resumed, true);
    assert.equal(of("transport").length, 1, "same rung: no transport event");
  });

  test("a lost session starts a new one: calls carried over, channels recovered from their position", async () => {
    const { client, clock, net, of } = setup({ transports: ["websocket"], token: "alice" });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith({ u: "alice" });
    const seen = [];
    client.subscribe("room:a", (pub) => seen.push(pub.offset));
    await settle();
    ws.receive([
      { t: "ack", i: 1 },
      { s: 1, t: "reply", re: 1, d: { ch: "room:a", ep: "E", off: 4, rec: true, n: 0 } },
      { s: 2, t: "pub", ch: "room:a", o: 5, d: null },
    ]);
    const pending = client.call("slow", null, { timeout: null });
    ws.fail("websocket: connection lost");
    await clock.advance(0);
    net.last("websocket").fail("websocket: refused", new LadderError("unknown_session", "expired"));
    await clock.advance(0);
    const fresh = net.last("websocket");
    assert.deepEqual(
      fresh.hello,
      { t: "hello", v: 1, why: "lost", tok: "alice", psid: "S1", prt: "R1", pids: "2", pu: "alice" },
      "a new session, with credentials, naming the lost one, whose it was and the message it carries over",
    );
    fresh.welcomeWith({ sid: "S2", rt: "R2" });
    await settle();
    assert.match(of("session_lost")[0].reason, /unknown_session/);
    assert.deepEqual(
      fresh.sent.filter((f) => "i" in f),
      [
        { t: "call", ev: "slow", d: null, i: 1 },
        { t: "sub", ch: "room:a", ep: "E", off: 5, i: 2 },
      ],
    );
    fresh.receive([
      { s: 1, t: "reply", re: 1, d: "done" },
      { s: 2, t: "reply", re: 2, d: { ch: "room:a", ep: "E", off: 7, rec: true, n: 2 } },
      { s: 3, t: "pub", ch: "room:a", o: 6, d: null },
      { s: 4, t: "pub", ch: "room:a", o: 7, d: null },
    ]);
    assert.equal(await pending, "done");
    assert.deepEqual(seen, [5, 6, 7]);
    assert.deepEqual(of("resubscribed").map((e) => e.recovered), [true]);
    assert.equal(of("resync").length, 0);
  });

  test("a resync says where the subscription goes on from, as a frame and as a subscription not recovered", async () => {
    const { client, net, of } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    const seen = [];
    client.subscribe("room:a", (pub) => seen.push(pub.offset), { since: { epoch: "E", offset: 5 } });
    await settle();
    ws.receive([
      { t: "ack", i: 1 },
      { s: 1, t: "reply", re: 1, d: { ch: "room:a", ep: "F", off: 7, rec: false, n: 0 } },
      { s: 2, t: "pub", ch: "room:a", o: 8, d: null },
      { s: 3, t: "resync", ch: "room:a", ep: "G", off: 3 },
      { s: 4, t: "pub", ch: "room:a", o: 4, d: null },
    ]);
    await settle();
    assert.deepEqual(of("resync"), [
      { name: "resync", channel: "room:a", epoch: "F", offset: 7 },
      { name: "resync", channel: "room:a", epoch: "G", offset: 3 },
    ]);
    assert.deepEqual(seen, [8, 4], "each publication after the offset its resync named");
  });

  test("a subscribe refused with queue_full leaves nothing behind: the next one is sent", async () => {
    // (it stayed in the client's table: the next subscribe returned it, never sent, and its
    // ready() waited for ever)
    const { client, net } = setup({ transports: ["websocket"], maxQueue: 2 });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    client.emit("e", 1);
    client.emit("e", 2);
    assert.throws(() => client.subscribe("room:q"), (e) => e.code === "queue_full");
    await settle();
    ws.receive([{ t: "ack", i: 2 }]);
    await settle();
    const sub = client.subscribe("room:q");
    await settle();
    assert.deepEqual(ws.wrote("sub").map((f) => [f.ch, f.i]), [["room:q", 3]]);
    ws.receive([{ s: 1, t: "reply", re: 3, d: { ch: "room:q", ep: "E", off: 0, rec: true, n: 0 } }]);
    assert.equal((await sub.ready()).epoch, "E");
  });

  test("a new session renews subscriptions even when the carried messages fill the queue", async () => {
    const { client, clock, net, of } = setup({ transports: ["websocket"], maxQueue: 2 });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    client.subscribe("room:a", () => {});
    await settle();
    ws.receive([
      { t: "ack", i: 1 },
      { s: 1, t: "reply", re: 1, d: { ch: "room:a", ep: "E", off: 4, rec: true, n: 0 } },
    ]);
    ws.fail("websocket: connection lost");
    client.emit("e", 1);
    client.emit("e", 2); // the queue is full now
    await clock.advance(0);
    net.last("websocket").fail("websocket: refused", new LadderError("unknown_session", "expired"));
    await clock.advance(0);
    const fresh = net.last("websocket");
    fresh.welcomeWith({ sid: "S2", rt: "R2" });
    await settle();
    assert.equal(client.state, "connected");
    assert.deepEqual(of("error"), [], "no queue_full");
    assert.deepEqual(
      fresh.sent.filter((f) => "i" in f).map((f) => [f.t, f.i]),
      [["emit", 1], ["emit", 2], ["sub", 3]],
    );
    fresh.receive([{ t: "ack", i: 3 }]);
    client.emit("e", 3);
    await settle();
    assert.deepEqual(fresh.wrote("emit").at(-1), { t: "emit", ev: "e", d: 3, i: 4 }, "it keeps working");
  });

  test("a token function's credentials are refreshed over the live session, margin ahead or halfway through", async () => {
    let issued = 0;
    const { client, clock, net } = setup({ transports: ["websocket"], token: () => `tok-${++issued}` });
    client.start();
    await settle();
    const ws = net.last("websocket");
    const unix = (ms) => (1_700_000_000_000 + ms) / 1000;
    ws.welcomeWith({ exp: unix(4000), hb: 1_000_000 }); // lives 4 s, less than the 60 s margin: refreshed at 2 s
    await clock.advance(1999);
    assert.deepEqual(ws.wrote("refresh"), []);
    await clock.advance(1);
    assert.deepEqual(ws.wrote("refresh").map((f) => f.tok), ["tok-2"]);
    ws.receive([{ s: 1, t: "reply", re: ws.wrote("refresh")[0].i, d: { u: "ada", exp: unix(2000 + 120_000) } }]);
    await settle();
    await clock.advance(59_999); // 120 s left: 60 s before they expire
    assert.equal(ws.wrote("refresh").length, 1);
    await clock.advance(1);
    await settle();
    assert.deepEqual(ws.wrote("refresh").map((f) => f.tok), ["tok-2", "tok-3"]);
    // A refusal: told to the app (it was a console line only, the session then ending at exp),
    // and tried again halfway through what is left (60 s: 30 s later), not in a loop.
    const errors = [];
    client.on("error", (e) => errors.push(e));
    ws.receive([{ s: 2, t: "err", re: ws.wrote("refresh")[1].i, code: "unauthorized", reason: "no" }]);
    await settle();
    assert.deepEqual(errors, [{ code: "unauthorized", reason: "token refresh failed: no" }]);
    await clock.advance(29_999);
    assert.equal(ws.wrote("refresh").length, 2);
    await clock.advance(1);
    await settle();
    assert.equal(ws.wrote("refresh").length, 3);
    assert.equal(client.state, "connected");
    await client.close();
    await clock.advance(120_000);
    assert.equal(ws.wrote("refresh").length, 3, "a closed client refreshes nothing");
  });

  test("an async token function is awaited; a token of another type fails that rung, naming it", async () => {
    // (its Promise went into the hello as it was; a Response reached the server as "[object Response]")
    const { client, net } = setup({ transports: ["websocket"], token: async () => "from-the-vault" });
    client.start();
    await settle();
    assert.equal(net.last("websocket").hello.tok, "from-the-vault");
    await client.close();
    const wrong = setup({ transports: ["websocket"], token: () => ({ token: "t" }), connectTimeout: 100, random: () => 0.99 });
    wrong.client.start();
    await settle();
    await wrong.clock.advance(100);
    await assert.rejects(wrong.client.ready(), (e) => e.code === "connect_failed" && /the token function returned \{"token":"t"\}: return a string/.test(e.reason));
  });

  test("a token function is asked once per race, not once per rung; one that never answers is named", async () => {
    // (every rung of a race called it: an app fetching its token made four requests a reconnect;
    // one that never answered was reported as every rung's "no answer")
    let asked = 0;
    const { client, clock, net } = setup({ token: async () => `t${++asked}`, stagger: [0] });
    client.start();
    await settle();
    assert.deepEqual(net.opened.map((t) => t.name), ["websocket", "sse", "longpoll", "poll"]);
    assert.deepEqual(net.opened.map((t) => t.hello.tok), ["t1", "t1", "t1", "t1"]);
    assert.equal(asked, 1);
    await client.close();
    const never = setup({ token: () => new Promise(() => {}), connectTimeout: 100 });
    never.client.start();
    await settle();
    await never.clock.advance(100);
    await assert.rejects(never.client.ready(), (e) => e.code === "connect_failed" && /websocket: still waiting for the client's token function/.test(e.reason));
  });

  test("refresh(token) by hand; a fixed token is never refreshed by itself", async () => {
    const { client, clock, net } = setup({ transports: ["websocket"], token: "fixed" });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith({ exp: (1_700_000_000_000 + 4000) / 1000 });
    await clock.advance(10_000);
    assert.deepEqual(ws.wrote("refresh"), []);
    const done = client.refresh("newer");
    await settle();
    assert.deepEqual(ws.wrote("refresh").map((f) => f.tok), ["newer"]);
    ws.receive([{ s: 1, t: "reply", re: ws.wrote("refresh")[0].i, d: { u: "ada", exp: null } }]);
    await done;
    const refused = client.refresh("mallory");
    await settle();
    ws.receive([{ s: 2, t: "err", re: ws.wrote("refresh")[1].i, code: "forbidden", reason: "another user" }]);
    await assert.rejects(refused, (e) => e.code === "forbidden");
    client.refresh();
    await settle();
    assert.equal(ws.wrote("refresh")[2].tok, "newer", "a refused token is not kept for the next connection");
    // Refused by the client, as a token option is, before anything is sent.
    await assert.rejects(client.refresh("x".repeat(8193)), (e) => e instanceof TypeError && /8,?193 characters: a server takes at most 8,?192/.test(e.message));
    await assert.rejects(client.refresh(/** @type {any} */ ({ user: "ada" })), (e) => e instanceof TypeError && /token must be a string/.test(e.message));
    await settle();
    assert.equal(ws.wrote("refresh").length, 3);
  });

  test("a call times out with code 'timeout'; a refusal arrives as its LadderError", async () => {
    const { client, clock, net } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    const late = client.call("slow", null, { timeout: 5000 });
    const refused = client.call("fail", null);
    await settle();
    ws.receive([{ s: 1, t: "err", re: 2, code: "room_full", reason: "the room is full", retry_after: 2.5, details: { seats: 0 } }]);
    await assert.rejects(refused, (e) => e instanceof LadderError && e.code === "room_full" && e.reason === "the room is full" && e.retryAfter === 2.5 && e.details?.seats === 0);
    const timedOut = assert.rejects(late, (e) => e.code === "timeout");
    await clock.advance(4999);
    assert.equal(client.state, "connected");
    await clock.advance(1);
    await timedOut;
  });

  test("a failed emit is an error event with the details and wait its handler gave (a wait that is none: left out)", async () => {
    const { client, net, of } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    client.emit("join", "room:full");
    await settle();
    const { i } = ws.wrote("emit")[0];
    ws.receive([{ s: 1, t: "err", re: i, code: "room_full", reason: "no seat", retry_after: 2.5, details: { seats: 0 } }]);
    ws.receive([{ t: "err", code: "forbidden", reason: "r", retry_after: -5 }]);
    await settle();
    assert.deepEqual(of("error"), [
      { name: "error", code: "room_full", reason: "no seat", details: { seats: 0 }, retryAfter: 2.5 },
      { name: "error", code: "forbidden", reason: "r" },
    ]);
  });

  test("flush() resolves once every queued message is acknowledged; times out as told; a close rejects it", async () => {
    // (the browser client had no flush: close() after emits dropped them, with nothing to wait on)
    const { client, clock, net } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    await client.flush(); // nothing queued: at once
    client.emit("a", 1);
    client.emit("b", 2);
    let done = false;
    const flushed = client.flush().then(() => (done = true));
    await settle();
    ws.receive([{ t: "ack", i: 1 }]);
    await settle();
    assert.equal(done, false, "one of two acknowledged");
    ws.receive([{ t: "ack", i: 2 }]);
    await flushed;
    client.emit("c", 3);
    const late = assert.rejects(client.flush({ timeout: 500 }), (e) => e.code === "timeout" && /1 messages not acknowledged within 0\.5 s/.test(e.reason));
    await clock.advance(500);
    await late;
    const closing = assert.rejects(client.flush(), (e) => e.code === "closed");
    await client.close();
    await closing;
    assert.throws(() => client.flush(), (e) => e.code === "closed");
    assert.throws(() => client.flush({ timeout: 0 }), TypeError);
  });

  test("a call whose session's Redis server is down waits on the same connection: the control err is an error event, not an end", async () => {
    const { client, clock, net, of } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith({ hb: 2000 });
    const answered = client.call("do", "a", { timeout: 30_000 });
    await settle();
    const reason = "shard 10.0.0.2:6379, which holds this session, is down: its messages wait here for it (at most 10 s)";
    ws.receive([{ t: "err", code: "engine_unavailable", reason }]);
    for (let n = 1; n <= 4; n++) {
      await clock.advance(2000); // the server's pings go on meanwhile
      ws.receive([{ t: "ping" }]);
    }
    assert.deepEqual(of("error"), [{ name: "error", code: "engine_unavailable", reason }]);
    assert.equal(client.state, "connected");
    assert.deepEqual(net.opened, [ws], "no other connection");
    assert.equal(ws.closed, false);
    ws.receive([{ t: "ack", i: 1 }, { s: 1, t: "reply", re: 1, d: { did: "a" } }]);
    assert.deepEqual(await answered, { did: "a" });
    assert.equal(ws.wrote("call").length, 1, "written once");
  });

  test("acknowledges a stream once it has been quiet for 1 s, or at once at the drawn count (256 of 512 here)", async () => {
    const { client, clock, net } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    await clock.advance(5000); // quiet for a while: the last ack is long ago
    ws.receive([{ s: 1, t: "push", ev: "x" }]);
    await settle();
    assert.deepEqual(ws.wrote("ack"), [], "a lone frame is not acknowledged at once");
    await clock.advance(600);
    ws.receive([{ s: 2, t: "push", ev: "x" }]);
    await clock.advance(400);
    assert.deepEqual(ws.wrote("ack"), [], "1 s after the first frame, but only 400 ms after the second");
    await clock.advance(599);
    assert.deepEqual(ws.wrote("ack"), []);
    await clock.advance(1);
    assert.deepEqual(ws.wrote("ack"), [{ t: "ack", s: 2 }], "1 s after the last frame");
    await clock.advance(5000);
    assert.equal(ws.wrote("ack").length, 1, "nothing new: nothing sent");

    for (let s = 3; s <= 257; s++) ws.receive([{ s, t: "push", ev: "x" }]);
    assert.equal(ws.wrote("ack").length, 1, "255 unacknowledged frames wait for the timer");
    ws.receive([{ s: 258, t: "push", ev: "x" }]);
    assert.deepEqual(ws.wrote("ack").at(-1), { t: "ack", s: 258 }, "256 unacknowledged: at once");
    await clock.advance(1000);
    assert.equal(ws.wrote("ack").length, 2, "the timer went with the ack");

    ws.receive([{ s: 259, t: "push", ev: "x" }]);
    await clock.advance(500);
    ws.receive([{ t: "ping" }]);
    assert.deepEqual(ws.sent.slice(-2), [{ t: "pong" }, { t: "ack", s: 259 }], "a pending ack rides with the pong");
    await clock.advance(1000);
    assert.equal(ws.wrote("ack").length, 3, "and the timer is cancelled");
  });

  /**
   * A connected WebSocket client fed frames 1..`count`, one every `gap` ms (after the gap, or
   * before it with `gapFirst` false), then left alone for `after` ms: its acks, as [ms after
   * the start, s].
   * @param {{count: number, gap: number, gapFirst: boolean, after: number}} stream
   */
  async function acksOf({ count, gap, gapFirst, after }) {
    const { client, clock, net } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    const at = [];
    const start = clock.now();
    const send = ws.send.bind(ws);
    ws.send = (frames) => {
      for (const frame of frames) if (frame.t === "ack") at.push([clock.now() - start, frame.s]);
      return send(frames);
    };
    for (let s = 1; s <= count; s++) {
      if (gapFirst) await clock.advance(gap);
      ws.receive([{ s, t: "push", ev: "x" }]);
      if (!gapFirst) await clock.advance(gap);
    }
    await clock.advance(after);
    return at;
  }

  test("a subscriber getting less than one message a second acknowledges a second late, not per message at once", async () => {
    assert.deepEqual(await acksOf({ count: 5, gap: 1500, gapFirst: true, after: 1500 }), [
      [2500, 1],
      [4000, 2],
      [5500, 3],
      [7000, 4],
      [8500, 5],
    ]);
  });

  test("a steady stream of 10 frames a second is acknowledged at the drawn count and once it goes quiet, not every second", async () => {
    assert.deepEqual(await acksOf({ count: 300, gap: 100, gapFirst: false, after: 2000 }), [
      [25500, 256],
      [30900, 300],
    ]);
  });

  test("acks before half the server's queue fills: every 4 frames under lim.queue 8, and at half lim.qbytes in bytes", async () => {
    const { client, net } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith({ lim: { frame: 65536, post: 1048576, subs: 512, queue: 8, qbytes: 1_000_000 } });
    await settle();
    for (let s = 1; s <= 9; s++) ws.receive([{ s, t: "push", ev: "x" }], 30);
    assert.deepEqual(ws.wrote("ack"), [{ t: "ack", s: 4 }, { t: "ack", s: 8 }]);
    ws.receive([{ s: 10, t: "push", ev: "x" }], 499_000);
    assert.equal(ws.wrote("ack").length, 2, "below half the bytes: no ack yet");
    ws.receive([{ s: 11, t: "push", ev: "x" }], 1_000);
    assert.deepEqual(ws.wrote("ack").at(-1), { t: "ack", s: 11 }, "half of qbytes: at once");
    ws.receive([{ s: 12, t: "push", ev: "x" }], 400_000);
    assert.equal(ws.wrote("ack").length, 3, "the ack started the byte count again");
  });

  test("close() says bye and fails what waits", async () => {
    const { client, net, of } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    const waiting = client.call("slow", null, { timeout: null });
    await settle();
    const closing = client.close();
    await assert.rejects(waiting, (e) => e.code === "closed");
    await closing;
    assert.equal(ws.wrote("bye").length, 1);
    assert.equal(client.state, "closed");
    assert.equal(of("close").at(-1).reconnecting, false);
    assert.throws(() => client.emit("x"), (e) => e.code === "closed");
  });
});

describe("a subscription renewed in a new session, refused", () => {
  /**
   * A client following `room:a` (epoch E, offset 1 delivered) whose session is then lost; it
   * renews the subscription in the new session S2. `random` is 0.5: every draw is half its range.
   */
  async function renewed(options = {}) {
    const made = setup({ transports: ["websocket"], random: () => 0.5, backoffBase: 1000, backoffMax: 4000, ...options });
    const { client, clock, net } = made;
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    const seen = [];
    const sub = client.subscribe("room:a", (pub) => seen.push(pub.data));
    await settle();
    ws.receive([
      { t: "ack", i: 1 },
      { s: 1, t: "reply", re: 1, d: { ch: "room:a", ep: "E", off: 0, rec: true, n: 0 } },
      { s: 2, t: "pub", ch: "room:a", o: 1, d: "before" },
    ]);
    await sub.ready();
    ws.fail("websocket: connection lost");
    await clock.advance(500); // (the reconnect pause: [0, 1 s) drawn at half)
    net.last("websocket").fail("websocket: refused", new LadderError("unknown_session", "expired"));
    await clock.advance(0);
    const fresh = net.last("websocket");
    fresh.welcomeWith({ sid: "S2", rt: "R2" });
    await settle();
    return { ...made, sub, seen, fresh };
  }

  test("refused for now (engine_unavailable): sent again after the backoff, from where it was, told once", async () => {
    const { client, clock, of, sub, seen, fresh } = await renewed();
    const renewal = { t: "sub", ch: "room:a", ep: "E", off: 1 };
    assert.deepEqual(fresh.wrote("sub"), [{ ...renewal, i: 1 }]);
    fresh.receive([{ s: 1, t: "err", re: 1, code: "engine_unavailable", reason: "redis down" }]);
    await settle();
    assert.equal(sub.active, true, "still followed");
    assert.equal(client.subscribe("room:a"), sub);
    await clock.advance(499); // [0, 1 s) drawn at half
    assert.equal(fresh.wrote("sub").length, 1);
    await clock.advance(1);
    assert.deepEqual(fresh.wrote("sub").at(-1), { ...renewal, i: 2 });
    fresh.receive([{ s: 2, t: "err", re: 2, code: "engine_unavailable", reason: "redis down" }]);
    await clock.advance(999); // then [0, 2 s)
    assert.equal(fresh.wrote("sub").length, 2);
    await clock.advance(1);
    assert.deepEqual(fresh.wrote("sub").at(-1), { ...renewal, i: 3 });
    fresh.receive([
      { s: 3, t: "reply", re: 3, d: { ch: "room:a", ep: "E", off: 2, rec: true, n: 1 } },
      { s: 4, t: "pub", ch: "room:a", o: 2, d: "missed" },
      { s: 5, t: "pub", ch: "room:a", o: 3, d: "after" },
    ]);
    await settle();
    assert.deepEqual(seen, ["before", "missed", "after"]);
    assert.deepEqual(of("resubscribed"), [{ name: "resubscribed", channel: "room:a", recovered: true }]);
    assert.deepEqual(of("error"), [
      {
        name: "error",
        code: "engine_unavailable",
        reason: "renewing the subscription to 'room:a' in a new session was refused (engine_unavailable: redis down): it is sent again, from where it was, until the server takes it",
      },
    ], "told once, not once per retry");
    await clock.advance(10_000);
    assert.equal(fresh.wrote("sub").length, 3, "nothing more once taken");
    assert.equal(sub.active, true);
  });

  test("refused for good (forbidden): the subscription ends, told by an error event naming the channel", async () => {
    const { client, clock, of, sub, fresh } = await renewed();
    fresh.receive([{ s: 1, t: "err", re: 1, code: "forbidden", reason: "permission denied" }]);
    await settle();
    assert.equal(sub.active, false);
    assert.equal(sub.error?.code, "forbidden");
    assert.deepEqual(of("error"), [
      {
        name: "error",
        code: "forbidden",
        reason: "renewing the subscription to 'room:a' in a new session was refused (forbidden: permission denied): it ended; subscribe again to follow the channel",
      },
    ]);
    await clock.advance(10_000);
    assert.equal(fresh.wrote("sub").length, 1, "never sent again");
    assert.notEqual(client.subscribe("room:a"), sub, "the client forgot it");
  });

  test("unsubscribed while the retry waits: never sent again, and no unsub for what the server does not hold", async () => {
    const { clock, of, sub, fresh } = await renewed();
    fresh.receive([{ s: 1, t: "err", re: 1, code: "engine_unavailable", reason: "redis down" }]);
    await settle();
    assert.equal(of("error").length, 1);
    await clock.advance(100);
    await sub.unsubscribe();
    assert.equal(sub.active, false);
    await clock.advance(10_000);
    assert.equal(fresh.wrote("sub").length, 1, "not sent again");
    assert.deepEqual(fresh.wrote("unsub"), []);
  });

  test("a fresh subscribe refused with engine_unavailable is not retried: ready() rejects, no event", async () => {
    const { client, clock, net, of } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    const sub = client.subscribe("room:b", () => {});
    await settle();
    ws.receive([{ s: 1, t: "err", re: 1, code: "engine_unavailable", reason: "redis down" }]);
    await assert.rejects(sub.ready(), /engine_unavailable: redis down/);
    await clock.advance(10_000);
    assert.equal(ws.wrote("sub").length, 1);
    assert.equal(sub.active, false);
    assert.deepEqual(of("error"), []);
  });
});

describe("the ladder", () => {
  test("connections the server ends with a refusal (engine_unavailable) are not cuts: the client stays on its rung", async () => {
    const { client, clock, net, of } = setup({ transports: ["websocket", "sse"] });
    client.start();
    await settle();
    const refusal = new LadderError("engine_unavailable", "this server cannot reach its engine");
    for (let refused = 0; refused < 5; refused++) {
      const ws = net.last("websocket");
      assert.equal(net.opened.at(-1), ws, "every reconnect races WebSocket first");
      ws.welcomeWith({ resumed: refused > 0 });
      await clock.advance(100);
      ws.fail("websocket: closed by the server (1011 engine_unavailable: this server cannot reach its engine)", refusal);
      await clock.advance(0); // (the pause, drawn with random() = 0)
    }
    assert.equal(client.policy.current, "websocket");
    assert.deepEqual(of("transport").map((e) => e.new), ["websocket"]);
  });

  test("three connections cut within 10 s step down a rung; a probe climbs back with a handover", async () => {
    const { client, clock, net, of } = setup({ transports: ["websocket", "sse"] });
    client.start();
    await settle();
    for (let cut = 0; cut < 3; cut++) {
      const ws = net.last("websocket");
      ws.welcomeWith({ resumed: cut > 0 });
      await clock.advance(100);
      ws.fail("websocket: closed by the server (1001)");
      await clock.advance(0);
    }
    const sse = net.last("sse");
    assert.ok(sse, "the race now starts at SSE");
    assert.equal(net.opened.at(-1), sse);
    sse.welcomeWith({ resumed: true });
    await settle();
    const down = of("transport").at(-1);
    assert.deepEqual([down.old, down.new], ["websocket", "sse"]);
    assert.match(down.reason, /websocket: cut 3 times in a row, each within 10 s of opening/);

    // Probe: WebSocket was just cut three times, so not after probeDelay (a proxy cutting after a
    // few seconds lets a probe's welcome through, and the client would climb straight back to be
    // cut again) but after stableAfter doubled (jittered: 20 s x 0.5 with random() = 0).
    await clock.advance(9999);
    assert.equal(net.opened.at(-1), sse);
    await clock.advance(1);
    const probe = net.last("websocket");
    assert.equal(probe.hello.sid, "S1", "a probe resumes the session");
    const seen = [];
    client.subscribe("c", (pub) => seen.push(pub.offset), { since: { epoch: "E", offset: 0 } });
    sse.receive([{ s: 1, t: "push", ev: "x" }]);
    probe.welcomeWith({ resumed: true, ack: 0 });
    await settle();
    const up = of("transport").at(-1);
    assert.deepEqual([up.old, up.new, up.reason], ["sse", "websocket", "websocket works again (probe succeeded)"]);
    assert.deepEqual(of("probe").at(-1), { name: "probe", rung: "websocket", ok: true, reason: "websocket: round trip completed" });
    assert.equal(sse.closed, true);
    assert.equal(client.transport, "websocket");
    assert.deepEqual(sse.wrote("sub").map((f) => f.i), [1]);
    assert.deepEqual(probe.wrote("sub").map((f) => f.i), [1], "unacknowledged messages are written again on the new rung");
    probe.receive([
      { s: 1, t: "push", ev: "x" },
      { s: 2, t: "reply", re: 4, d: { ch: "c", ep: "E", off: 1, rec: true, n: 1 } },
      { s: 3, t: "pub", ch: "c", o: 1, d: null },
    ]);
    assert.deepEqual(seen, [1]);
  });

  test("a reconnect on the same rung goes on with the probe schedule: a proxy cutting long polls does not make the client probe sooner", async () => {
    const { client, clock, net } = setup({ transports: ["sse", "longpoll"] });
    client.start();
    await settle();
    net.last("sse").fail("sse: cannot open the stream");
    await settle();
    net.last("longpoll").welcomeWith();
    await settle();
    const probes = () => net.opened.filter((t) => t.name === "sse" && t.hello.why === "probe");
    // random() = 0: probes after 1 s (2 s x 0.5), 2 s (4 s x 0.5), then 4 s (8 s x 0.5).
    await clock.advance(1000);
    assert.equal(probes().length, 1);
    probes().at(-1).fail("sse: refused by the server (forbidden: no)");
    await clock.advance(2000);
    assert.equal(probes().length, 2);
    probes().at(-1).fail("sse: refused by the server (forbidden: no)");
    await settle();
    const t = clock.now(); // the third probe is due at t + 4 s
    await clock.advance(1000);
    net.last("longpoll").fail("longpoll: HTTP 504 from the server or a proxy");
    await clock.advance(0);
    net.last("longpoll").welcomeWith({ resumed: true });
    await settle();
    assert.equal(client.transport, "longpoll");
    await clock.advance(t + 3999 - clock.now());
    assert.equal(probes().length, 2, "the schedule did not start again (a probe after 1 s)");
    await clock.advance(1);
    assert.equal(probes().length, 3, "the probe that was due keeps its time");
    client.close();
  });

  test("probing SSE from long polling: polling goes on until the probe proved itself, then hands over", async () => {
    const { client, clock, net, of } = setup({ transports: ["sse", "longpoll"] });
    net.holdSse = true;
    client.start();
    await settle();
    net.last("sse").fail("sse: cannot open the stream");
    await settle();
    const poll = net.last("longpoll");
    poll.welcomeWith();
    await settle();
    assert.equal(client.transport, "longpoll");
    const seen = [];
    client.subscribe("c", (pub) => seen.push(pub.offset));
    await settle();
    poll.receive([
      { t: "ack", i: 1 },
      { s: 1, t: "reply", re: 1, d: { ch: "c", ep: "E", off: 0, rec: true, n: 0 } },
    ]);
    await clock.advance(1000); // the first probe: 2 s x 0.5
    const buffered = net.last("sse");
    assert.deepEqual(buffered.hello, { t: "hello", v: 1, why: "probe", sid: "S1", rt: "R1", ack: 1 }, "a probe resumes the session");

    // A proxy holds the probe's stream: its welcome never comes. Deliveries do not wait for it.
    for (let o = 1; o <= 9; o++) {
      await clock.advance(1000);
      poll.receive([{ s: o + 1, t: "pub", ch: "c", o, d: null }]);
      assert.equal(seen.length, o, `publication ${o} delivered at once, during the probe`);
    }
    await clock.advance(1000);
    assert.equal(buffered.closed, true);
    assert.deepEqual(of("probe").at(-1), { name: "probe", rung: "sse", ok: false, reason: "sse: no welcome within 10 s" });
    assert.equal(client.transport, "longpoll");

    // The next probe (after 4 s x 0.5) is welcomed and proves its stream.
    await clock.advance(2000);
    const good = net.last("sse");
    assert.notEqual(good, buffered);
    assert.equal(good.hello.ack, 10);
    good.welcomeWith({ resumed: true, ack: 1 });
    // Welcomed, not yet proven: the server replays on the probe, and the poll still delivers.
    good.receive([
      { s: 11, t: "pub", ch: "c", o: 10, d: null },
      { s: 12, t: "pub", ch: "c", o: 11, d: null },
    ]);
    poll.receive([{ s: 11, t: "pub", ch: "c", o: 10, d: null }]);
    client.emit("during-the-probe"); // i = 2, written on the poll's POST
    await settle();
    assert.equal(client.transport, "longpoll");
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(poll.wrote("emit").map((f) => f.i), [2]);
    good.prove();
    await settle();
    assert.equal(client.transport, "sse");
    assert.equal(poll.closed, true);
    assert.deepEqual(of("transport").at(-1).reason, "sse works again (probe succeeded)");
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], "what the probe carried meanwhile, once");
    assert.deepEqual(good.wrote("emit").map((f) => f.i), [2], "not acknowledged in the welcome: written again");
    good.receive([
      { s: 12, t: "pub", ch: "c", o: 11, d: null },
      { s: 13, t: "pub", ch: "c", o: 12, d: null },
    ]);
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert.equal(poll.pauses, 0, "polling never paused");
  });

  test("remembers the winning rung for the tab and starts from it (still probing up)", async () => {
    const storage = new Map();
    const first = setup({ storage });
    first.client.start();
    await settle();
    first.net.last("websocket").fail("websocket: cannot connect");
    await settle();
    first.net.last("sse").welcomeWith();
    await settle();
    assert.equal(storage.get("ladder.rung:http://test.example/ladder|websocket,sse,longpoll,poll"), "sse");
    await first.client.close();

    // A client limited by its transports says nothing of what the network lets through.
    const limited = setup({ storage, transports: ["poll"] });
    limited.client.start();
    await settle();
    limited.net.last("poll").welcomeWith();
    await settle();
    await limited.client.close();
    assert.equal(storage.get("ladder.rung:http://test.example/ladder|websocket,sse,longpoll,poll"), "sse");

    const second = setup({ storage });
    second.client.start();
    await settle();
    assert.deepEqual(second.net.opened.map((t) => t.name), ["sse"]);
    second.net.last("sse").welcomeWith();
    await second.clock.advance(1000);
    assert.equal(second.net.opened.at(-1).name, "websocket", "probes up from the remembered rung");
  });
});

describe("liveness", () => {
  test("a stream silent for 1.5 heartbeats + 1 s is dropped", async () => {
    const { client, clock, net, of } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith({ hb: 1000 });
    await clock.advance(2000);
    ws.receive([{ t: "ping" }]);
    assert.deepEqual(ws.wrote("pong"), [{ t: "pong" }], "pings are answered at once");
    await clock.advance(2499);
    assert.equal(client.state, "connected");
    await clock.advance(1);
    assert.equal(of("close").at(-1).reason, "websocket: nothing received for 2.5 s");
  });

  test("on SSE a server ping is a heartbeat only: no pong is POSTed (acks still go out by the timer)", async () => {
    const { client, clock, net } = setup({ transports: ["sse"] });
    net.pongs = true;
    client.start();
    await settle();
    const sse = net.last("sse");
    sse.welcomeWith({ hb: 1000 });
    await settle();
    sse.receive([{ s: 1, t: "push", ev: "x" }, { t: "ping" }]);
    await settle();
    assert.deepEqual(sse.sent, [], "nothing written for the ping");
    await clock.advance(1000);
    // (the stream's own check, once per hb, §9.2, is a ping: the due ack rides along)
    const written = () => sse.sent.filter((frame) => frame.t !== "ping");
    assert.deepEqual(written(), [{ t: "ack", s: 1 }]);
    await clock.advance(1000);
    sse.receive([{ t: "ping" }]);
    await clock.advance(2000);
    assert.deepEqual(written(), [{ t: "ack", s: 1 }]);
    assert.equal(client.state, "connected", "the pings kept the stream alive");
  });

  test("a live SSE stream proves itself every hb: pongs in time keep it, two late of three checks step down", async () => {
    const { client, clock, net, of } = setup({ transports: ["sse", "longpoll"] });
    client.start();
    await settle();
    const sse = net.last("sse");
    sse.welcomeWith({ hb: 5000 });
    await settle();
    assert.equal(client.transport, "sse");
    for (let round = 0; round < 3; round += 1) {
      await clock.advance(round === 0 ? 5000 : 4100); // (every hb from the last ping, not its pong)
      const ping = sse.wrote("ping").at(-1);
      assert.equal(sse.wrote("ping").length, round + 1, "one check per heartbeat");
      await clock.advance(900); // within max(1 s, 4 round trips) of the POST's answer
      sse.receive([{ t: "pong", n: ping.n }]);
      await settle();
    }
    assert.equal(client.state, "connected");
    assert.equal(sse.wrote("ping").length, 3);
    await clock.advance(5000);
    assert.equal(sse.wrote("ping").length, 4);
    await clock.advance(1001); // no pong within the bound (its timer a millisecond after): asked again at once
    assert.equal(sse.wrote("ping").length, 5);
    assert.equal(client.state, "connected", "one late pong may be noise");
    await clock.advance(1001);
    const closed = of("close").at(-1);
    assert.match(closed.reason, /^sse: stream buffered by something on the way \(.*, in 2 of its last 3 checks\)$/);
    assert.equal(client.policy.current, "longpoll", "stepped down, as at the open");
    assert.deepEqual(client.policy.candidates(), ["longpoll"]);
  });

  test("after a frozen page, the watchdog asks with a ping before it gives up", async () => {
    const { client, clock, net, of } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith({ hb: 1000 });
    await settle();
    clock.freeze(60_000);
    await clock.advance(0);
    assert.equal(client.state, "connected", "not judged on a timer that ran a minute late");
    const [ping] = ws.wrote("ping");
    assert.equal(typeof ping.n, "number");
    ws.receive([{ t: "pong", n: ping.n }]);
    await clock.advance(2400);
    assert.equal(client.state, "connected");
    clock.freeze(30_000);
    await clock.advance(0);
    await clock.advance(5000); // this time nothing answers the check
    assert.match(of("close").at(-1).reason, /websocket: no answer to a check within 5 s/);
  });

  test("failed races are retried twice at once, then back off; wake() cuts the wait short", async () => {
    const { client, clock, net } = setup({ transports: ["websocket"], random: () => 0.99 });
    client.start();
    await settle();
    net.last("websocket").fail("websocket: cannot connect");
    await clock.advance(0);
    assert.equal(net.opened.length, 2, "the first failure is retried at once");
    net.last("websocket").fail("websocket: cannot connect");
    await clock.advance(0);
    assert.equal(net.opened.length, 3, "so is the second");
    net.last("websocket").fail("websocket: cannot connect");
    await clock.advance(989);
    assert.equal(net.opened.length, 3, "then full jitter: 0.99 x 1000 ms");
    await clock.advance(1);
    assert.equal(net.opened.length, 4);
    net.last("websocket").fail("websocket: cannot connect");
    await clock.advance(1500);
    assert.equal(client.state, "disconnected");
    assert.equal(net.opened.length, 4, "still waiting (0.99 x 2000 ms)");
    client.wake("the network came back");
    await settle();
    assert.equal(net.opened.length, 5);
  });

  test("maxAttempts failed races give up with timeout: an error event, and later calls say so", async () => {
    // (later calls said "closed: this client was closed", as if the page had closed it)
    const { client, clock, net, of } = setup({ transports: ["websocket"], maxAttempts: 2, random: () => 0.5 });
    client.start();
    await settle();
    net.last("websocket").fail("websocket: cannot connect");
    await clock.advance(0);
    net.last("websocket").fail("websocket: cannot connect");
    await clock.advance(0);
    await settle();
    assert.equal(client.state, "closed");
    assert.deepEqual(of("error").map((e) => e.code), ["timeout"]);
    await assert.rejects(client.call("echo", 1), (e) => e.code === "timeout" && /after 2 attempts/.test(e.reason));
  });

  test("a fatal refusal closes the client", async () => {
    const { client, net, of } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    net.last("websocket").fail("websocket: refused", new LadderError("unauthorized", "pick a nickname"));
    await assert.rejects(client.ready(), (e) => e.code === "unauthorized");
    assert.equal(client.state, "closed");
    // as the Python client: the state says why (code: reason); no close, no transport was up
    assert.deepEqual(of("state").at(-1), { name: "state", state: "closed", reason: "unauthorized: pick a nickname" });
    assert.deepEqual(of("close"), []);
  });

  test("a failed upstream POST is written again, up to three times, before the transport is dropped", async () => {
    const { client, clock, net } = setup({ transports: ["sse"] });
    net.posts = true;
    client.start();
    await settle();
    net.last("sse").welcomeWith();
    await settle();
    net.failPosts = 2;
    client.emit("kept", 1);
    await clock.advance(74);
    assert.deepEqual(net.last("sse").wrote("emit"), [], "first retry after 100 ms x 0.75");
    await clock.advance(1 + 300);
    assert.deepEqual(net.last("sse").wrote("emit").map((f) => f.i), [1], "written on the third attempt");
    assert.equal(net.opened.length, 1, "the transport was kept");
    net.failPosts = 4;
    client.emit("dropped", 2);
    await clock.advance(75 + 300 + 750);
    assert.equal(net.opened.length, 2, "after the fourth failed attempt the transport is given up");
    net.last("sse").welcomeWith({ resumed: true, ack: 1 });
    await clock.advance(0);
    assert.deepEqual(net.last("sse").wrote("emit").map((f) => f.i), [2], "and the message goes out on the next one");
  });

  test("a proxy's 413 halves the POSTs; one message alone too large ends the client, naming the fix", async () => {
    const { client, clock, net, of } = setup({ transports: ["sse"] });
    net.posts = true;
    net.maxBody = 2000;
    for (let n = 0; n < 30; n++) client.emit("record", { n, pad: "x".repeat(150) }); // one POST of 5 KB
    client.start();
    await settle();
    net.last("sse").welcomeWith();
    await clock.advance(0);
    const written = net.last("sse").wrote("emit").map((f) => f.i);
    assert.deepEqual(written, Array.from({ length: 30 }, (_, i) => i + 1), "each once, in order, in smaller POSTs");
    assert.ok(net.tooLarge <= 2, `halved, then passed (${net.tooLarge} refused)`);
    assert.equal(net.opened.length, 1, "the transport was kept");
    const big = assert.rejects(client.call("echo", "y".repeat(3000)), (e) => e.code === "frame_too_large" && e.reason.includes("client_max_body_size"));
    await clock.advance(0);
    await big;
    assert.equal(client.state, "closed");
    assert.deepEqual(of("error").map((e) => e.code), ["frame_too_large"]);
    assert.equal(net.opened.length, 1, "no reconnecting: nothing could carry it");
  });

  test("the server ending the session (bye session_closed) closes the client: it does not come back", async () => {
    const { client, clock, net, of } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    net.last("websocket").welcomeWith();
    await settle();
    const pending = client.call("slow", null, { timeout: null });
    net.last("websocket").receive([{ t: "bye", code: "session_closed", reason: "disconnected by the app" }]);
    await assert.rejects(pending, (e) => e.code === "session_closed");
    await clock.advance(10_000);
    assert.equal(client.state, "closed");
    assert.equal(net.opened.length, 1, "no new session");
    assert.equal(of("close").at(-1).reconnecting, false);
    assert.equal(of("error").length, 0, "no error event: the app's own server said so (protocol §9.4)");
    assert.throws(() => client.emit("e", 1), (e) => e.code === "closed");
  });

  test("a bye with another code ends this session only: a new one starts at once", async () => {
    const { client, clock, net } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    net.last("websocket").welcomeWith();
    await settle();
    net.last("websocket").receive([{ t: "bye", code: "slow_consumer", reason: "too far behind" }]);
    await clock.advance(1000);
    assert.equal(net.opened.length, 2);
    assert.deepEqual(net.last("websocket").hello, { t: "hello", v: 1, why: "lost" }, "a new session");
  });
});

describe("edges", () => {
  test("a value that cannot be encoded throws at once and takes no message id", async () => {
    const { client, net } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    await settle();
    assert.throws(() => client.emit("e", { n: 10n }), (e) => e instanceof TypeError && /BigInt at d\.n/.test(e.message));
    const loop = { a: 1 };
    loop.self = loop;
    await assert.rejects(client.call("c", [loop]), (e) => e instanceof TypeError && /Object that contains itself at d\[0\]\.self/.test(e.message));
    await assert.rejects(client.publish("ch", 1n), (e) => e instanceof TypeError && !/serialize/.test(e.message));
    client.emit("ok", 1);
    await settle();
    assert.deepEqual(ws.sent.map((f) => [f.t, f.i]), [["emit", 1]], "the first good message is number 1");
    assert.equal(client.state, "connected");
  });

  test("arguments written the Python way, a zero timeout and options for a listener throw naming the form", async () => {
    // (history(ch, 2) and call(ev, d, 5000) were ignored; {timeout: 0} waited forever where
    // Python's failed at once; subscribe(ch, {recent: 3}) took the options for a listener)
    const { client, net } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    net.last("websocket").welcomeWith();
    await settle();
    const form = (re) => (e) => e instanceof TypeError && re.test(e.message);
    await assert.rejects(async () => client.history("ch", 2), form(/^history: options are an object, e\.g\. \{limit: 2\}/));
    await assert.rejects(async () => client.call("c", 1, 5000), form(/^call: options are an object, e\.g\. \{timeout: 5000\}/));
    await assert.rejects(async () => client.call("c", 1, { timeout: 0 }), form(/timeout is in milliseconds \(a number above 0/));
    assert.throws(() => client.subscribe("ch", { recent: 3 }), form(/^subscribe: the second argument is the listener/));
    assert.throws(() => client.subscribe("ch", null, { recnt: 5 }), form(/^subscribe: unknown option "recnt"; the options are since, recent$/));
    // (since: [epoch, 2], the Python client's shape, subscribed from now on and ready() said recovered)
    for (const since of [["e", 2], { ep: "e", off: 2 }, "e:2", { epoch: "e", offset: -1 }, { epoch: "", offset: 1 }]) {
      assert.throws(() => client.subscribe("ch", null, { since }), form(/^since must be \{epoch, offset\} as sub\.position gives it/), JSON.stringify(since));
    }
    client.subscribe("ch", null, { recent: 3 });
    await settle();
    assert.deepEqual(net.last("websocket").sent.map((f) => [f.t, f.recent]), [["sub", 3]], "nothing else was sent");
  });

  test("a message over the server's frame limit is refused before it takes an id", async () => {
    const { client, net } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    net.last("websocket").welcomeWith({ lim: { frame: 1000, post: 100_000 } });
    await settle();
    assert.throws(
      () => client.emit("big", "x".repeat(2000)),
      (e) => e.code === "frame_too_large" && e.reason.includes("this client sends at most 936 (the server's frame limit, 1000, less 64"),
    );
    client.emit("small", 1);
    await settle();
    assert.deepEqual(net.last("websocket").sent.map((f) => f.i), [1]);
  });

  test("a long queue is written in batches the server's limit takes", async () => {
    const { client, net } = setup({ transports: ["websocket"] });
    client.start();
    for (let n = 0; n < 30; n++) client.emit("e", "x".repeat(90));
    await settle();
    const ws = net.last("websocket");
    const writes = [];
    ws.send = (frames) => {
      writes.push(frames.length);
      return Promise.resolve();
    };
    ws.welcomeWith({ lim: { frame: 1000, post: 100_000 } });
    await settle();
    assert.equal(writes.reduce((a, b) => a + b, 0), 30);
    assert.ok(writes.length >= 4 && Math.max(...writes) <= 8, `batches of at most ~1000 bytes: ${writes}`);
  });

  test("a message refused for its rate is written again after retry_after, then paced", async () => {
    const { client, clock, net, of } = setup({ transports: ["websocket"] });
    client.start();
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith();
    await settle();
    for (let n = 1; n <= 6; n++) client.emit("e", n);
    await settle();
    assert.deepEqual(ws.wrote("emit").map((f) => f.i), [1, 2, 3, 4, 5, 6]);
    ws.sent.length = 0;
    // The server applied 1-3 and refused 4 (and so read nothing after it in that batch).
    ws.receive([{ t: "ack", i: 3 }, { t: "err", code: "rate_limited", reason: "", retry_after: 0.1, re: 4 }]);
    await clock.advance(99);
    assert.deepEqual(ws.sent, [], "waits retry_after");
    await clock.advance(1);
    assert.deepEqual(ws.wrote("emit").map((f) => f.i), [4], "then the refused message, alone");
    await clock.advance(100);
    assert.deepEqual(ws.wrote("emit").map((f) => f.i), [4, 5], "one per retry_after");
    await clock.advance(100);
    assert.deepEqual(ws.wrote("emit").map((f) => f.i), [4, 5, 6]);
    ws.receive([{ t: "ack", i: 6 }]);
    client.emit("e", 7);
    client.emit("e", 8);
    await settle();
    assert.deepEqual(ws.wrote("emit").map((f) => f.i), [4, 5, 6, 7, 8], "acknowledged: no pacing any more");
    assert.deepEqual(of("error"), [], "nothing was refused for good");
  });

  test("bye shutting_down resumes the session elsewhere at once, with no backoff", async () => {
    const { client, clock, net, of } = setup({ transports: ["websocket"], backoffBase: 30_000, random: () => 0.99 });
    client.start();
    await settle();
    net.last("websocket").welcomeWith();
    await settle();
    net.last("websocket").receive([{ t: "bye", code: "shutting_down", reason: "server going away" }]);
    await clock.advance(0);
    assert.equal(net.opened.length, 2, "reconnected at once");
    assert.equal(net.last("websocket").hello.sid, "S1", "resuming the same session");
    assert.deepEqual(of("session_lost"), []);
    net.last("websocket").welcomeWith({ resumed: true });
    await settle();
    assert.equal(client.state, "connected");
  });

  test("a WebSocket closed with 1001 (going away) is reconnected at once", async () => {
    const { client, clock, net } = setup({ transports: ["websocket"], backoffBase: 30_000, random: () => 0.99 });
    client.start();
    await settle();
    net.last("websocket").welcomeWith();
    await settle();
    net.last("websocket").fail("websocket: closed by the server (1001)", new LadderError("shutting_down", ""));
    await clock.advance(0);
    assert.equal(net.opened.length, 2);
    assert.equal(net.last("websocket").hello.sid, "S1");
  });

  test("a welcome forgives: cuts that each meet a refusing node twice cost no backoff", async () => {
    const { client, clock, net } = setup({ transports: ["websocket"], backoffBase: 500, random: () => 0.99 });
    client.start();
    await settle();
    net.last("websocket").welcomeWith();
    await settle();
    for (let round = 0; round < 6; round++) {
      const opened = net.opened.length;
      net.last("websocket").fail("websocket: connection lost (code 1006)");
      await clock.advance(495); // after a connection ended: [0, 500) ms
      net.last("websocket").fail("websocket: refused", new LadderError("engine_unavailable", ""));
      await clock.advance(0);
      net.last("websocket").fail("websocket: refused", new LadderError("engine_unavailable", ""));
      await clock.advance(0);
      assert.equal(net.opened.length, opened + 3, "two refusals retried at once");
      net.last("websocket").welcomeWith({ resumed: true });
      await settle();
      assert.equal(client.state, "connected");
    }
    assert.equal(clock.now(), 6 * 495);
  });

  test("origin_not_allowed on any request is fatal: error event, calls rejected, no loop", async () => {
    const { client, clock, net, of } = setup({ transports: ["longpoll"] });
    client.start();
    await settle();
    const lp = net.last("longpoll");
    lp.welcomeWith();
    await settle();
    const pending = client.call("echo", 1);
    lp.send = () => Promise.reject(new TransportClosed("longpoll: refused", new LadderError("origin_not_allowed", "foreign Origin")));
    client.emit("x", 1);
    await assert.rejects(pending, (e) => e.code === "origin_not_allowed");
    assert.equal(client.state, "closed");
    const [error] = of("error");
    assert.equal(error.code, "origin_not_allowed");
    assert.match(error.reason, /allowed_origins/);
    await assert.rejects(client.call("echo", 2), (e) => e.code === "origin_not_allowed");
    assert.throws(() => client.emit("y"), (e) => e.code === "origin_not_allowed");
    await clock.advance(60_000);
    assert.equal(net.opened.length, 1, "no reconnect loop");
  });

  test("a WebSocket-only client refused for its origin, which a browser hides, asks by a POST and gives up", async () => {
    const { client, clock, net, of } = setup({ transports: ["websocket"] });
    net.answer = () => new Response('{"t":"err","code":"origin_not_allowed","reason":"foreign Origin"}', { status: 403 });
    client.start();
    await settle();
    const pending = assert.rejects(client.call("echo", 1), (e) => e.code === "origin_not_allowed");
    net.last("websocket").fail("websocket: cannot connect (the upgrade was refused or blocked on the way)");
    await settle();
    assert.deepEqual(net.fetched, [["http://test.example/ladder/send?tr=websocket", "POST"]], "one empty POST naming no session");
    await pending;
    assert.equal(client.state, "closed");
    assert.deepEqual(of("error").map((e) => e.code), ["origin_not_allowed"]);
    assert.match(of("error")[0].reason, /allowed_origins/);
    const opened = net.opened.length;
    await clock.advance(60_000);
    assert.equal(net.opened.length, opened, "no reconnect loop (it looped, each attempt 'cannot connect')");
  });

  test("with a token, whose question a refused origin's preflight hides too, it asks again without it and gives up", async () => {
    // (the question carried Authorization, so the browser preflighted it; the refused origin's
    // preflight has no CORS headers: "Failed to fetch", and the client looped for ever)
    const { client, clock, net, of } = setup({ transports: ["websocket"], token: "t" });
    const asked = [];
    net.answer = () => {
      throw new Error("unused");
    };
    client._ctx.endpoint.fetch = async (url, init) => {
      asked.push(Boolean(init?.headers?.Authorization));
      if (init?.headers?.Authorization) throw new TypeError("Failed to fetch");
      return new Response('{"t":"err","code":"origin_not_allowed","reason":"foreign Origin"}', { status: 403 });
    };
    client.start();
    await settle();
    const pending = assert.rejects(client.call("echo", 1), (e) => e.code === "origin_not_allowed");
    net.last("websocket").fail("websocket: cannot connect (the upgrade was refused or blocked on the way)");
    await settle();
    assert.deepEqual(asked, [true, false], "with the token, then without");
    await pending;
    assert.equal(client.state, "closed");
    assert.deepEqual(of("error").map((e) => e.code), ["origin_not_allowed"]);
    const opened = net.opened.length;
    await clock.advance(60_000);
    assert.equal(net.opened.length, opened, "no reconnect loop");
  });

  test("on long polling with a token, a poll that got no answer (its preflight refused) asks too, and gives up", async () => {
    // (askWhy ran for a race lost on WebSocket or SSE only: a page on long polling looped for ever)
    const { client, net, of } = setup({ transports: ["longpoll"], token: "t" });
    const asked = [];
    client._ctx.endpoint.fetch = async (url, init) => {
      asked.push([String(url).split("?")[1], Boolean(init?.headers?.Authorization)]);
      if (init?.headers?.Authorization) throw new TypeError("Failed to fetch");
      return new Response('{"t":"err","code":"origin_not_allowed","reason":"foreign Origin"}', { status: 403 });
    };
    client.start();
    await settle();
    net.last("longpoll").fail("longpoll: cannot connect to http://test.example/ladder/longpoll (TypeError: Failed to fetch)");
    await settle();
    assert.deepEqual(asked, [["tr=longpoll", true], ["tr=longpoll", false]]);
    assert.equal(client.state, "closed");
    assert.deepEqual(of("error").map((e) => e.code), ["origin_not_allowed"]);
  });

  test("rungs the server does not offer, refusals a browser hides, give up at once naming both lists", async () => {
    // (it retried "websocket: cannot connect" until connectTimeout, then for as long as the page lived)
    const { client, clock, net, of } = setup({ transports: ["websocket", "sse"] });
    const offered = '{"t":"err","code":"unsupported_transport","reason":"websocket, sse are not offered by this server, which offers longpoll, poll","details":{"tr":["longpoll","poll"]}}';
    net.answer = () => new Response(offered, { status: 400 });
    client.start();
    await settle();
    const ready = assert.rejects(client.ready(), (e) => e.code === "unsupported_transport");
    net.last("websocket").fail("websocket: cannot connect (the upgrade was refused or blocked on the way)");
    await clock.advance(0);
    net.last("sse").fail("sse: cannot open the stream (refused, blocked or not an event stream)");
    await settle();
    assert.deepEqual(net.fetched, [["http://test.example/ladder/send?tr=websocket%2Csse", "POST"]], "the POST names the hidden rungs");
    await ready;
    assert.equal(client.state, "closed");
    const want = "this client allows only websocket, sse (its transports option) and the server offers only longpoll, poll (its transports setting): allow one of longpoll, poll in the client's transports, or offer one of websocket, sse on the server";
    assert.deepEqual(of("error").map((e) => [e.code, e.reason]), [["unsupported_transport", want]]);
    await assert.rejects(client.call("echo", 1), (e) => e.code === "unsupported_transport" && e.reason === want);
    const opened = net.opened.length;
    await clock.advance(60_000);
    assert.equal(net.opened.length, opened, "no reconnect loop");
  });

  test("a rung refused as not offered, readably, is not raced again; none left gives up without asking", async () => {
    const notOffered = (rung) => new LadderError("unsupported_transport", `${rung} is not offered by this server, which offers websocket, sse`, undefined, { tr: ["websocket", "sse"] });
    const mixed = setup({ transports: ["sse", "longpoll"], random: () => 0.5 });
    mixed.client.start();
    await settle();
    mixed.net.last("sse").fail("sse: cannot open the stream");
    await mixed.clock.advance(0);
    mixed.net.last("longpoll").fail("longpoll: refused by the server", notOffered("longpoll"));
    await settle();
    await mixed.clock.advance(0);
    assert.deepEqual(mixed.net.opened.map((t) => t.name), ["sse", "longpoll", "sse"], "the next race tries SSE alone");
    assert.notEqual(mixed.client.state, "closed", "SSE is offered: only the network failed it");
    const { client, clock, net, of } = setup({ transports: ["longpoll", "poll"] });
    client.start();
    await settle();
    net.last("longpoll").fail("longpoll: refused by the server", notOffered("longpoll"));
    await clock.advance(0);
    net.last("poll").fail("poll: refused by the server", notOffered("poll"));
    await settle();
    assert.equal(client.state, "closed");
    assert.deepEqual(net.fetched, [], "the refusals said it all");
    assert.deepEqual(of("error").map((e) => e.code), ["unsupported_transport"]);
    assert.match(of("error")[0].reason, /^this client allows only longpoll, poll \(its transports option\) and the server offers only websocket, sse /);
    assert.equal(net.opened.length, 2, "no second race");
  });

  test("a hidden refusal that the POST cannot explain is retried; the next failures ask no more", async () => {
    const { client, clock, net } = setup({ transports: ["websocket"], random: () => 0.5 });
    client.start();
    await settle();
    for (let n = 0; n < 4; n++) {
      net.last("websocket").fail("websocket: cannot connect");
      await clock.advance(2000);
    }
    assert.notEqual(client.state, "closed");
    assert.ok(net.opened.length >= 4, "still trying");
    assert.equal(net.fetched.length, 1, "asked after the first failure only (the server said bad_request: nothing more)");
  });

  test("a token function that fails: the POST's unauthorized (it carried no token) is not a refusal to give up on", async () => {
    // (the client gave up for good with "no credentials", after one failure of the function
    // that fetches its token, even when connected before)
    let failing = true;
    const { client, clock, net, of } = setup({
      transports: ["websocket"],
      random: () => 0.5,
      token: async () => {
        if (failing) throw new Error("auth service briefly unavailable");
        return "T1";
      },
    });
    net.answer = () => new Response('{"t":"err","code":"unauthorized","reason":"no credentials"}', { status: 401 });
    client.start();
    await settle();
    assert.deepEqual(net.opened, [], "no socket without its token");
    assert.equal(net.fetched.length, 1, "asked why");
    assert.notEqual(client.state, "closed");
    assert.deepEqual(of("error"), []);
    failing = false;
    await clock.advance(2000);
    const ws = net.last("websocket");
    assert.equal(ws.hello.tok, "T1");
    ws.welcomeWith();
    await settle();
    assert.equal(client.state, "connected");
  });

  test("a 404 the POST found stays in every later race's reasons, up to connect_failed", async () => {
    // (the next failed race's reasons replaced it: a mistyped mount path timed out saying only
    // "cannot connect", where the POST had found the 404)
    const { client, clock, net } = setup({ transports: ["websocket"], random: () => 0.5, connectTimeout: 8000 });
    net.answer = () => new Response("Not Found", { status: 404 });
    client.start();
    await settle();
    for (let n = 0; n < 4; n++) {
      net.last("websocket").fail("websocket: cannot connect (the upgrade was refused or blocked on the way)");
      await clock.advance(2000);
    }
    await assert.rejects(client.ready(), (e) => e.code === "connect_failed" && /asked by a POST: .*404/.test(e.reason) && /check the mount path/.test(e.reason));
    assert.equal(net.fetched.length, 1, "asked once");
  });

  test("a rung refused for its origin ends the race at once: no other rung starts, the client ends", async () => {
    const { client, clock, net, of } = setup({ transports: ["sse", "longpoll", "poll"] });
    client.start();
    await settle();
    net.last("sse").fail("sse: refused", new LadderError("origin_not_allowed", "foreign Origin"));
    await clock.advance(0);
    await settle();
    await clock.advance(5000);
    assert.deepEqual(net.opened.map((t) => t.name), ["sse"], "no other rung tried: it would be refused too");
    assert.equal(client.state, "closed");
    assert.deepEqual(of("error").map((e) => e.code), ["origin_not_allowed"]);
  });

  test("a rung refused for good while another is opening: that one is dropped, never adopted", async () => {
    const { client, clock, net, of } = setup({ transports: ["sse", "longpoll"] });
    client.start();
    await settle();
    await clock.advance(300);
    const longpoll = net.last("longpoll");
    net.last("sse").fail("sse: refused", new LadderError("unauthorized", "bad token"));
    await settle();
    longpoll.welcomeWith();
    await settle();
    assert.equal(client.state, "closed");
    assert.equal(client.transport, null);
    assert.deepEqual(of("open"), []);
    assert.deepEqual(of("error").map((e) => e.code), ["unauthorized"]);
  });

  test("not connected within connectTimeout: an error event with every rung's reason", async () => {
    const { client, clock, net, of } = setup({ transports: ["websocket", "longpoll"], connectTimeout: 5000 });
    client.start();
    const ready = client.ready();
    for (let n = 0; n < 20 && clock.now() < 5000; n++) {
      await clock.advance(0);
      for (const t of net.opened) if (!t.closed && !t.failure) t.fail(`${t.name}: no Ladder endpoint at x/${t.name} (HTTP 404): check the mount path in the client's URL`);
      await clock.advance(400);
    }
    await clock.advance(5000);
    await assert.rejects(ready, (e) => e.code === "connect_failed" && /within 5 s: websocket: .*404.*; longpoll: .*404/.test(e.reason));
    assert.deepEqual(of("error").map((e) => e.code), ["connect_failed"]);
    assert.notEqual(client.state, "closed", "a page keeps trying");
    for (let n = 0; n < 30; n++) {
      await clock.advance(0);
      for (const t of net.opened) if (!t.closed && !t.failure) t.fail(`${t.name}: cannot connect`);
      await clock.advance(500);
    }
    assert.deepEqual(of("error").map((e) => e.code), ["connect_failed"], "said once, not after every race");
    let open = null;
    for (let n = 0; n < 40 && !open; n++) {
      await clock.advance(250);
      open = net.opened.find((t) => t.name === "websocket" && !t.closed && !t.failure) ?? null;
    }
    assert.ok(open, "still trying after the deadline");
    open.welcomeWith();
    await settle();
    assert.equal(client.state, "connected");
    await client.ready(); // (it still rejected with connect_failed once connected: a page could not wait on it)
  });
});

describe("edges before the first welcome", () => {
  test("a message queued before the limit was known, and over it, fails at the welcome instead of wedging", async () => {
    const { client, net, of } = setup({ transports: ["websocket"] });
    client.start();
    const big = client.call("echo", "x".repeat(2000)).catch((e) => e);
    client.emit("big", "y".repeat(2000));
    const small = client.call("echo", "small");
    await settle();
    const ws = net.last("websocket");
    ws.welcomeWith({ lim: { frame: 1000, post: 100_000 } });
    await settle();
    assert.equal((await big).code, "frame_too_large");
    assert.deepEqual(ws.sent.map((f) => [f.t, f.i, f.d]), [["call", 1, "small"]]);
    ws.receive([{ s: 1, t: "reply", re: 1, d: "ok" }]);
    assert.equal(await small, "ok");
    assert.deepEqual(of("error").map((e) => e.code), ["frame_too_large"], "the emit: an error event");
  });
});

describe("atMost", () => {
  test("waits for the promise, or the bound, whichever comes first; never rejects; clears its timer", async () => {
    const clock = new FakeClock();
    let done = false;
    /** @type {(v?: unknown) => void} */
    let finish = () => {};
    atMost(new Promise((resolve) => (finish = resolve)), 1000, clock).then(() => (done = true));
    await clock.advance(999);
    assert.equal(done, false, "neither settled nor late yet");
    finish();
    await settle();
    assert.equal(done, true, "settled before the bound");
    assert.equal(clock.timers.size, 0, "its timer is cleared");

    let late = false;
    atMost(new Promise(() => {}), 1000, clock).then(() => (late = true));
    await clock.advance(1000);
    assert.equal(late, true, "a promise that never settles is waited for 1000 ms");

    await atMost(Promise.reject(new Error("refused")), 1000, clock); // resolves, does not throw
    assert.equal(clock.timers.size, 0);
  });
});

describe("events", () => {
  test("on() refuses a name that is not an event (a misspelt one would never fire)", () => {
    const { client } = setup({ transports: ["websocket"] });
    assert.throws(() => client.on("connected", () => {}), (error) => error instanceof TypeError && /unknown event "connected"; one of open, close/.test(error.message));
    const off = client.on("open", () => {});
    assert.equal(typeof off, "function");
  });

  test("off() refuses an unknown name as on() does, says whether it was listening; a listener added twice is one (as in the Python client)", () => {
    // (off("nope", f) was silently nothing, and the Python client raised)
    const { client } = setup({ transports: ["websocket"] });
    assert.throws(() => client.off("nope", () => {}), (error) => error instanceof TypeError && /unknown event "nope"/.test(error.message));
    const heard = [];
    const listener = (event) => heard.push(event.event);
    client.on("push", listener);
    client.on("push", listener);
    client._emit("push", { event: "a", data: null });
    assert.deepEqual(heard, ["a"], "called once");
    assert.equal(client.off("push", listener), true);
    assert.equal(client.off("push", listener), false, "not listening any more");
    client._emit("push", { event: "b", data: null });
    assert.deepEqual(heard, ["a"]);
  });
});

describe("options", () => {
  test("the defaults are the core's table, the one both clients apply (protocol §9.14)", () => {
    const client = new Client("http://127.0.0.1:1");
    const { options } = client;
    const applied = {
      stagger: options.stagger, open_timeout: options.openTimeout, verify_timeout: options.verifyTimeout,
      connect_timeout: options.connectTimeout, backoff_base: options.backoffBase, backoff_max: options.backoffMax,
      stable_after: client.policy.stableAfter, cut_limit: client.policy.cutLimit, probe_delay: options.probeDelay,
      probe_max_delay: options.probeMaxDelay, poll_interval: options.pollInterval, max_queue: client.peer.outbox.maxItems,
      ack_every: options.ackEvery, ack_interval: options.ackInterval, refresh_margin: options.refreshMargin,
    };
    const { request_timeout: requestTimeout, ...table } = core.clientDefaults();
    assert.deepEqual(applied, table);
    assert.equal(requestTimeout, core.REQUEST_TIMEOUT);
  });
  test("an option's value that cannot work throws naming the option (it was taken, and failed later or never)", () => {
    const make = (options) => () => new Client("http://127.0.0.1:1", options);
    assert.throws(make({ openTimeout: "x" }), /^TypeError: openTimeout must be a number of ms above 0, not "x"$/);
    assert.throws(make({ connectTimeout: -1 }), /^TypeError: connectTimeout must be a number of ms above 0 \(or null\), not -1$/);
    assert.throws(make({ maxQueue: -1 }), /^TypeError: maxQueue must be a whole number >= 1, not -1$/);
    assert.throws(make({ maxQueue: 1.5 }), /^TypeError: maxQueue must be a whole number >= 1/);
    assert.throws(make({ pollInterval: [2000, 50] }), /^TypeError: pollInterval must be \[fastest, slowest\] in ms above 0 with fastest <= slowest, not \[2000,50\]$/);
    assert.throws(make({ stagger: [] }), /^TypeError: stagger must be an array of ms/);
    // (as the Python client: a 0 ms open timeout never connected, it retried for good; a base
    // above the cap, a probe delay above its cap and a stagger going down were taken)
    assert.throws(make({ openTimeout: 0 }), /^TypeError: openTimeout must be a number of ms above 0, not 0$/);
    assert.throws(make({ connectTimeout: 0 }), /^TypeError: connectTimeout must be a number of ms above 0 \(or null\), not 0$/);
    assert.doesNotThrow(make({ hiddenSlack: 0 }));
    assert.throws(make({ backoffBase: 5000, backoffMax: 100 }), /^TypeError: backoffBase \(5000 ms\) must not exceed backoffMax \(100 ms\)$/);
    // (one of a pair given: the other, left at its default, follows it)
    assert.deepEqual([new Client("http://127.0.0.1:1", { backoffMax: 300 }).options.backoffBase, new Client("http://127.0.0.1:1", { probeDelay: 60_000 }).options.probeMaxDelay], [300, 60_000]);
    assert.throws(make({ probeDelay: 30_000, probeMaxDelay: 10 }), /^TypeError: probeDelay \(30000 ms\) must not exceed probeMaxDelay \(10 ms\)$/);
    // (both given, one equal to its default: the other followed it, and nothing was thrown)
    assert.throws(make({ backoffBase: 6000, backoffMax: 5000 }), /^TypeError: backoffBase \(6000 ms\) must not exceed backoffMax \(5000 ms\)$/);
    assert.throws(make({ backoffBase: 500, backoffMax: 400 }), /^TypeError: backoffBase \(500 ms\) must not exceed backoffMax \(400 ms\)$/);
    assert.throws(make({ probeDelay: 40_000, probeMaxDelay: 30_000 }), /^TypeError: probeDelay \(40000 ms\) must not exceed probeMaxDelay \(30000 ms\)$/);
    assert.throws(make({ probeDelay: 2000, probeMaxDelay: 1000 }), /^TypeError: probeDelay \(2000 ms\) must not exceed probeMaxDelay \(1000 ms\)$/);
    assert.throws(make({ stagger: [0, 300, 100] }), /^TypeError: stagger must be an array of ms that never goes down/);
    assert.throws(make({ pollInterval: [0, 2000] }), /^TypeError: pollInterval must be/);
    assert.throws(make({ stagger: [0, Infinity] }), /, not \[0,Infinity\]$/); // (it said "not [0,null]")
    assert.throws(make({ transports: ["carrier-pigeon"] }), /^TypeError: transports must be a non-empty subset of websocket, sse, longpoll, poll, not carrier-pigeon$/);
    assert.doesNotThrow(make({ connectTimeout: null, maxAttempts: null, stagger: [0], pollInterval: [100, 100], browserEvents: false }));
    // (NaN and Infinity were shown as "null"; a token object was sent as "[object Object]";
    // {share: "no"} shared; connect(undefined) dialled ".../undefined", options null threw
    // "Cannot convert undefined or null to object")
    assert.throws(make({ openTimeout: NaN }), /^TypeError: openTimeout must be a number of ms above 0, not NaN$/);
    assert.throws(make({ backoffMax: Infinity }), /^TypeError: backoffMax must be a number of ms above 0, not Infinity$/);
    assert.throws(make({ token: { user: "ada" } }), /^TypeError: token must be a string, a function returning one, or null, not \{"user":"ada"\}$/);
    assert.throws(make({ token: 5 }), /^TypeError: token must be a string/);
    assert.throws(make({ share: "no" }), /^TypeError: share must be true or false, not "no"$/);
    assert.throws(make({ outbox: "off" }), /^TypeError: outbox must be true or false/);
    assert.throws(make([1]), /^TypeError: options are an object/);
    assert.throws(() => new Client(undefined), /^TypeError: url must be where the hub is mounted, e\.g\. "\/ladder"/);
    assert.throws(() => new Client("ws://127.0.0.1:1/ladder"), /^TypeError: url "ws:\/\/127\.0\.0\.1:1\/ladder" must start with http:\/\/ or https:\/\//);
    assert.throws(() => new Client("ftp://x"), /must start with http:\/\/ or https:\/\//);
    assert.throws(() => new Client("http://127.0.0.1:1/?x=1"), /the hub's address takes no query or fragment/);
    assert.throws(() => new Client("http://127.0.0.1:1/ladder#top"), /the hub's address takes no query or fragment/);
    assert.throws(() => new Client("http://exa mple.com/ladder"), /^TypeError: url "http:\/\/exa mple\.com\/ladder": a host holds no space or control character/);
    assert.throws(() => new Client("https://example.com\t/ladder"), /a host holds no space or control character/);
    for (const space of ["\u00a0", "\u3000"]) {  // (Unicode spaces too, as Python's str.isspace: Chromium made them %20)
      assert.throws(() => new Client(`http://exa${space}mple.com/ladder`), /a host holds no space or control character/);
    }
    assert.doesNotThrow(() => new Client("http://127.0.0.1:1/my ladder"), "a path's space is percent-encoded, as in Python");
    // (port 0 is no server's: a browser refuses to fetch it, "bad port", as a network error)
    assert.throws(() => new Client("http://127.0.0.1:0/ladder"), (e) => e instanceof TypeError && /the port is not a number from 1 to 65535/.test(e.message));
    assert.doesNotThrow(() => new Client("http://127.0.0.1:1", null));
    assert.throws(make({ token: "x".repeat(8193) }), /^TypeError: the token is 8193 characters: a server takes at most 8192/);
    assert.doesNotThrow(make({ token: "t" }));
    assert.doesNotThrow(make({ token: () => "t" }));
  });

  test("an unknown option throws, naming the ones there are (a misspelt one was ignored)", () => {
    assert.throws(() => new Client("http://127.0.0.1:1", { connect_timeout: 1000 }), (error) => error instanceof TypeError && /unknown option "connect_timeout"; the options are transports, token/.test(error.message));
  });

  test("the defaults of the options the core decides with are the core's, so a pair's rule compares with the default applied", () => {
    // (the core's classes and the client's DEFAULTS each wrote 500, 5000, 2000, 30000, 10000
    // and 3: one changed alone, "one of a pair given alone moves the other" would compare with
    // a default the core never applied)
    const client = new Client("http://127.0.0.1:1");
    const reconnect = new core.Reconnect();
    const probes = new core.ProbeSchedule();
    const ladder = new core.RungPolicy({ rungs: ["websocket"] });
    const { options } = client;
    assert.deepEqual(
      [options.backoffBase, options.backoffMax, options.connectTimeout, options.probeDelay, options.probeMaxDelay, client.policy.stableAfter, client.policy.cutLimit],
      [reconnect.base, reconnect.cap, reconnect.connectTimeout, probes.first, probes.cap, ladder.stableAfter, ladder.cutLimit],
    );
    assert.deepEqual([client._reconnect.base, client._reconnect.cap, client._reconnect.stableAfter], [reconnect.base, reconnect.cap, reconnect.stableAfter]);
    assert.equal(new Client("http://127.0.0.1:1", { backoffBase: core.BACKOFF_MAX + 1 }).options.backoffMax, core.BACKOFF_MAX + 1);
    assert.equal(new Client("http://127.0.0.1:1", { probeMaxDelay: core.PROBE_DELAY - 1 }).options.probeDelay, core.PROBE_DELAY - 1);
    assert.equal(new Client("http://127.0.0.1:1", { stableAfter: 4000 })._reconnect.stableAfter, 4000, "one stable time for both");
  });

  test("a request's misspelt option, a timeout not in ms, a listener that is not a function: each throws naming the fix", async () => {
    const client = new Client("http://127.0.0.1:1", { transports: ["sse"] });
    assert.throws(() => client.call("e", 1, { timout: 10 }), /^TypeError: call: unknown option "timout"; the options are timeout$/);
    assert.throws(() => client.call("e", 1, { timeout: Infinity }), /^TypeError: call: timeout is in milliseconds \(a number above 0, or null.*, not Infinity$/); // (it waited for good; it said "not null")
    assert.throws(() => client.call("e", 1, { timeout: NaN }), /, not NaN$/);
    assert.throws(() => client.call("e", 1, { timeout: "5s" }), /call: timeout is in milliseconds/);
    await assert.rejects(client.history("c", { limt: 5 }), /history: unknown option "limt"; the options are limit, timeout/);
    assert.throws(() => client.on("open"), /the listener must be a function, not undefined/);
    await assert.rejects(client.call("e", 1, { timeout: 10 }), (e) => e.code === "timeout" && e.message.includes("no reply within 0.01 s (this client was never started: use connect(url), or call client.start())"));
    client.close();
  });

  test("transports given as a string, and a recent out of range, throw naming the fix", () => {
    assert.throws(() => new Client("http://127.0.0.1:1", { transports: "sse" }), (error) => error instanceof TypeError && /transports must be an array of rung names, e.g. \["sse"\]/.test(error.message));
    const client = new Client("http://127.0.0.1:1", { transports: ["sse"] });
    assert.throws(() => client.subscribe("room:a", null, { recent: -5 }), /recent must be an integer from 0 to 10000, not -5/);
    client.close();
  });
});
