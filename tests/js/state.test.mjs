// The browser client's sans-I/O parts: reliable stream, rung policy, backoff, race schedule,
// silence verdict, channel positions, codec, what ready() answers. No timers, no sockets.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  carried,
  decodeBatch,
  encodeBatch,
  encodeMessage,
  formatIds,
  fullJitter,
  Pacer,
  reconnectDelay,
  Inbox,
  LadderError,
  Outbox,
  PeerState,
  RaceSchedule,
  RungPolicy,
  silenceLimit,
  silenceVerdict,
  Subscription,
} from "../../src/ladder/static/client.js";
import { Readiness } from "../../src/ladder/static/readiness.js";

describe("Inbox", () => {
  test("hands each number out once, in order; early ones wait for the gap", () => {
    const inbox = new Inbox(10);
    assert.deepEqual(inbox.offer(1, "a"), ["a"]);
    assert.deepEqual(inbox.offer(3, "c"), []);
    assert.equal(inbox.waiting, 1);
    assert.deepEqual(inbox.offer(3, "c again"), [], "an early repeat is dropped");
    assert.deepEqual(inbox.offer(2, "b"), ["b", "c"]);
    assert.deepEqual(inbox.offer(2, "b again"), [], "a repeat is dropped");
    assert.deepEqual(inbox.offer(1, "a again"), []);
    assert.equal(inbox.applied, 3);
  });

  test("refuses a number beyond the window", () => {
    const inbox = new Inbox(4);
    assert.throws(() => inbox.offer(5, "x"), (error) => error instanceof LadderError && error.code === "too_far_ahead");
    assert.deepEqual(inbox.offer(4, "d"), [], "the window's edge is accepted (and waits)");
  });
});

describe("Outbox", () => {
  test("numbers, keeps until acknowledged, resends after a cursor", () => {
    const outbox = new Outbox(3);
    assert.equal(outbox.push("a"), 1);
    assert.equal(outbox.push("b"), 2);
    assert.equal(outbox.push("c"), 3);
    assert.throws(() => outbox.push("d"), (error) => error.code === "queue_full");
    assert.deepEqual(outbox.after(1), [
      [2, "b"],
      [3, "c"],
    ]);
    assert.equal(outbox.ack(2), 2);
    assert.equal(outbox.ack(1), 0, "an old ack changes nothing");
    assert.deepEqual(outbox.after(0), [[3, "c"]], "a cursor below the ack starts after the ack");
    assert.throws(() => outbox.ack(4), (error) => error.code === "bad_frame");
    assert.equal(outbox.push("d"), 4);
    assert.deepEqual(outbox.renumber(), ["c", "d"]);
    assert.equal(outbox.last, 0);
    assert.equal(outbox.push("c"), 1);
  });
});

describe("PeerState", () => {
  const welcome = (over = {}) => ({ t: "welcome", sid: "S1", rt: "R1", resumed: false, ack: 0, seq: 0, ...over });

  test("hello opens, then resumes with the resume token and the acknowledgement", () => {
    const peer = new PeerState();
    assert.deepEqual(peer.hello("alice"), { t: "hello", v: 1, tok: "alice" });
    peer.welcome(welcome());
    peer.receive({ s: 1, t: "pub" });
    assert.deepEqual(peer.hello(), { t: "hello", v: 1, sid: "S1", rt: "R1", ack: 1 });
  });

  test("messages are numbered, written once per transport, rewritten after a resume", () => {
    const peer = new PeerState();
    peer.welcome(welcome());
    assert.equal(peer.submit({ t: "emit", ev: "a" }), 1);
    assert.equal(peer.submit({ t: "emit", ev: "b" }), 2);
    assert.deepEqual(peer.unsent().map((f) => f.i), [1, 2]);
    assert.deepEqual(peer.unsent(), [], "nothing is written twice on one transport");
    peer.onAck(1);
    // A new transport resumes: the server applied 1, so 2 is written again.
    assert.equal(peer.welcome(welcome({ resumed: true, ack: 1 })), null);
    assert.deepEqual(peer.unsent().map((f) => f.ev), ["b"]);
    assert.throws(() => peer.welcome(welcome({ resumed: true, ack: 9 })), (error) => error.code === "bad_frame");
  });

  test("a new session renumbers what was not acknowledged, filtered, in order", () => {
    const peer = new PeerState();
    peer.welcome(welcome());
    peer.submit({ t: "call", ev: "x" }); // 1, acknowledged below
    peer.submit({ t: "sub", ch: "a" }); // 2
    peer.submit({ t: "call", ev: "y" }); // 3
    peer.submit({ t: "emit", ev: "z" }); // 4
    peer.onAck(1);
    peer.receive({ s: 1 });
    const moved = peer.welcome(welcome({ sid: "S2", rt: "R2" }), (frame) => frame.t !== "sub");
    assert.deepEqual(moved, [
      [3, 1],
      [4, 2],
    ]);
    assert.deepEqual(peer.unsent().map((f) => [f.i, f.ev]), [
      [1, "y"],
      [2, "z"],
    ]);
    assert.equal(peer.inbox.applied, 0, "the new session's sequence starts again");
    assert.equal(peer.sid, "S2");
  });

  test("the hello of a new session names the lost one and which of its messages it carries", () => {
    const peer = new PeerState();
    peer.welcome(welcome());
    peer.submit({ t: "call", ev: "x" }); // 1, acknowledged below
    peer.submit({ t: "emit", ev: "a" }); // 2
    peer.submit({ t: "sub", ch: "a" }); // 3: renewed by the client, not carried
    peer.submit({ t: "call", ev: "y" }); // 4
    peer.submit({ t: "emit", ev: "z" }); // 5
    peer.onAck(1);
    peer.forgetSession();
    assert.deepEqual(peer.hello("tok"), { t: "hello", v: 1, psid: "S1", prt: "R1", pids: "2,4-5", pu: "", tok: "tok" });
    peer.welcome(welcome({ sid: "S2", rt: "R2", resumed: false }), carried);
    assert.deepEqual(peer.hello(), { t: "hello", v: 1, sid: "S2", rt: "R2", ack: 0 }, "named once, until adopted");
    assert.equal(formatIds([3, 4, 5, 8, 10, 11]), "3-5,8,10-11");
  });

  test("dedupes server frames and acknowledges every N", () => {
    const peer = new PeerState();
    peer.welcome(welcome());
    assert.deepEqual(peer.receive({ s: 2, t: "pub" }), []);
    assert.deepEqual(peer.receive({ s: 1, t: "pub" }).map((f) => f.s), [1, 2]);
    assert.deepEqual(peer.receive({ s: 2, t: "pub" }), []);
    assert.equal(peer.ackFrame(3), null, "2 frames < every 3");
    assert.deepEqual(peer.ackFrame(2), { t: "ack", s: 2 });
    assert.equal(peer.ackFrame(1), null, "nothing new to acknowledge");
  });

  test("withdraw takes out unsent messages only, and numbers the later ones again without a gap", () => {
    const peer = new PeerState();
    peer.welcome({ sid: "a", rt: "r", resumed: false });
    const frames = ["a1", "b1", "a2", "b2", "a3"].map((d) => ({ t: "emit", ev: "e", d }));
    for (const frame of frames) peer.submit(frame);
    peer.cursor = 2; // (a1 and b1 written; the transport went down; a resume rewinds the cursor)
    peer.welcome({ sid: "a", rt: "r", resumed: true, ack: 0 });
    const { removed, moved } = peer.withdraw((frame) => String(frame.d).startsWith("b"));
    assert.deepEqual(removed, [4], "b1 was written (the server may have it): it stays");
    assert.deepEqual(moved, [[5, 4]]);
    assert.deepEqual(peer.outbox.after(0).map(([id, f]) => [id, f.i, f.d]), [[1, 1, "a1"], [2, 2, "b1"], [3, 3, "a2"], [4, 4, "a3"]]);
    assert.equal(peer.outbox.last, 4);
    assert.equal(peer.submit({ t: "emit", d: "next" }), 5, "numbering goes on from there");
    // A new session: what was written in the lost one stays written.
    peer.welcome({ sid: "b", rt: "r2", resumed: false });
    assert.equal(peer.written, 2);
    assert.deepEqual(peer.withdraw(() => true).removed, [3, 4, 5]);
  });

  test("a full queue is refused with queue_full", () => {
    const peer = new PeerState(2);
    peer.submit({ t: "emit" });
    peer.submit({ t: "emit" });
    assert.throws(() => peer.submit({ t: "emit" }), (error) => error.code === "queue_full");
    // (the Python client's words; they named flush(), which the browser client has not)
    assert.throws(() => peer.submit({ t: "emit" }), (error) => error.reason === `2 messages are waiting to be sent or acknowledged (the client's max_queue / maxQueue): wait until they are acknowledged (flush() waits for that) or raise the bound`);
  });
});

describe("RungPolicy", () => {
  const rungs = ["websocket", "sse", "longpoll", "poll"];

  test("candidates run from the floor down; probes look above", () => {
    const policy = new RungPolicy(rungs, { start: "longpoll" });
    assert.deepEqual(policy.candidates(), ["longpoll", "poll"]);
    assert.deepEqual(policy.above("longpoll"), ["websocket", "sse"]);
    assert.deepEqual(policy.above("websocket"), []);
    policy.won("sse");
    assert.deepEqual(policy.candidates(), ["sse", "longpoll", "poll"]);
    assert.equal(new RungPolicy(rungs, { start: "bogus" }).current, "websocket");
  });

  test("three short-lived connections in a row step down one rung", () => {
    const policy = new RungPolicy(rungs, { cutLimit: 3, stableAfter: 10_000 });
    assert.equal(policy.dropped("websocket", 500, "cut"), null);
    assert.equal(policy.dropped("websocket", 500, "cut"), null);
    const reason = policy.dropped("websocket", 500, "closed by a proxy");
    assert.match(reason, /websocket: cut 3 times in a row, each within 10 s of opening \(last: closed by a proxy\)/);
    assert.equal(policy.current, "sse");
  });

  test("a stable connection resets the count", () => {
    const policy = new RungPolicy(rungs, { cutLimit: 2 });
    policy.dropped("sse", 100, "x");
    policy.dropped("sse", 60_000, "x");
    assert.equal(policy.dropped("sse", 100, "x"), null);
    assert.equal(policy.current, "websocket");
  });

  test("the last rung never steps below itself", () => {
    const policy = new RungPolicy(["poll"], { cutLimit: 1 });
    assert.equal(policy.dropped("poll", 1, "x"), null);
    assert.equal(policy.current, "poll");
  });
});

describe("fullJitter", () => {
  test("draws from [0, min(cap, base * 2^attempt))", () => {
    assert.equal(fullJitter(0, 500, 20_000, () => 0.999_999) < 500, true);
    assert.equal(fullJitter(3, 500, 20_000, () => 0.5), 2000);
    assert.equal(fullJitter(10, 500, 20_000, () => 0.5), 10_000, "capped");
    assert.equal(fullJitter(5000, 500, 20_000, () => 1), 20_000, "huge attempts do not overflow");
    assert.equal(fullJitter(2, 500, 20_000, () => 0), 0);
  });
});

describe("RaceSchedule", () => {
  const rungs = ["websocket", "sse", "longpoll", "poll"];

  test("staggers the rungs", () => {
    const schedule = new RaceSchedule(rungs, [0, 300, 1000, 2000]);
    assert.deepEqual(schedule.due(0, 0), { start: ["websocket"], wait: 300 });
    assert.deepEqual(schedule.due(100, 1), { start: [], wait: 200 });
    assert.deepEqual(schedule.due(300, 1), { start: ["sse"], wait: 700 });
    assert.deepEqual(schedule.due(2500, 2), { start: ["longpoll", "poll"], wait: null });
  });

  test("starts the next rung at once when every started one failed", () => {
    const schedule = new RaceSchedule(rungs, [0, 300, 1000, 2000]);
    schedule.due(0, 0);
    assert.deepEqual(schedule.due(20, 0), { start: ["sse"], wait: 980 });
    assert.deepEqual(schedule.due(25, 0), { start: ["longpoll"], wait: 1975 });
  });

  test("a short stagger list repeats its last entry", () => {
    const schedule = new RaceSchedule(rungs, [0, 100]);
    schedule.due(0, 0);
    assert.deepEqual(schedule.due(100, 1), { start: ["sse", "longpoll", "poll"], wait: null });
  });
});

describe("silence", () => {
  const welcome = { hb: 20_000, poll: 25_000 };

  test("limits per rung (protocol §9.2), more while hidden", () => {
    assert.equal(silenceLimit("websocket", welcome), 31_000);
    assert.equal(silenceLimit("sse", welcome), 31_000);
    assert.equal(silenceLimit("longpoll", welcome), 40_000);
    assert.equal(silenceLimit("poll", welcome, { pollMax: 2000 }), 17_000);
    assert.equal(silenceLimit("websocket", welcome, { hidden: true, hiddenSlack: 60_000 }), 91_000);
  });

  test("a late timer (a throttled or frozen tab) asks before it gives up", () => {
    assert.equal(silenceVerdict({ silent: 10_000, limit: 31_000, late: 0 }), "alive");
    assert.equal(silenceVerdict({ silent: 31_000, limit: 31_000, late: 5 }), "dead");
    assert.equal(silenceVerdict({ silent: 95_000, limit: 31_000, late: 60_000 }), "check");
  });
});

describe("Subscription", () => {
  test("a fresh subscription starts at the channel's position; recent ones come first", async () => {
    const sub = new Subscription("room:a", { recent: 2 });
    assert.deepEqual(sub.subscribeFrame(), { t: "sub", ch: "room:a", recent: 2 });
    const seen = [];
    sub.listen((pub) => seen.push(pub.offset));
    sub.confirmed({ ch: "room:a", ep: "E", off: 10, rec: true, n: 2 });
    assert.deepEqual(await sub.ready(), { channel: "room:a", epoch: "E", offset: 10, recovered: true, missed: 2 });
    for (const offset of [9, 10, 10, 9, 11]) sub.deliver(offset, null);
    assert.deepEqual(seen, [9, 10, 11], "each offset once, in order");
    assert.deepEqual(sub.position, { epoch: "E", offset: 11 });
    assert.deepEqual(sub.subscribeFrame(), { t: "sub", ch: "room:a", ep: "E", off: 11 }, "resubscribes from its position");
  });

  test("recovery keeps the position; a failed recovery jumps to the channel's", () => {
    const sub = new Subscription("c", { since: { epoch: "E", offset: 5 } });
    sub.confirmed({ ep: "E", off: 8, rec: true, n: 3 });
    assert.equal(sub.offset, 5, "the 3 missed publications follow");
    const lost = new Subscription("c", { since: { epoch: "OLD", offset: 5 } });
    lost.confirmed({ ep: "NEW", off: 2, rec: false, n: 0 });
    assert.deepEqual(lost.position, { epoch: "NEW", offset: 2 });
    assert.equal(lost.recovered, false);
  });

  test("a refusal rejects ready() and ends it", async () => {
    const sub = new Subscription("c");
    sub.end(new LadderError("forbidden", "no"));
    await assert.rejects(sub.ready(), (error) => error.code === "forbidden");
    assert.equal(sub.active, false);
    assert.equal(sub.deliver(1, "x"), false);
  });
});

describe("codec", () => {
  test("bytes travel as {$b: base64} and come back as Uint8Array", () => {
    const text = encodeBatch([{ t: "emit", d: { blob: new Uint8Array([0, 255, 7]) } }, { t: "ping" }]);
    assert.equal(text, '{"t":"emit","d":{"blob":{"$b":"AP8H"}}}\n{"t":"ping"}');
    const [first, second] = decodeBatch(`${text}\n`);
    assert.deepEqual(first.d.blob, new Uint8Array([0, 255, 7]));
    assert.deepEqual(second, { t: "ping" });
    assert.deepEqual(decodeBatch('{"d":{"$b":"AA==","x":1}}')[0].d, { $b: "AA==", x: 1 }, "only one-key objects are bytes");
  });
});

describe("reconnectDelay", () => {
  test("a short pause after a connection ended, two retries at once, then full jitter up to the cap", () => {
    assert.equal(reconnectDelay(0, 500, 5000, () => 0.99), 495);
    assert.equal(reconnectDelay(1, 500, 5000, () => 0.99), 0);
    assert.equal(reconnectDelay(2, 500, 5000, () => 0.99), 0);
    assert.equal(reconnectDelay(3, 500, 5000, () => 0.5), 500);
    assert.equal(reconnectDelay(4, 500, 5000, () => 0.5), 1000);
    assert.equal(reconnectDelay(40, 500, 5000, () => 1), 5000, "capped");
  });
});

describe("Pacer", () => {
  test("waits retry_after, then lets one message go per interval (same steps as ladder.client.pacing)", () => {
    const pacer = new Pacer();
    assert.deepEqual(pacer.allowance(0), { count: null, wait: 0 }, "unlimited until refused");
    pacer.refused(100, 0);
    assert.deepEqual(pacer.allowance(50), { count: 0, wait: 50 }, "waits retry_after");
    assert.deepEqual(pacer.allowance(100), { count: 1, wait: 0 }, "then the refused message");
    pacer.wrote(1);
    assert.deepEqual(pacer.allowance(150), { count: 0, wait: 50 });
    assert.equal(pacer.allowance(350).count, 2, "those that became due meanwhile go together");
    pacer.wrote(2);
    pacer.refused(200, 350);
    assert.equal(pacer.interval, 200, "the largest retry_after heard sets the pace");
    pacer.drained();
    assert.deepEqual(pacer.allowance(1000), { count: null, wait: 0 }, "everything acknowledged: free again");
  });
});

describe("encodeMessage", () => {
  test("names what cannot be sent, and where", () => {
    assert.equal(encodeMessage({ t: "emit", i: 1, ev: "e", d: { a: [1, "x", new Uint8Array([1])] } }).length > 0, true);
    assert.throws(() => encodeMessage({ t: "emit", i: 1, ev: "e", d: { a: [1, 2n] } }), /^TypeError: cannot send a BigInt at d\.a\[1\] \(send it as a string\): Ladder messages carry/);
    // What JSON would alter without a word (a Date into a string, a Map into {}, NaN into null,
    // a function dropped) is refused the same way; an undefined property is left out, as JSON does.
    for (const [value, said] of [
      [{ when: new Date(0) }, "a Date at d.when (send date.toISOString() or date.getTime())"],
      [{ m: new Map([[1, 2]]) }, "a Map at d.m (not a plain object)"],
      [{ s: new Set([1]) }, "a Set at d.s (not a plain object)"],
      [[1, NaN], "NaN at d[1] (not a JSON number)"],
      [{ x: Infinity }, "Infinity at d.x (not a JSON number)"],
      [{ f: () => 1 }, "a function at d.f"],
      [{ e: new Error("x") }, "an Error at d.e (not a plain object)"],
      // In the shape of JSON's bytes, but no reader could decode it (atob would take "aGk").
      [{ n: [{ $b: "!!!" }] }, `a {"$b": string} object whose string is not standard base64 at d.n[0] (JSON's form of bytes: send a Uint8Array, or give the object a second key)`],
      [{ $b: "aGk" }, `a {"$b": string} object whose string is not standard base64 at d (JSON's form of bytes: send a Uint8Array, or give the object a second key)`],
    ]) {
      assert.throws(() => encodeMessage({ t: "emit", i: 1, ev: "e", d: value }), (e) => e instanceof TypeError && e.message.startsWith(`cannot send ${said}: `), said);
    }
    assert.equal(encodeMessage({ t: "emit", i: 1, ev: "e", d: { a: 1, b: undefined, c: Object.create(null) } }), '{"t":"emit","i":1,"ev":"e","d":{"a":1,"c":{}}}');
    assert.equal(encodeMessage({ t: "emit", i: 1, ev: "e", d: [{ $b: "aGk=" }, { $b: "!!!", x: 1 }] }), '{"t":"emit","i":1,"ev":"e","d":[{"$b":"aGk="},{"$b":"!!!","x":1}]}');
    const loop = [];
    loop.push({ back: loop });
    assert.throws(() => encodeMessage({ t: "call", i: 1, ev: "e", d: loop }), /cannot send an Array that contains itself at d\[0\]\.back/);
  });

  test("refuses what the server could not decode, which would take an id and hold back every message after it", () => {
    // A lone surrogate (orjson refuses the batch) and data nested past 254 levels (§2; past
    // the server's 1,024 the batch is undecodable) were sent as written: bad_frame, and every
    // later call of the session unanswered for good.
    const deep = (n) => {
      let value = 1;
      for (let i = 0; i < n; i++) value = i % 2 ? [value] : { v: value };
      return value;
    };
    for (const [frame, said] of [
      [{ t: "emit", i: 1, ev: "e", d: { a: ["x\ud800y"] } }, "a string with a lone surrogate at d.a[0]"],
      [{ t: "emit", i: 1, ev: "e", d: { ["k\udc00"]: 1 } }, "a key with a lone surrogate at d"],
      [{ t: "emit", i: 1, ev: "e", d: deep(255) }, "arrays and objects nested more than 254 deep at d"],
      [{ t: "emit", i: 1, ev: "e", d: deep(1100) }, "arrays and objects nested more than 254 deep at d"],
      [{ t: "pub", i: 1, ch: "room:\ud800", d: 1 }, "a string with a lone surrogate at ch"],
    ]) {
      assert.throws(() => encodeMessage(frame), (e) => e instanceof TypeError && e.message.startsWith(`cannot send ${said}`), said);
    }
    assert.equal(JSON.parse(encodeMessage({ t: "emit", i: 1, ev: "e", d: deep(254) })).t, "emit", "254 levels travel");
    assert.equal(encodeMessage({ t: "emit", i: 1, ev: "e", d: "\ud83d\ude00" }), '{"t":"emit","i":1,"ev":"e","d":"\ud83d\ude00"}', "a pair is no lone surrogate");
  });
});

describe("Readiness", () => {
  const settled = (promise) => promise.then(() => "resolved", (error) => error.code);

  test("resolves once connected and stays resolved after the client closes", async () => {
    const readiness = new Readiness();
    readiness.connected();
    readiness.ended(new LadderError("closed"));
    assert.equal(await settled(readiness.promise), "resolved");
  });

  test("connect_failed rejects, and a later connect resolves a new ready()", async () => {
    const readiness = new Readiness();
    const waiting = readiness.promise;
    readiness.late(new LadderError("connect_failed"));
    assert.equal(await settled(waiting), "connect_failed");
    assert.equal(await settled(readiness.promise), "connect_failed"); // still not connected
    readiness.connected();
    assert.equal(await settled(readiness.promise), "resolved");
  });

  test("closed before connecting: rejects with why, and nothing resolves it afterwards", async () => {
    const readiness = new Readiness();
    readiness.ended(new LadderError("origin_not_allowed"));
    readiness.connected();
    readiness.late(new LadderError("connect_failed"));
    assert.equal(await settled(readiness.promise), "origin_not_allowed");
  });

  test("connect_failed, then closed: a later ready() keeps the first answer", async () => {
    const readiness = new Readiness();
    readiness.late(new LadderError("connect_failed"));
    readiness.ended(new LadderError("closed"));
    readiness.connected();
    assert.equal(await settled(readiness.promise), "connect_failed");
  });
});
