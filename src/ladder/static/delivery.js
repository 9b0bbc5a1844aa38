// @ts-check
/** Delivery: frames from the server to the session, the subscriptions and the listeners; acknowledgements. */

import { errorOf, LadderError, TransportClosed } from "./errors.js";

/** @typedef {import("./driver.js").Client} Client */
/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./transport.js").Transport} Transport */

/**
 * @param {Client} client
 * @param {Transport} conn
 * @param {Frame[]} frames
 */
export function onFrames(client, conn, frames) {
  if (conn !== client._conn) return;
  client._lastHeard = client._clock.now();
  for (const frame of frames) {
    if (conn !== client._conn) return;
    try {
      client._handle(frame, conn);
    } catch (error) {
      client._failed(conn, error instanceof LadderError ? new TransportClosed(`${conn.name}: ${error.message}`, error) : error);
      return;
    }
  }
  if (!conn.implicitAck) client._maybeAck(conn);
}

/**
 * Acknowledge a stream (protocol §3.4): at once when `ackEvery` frames are unacknowledged,
 * otherwise once, `ackInterval` ms after the first unacknowledged frame arrived (one timer,
 * started by that frame and not moved by later ones): frames arriving within that second
 * share one ack, and a frame after a quiet spell no longer costs a request of its own at
 * once. Polls need none: each GET carries `ack`.
 * @param {Client} client
 * @param {Transport} conn
 */
export function maybeAck(client, conn) {
  const ack = client._takeAck(client.options.ackEvery);
  if (ack) client._control(conn, [ack]);
  if (client.peer.inbox.applied > client.peer.ackedOut && client._ackTimer === null) {
    client._ackTimer = client._clock.setTimeout(() => {
      client._ackTimer = null;
      if (client._conn !== conn || client.state !== "connected") return;
      const late = client._takeAck(1);
      if (late) client._control(conn, [late]);
    }, client.options.ackInterval);
  }
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
      if (client.peer.outbox.size === 0) client._pacer.drained();
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
      break;
    case "bye": {
      const error = errorOf({ code: frame.code ?? "session_closed", reason: frame.reason ?? "" });
      const why = `${conn.name}: session ended by the server (${error.code}: ${error.reason})`;
      client._connClosed(conn, why, error, "bye");
      break;
    }
    case "err":
      if (frame.code === "rate_limited" && typeof frame.re === "number") {
        client._rateLimited(frame.re, Number(frame.retry_after ?? 0));
        break;
      }
      client._emit("error", { code: String(frame.code), reason: String(frame.reason ?? "") });
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
        client._emit("error", { code: String(frame.code), reason: String(frame.reason ?? "") });
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
      client._emit("resync", { channel: String(frame.ch), epoch: String(frame.ep) });
      break;
    }
    case "unsubd": {
      const sub = client._subs.get(frame.ch);
      if (sub) {
        client._subs.delete(frame.ch);
        sub.end(errorOf(frame));
      }
      break;
    }
    default:
      break;
  }
}
