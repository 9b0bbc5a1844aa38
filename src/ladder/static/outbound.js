// @ts-check
/** Writing: the bounded queue of frames, batches under the server's limits, requests awaiting replies. */

import { noReply, Renewal, UpstreamRetry } from "./core.js";
import { errorOf, LadderError, requestOptions, TransportClosed } from "./errors.js";
import { UNORDERED } from "./http.js";
import { encodeMessage, tagBytes } from "./codec.js";
import { carriedFrom, DurableOutbox, overLimit, restoredMessage, snapshot } from "./outbox.js";
import { reportLater } from "./subscription.js";
import { seconds } from "./clock.js";

/** @typedef {import("./driver.js").Client} Client */
/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./subscription.js").Subscription} Subscription */
/** @typedef {import("./transport.js").Transport} Transport */
/** @typedef {import("./clock.js").Clock} Clock */

/** Bytes kept free in every batch under the server's limits (for the ack that rides along). */
const HEADROOM = 64;
const UTF8 = new TextEncoder();

/**
 * @param {Client} client
 * @param {Frame} frame
 * @param {((reply: Frame) => void) | null} settle
 * @param {boolean} [bounded]
 */
export function submit(client, frame, settle, bounded = true) {
  client._usable();
  // Refused before it takes an id: a message that cannot travel must not hold back the rest.
  const tooLarge = client._tooLarge({ ...frame, i: client.peer.outbox.last + 1 }, client._limits);
  if (tooLarge) throw tooLarge;
  const overflow = bounded ? overLimit(client.peer, frame, client.outboxBytes) : null;
  if (overflow) throw overflow;
  const id = client.peer.submit(frame, bounded);
  if (settle) client._waiting.set(id, { settle, kind: frame.t });
  client._outbox?.changed();
  return id;
}

/**
 * Drop the queued messages `drop` picks that were never written (the tab of a shared
 * connection that sent them closed): their requests fail with `closed`, and the durable
 * outbox forgets them. Returns how many were dropped.
 * @param {Client} client
 * @param {(frame: Frame) => boolean} drop
 */
export function withdraw(client, drop) {
  const { removed, moved } = client.peer.withdraw(drop);
  if (!removed.length) return 0;
  const renumbered = new Map(moved);
  /** @type {Map<number, import("./driver.js").Waiter>} */
  const waiting = new Map();
  /** @type {import("./driver.js").Waiter[]} */
  const dropped = [];
  for (const [id, waiter] of client._waiting) {
    if (removed.includes(id)) dropped.push(waiter);
    else waiting.set(renumbered.get(id) ?? id, waiter);
  }
  client._waiting = waiting;
  for (const waiter of dropped) waiter.settle({ t: "err", code: "closed", reason: "the client was closed before it was sent" });
  client._outbox?.changed();
  return removed.length;
}

/**
 * Open the durable outbox (unless it is off) and take over what a previous page of this tab,
 * or a tab that is gone, left: those messages go first, and the first hello names the
 * session they were numbered in. Without IndexedDB the outbox is kept in memory, and the
 * client says so (`outboxStorage`, `outboxReason`, a console warning).
 * @param {Client} client
 */
export async function openOutbox(client) {
  if (client.outboxStorage === "off") return;
  const { storage, factory, locks } = client._outboxOptions;
  let box;
  try {
    box = await DurableOutbox.open({ url: client.url, storage, factory, locks, random: client._random });
  } catch (error) {
    client.outboxStorage = "off";
    client.outboxReason = `the outbox could not be opened: ${String(error)}`;
    console.warn(`ladder: ${client.outboxReason}`);
    return;
  }
  if (client._isClosed()) {
    await box.close({ forget: false });
    return;
  }
  client.outboxStorage = box.store.kind;
  client.outboxReason = box.reason;
  if (box.reason) console.warn(`ladder: ${box.reason}`);
  try {
    const record = await box.claim(locks);
    if (client._isClosed()) {
      // Closed meanwhile: what was taken over stays kept, for the next client to take.
      await box.close({ forget: false });
      return;
    }
    if (record && client.peer.sid === null && client.peer.lost === null) {
      const { lost, ids, frames, user } = carriedFrom(record);
      client._rekey(client.peer.restore(lost, ids, frames, user), new Map());
      client.restored = frames.length;
      client.restoredMessages = frames.map(restoredMessage);
      client.restoredFrom = record.owner;
      if (frames.length) client._emit("restored", { count: frames.length, messages: client.restoredMessages });
    }
  } catch (error) {
    console.warn(`ladder: the outbox left by a previous page could not be read: ${String(error)}`);
  }
  client._outbox = box;
  box.onFallBack = () => {
    client.outboxStorage = "memory";
    client.outboxReason = box.reason;
  };
  box.follow(() => snapshot(client.peer, box.owner, client.url));
  box.changed();
}

/**
 * The page is going away for good (`pagehide`, not into the back/forward cache): end the
 * session like `close()`, but keep unacknowledged messages for the next page. Resolves once
 * they are written and the outbox's lock is let go (the next page or tab can claim them),
 * not waiting for the `bye` to leave.
 * @param {Client} client
 * @returns {Promise<void>}
 */
export function leave(client) {
  client._outbox?.stash();
  client._leaving = true;
  client.close().catch(reportLater);
  return client._outboxReleased;
}

/**
 * `frame_too_large` when the encoded message exceeds the server's `lim.frame` (less
 * HEADROOM); throws a TypeError when it cannot be encoded at all.
 * @param {Frame} frame
 * @param {Record<string, any>} limits
 * @returns {LadderError | null}
 */
export function tooLarge(frame, limits) {
  const size = UTF8.encode(encodeMessage(frame)).length;
  const limit = limits.frame;
  if (typeof limit === "number" && size > limit - HEADROOM) {
    return new LadderError(
      "frame_too_large",
      `this ${frame.t} is ${size} bytes encoded; this client sends at most ${limit - HEADROOM} (the server's frame limit, ${limit}, less ${HEADROOM} for the ack that rides along): send less, or raise the server's Limits(max_frame_size=)`,
    );
  }
  return null;
}

/**
 * @param {Client} client
 * @param {Frame} frame
 * @param {number | null | undefined} timeout
 * @returns {Promise<any>}
 */
export function request(client, frame, timeout) {
  return new Promise((resolve, reject) => {
    /** @type {any} */
    let timer = null;
    let done = false;
    /** @param {Frame} reply */
    const settle = (reply) => {
      if (done) return;
      done = true;
      client._clock.clearTimeout(timer);
      if (reply.t === "err") reject(errorOf(reply));
      else resolve(reply.d);
    };
    try {
      client._submit(frame, settle);
    } catch (error) {
      reject(error);
      return;
    }
    if (timeout && Number.isFinite(timeout)) {
      timer = client._clock.setTimeout(() => {
        // The message stays queued (it may still be applied); only the wait ends.
        // (a client made with new Client() and never started said only "no reply")
        const never = client._running ? "" : " (this client was never started: use connect(url), or call client.start())";
        settle({ t: "err", code: "timeout", reason: `${noReply({ timeout })}${never}` });
      }, timeout);
    }
    client._flush();
  });
}

/**
 * Ask for `sub`; a `renewal` (in a new session, or sent again after a refusal for now) is
 * queued even past `maxQueue`, and takes over a retry still waiting.
 * @param {Client} client
 * @param {Subscription} sub
 * @param {boolean} [renewal]
 */
export function submitSubscribe(client, sub, renewal = false) {
  sub.cancelRetry();
  client._submit(sub.subscribeFrame(), (reply) => {
    if (client._subs.get(sub.channel) !== sub || !sub.active) return; // unsubscribed meanwhile
    if (reply.t === "err") {
      subRefused(client, sub, errorOf(reply), renewal);
      return;
    }
    const again = sub.subscribedOnce;
    sub._renewal?.confirmed();
    const result = sub.confirmed(reply.d ?? {});
    if (again) client._emit("resubscribed", { channel: sub.channel, recovered: result.recovered });
    if (!result.recovered) client._emit("resync", { channel: sub.channel, epoch: result.epoch, offset: sub.offset });
  }, !renewal);
  client._flush();
}

/**
 * The server refused `sub`: the core's `Renewal` decides whether it ends or is sent again
 * later (a renewal of a subscription confirmed before, refused for now).
 * @param {Client} client
 * @param {Subscription} sub
 * @param {LadderError} error
 * @param {boolean} renewal
 */
function subRefused(client, sub, error, renewal) {
  if (client._isClosed()) {
    // (the client closed or gave up: it said so itself)
    client._subs.delete(sub.channel);
    sub.end(error);
    return;
  }
  sub._renewal ??= new Renewal({ base: client.options.backoffBase, cap: client.options.backoffMax });
  const step = sub._renewal.refused({ channel: sub.channel, code: error.code, reason: error.reason, rand: client._random(), renewal: renewal && sub.subscribedOnce });
  if ("end" in step) {
    client._subs.delete(sub.channel);
    sub.end(error);
    if (step.tell) client._emit("error", { code: error.code, reason: step.tell });
    return;
  }
  if (step.tell) client._emit("error", { code: error.code, reason: step.tell });
  const timer = client._clock.setTimeout(() => {
    sub._retry = null;
    submitSubscribe(client, sub, true);
  }, step.retry_in);
  sub.retryLater(() => client._clock.clearTimeout(timer));
}

/**
 * @param {Subscription} sub
 * @param {Client} client
 */
export async function unsubscribe(client, sub) {
  if (client._subs.get(sub.channel) !== sub || !sub.active) return;
  client._subs.delete(sub.channel);
  const held = !sub.waitingToRenew; // (a renewal refused for now: the server holds none)
  sub.end();
  if (client.state === "closed" || !held) return;
  client._submit({ t: "unsub", ch: sub.channel }, null);
  client._flush();
}

/**
 * Resolves once the server has acknowledged every message sent or queued so far (a pending ack
 * of ours goes out at once too): what `close()` would drop is then applied. Rejects with
 * `LadderError("timeout")` after `timeout` ms (the messages stay queued; null: as long as it
 * takes), and with the error the client ends with.
 * @param {Client} client
 * @param {{timeout?: number | null}} [options]
 * @returns {Promise<void>}
 */
export function flushed(client, options = {}) {
  const { timeout = null } = requestOptions("flush", options);
  client._usable();
  const conn = client._conn;
  if (conn && !conn.implicitAck && client.state === "connected") {
    const ack = client._takeAck();
    if (ack) client._control(conn, [ack]);
  }
  if (client.peer.outbox.size === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    /** @type {ReturnType<Clock["setTimeout"]> | null} */
    let timer = null;
    /** @param {LadderError | null} error */
    const done = (error) => {
      if (timer !== null) client._clock.clearTimeout(timer);
      if (error) reject(error);
      else resolve();
    };
    if (timeout !== null) {
      timer = client._clock.setTimeout(() => {
        timer = null;
        client._drained = client._drained.filter((waiting) => waiting !== done);
        done(new LadderError("timeout", `flush: ${client.peer.outbox.size} messages not acknowledged within ${seconds(timeout)}`));
      }, timeout);
    }
    client._drained.push(done);
  });
}

/**
 * Called as messages are acknowledged: once none is left, pacing ends and waiting flushes resolve.
 * @param {Client} client
 */
export function acked(client) {
  if (client.peer.outbox.size !== 0) return;
  client._pacer.drained();
  for (const done of client._drained.splice(0)) done(null);
}

/**
 * Write every queued message on the current transport (one writer at a time): paced after a
 * rate refusal, and in batches the server's limits take (`lim.frame` per WebSocket message,
 * `lim.post` per POST), so a long offline queue goes out in several writes. A failed write is
 * retried or drops the transport as the core's `UpstreamRetry` decides.
 * @param {Client} client
 */
export async function flush(client) {
  if (client._flushing) return;
  client._flushing = true;
  try {
    while (client.state === "connected" && client._conn) {
      const conn = client._conn;
      const box = client._outbox;
      if (box && !box.closed && box.pending) {
        // Written ahead: a message reaches the wire only once kept with the session it is
        // numbered in, so a page that dies now leaves a record naming the right session.
        await box.saved();
        continue;
      }
      const { count, wait } = client._pacer.allowance(client._clock.now(), conn.separateUpstream);
      const cursor = client.peer.cursor;
      const frames = client._batch(conn, count);
      client._pacer.wrote(frames.length);
      if (wait > 0 && client.peer.outbox.last > client.peer.cursor) client._flushLater(wait);
      if (!frames.length) break;
      // The ack goes first: a server that stops reading a batch (a message over its rate) has read it.
      const ackedOut = client.peer.ackedOut;
      const ack = conn.implicitAck ? null : client._takeAck();
      if (ack) frames.unshift(ack);
      try {
        await conn.send(frames);
        client._retry.count.sent();
      } catch (error) {
        if (conn !== client._conn) continue; // a newer transport took over; its welcome rewound the cursor
        client._pacer.returned(frames.filter((frame) => "i" in frame).length);
        // Kept across flushes: a paced flush ends between writes, and a count started again
        // at each never grew its pauses.
        if (client._retry.conn !== conn) client._retry = { conn, count: new UpstreamRetry() };
        const retry = client._retry.count;
        const code = error instanceof TransportClosed ? (error.error?.code ?? null) : null;
        const tooLarge = error instanceof TransportClosed ? error.tooLarge : null;
        const after = error instanceof TransportClosed ? error.error?.retryAfter : undefined;
        const retryAfter = after === undefined ? null : after * 1000;
        const alone = frames.filter((frame) => !UNORDERED.has(String(frame.t))).length <= 1;
        const step = retry.failed({ separateUpstream: conn.separateUpstream, code, rand: client._random(), tooLarge, alone, retryAfter });
        if ("give_up" in step) {
          client._giveUp(new LadderError("frame_too_large", `${conn.name}: ${step.give_up}`), true);
          break;
        }
        client.peer.cursor = Math.min(client.peer.cursor, cursor);
        if (ack) client.peer.ackedOut = Math.min(client.peer.ackedOut, ackedOut);
        if ("shrink" in step) {
          client._postCap = step.shrink;
          console.info(`ladder: ${String(error instanceof TransportClosed ? error.reason : error)}; messages go in POSTs of at most ${step.shrink} bytes`);
          continue;
        }
        if ("drop" in step) {
          // A transport that cannot send is broken: the messages stay queued for the next one.
          client._failed(conn, error);
          break;
        }
        // A failed POST: the downstream may well be alive, so write the same messages again.
        await new Promise((resolve) => client._clock.setTimeout(() => resolve(undefined), step.retry_in));
      }
    }
  } finally {
    client._flushing = false;
  }
}

/**
 * The next messages to write: at most `count` (null: any number), within the byte limit.
 * @param {Client} client
 * @param {Transport} conn
 * @param {number | null} count
 * @returns {Frame[]}
 */
export function batch(client, conn, count) {
  let items = client.peer.outbox.after(client.peer.cursor);
  if (count !== null) items = items.slice(0, count);
  if (!items.length) return [];
  const limit = client._limits[conn.name === "websocket" ? "frame" : "post"];
  let budget = (typeof limit === "number" ? limit : 65_536) - HEADROOM;
  if (conn.separateUpstream && client._postCap !== null) budget = Math.min(budget, client._postCap); // (a proxy's, found by a 413)
  /** @type {Frame[]} */
  const batch = [];
  let size = 0;
  for (const [id, frame] of items) {
    if (items.length > 1) {
      size += UTF8.encode(JSON.stringify(frame, tagBytes)).length + 1;
      if (batch.length && size > budget) break;
    }
    batch.push(frame);
    client.peer.cursor = id;
  }
  return batch;
}

/**
 * @param {number} wait ms until pacing lets the next message go
 * @param {Client} client
 */
export function flushLater(client, wait) {
  if (client._paceTimer !== null) return;
  client._paceTimer = client._clock.setTimeout(() => {
    client._paceTimer = null;
    client._flush();
  }, wait);
}

/**
 * The server refused message `id` for its rate without applying it (nor anything after it in
 * that batch): write it again after `retryAfter` seconds, paced.
 * @param {Client} client
 * @param {number} id
 * @param {number} retryAfter seconds
 */
export function rateLimited(client, id, retryAfter) {
  if (id <= client.peer.outbox.acked) return; // stale: applied since
  client.peer.cursor = Math.min(client.peer.cursor, id - 1);
  client._pacer.refused(retryAfter * 1000, client._clock.now());
  client._flushLater(Math.max(1, retryAfter * 1000));
}

/**
 * @param {Client} client
 * @param {Transport} conn
 * @param {unknown} error
 */
export function failed(client, conn, error) {
  if (error instanceof TransportClosed) client._connClosed(conn, error.reason, error.error);
  else client._connClosed(conn, `${conn.name}: ${String(error)}`, null);
}

/**
 * Send control frames (acks, pongs, pings) on `conn` now.
 * @param {Client} client
 * @param {Transport} conn
 * @param {Frame[]} frames
 */
export function control(client, conn, frames) {
  conn.send(frames).catch((error) => client._failed(conn, error));
}
