// @ts-check
/**
 * Changing what the client stands on: adopting a welcome (the same session resumed, or a new
 * one that unacknowledged messages move to), and climbing back to a better rung (probes, the
 * lossless switch, the remembered rung).
 */

import { carried } from "./reliable.js";
import { TransportClosed } from "./errors.js";
import { SESSION_GONE } from "./core.js";
import { pause } from "./connection.js";

/** @typedef {import("./driver.js").Client} Client */
/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./errors.js").LadderError} LadderError */
/** @typedef {import("./rungs.js").Rung} Rung */
/** @typedef {import("./transport.js").Transport} Transport */
/** @typedef {import("./driver.js").Waiter} Waiter */

/**
 * A transport won: take over its welcome, carry messages over, resubscribe. Resolves when
 * the connection (after any probe handovers) ends.
 * @param {Client} client
 * @param {Transport} conn
 * @param {string} reason
 * @returns {Promise<{conn: Transport, reason: string}>}
 */
export function adopt(client, conn, reason) {
  const welcome = conn.welcome;
  const ended = new Promise((resolve) => (client._onEnded = resolve));
  /** @type {[number, number][] | null} */
  let moved;
  const limits = { ...(welcome.lim ?? {}) };
  /** @type {Map<number, LadderError>} */
  const oversize = new Map();
  const named = client.peer.lost !== null; // the hello named the carried ids: keep exactly those
  /** @param {Frame} frame */
  const keep = (frame) => {
    if (!carried(frame)) return false; // subscriptions are renewed below
    const tooLarge = named ? null : client._tooLarge(frame, limits);
    if (tooLarge) oversize.set(Number(frame.i), tooLarge); // queued before the limit was known
    return !tooLarge;
  };
  client._ackPolicy().welcome({ lim: limits, rand: client._random() });
  try {
    moved = client.peer.welcome(welcome, keep);
    client._acked(); // (the welcome's ack may cover everything)
  } catch (error) {
    client._conn = conn;
    client._connClosed(conn, `${conn.name}: ${String(error)}`, null);
    return /** @type {Promise<{conn: Transport, reason: string}>} */ (ended);
  }
  const newSession = moved !== null;
  if (moved) client._rekey(moved, oversize);
  client._outbox?.changed(); // acknowledged messages go; a new session's numbering is kept
  client._conn = conn;
  client._limits = limits;
  client.sessionId = String(welcome.sid);
  client.user = welcome.u ?? null;
  client.clientId = welcome.cid ?? null;
  client._credentialsExpire(welcome.exp);
  const oldRung = client._lastRung;
  client._lastRung = conn.name;
  client._opened = client._lastHeard = client._clock.now();
  client._reconnect.welcomed();
  client.lastFailure = null;
  client._asked = null;
  client.state = "connected"; // (told after `open`, as below: protocol §9.10's order)
  client._remember(conn.name);
  client.policy.won(conn.name);
  client._probes.stand({ rung: conn.name });
  if (Array.isArray(welcome.tr)) client.policy.offered(welcome.tr.map(String));
  if (newSession && client._hadSession) {
    client._emit("session_lost", { reason: client._pendingLoss ?? "the server started a new session" });
  }
  client._pendingLoss = null;
  if (newSession) for (const sub of client._subs.values()) if (sub.active) client._submitSubscribe(sub, true);
  client._hadSession = true;
  client._emit("open", { transport: conn.name, sessionId: client.sessionId, resumed: !newSession });
  client._emit("state", { state: "connected", reason: "" });
  if (oldRung !== conn.name) client._changed(oldRung, conn.name, client._stepReason ?? reason);
  client._stepReason = null;
  client._readiness.connected();
  client._attach(conn);
  client._flush();
  if (client.state === "connected" && client._conn === conn && client.policy.above(conn.name).length) client._startProbe();
  return /** @type {Promise<{conn: Transport, reason: string}>} */ (ended);
}

/**
 * A new session renumbered the queued messages: move the waiting callbacks along. A pending
 * `sub` was dropped from the queue (it is sent again, from its position, by the
 * resubscription); anything else not carried over was lost with the old session.
 * @param {Client} client
 * @param {[number, number][]} moved
 * @param {Map<number, LadderError>} oversize messages dropped as larger than the server takes
 */
export function rekey(client, moved, oversize) {
  const waiting = client._waiting;
  /** @type {Map<number, Waiter>} */
  const rekeyed = new Map();
  for (const [old, renumbered] of moved) {
    const waiter = waiting.get(old);
    if (waiter) {
      rekeyed.set(renumbered, waiter);
      waiting.delete(old);
    }
  }
  client._waiting = rekeyed;
  for (const [id, waiter] of waiting) {
    const error = oversize.get(id);
    if (error) waiter.settle({ t: "err", code: error.code, reason: error.reason });
    else if (waiter.kind !== "sub") {
      waiter.settle({ t: "err", code: "session_closed", reason: "the session ended before the reply arrived" });
    }
  }
  for (const [id, error] of oversize) {
    if (!waiting.has(id)) client._emit("error", { code: error.code, reason: error.reason }); // an emit
  }
}

/**
 * @param {Client} client
 * @param {Rung | null} old
 * @param {Rung} rung
 * @param {string} reason
 */
export function changed(client, old, rung, reason) {
  client.lastChange = { old, new: rung, reason };
  client._emit("transport", { old, new: rung, reason });
}

/**
 * @param {Transport} conn
 * @param {Client} client
 */
export function attach(client, conn) {
  client._armWatchdog(conn);
  client._armProof(conn);
  conn.attach({
    onframes: (frames, size) => client._onFrames(conn, frames, size),
    onclose: (reason, error) => client._connClosed(conn, reason, error),
  });
}

/** @param {Client} client */
export function startProbe(client) {
  if (client._probeAbort) return;
  const abort = new AbortController();
  client._probeAbort = abort;
  client._probe(abort.signal).finally(() => {
    if (client._probeAbort === abort) client._probeAbort = null;
    const conn = client._conn;
    if (!abort.signal.aborted && conn && client.state === "connected" && client.policy.above(conn.name).length) {
      client._startProbe();
    }
  });
}

/**
 * While on a lower rung, try the better ones with backoff (the core's `ProbeSchedule`); hand
 * over on success.
 *
 * The current rung keeps delivering while a probe opens and proves itself: the probe is a
 * second transport on the same session. The server sends new frames on the newest transport
 * (a poll issued meanwhile takes them over again, replaying from its `ack`), and the pong of
 * the SSE proof on every transport, so a poll never takes the proof away. The client hands
 * over only once the probe's open() resolved (welcome, and for SSE the pong on its stream);
 * the session's sequence numbers drop whatever both transports delivered.
 * @param {Client} client
 * @param {AbortSignal} signal
 */
export async function probe(client, signal) {
  const on = client._conn?.name;
  const first = on ? client.policy.probeWait(on, client.options.probeDelay) : client.options.probeDelay;
  const schedule = client._probes; // (goes on across reconnects on the same rung)
  const cap = Math.max(first, client.options.probeMaxDelay);
  let wait = schedule.resume({ first, cap, rand: client._random(), now: client._clock.now() });
  while (!signal.aborted && client.state === "connected" && client._conn) {
    await pause(client._clock, wait, signal);
    const current = client._conn;
    if (signal.aborted || !current || client.state !== "connected") return;
    for (const rung of client.policy.above(current.name)) {
      /** @type {Transport} */
      let candidate;
      try {
        candidate = await client._open(rung, signal, "probe");
      } catch (error) {
        if (signal.aborted) return;
        const reason = error instanceof TransportClosed ? error.reason : String(error);
        client._emit("probe", { rung, ok: false, reason });
        if (error instanceof TransportClosed && error.error && SESSION_GONE.has(error.error.code)) {
          // Our session is gone: the current transport will learn it soon; stop probing.
          return;
        }
        continue;
      }
      if (client._conn !== current || client.state !== "connected" || signal.aborted) {
        candidate.close();
        return;
      }
      if (!candidate.welcome.resumed) {
        client._discard(candidate);
        continue;
      }
      client._emit("probe", { rung, ok: true, reason: `${rung}: round trip completed` });
      client._switch(current, candidate, `${rung} works again (probe succeeded)`);
      return;
    }
    wait = schedule.nextDelay({ rand: client._random(), now: client._clock.now() });
  }
}

/**
 * Hand over from `old` to `candidate` (already resumed on the same session): the server
 * replays from our acknowledgement on the new transport and we drop repeats; unacknowledged
 * messages are written again on it.
 * @param {Client} client
 * @param {Transport} old
 * @param {Transport} candidate
 * @param {string} reason
 */
export function switchTo(client, old, candidate, reason) {
  try {
    client.peer.welcome(candidate.welcome);
    client._acked();
  } catch (error) {
    candidate.close(); // a welcome that contradicts what we sent: stay where we are
    client._emit("probe", { rung: candidate.name, ok: false, reason: `${candidate.name}: ${String(error)}` });
    return;
  }
  client._conn = candidate;
  client._lastRung = candidate.name;
  client._opened = client._lastHeard = client._clock.now();
  client.policy.won(candidate.name);
  client._probes.stand({ rung: candidate.name });
  client._remember(candidate.name);
  client._stopTimers();
  client._credentialsExpire(candidate.welcome.exp);
  old.close();
  client._attach(candidate);
  client._changed(old.name, candidate.name, reason);
  client._flush();
}

/**
 * Where the winning rung is kept: per hub URL and allowed rungs (a client limited to short
 * polling says nothing of what the network lets through).
 * @param {Client} client
 */
export function memoryKey(client) {
  return `ladder.rung:${client.url}|${client.rungs.join(",")}`;
}

/** @param {Client} client */
export function recall(client) {
  try {
    return client._storage?.getItem(client._key()) ?? null;
  } catch {
    return null;
  }
}

/**
 * @param {Rung} rung
 * @param {Client} client
 */
export function remember(client, rung) {
  try {
    client._storage?.setItem(client._key(), rung);
  } catch {
    // storage full or disabled: the memory is only an optimisation
  }
}


export function sessionStore() {
  try {
    return typeof sessionStorage !== "undefined" ? sessionStorage : null;
  } catch {
    return null; // storage disabled
  }
}
