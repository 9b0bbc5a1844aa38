// @ts-check
/**
 * Reading: the frames a transport delivers, acknowledgements (the core's `AckPolicy`), and the
 * watchdog that judges its silence (with the browser's sleep, wake and network events).
 */

import { AckPolicy, provesStream, StreamProof, wakeAction } from "./core.js";
import { errorEvent, errorOf, LadderError, TransportClosed } from "./errors.js";
import { silenceLimit, silenceVerdict } from "./liveness.js";
import { seconds, timerDelay } from "./clock.js";

/** @typedef {import("./driver.js").Client} Client */
/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./transport.js").Transport} Transport */

/** When to acknowledge, per client (the core decides). @type {WeakMap<Client, AckPolicy>} */
const ackPolicies = new WeakMap();

/**
 * @param {Client} client
 * @param {Transport} conn
 * @param {Frame[]} frames
 * @param {number} [size] characters they came in (streams)
 */
export function onFrames(client, conn, frames, size = 0) {
  if (conn !== client._conn) return;
  client._lastHeard = client._clock.now();
  client.peer.unackedBytes += size;
  for (const frame of frames) {
    if (conn !== client._conn) return;
    try {
      client._handle(frame, conn);
    } catch (error) {
      client._failed(conn, error instanceof LadderError ? new TransportClosed(`${conn.name}: ${error.message}`, error) : error);
      return;
    }
  }
  client._maybeRefresh();
  if (!conn.implicitAck) client._maybeAck(conn);
}

/**
 * The client's ack policy (the core's), made on first use with its options.
 * @param {Client} client
 * @returns {AckPolicy}
 */
export function ackPolicy(client) {
  let policy = ackPolicies.get(client);
  if (!policy) ackPolicies.set(client, (policy = new AckPolicy({ every: client.options.ackEvery, interval: client.options.ackInterval })));
  return policy;
}

/**
 * Acknowledge a stream (protocol §9.7): at once when the frames unacknowledged reach a count
 * drawn from [`ackEvery`/2, `ackEvery`] (or half the server's `lim.queue`, or their bytes half
 * its `lim.qbytes`), otherwise once the stream has been quiet for `ackInterval` ms (one timer,
 * started by the first unacknowledged frame and not moved by later ones; when it fires it
 * waits out the rest of the quiet spell). Polls need none: each GET carries `ack`.
 * @param {Client} client
 * @param {Transport} conn
 */
export function maybeAck(client, conn) {
  const policy = ackPolicy(client);
  const peer = client.peer;
  const decision = policy.received({
    unacked: peer.inbox.applied - peer.ackedOut,
    timerRunning: client._ackTimer !== null,
    implicit: conn.implicitAck,
    unackedBytes: peer.unackedBytes,
    rand: client._random(),
  });
  if (decision === "now") {
    const ack = client._takeAck();
    if (ack) client._control(conn, [ack]);
  } else if (decision === "timer") {
    armAck(client, conn, policy, policy.interval);
  }
}

/**
 * @param {Client} client
 * @param {Transport} conn
 * @param {AckPolicy} policy
 * @param {number} wait ms
 */
function armAck(client, conn, policy, wait) {
  client._ackTimer = client._clock.setTimeout(() => {
    client._ackTimer = null;
    if (client._conn !== conn || client.state !== "connected") return;
    const left = policy.due({ quiet: client._clock.now() - client._lastHeard });
    if (left > 0) return armAck(client, conn, policy, left);
    const late = client._takeAck(1);
    if (late) client._control(conn, [late]);
  }, wait);
}

/**
 * The ack to send now, if at least `every` frames are unacknowledged; once everything
 * delivered is acknowledged, the pending ack timer is no longer needed.
 * @param {Client} client
 * @param {number} [every]
 * @returns {Frame | null}
 */
export function takeAck(client, every = 1) {
  const ack = client.peer.ackFrame(every);
  if (ack && client._ackTimer !== null) {
    client._clock.clearTimeout(client._ackTimer);
    client._ackTimer = null;
  }
  return ack;
}

/**
 * @param {Client} client
 * @param {Frame} frame
 * @param {Transport} conn
 */
export function handle(client, frame, conn) {
  if ("s" in frame) {
    for (const ready of client.peer.receive(frame)) client._deliver(ready);
    return;
  }
  switch (frame.t) {
    case "ack":
      client.peer.onAck(Number(frame.i));
      client._outbox?.changed();
      client._acked();
      break;
    case "ping": {
      // Only a WebSocket must answer (protocol §3.3): the server drops one that stays silent.
      // On SSE the ping is a heartbeat and nothing more (§3.4): a POSTed pong would cost a
      // request every `hb` for nothing. Answered at once, from the message handler:
      // background-tab timer throttling never delays it; any pending ack rides along.
      if (conn.name !== "websocket") break;
      /** @type {Frame[]} */
      const out = [{ t: "pong" }];
      const ack = client._takeAck();
      if (ack) out.push(ack);
      client._control(conn, out);
      break;
    }
    case "pong":
      if (typeof frame.n === "number") {
        client._pongs.get(frame.n)?.();
        client._pongs.delete(frame.n);
      }
      if (client._proof) proven(client, conn, client._proof.pong({ nonce: frame.n, now: client._clock.now() }));
      break;
    case "bye": {
      const error = errorOf({ code: frame.code || "session_closed", reason: frame.reason ?? "" });
      const why = `${conn.name}: session ended by the server (${error.code}: ${error.reason})`;
      client._connClosed(conn, why, error, "bye");
      break;
    }
    case "err":
      if (frame.code === "rate_limited" && typeof frame.re === "number") {
        client._rateLimited(frame.re, Number(frame.retry_after ?? 0));
        break;
      }
      client._emit("error", errorEvent(frame));
      break;
    default:
      break;
  }
}

/**
 * @param {Frame} frame
 * @param {Client} client
 */
export function deliver(client, frame) {
  switch (frame.t) {
    case "pub":
      client._subs.get(frame.ch)?.deliver(Number(frame.o), frame.d);
      break;
    case "reply":
    case "err": {
      const waiter = typeof frame.re === "number" ? client._waiting.get(frame.re) : undefined;
      if (waiter) {
        client._waiting.delete(frame.re);
        waiter.settle(frame);
      } else if (frame.t === "err") {
        client._emit("error", errorEvent(frame));
      }
      break;
    }
    case "push":
      client._emit("push", { event: String(frame.ev), data: frame.d });
      break;
    case "join":
    case "leave":
      client._emit("presence", { kind: frame.t, channel: String(frame.ch), member: frame.m ?? {} });
      break;
    case "resync": {
      client._subs.get(frame.ch)?.resync(String(frame.ep), Number(frame.off));
      client._emit("resync", { channel: String(frame.ch), epoch: String(frame.ep), offset: Number(frame.off) });
      break;
    }
    default:
      break;
  }
}

/** Whether the page is hidden (its timers are throttled, so silences are judged more loosely). */
export function hidden() {
  return typeof document !== "undefined" && document.visibilityState === "hidden";
}

/**
 * Judge the transport by what arrives: silent past its limit, it is broken — unless our own
 * timer ran late (a throttled or frozen tab), in which case a ping decides.
 * @param {Client} client
 * @param {Transport} conn
 */
export function armWatchdog(client, conn) {
  client._clock.clearTimeout(client._watchdog);
  const limit = () =>
    silenceLimit(conn.name, conn.welcome, {
      hidden: client._hidden(),
      hiddenSlack: client.options.hiddenSlack,
      pollMax: client.options.pollInterval[1],
    });
  /** @param {number} wait */
  const arm = (wait) => {
    const due = client._clock.now() + wait;
    client._watchdog = client._clock.setTimeout(() => {
      if (client._conn !== conn || client.state !== "connected") return;
      const now = client._clock.now();
      const silent = now - client._lastHeard;
      const max = limit();
      const verdict = silenceVerdict({ silent, limit: max, late: now - due });
      if (verdict === "alive") arm(Math.max(50, max - silent));
      else if (verdict === "check") {
        client._check("the page was asleep");
        arm(Math.max(max, client.options.verifyTimeout * 2 + 1000)); // let the check decide
      } else client._connClosed(conn, `${conn.name}: nothing received for ${seconds(silent)}`, null);
    }, wait);
  };
  arm(limit());
}

/**
 * Keep proving that a stream (SSE) is not buffered: every `hb`, a POSTed ping (a pending ack
 * rides along) whose pong must come back within the core's bound of the POST's answer; two
 * late in a row drop the transport, and the ladder steps down (protocol §9.2).
 * @param {Client} client
 * @param {Transport} conn
 */
export function armProof(client, conn) {
  client._clock.clearTimeout(client._proofTimer);
  client._proof = client._proofTimer = null;
  if (!provesStream({ rung: conn.name })) return;
  client._proof = new StreamProof({ every: Number(conn.welcome.hb ?? 20_000) });
  client._proof.start({ now: client._clock.now() }); // (its open proved it)
  proveLater(client, conn);
}

/**
 * @param {Client} client
 * @param {Transport} conn
 */
function proveLater(client, conn) {
  const proof = client._proof;
  if (!proof) return;
  client._clock.clearTimeout(client._proofTimer);
  client._proofTimer = null;
  const wait = proof.due({ now: client._clock.now() });
  if (wait !== null) client._proofTimer = client._clock.setTimeout(() => prove(client, conn), wait);
}

/**
 * @param {Client} client
 * @param {Transport} conn
 */
function prove(client, conn) {
  client._proofTimer = null;
  const proof = client._proof;
  if (!proof || client._conn !== conn || client.state !== "connected") return;
  if (client._pacer.pacing) {
    // Told to wait, the server drops pings: no pong would come.
    proof.start({ now: client._clock.now() });
    return proveLater(client, conn);
  }
  const nonce = Math.floor(client._random() * 2 ** 31);
  /** @type {Frame[]} */
  const frames = [{ t: "ping", n: nonce }];
  const ack = client._takeAck();
  if (ack) frames.unshift(ack);
  proof.sent({ nonce, now: client._clock.now() });
  conn.send(frames).then(
    () => {
      if (client._proof !== proof) return;
      const wait = proof.answered({ nonce, now: client._clock.now() });
      if (wait === null) return;
      client._clock.clearTimeout(client._proofTimer);
      client._proofTimer = client._clock.setTimeout(() => {
        client._proofTimer = null;
        if (client._proof === proof) proven(client, conn, proof.expired({ now: client._clock.now() }));
      }, timerDelay(wait));
    },
    (error) => {
      proof.failed({ nonce });
      client._failed(conn, error);
      if (client._proof === proof) proveLater(client, conn);
    },
  );
}

/**
 * Act on a check's verdict: drop a buffered stream, or arm the next check.
 * @param {Client} client
 * @param {Transport} conn
 * @param {string} verdict
 */
function proven(client, conn, verdict) {
  const proof = client._proof;
  if (!proof || verdict === "none" || client._conn !== conn) return;
  if (verdict === "buffered") client._connClosed(conn, proof.reason({ rung: conn.name }), null);
  else proveLater(client, conn);
}

/**
 * Ask the server for a pong; drop the transport if none comes back in time.
 * @param {Client} client
 * @param {string} why
 */
export function check(client, why) {
  const conn = client._conn;
  if (!conn || client.state !== "connected" || client._checking) return;
  client._checking = true;
  const nonce = Math.floor(client._random() * 2 ** 31);
  const timeout = client.options.verifyTimeout * 2;
  const timer = client._clock.setTimeout(() => {
    client._pongs.delete(nonce);
    client._checking = false;
    client._connClosed(conn, `${conn.name}: no answer to a check within ${seconds(timeout)} (${why})`, null);
  }, timeout);
  client._pongs.set(nonce, () => {
    client._clock.clearTimeout(timer);
    client._checking = false;
  });
  client._control(conn, [{ t: "ping", n: nonce }]);
}

/**
 * React to what the browser does to the page, as the core's `wakeAction` decides: the network
 * coming and going, the tab becoming visible, a frozen tab resumed (`freeze`/`resume`, Page
 * Lifecycle), the back/forward cache (`pagehide`/`pageshow` with `persisted`), and a page
 * that is really going away (`pagehide`: `bye`, unsent messages kept for the next page).
 * @param {Client} client
 */
export function hookBrowser(client) {
  /**
   * @param {EventTarget} target
   * @param {string} name
   * @param {(event: any) => void} handler
   */
  const hook = (target, name, handler) => {
    target.addEventListener(name, handler);
    client._unhook.push(() => target.removeEventListener(name, handler));
  };
  /**
   * @param {string} cause
   * @param {string} why
   * @param {boolean} [persisted]
   */
  const on = (cause, why, persisted = false) => {
    const silent = client._clock.now() - client._lastHeard;
    const action = wakeAction({ cause, state: client.state, silent, persisted });
    if (action === "suspend") client._suspend();
    else if (action === "resume") client._resume();
    else if (action === "leave") client._leave();
    else if (action === "check" || action === "reconnect") client.wake(why);
  };
  hook(window, "online", () => on("online", "the network came back"));
  hook(window, "offline", () => on("offline", "the network went away"));
  // A visible tab is a person looking: reconnect now, or make sure the connection is alive.
  hook(document, "visibilitychange", () => document.visibilityState === "visible" && on("visible", "the tab became visible"));
  hook(document, "freeze", () => on("freeze", "the tab was frozen"));
  hook(document, "resume", () => on("resume", "the tab was frozen"));
  hook(window, "pagehide", (event) => on("pagehide", "the page was hidden", Boolean(event.persisted)));
  hook(window, "pageshow", (event) => on("pageshow", "the page came back", Boolean(event.persisted)));
}

/**
 * The page went into the back/forward cache: release every connection, keep the session.
 * @param {Client} client
 */
export function suspend(client) {
  if (client.state === "closed" || client._suspended) return;
  client._suspended = true;
  client._outbox?.stash(); // a page in the cache may be evicted without running again
  client._raceAbort?.abort();
  client._wakeSleep?.();
  const conn = client._conn;
  if (conn) client._connClosed(conn, `${conn.name}: the page was hidden`, null);
}

/**
 * The page came back from the back/forward cache: reconnect (resuming the session if it lives).
 * @param {Client} client
 */
export function resume(client) {
  if (!client._suspended) return;
  client._suspended = false;
  client._unsuspend?.();
}
