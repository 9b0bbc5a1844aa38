// @ts-check
/** Climbing back: probing better rungs while on a lower one, the lossless switch, the remembered rung. */

import { TransportClosed } from "./errors.js";
import { SESSION_GONE } from "./core.js";
import { pause } from "./connection.js";

/** @typedef {import("./driver.js").Client} Client */
/** @typedef {import("./rungs.js").Rung} Rung */
/** @typedef {import("./transport.js").Transport} Transport */

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
 * While on a lower rung, try the better ones with backoff; hand over on success.
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
  let delay = client.options.probeDelay;
  while (!signal.aborted && client.state === "connected" && client._conn) {
    await pause(client._clock, delay * (0.5 + 0.5 * client._random()), signal);
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
    delay = Math.min(delay * 2, client.options.probeMaxDelay);
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
  } catch (error) {
    candidate.close(); // a welcome that contradicts what we sent: stay where we are
    client._emit("probe", { rung: candidate.name, ok: false, reason: `${candidate.name}: ${String(error)}` });
    return;
  }
  client._conn = candidate;
  client._lastRung = candidate.name;
  client._opened = client._lastHeard = client._clock.now();
  client.policy.won(candidate.name);
  client._remember(candidate.name);
  client._stopTimers();
  old.close();
  client._attach(candidate);
  client._changed(old.name, candidate.name, reason);
  client._flush();
}

/** @param {Client} client */
export function memoryKey(client) {
  return `ladder.rung:${client.url}`;
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
