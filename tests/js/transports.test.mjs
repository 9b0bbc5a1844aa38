// The HTTP transports' own logic under Node, with stand-ins for EventSource and fetch:
// the SSE stream's ping/pong proof, what an EventSource failure means, polling.
import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import { Endpoint, PollingTransport, SSETransport, WebSocketTransport } from "../../src/ladder/static/client.js";
import { LongPollHold } from "../../src/ladder/static/core.js";

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** Timers the test fires by hand. */
function manualClock() {
  const timers = new Map();
  let seq = 0;
  return {
    now: () => 0,
    setTimeout: (fn, ms) => (timers.set(++seq, { fn, ms }), seq),
    clearTimeout: (id) => timers.delete(id),
    fire(ms) {
      for (const [id, timer] of [...timers]) {
        if (timer.ms === ms) {
          timers.delete(id);
          timer.fn();
        }
      }
    },
  };
}

class FakeEventSource {
  static last = null;
  constructor(url, init) {
    this.url = new URL(url);
    this.init = init;
    this.closed = false;
    this.onmessage = null;
    this.onerror = null;
    FakeEventSource.last = this;
  }
  event(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  close() {
    this.closed = true;
  }
}

function fakeFetch(answer) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    const call = { url: new URL(url), init };
    calls.push(call);
    return answer(call);
  };
  return { fetch, calls };
}

function context(fetch, clock = manualClock(), applied = () => 0) {
  return { endpoint: new Endpoint("http://test.example/ladder", fetch), clock, applied, pollInterval: [50, 2000] };
}

const welcome = { t: "welcome", v: 1, sid: "S1", rt: "R1", resumed: true, ack: 0, hb: 20_000, poll: 25_000 };

describe("SSE", () => {
  globalThis.EventSource = FakeEventSource;
  afterEach(() => (FakeEventSource.last = null));

  test("opens once the stream carried the pong of a ping sent up: proof nothing buffers it", async () => {
    const { fetch, calls } = fakeFetch(() => new Response(null, { status: 204 }));
    const sse = new SSETransport(context(fetch));
    const opened = sse.open({ t: "hello", v: 1, sid: "S1", rt: "R1", ack: 7 }, 2500);
    const source = FakeEventSource.last;
    assert.equal(source.url.pathname, "/ladder/sse");
    assert.deepEqual(Object.fromEntries(source.url.searchParams), { v: "1", sid: "S1", ack: "7", rt: "R1" });
    source.event(welcome);
    await settle();
    const [post] = calls;
    assert.equal(post.url.pathname, "/ladder/send");
    assert.equal(post.url.searchParams.get("sid"), "S1");
    assert.equal(post.init.headers["x-ladder-rt"], "R1");
    const ping = JSON.parse(post.init.body);
    assert.equal(ping.t, "ping");
    source.event({ s: 8, t: "push", ev: "early" }); // arrives before the pong: kept for the client
    source.event({ t: "pong", n: ping.n });
    assert.equal((await opened).sid, "S1");
    assert.deepEqual(sse.pending, [{ s: 8, t: "push", ev: "early" }]);
  });

  test("a stream whose pong never comes is buffered by something on the way", async () => {
    const clock = manualClock();
    const { fetch } = fakeFetch(() => new Response(null, { status: 204 }));
    const sse = new SSETransport(context(fetch, clock));
    const opened = sse.open({ t: "hello", v: 1, tok: "alice" }, 2500);
    assert.equal(FakeEventSource.last.url.searchParams.get("tok"), "alice", "EventSource cannot send headers");
    FakeEventSource.last.event({ ...welcome, resumed: false });
    await settle();
    clock.fire(2500);
    await assert.rejects(opened, { reason: "sse: stream buffered by something on the way (no pong within 2.5 s)" });
    assert.equal(FakeEventSource.last.closed, true);
  });

  test("when EventSource fails on a resume, an empty POST finds out whether the session is gone", async () => {
    const { fetch, calls } = fakeFetch(
      () => new Response(JSON.stringify({ t: "err", code: "unknown_session", reason: "expired" }), { status: 404 }),
    );
    const sse = new SSETransport(context(fetch));
    const opened = sse.open({ t: "hello", v: 1, sid: "S1", rt: "R1", ack: 0 }, 2500);
    FakeEventSource.last.onerror();
    await assert.rejects(opened, (error) => error.error?.code === "unknown_session");
    assert.equal(calls[0].init.body, "", "nothing is sent: the POST only asks");
    assert.equal(FakeEventSource.last.closed, true, "EventSource's own reconnect is switched off");
  });

  test("messages are POSTed one at a time; acks and pings do not wait behind them", async () => {
    // A POST is answered once its messages are applied: a long call's holds the next POST
    // for as long as the handler runs. An ack waiting behind it let the server's queue of
    // unacknowledged frames fill (a slow consumer), a ping missed its liveness check.
    let release = () => {};
    const held = new Promise((resolve) => (release = resolve));
    const { fetch, calls } = fakeFetch(async ({ init }) => {
      if (String(init.body).includes('"call"')) await held;
      return new Response(null, { status: 204 });
    });
    const sse = new SSETransport(context(fetch));
    sse.adopt(welcome);
    const call = sse.send([{ t: "call", i: 1, ev: "slow" }]);
    const next = sse.send([{ t: "emit", i: 2, ev: "after" }]);
    const ack = sse.send([{ t: "ack", s: 5 }, { t: "ping", n: 3 }]);
    const kinds = () => calls.map((c) => JSON.parse(String(c.init.body).split("\n")[0]).t);
    await ack; // answered while the call's POST is held
    await settle();
    assert.deepEqual(kinds().sort(), ["ack", "call"], "the emit waits for the call's answer");
    release();
    await Promise.all([call, next]);
    assert.equal(kinds()[2], "emit");
  });

  test("a stream that ends after opening fails the transport", async () => {
    const { fetch } = fakeFetch(() => new Response(null, { status: 204 }));
    const sse = new SSETransport(context(fetch));
    const opened = sse.open({ t: "hello", v: 1 }, 2500);
    const source = FakeEventSource.last;
    source.event(welcome);
    await settle();
    source.event({ t: "pong", n: sse._nonce });
    await opened;
    const closed = [];
    sse.attach({ onframes: () => {}, onclose: (reason) => closed.push(reason) });
    source.onerror();
    assert.deepEqual(closed, ["sse: stream ended or broken"]);
  });
});

describe("WebSocket", () => {
  class FakeWebSocket {
    static OPEN = 1;
    static last = null;
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      FakeWebSocket.last = this;
    }
    send(data) {
      this.sent.push(data);
    }
    close() {}
  }

  /** An open transport whose server then closes it with `code` and `reason`: what it reported. */
  async function closedWith(code, reason) {
    globalThis.WebSocket = FakeWebSocket;
    const ws = new WebSocketTransport(context(async () => new Response(null)));
    const opened = ws.open({ t: "hello", v: 1 }, 2500);
    const socket = FakeWebSocket.last;
    socket.readyState = 1;
    socket.onopen();
    socket.onmessage({ data: JSON.stringify(welcome) });
    await opened;
    const closed = [];
    ws.attach({ onframes: () => {}, onclose: (why, error) => closed.push([why, error?.code ?? null]) });
    socket.onclose({ code, reason });
    return closed;
  }

  test("an upgrade that fails while the browser is offline says so, not that it was refused", async () => {
    globalThis.WebSocket = FakeWebSocket;
    const attempt = async () => {
      const ws = new WebSocketTransport(context(async () => new Response(null)));
      const opened = ws.open({ t: "hello", v: 1 }, 2500);
      FakeWebSocket.last.onclose({ code: 1006, reason: "" });
      return opened.then(() => null, (error) => error.reason);
    };
    const original = Object.getOwnPropertyDescriptor(globalThis, "navigator");
    Object.defineProperty(globalThis, "navigator", { value: { onLine: false }, configurable: true, writable: true });
    try {
      assert.equal(await attempt(), "websocket: cannot connect (this browser is offline)");
      globalThis.navigator.onLine = true;
      assert.equal(await attempt(), "websocket: cannot connect (the upgrade was refused or blocked on the way)");
    } finally {
      if (original) Object.defineProperty(globalThis, "navigator", original);
      else delete globalThis.navigator;
    }
  });

  test("a close reason that names a refusal is that refusal (the core decides what follows); a close code alone is not", async () => {
    // (1011 engine_unavailable was "connection lost": resumed within [0, 0.5 s) every time)
    assert.deepEqual(await closedWith(1011, "engine_unavailable: this server cannot reach its engine"), [
      ["websocket: closed by the server (1011 engine_unavailable: this server cannot reach its engine)", "engine_unavailable"],
    ]);
    assert.deepEqual(await closedWith(4404, "unknown_session: expired"), [["websocket: closed by the server (4404 unknown_session: expired)", "unknown_session"]]);
    assert.deepEqual(await closedWith(1001, ""), [["websocket: closed by the server (1001)", "shutting_down"]]);
    assert.deepEqual(await closedWith(1000, ""), [["websocket: closed by the server (1000)", null]]);
    assert.deepEqual(await closedWith(1006, ""), [["websocket: connection lost (code 1006)", null]]);
  });
});

describe("polling", () => {
  test("opens with open=1, then polls with the acknowledgement, one poll after another", async () => {
    let applied = 3;
    const answers = [[welcome, { s: 1, t: "push" }], [{ s: 2, t: "push" }]];
    const { fetch, calls } = fakeFetch(({ init }) => {
      const frames = answers.shift();
      if (frames) return new Response(frames.map((f) => JSON.stringify(f)).join("\n"), { status: 200 });
      // Then a held long poll, released when the transport closes.
      return new Promise((_, reject) => init.signal.addEventListener("abort", () => reject(new Error("aborted"))));
    });
    const poll = new PollingTransport(context(fetch, manualClock(), () => applied), true);
    await poll.open({ t: "hello", v: 1, sid: "S1", rt: "R1", ack: 2 }, 2500);
    assert.deepEqual(Object.fromEntries(calls[0].url.searchParams), { v: "1", open: "1", sid: "S1", ack: "2", enc: "json" });
    assert.equal(calls[0].init.headers["x-ladder-rt"], "R1");
    assert.equal(calls.length, 1, "no poll before the transport is attached (a race may still drop it)");
    const got = [];
    applied = 5;
    poll.attach({ onframes: (frames) => got.push(frames), onclose: () => {} });
    await settle();
    assert.deepEqual(got, [[{ s: 1, t: "push" }], [{ s: 2, t: "push" }]]);
    assert.equal(calls.length, 3, "the next poll goes out as soon as one is answered");
    assert.deepEqual(Object.fromEntries(calls[1].url.searchParams), { sid: "S1", ack: "5", enc: "json" });
    assert.deepEqual(Object.fromEntries(calls[2].url.searchParams), { sid: "S1", ack: "5", enc: "json" });
    poll.close();
  });

  test("short polling speeds up on messages only: an answer of acks and pongs slows it down", async () => {
    const answers = [[welcome], [{ t: "ack", i: 1 }], [{ t: "pong", n: 1 }], [{ s: 1, t: "push" }], []];
    const { fetch, calls } = fakeFetch(() => {
      const frames = answers.shift() ?? [];
      return new Response(frames.map((f) => JSON.stringify(f)).join("\n"), { status: 200 });
    });
    const clock = manualClock();
    const poll = new PollingTransport(context(fetch, clock), false);
    await poll.open({ t: "hello", v: 1, sid: "S1", rt: "R1", ack: 0 }, 2500);
    poll.attach({ onframes: () => {}, onclose: () => {} });
    const paces = [];
    for (const wait of [50, 100, 200, 50]) {
      await settle();
      paces.push(poll.interval);
      clock.fire(wait);
    }
    await settle();
    paces.push(poll.interval);
    assert.deepEqual(paces, [50, 100, 200, 50, 100], "the ack and the pong slow it down; the push speeds it up");
    assert.equal(calls.length, 5);
    poll.close();
  });

  test("a fetch that fails outright names a missing server, and for another origin a server that is not Ladder", async () => {
    // (a page on another origin whose server answered without CORS headers was asked only
    // whether the server was running: it was)
    const { fetch } = fakeFetch(() => {
      throw new TypeError("Failed to fetch");
    });
    const failed = async () => {
      const poll = new PollingTransport(context(fetch), true);
      try {
        await poll.open({ t: "hello", v: 1 }, 2500);
      } catch (error) {
        return String(error.message ?? error);
      }
      return "opened";
    };
    assert.match(await failed(), /longpoll: cannot connect to .*\(TypeError: Failed to fetch\): is the server running there\?$/);
    globalThis.location = { origin: "http://page.example" };
    try {
      assert.match(await failed(), /: is the server running there, and is it Ladder \(a server or proxy that sends no CORS headers for http:\/\/page\.example fails the same way\)\?$/);
    } finally {
      delete globalThis.location;
    }
  });

  test("a held poll a proxy answers 504 after 10 s makes the next long polls ask for a 7.5 s hold (protocol §3.5), on later transports too", async () => {
    let now = 0;
    const clock = { ...manualClock(), now: () => now };
    const answers = [
      () => new Response(JSON.stringify(welcome), { status: 200 }),
      () => ((now += 10_000), new Response("<html>504 Gateway Time-out</html>", { status: 504 })),
    ];
    const { fetch, calls } = fakeFetch(({ init }) => {
      const next = answers.shift();
      if (next) return next();
      return new Promise((_, reject) => init.signal.addEventListener("abort", () => reject(new Error("aborted"))));
    });
    const ctx = { ...context(fetch, clock), holding: new LongPollHold() };
    const poll = new PollingTransport(ctx, true);
    await poll.open({ t: "hello", v: 1, sid: "S1", rt: "R1", ack: 0 }, 2500);
    const closed = [];
    poll.attach({ onframes: () => {}, onclose: (reason) => closed.push(reason) });
    await settle();
    assert.equal(calls[1].url.searchParams.get("hold"), null, "the server's hold until a proxy cuts one");
    assert.match(closed[0], /longpoll: HTTP 504 from the server or a proxy/);
    assert.equal(ctx.holding.hold, 7500);
    const again = new PollingTransport(ctx, true);
    answers.push(() => new Response(JSON.stringify(welcome), { status: 200 }));
    await again.open({ t: "hello", v: 1, sid: "S1", rt: "R1", ack: 0 }, 2500);
    again.attach({ onframes: () => {}, onclose: () => {} });
    await settle();
    assert.equal(calls[3].url.searchParams.get("hold"), "7500", "asked of every later long poll");
    again.close();
    const refused = new PollingTransport(ctx, true);
    answers.push(
      () => new Response(JSON.stringify(welcome), { status: 200 }),
      () => ((now += 20_000), new Response(JSON.stringify({ t: "err", code: "engine_unavailable", reason: "r" }), { status: 503 })),
    );
    await refused.open({ t: "hello", v: 1, sid: "S1", rt: "R1", ack: 0 }, 2500);
    refused.attach({ onframes: () => {}, onclose: () => {} });
    await settle();
    assert.equal(ctx.holding.hold, 7500, "the server's own 503 is not a proxy's timeout");
    refused.close();
  });

  test("a refusal carries the server's code", async () => {
    const { fetch } = fakeFetch(
      () => new Response(JSON.stringify({ t: "err", code: "unauthorized", reason: "no" }), { status: 401 }),
    );
    const poll = new PollingTransport(context(fetch), false);
    await assert.rejects(poll.open({ t: "hello", v: 1, tok: "x" }, 2500), (error) => error.error?.code === "unauthorized");
  });
});

describe("every hello says why", () => {
  // protocol §3.1: on the HTTP rungs the hello's `why` travels in the query string, for the
  // server's metrics (ladder_rung_changes_total's reason).
  const hellos = [
    { t: "hello", v: 1, why: "cut" },
    { t: "hello", v: 1, sid: "S1", rt: "R1", ack: 3, why: "probe" },
  ];

  test("an SSE stream's URL carries the hello's why, new session or resume", () => {
    globalThis.EventSource = FakeEventSource;
    for (const hello of hellos) {
      const sse = new SSETransport(context(fakeFetch(() => new Response(null, { status: 204 })).fetch));
      sse.open(hello, 2500).catch(() => {});
      assert.equal(FakeEventSource.last.url.searchParams.get("why"), hello.why);
      sse.close();
    }
  });

  test("a polling rung's opening GET carries the hello's why, new session or resume", async () => {
    for (const hold of [true, false]) {
      for (const hello of hellos) {
        const { fetch, calls } = fakeFetch(() => new Response(JSON.stringify(welcome), { status: 200 }));
        const poll = new PollingTransport(context(fetch), hold);
        await poll.open(hello, 2500);
        assert.equal(calls[0].url.searchParams.get("why"), hello.why, `${poll.name} ${hello.sid ? "resume" : "new"}`);
        poll.close();
      }
    }
  });

  test("a first hello has no why, and no empty field stands for it", async () => {
    const { fetch, calls } = fakeFetch(() => new Response(JSON.stringify(welcome), { status: 200 }));
    const poll = new PollingTransport(context(fetch), true);
    await poll.open({ t: "hello", v: 1 }, 2500);
    assert.equal(calls[0].url.searchParams.has("why"), false);
    poll.close();
  });
});

test("a timer for a deadline never fires before it, though browsers truncate fractional delays", async () => {
  const { timerDelay } = await import("../../src/ladder/static/clock.js");
  // A bound of max(1 s, 4 round trips) is fractional: setTimeout(…, 1000.7) ran after 1000 ms,
  // found nothing late yet, and the stream's check never ran again (a buffered SSE was kept).
  for (const ms of [0, 0.2, 999.999, 1000, 1000.7, 2345.5]) {
    assert.ok(Math.trunc(timerDelay(ms)) > ms, `${ms} ms`);
  }
});
