// @ts-check
/**
 * Ladder browser client: a plain ES module (no build step), served at `<mount>/client.js`.
 *
 *     import { connect } from "/ladder/client.js";
 *     const client = connect("/ladder", { token: "alice" });
 *     client.on("transport", (e) => console.log(`${e.old} -> ${e.new}: ${e.reason}`));
 *     client.subscribe("room:lobby", (pub) => console.log(pub.offset, pub.data), { recent: 50 });
 *     const result = await client.call("chat.send", { room: "lobby", text: "hi" }, { timeout: 5000 });
 *
 * It implements protocol version 1 (docs/protocol.md) with the same ladder and guarantees as
 * the Python client (`ladder.client`): a staggered race on connect, broken-rung detection
 * (including an SSE stream a proxy buffers), probing back up with a lossless handover,
 * full-jitter backoff, an offline queue of numbered messages, resubscription with recovery.
 *
 * The module has two halves. The first is sans-I/O — the reliable stream (`Inbox`, `Outbox`,
 * `PeerState`), the rung policy, backoff, the race schedule, the silence verdict, channel
 * positions, the JSON codec — plain classes and functions with no timers and no sockets, tested
 * under Node. The second half drives them with `WebSocket`, `EventSource`, `fetch` and timers.
 */

export const PROTOCOL_VERSION = 1;

/** Every rung, best first. */
export const TRANSPORTS = /** @type {const} */ (["websocket", "sse", "longpoll", "poll"]);

/** @typedef {"websocket" | "sse" | "longpoll" | "poll"} Rung */
/** @typedef {Record<string, any>} Frame */

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** A refusal with a stable `code` (switch on it) and a `reason` for people. */
export class LadderError extends Error {
  /**
   * @param {string} code
   * @param {string} [reason]
   * @param {number} [retryAfter] seconds, for `rate_limited`
   */
  constructor(code, reason = "", retryAfter) {
    super(reason ? `${code}: ${reason}` : code);
    this.name = "LadderError";
    /** @type {string} */
    this.code = code;
    /** @type {string} */
    this.reason = reason;
    /** @type {number | undefined} */
    this.retryAfter = retryAfter;
  }
}

/** A transport cannot be used any more; `reason` says why (for logs and events). */
export class TransportClosed extends Error {
  /**
   * @param {string} reason
   * @param {LadderError | null} [error] the server's refusal, when it sent one
   */
  constructor(reason, error = null) {
    super(reason);
    this.name = "TransportClosed";
    this.reason = reason;
    this.error = error;
  }
}

/** No rung opened. `failures` maps each rung tried to why it failed. */
export class AllRungsFailed extends Error {
  /** @param {Partial<Record<Rung, TransportClosed>>} failures */
  constructor(failures) {
    const reasons = Object.values(failures).map((f) => f?.reason);
    super(reasons.join("; ") || "no rung to try");
    this.name = "AllRungsFailed";
    this.failures = failures;
  }

  /** The server's own refusals among the failures (for example `unknown_session`). */
  errors() {
    /** @type {LadderError[]} */
    const out = [];
    for (const failure of Object.values(this.failures)) if (failure?.error) out.push(failure.error);
    return out;
  }
}

/**
 * An error frame or body as a LadderError.
 * @param {Frame} frame
 */
export function errorOf(frame) {
  const retry = typeof frame.retry_after === "number" ? frame.retry_after : undefined;
  return new LadderError(String(frame.code ?? "internal"), String(frame.reason ?? ""), retry);
}

// ---------------------------------------------------------------------------------------------
// JSON codec: a batch is frames joined by "\n"; bytes travel as {"$b": base64} (protocol §2)
// ---------------------------------------------------------------------------------------------

/** @param {Uint8Array} bytes */
function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** @param {string} text */
function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * @param {string} _key
 * @param {unknown} value
 */
function tagBytes(_key, value) {
  if (value instanceof ArrayBuffer) return { $b: toBase64(new Uint8Array(value)) };
  if (ArrayBuffer.isView(value)) {
    return { $b: toBase64(new Uint8Array(value.buffer, value.byteOffset, value.byteLength)) };
  }
  return value;
}

/**
 * @param {string} _key
 * @param {any} value
 */
function untagBytes(_key, value) {
  if (value !== null && typeof value === "object" && !Array.isArray(value) && typeof value.$b === "string") {
    const keys = Object.keys(value);
    if (keys.length === 1) return fromBase64(value.$b);
  }
  return value;
}

/**
 * Encode frames as one JSON batch (Uint8Array and ArrayBuffer values become `{"$b": ...}`).
 * @param {Frame[]} frames
 */
export function encodeBatch(frames) {
  return frames.map((frame) => JSON.stringify(frame, tagBytes)).join("\n");
}

const CARRIED = "null, booleans, numbers, strings, bytes (Uint8Array), arrays and plain objects";

/**
 * Why `value` cannot be sent, naming its type and where it sits (only called once
 * JSON.stringify failed, so the walk costs nothing on the happy path).
 * @param {unknown} value
 * @param {string} where
 * @returns {TypeError}
 */
export function unencodable(value, where = "") {
  /** @type {Set<object>} */
  const path = new Set();
  /**
   * @param {unknown} item
   * @param {string} at
   * @returns {string | null}
   */
  const find = (item, at) => {
    if (typeof item === "bigint") return `a BigInt${at ? ` at ${at}` : ""}`;
    if (item === null || typeof item !== "object") return null;
    if (item instanceof ArrayBuffer || ArrayBuffer.isView(item)) return null;
    const name = item.constructor?.name ?? "Object";
    if (path.has(item)) return `${/^[aeiou]/i.test(name) ? "an" : "a"} ${name} that contains itself${at ? ` at ${at}` : ""}`;
    if (typeof (/** @type {any} */ (item).toJSON) === "function") return null;
    path.add(item);
    try {
      for (const [key, child] of Object.entries(item)) {
        const found = find(child, Array.isArray(item) ? `${at}[${key}]` : `${at}.${key}`);
        if (found) return found;
      }
      return null;
    } finally {
      path.delete(item);
    }
  };
  const found = find(value, where);
  return new TypeError(`cannot send ${found ?? "this value"}: Ladder messages carry ${CARRIED}`);
}

/**
 * Encode one client message, or throw a TypeError naming what cannot be sent (a BigInt, an
 * object that contains itself). Done before the message takes an id: a numbered message that
 * never reaches the server would hold back every message after it.
 * @param {Frame} frame
 * @returns {string}
 */
export function encodeMessage(frame) {
  try {
    return JSON.stringify(frame, tagBytes);
  } catch {
    throw unencodable(frame.d, "d");
  }
}

/**
 * Decode a JSON batch (`{"$b": ...}` values become Uint8Array).
 * @param {string} text
 * @returns {Frame[]}
 */
export function decodeBatch(text) {
  /** @type {Frame[]} */
  const frames = [];
  for (const line of text.split("\n")) {
    if (line.trim()) frames.push(JSON.parse(line, untagBytes));
  }
  return frames;
}

// ---------------------------------------------------------------------------------------------
// The reliable stream (mirror of ladder.protocol.reliable and ladder.protocol.peer)
// ---------------------------------------------------------------------------------------------

/**
 * Numbered items kept until the peer acknowledges them cumulatively.
 * @template T
 */
export class Outbox {
  /** @param {number} maxItems */
  constructor(maxItems) {
    this.maxItems = maxItems;
    /** Number of the newest item (0 before the first). */
    this.last = 0;
    /** Highest number acknowledged; everything up to it is forgotten. */
    this.acked = 0;
    /** @type {T[]} */
    this._items = [];
  }

  get size() {
    return this._items.length;
  }

  /**
   * Number and keep `item`; `queue_full` past the bound (`bounded = false`: kept anyway, for
   * the few items the protocol itself must send).
   * @param {T} item
   * @param {boolean} [bounded]
   */
  push(item, bounded = true) {
    if (bounded && this._items.length >= this.maxItems) {
      throw new LadderError("queue_full", `${this._items.length} messages are waiting to be sent or acknowledged`);
    }
    this._items.push(item);
    this.last += 1;
    return this.last;
  }

  /**
   * Forget everything numbered `upto` or lower.
   * @param {number} upto
   */
  ack(upto) {
    if (upto > this.last) throw new LadderError("bad_frame", `ack ${upto} is beyond the last sent number ${this.last}`);
    const count = upto - this.acked;
    if (count <= 0) return 0;
    this._items.splice(0, count);
    this.acked = upto;
    return count;
  }

  /**
   * Items numbered above `cursor` (and above the ack), oldest first, as [number, item].
   * @param {number} cursor
   * @returns {[number, T][]}
   */
  after(cursor) {
    const start = Math.max(cursor, this.acked);
    return this._items.slice(start - this.acked).map((item, k) => /** @type {[number, T]} */ ([start + k + 1, item]));
  }

  /** Take every kept item out and restart numbering at 1 (for a brand-new session). */
  renumber() {
    const items = this._items;
    this._items = [];
    this.last = 0;
    this.acked = 0;
    return items;
  }
}

/**
 * Hands each number out once and in order; early arrivals wait (within a window) for the gap.
 * @template T
 */
export class Inbox {
  constructor(window = 100_000) {
    this.window = window;
    /** Every number up to this one has been handed out; higher ones have not. */
    this.applied = 0;
    /** @type {Map<number, T>} */
    this._early = new Map();
  }

  /**
   * Accept `item` numbered `number`; return what is now ready, in order (repeats yield nothing).
   * @param {number} number
   * @param {T} item
   * @returns {T[]}
   */
  offer(number, item) {
    if (number <= this.applied || this._early.has(number)) return [];
    if (number > this.applied + this.window) {
      throw new LadderError("too_far_ahead", `message ${number} arrived while waiting for ${this.applied + 1}`);
    }
    if (number !== this.applied + 1) {
      this._early.set(number, item);
      return [];
    }
    const ready = [item];
    this.applied = number;
    while (this._early.has(this.applied + 1)) {
      this.applied += 1;
      ready.push(/** @type {T} */ (this._early.get(this.applied)));
      this._early.delete(this.applied);
    }
    return ready;
  }

  /** How many early items wait for a gap to fill. */
  get waiting() {
    return this._early.size;
  }

  reset() {
    this.applied = 0;
    this._early.clear();
  }
}

/**
 * Whether an unacknowledged message moves to a new session (subscriptions are renewed instead).
 * @param {Frame} frame
 */
export function carried(frame) {
  return frame.t !== "sub" && frame.t !== "unsub";
}

/**
 * Ascending message ids as ranges, the hello's `pids` (protocol §3.1): [3, 4, 5, 8] is "3-5,8".
 * @param {number[]} ids
 */
export function formatIds(ids) {
  /** @type {string[]} */
  const parts = [];
  let start = ids[0];
  ids.forEach((id, k) => {
    if (ids[k + 1] === id + 1) return;
    parts.push(start === id ? String(id) : `${start}-${id}`);
    start = ids[k + 1];
  });
  return parts.join(",");
}

/**
 * Client bookkeeping for one logical connection, across sessions and transports: numbers the
 * client's messages (`i`) and keeps them until acknowledged; drops server frames (`s`) already
 * delivered. A welcome says where the server stands (protocol §1, §3.2).
 */
export class PeerState {
  constructor(maxQueue = 1000) {
    /** @type {string | null} */
    this.sid = null;
    /** @type {string | null} resume token */
    this.token = null;
    /** @type {[string, string] | null} the session lost last (id, resume token), named by the next hello */
    this.lost = null;
    /** @type {Inbox<Frame>} */
    this.inbox = new Inbox();
    /** @type {Outbox<Frame>} */
    this.outbox = new Outbox(maxQueue);
    /** Highest message id written on the current transport. */
    this.cursor = 0;
    /** Highest server sequence number the server has been told we have. */
    this.ackedOut = 0;
  }

  /**
   * The hello for a new transport: resumes the session when there is one.
   * @param {string | null} [token]
   */
  hello(token) {
    /** @type {Frame} */
    const frame = { t: "hello", v: PROTOCOL_VERSION };
    if (this.sid !== null) {
      frame.sid = this.sid;
      frame.rt = this.token;
      frame.ack = this.inbox.applied;
    } else if (this.lost !== null) {
      const ids = this.outbox.after(0).filter(([, item]) => carried(item)).map(([i]) => i);
      if (ids.length > 0) Object.assign(frame, { psid: this.lost[0], prt: this.lost[1], pids: formatIds(ids) });
    }
    if (token != null) frame.tok = token;
    return frame;
  }

  /**
   * Adopt a welcome. Returns null for a resumed session; for a new one, the [old id, new id]
   * pairs of the messages carried over (`keep` filters which are).
   * @param {Frame} welcome
   * @param {(frame: Frame) => boolean} [keep]
   * @returns {[number, number][] | null}
   */
  welcome(welcome, keep = () => true) {
    if (welcome.sid === this.sid && welcome.resumed) {
      const ack = Number(welcome.ack ?? 0);
      if (ack > this.outbox.last) {
        throw new LadderError("bad_frame", `server acknowledged ${ack} of ${this.outbox.last} messages`);
      }
      this.outbox.ack(ack);
      this.cursor = ack;
      this.ackedOut = this.inbox.applied;
      return null;
    }
    this.sid = String(welcome.sid);
    this.token = String(welcome.rt);
    this.lost = null;
    this.inbox.reset();
    this.ackedOut = 0;
    this.cursor = 0;
    /** @type {[number, number][]} */
    const moved = [];
    const firstOld = this.outbox.acked + 1;
    this.outbox.renumber().forEach((frame, offset) => {
      if (keep(frame)) {
        frame.i = this.outbox.push(frame);
        moved.push([firstOld + offset, frame.i]);
      }
    });
    return moved;
  }

  /** The session is gone for good; the next hello starts a new one. */
  forgetSession() {
    if (this.sid !== null && this.token !== null) this.lost = [this.sid, this.token];
    this.sid = null;
    this.token = null;
  }

  /**
   * Number a message and keep it until acknowledged (`queue_full` past the bound).
   * `bounded = false` is for the subscriptions a new session renews: the carried messages may
   * fill the queue, and refusing the renewal would end a subscription nobody left.
   * @param {Frame} frame
   * @param {boolean} [bounded]
   */
  submit(frame, bounded = true) {
    frame.i = this.outbox.last + 1;
    this.outbox.push(frame, bounded);
    return /** @type {number} */ (frame.i);
  }

  /** Messages not yet written on the current transport, oldest first. */
  unsent() {
    const items = this.outbox.after(this.cursor);
    if (items.length) this.cursor = items[items.length - 1][0];
    return items.map(([, frame]) => frame);
  }

  /**
   * The server applied every message up to `upto`.
   * @param {number} upto
   */
  onAck(upto) {
    this.outbox.ack(Math.min(upto, this.outbox.last));
  }

  /**
   * A sequenced frame: the frames now deliverable, in order (repeats dropped).
   * @param {Frame} frame
   */
  receive(frame) {
    return this.inbox.offer(Number(frame.s), frame);
  }

  /**
   * An ack to send, once at least `every` frames arrived since the last one.
   * @returns {Frame | null}
   */
  ackFrame(every = 1) {
    const applied = this.inbox.applied;
    if (applied > this.ackedOut && applied - this.ackedOut >= every) {
      this.ackedOut = applied;
      return { t: "ack", s: applied };
    }
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// The ladder as bookkeeping: rung policy, backoff, race schedule, silence (no I/O, no clock)
// ---------------------------------------------------------------------------------------------

/** The ladder's state for one client: the floor it stands on and its recent cuts. */
export class RungPolicy {
  /**
   * @param {readonly Rung[]} rungs allowed rungs, best first
   * @param {{cutLimit?: number, stableAfter?: number, start?: string | null}} [options]
   */
  constructor(rungs, { cutLimit = 3, stableAfter = 10_000, start = null } = {}) {
    if (!rungs.length) throw new Error("at least one transport is needed");
    this.rungs = [...rungs];
    this.cutLimit = cutLimit;
    this.stableAfter = stableAfter;
    const at = start === null ? -1 : this.rungs.indexOf(/** @type {Rung} */ (start));
    this.floor = at >= 0 ? at : 0;
    /** @type {Map<Rung, number>} */
    this._cuts = new Map(this.rungs.map((rung) => [rung, 0]));
  }

  /** @param {Rung} rung */
  index(rung) {
    return this.rungs.indexOf(rung);
  }

  get current() {
    return this.rungs[this.floor];
  }

  /** Rungs to race on (re)connect: from the floor down. */
  candidates() {
    return this.rungs.slice(this.floor);
  }

  /**
   * Better rungs than `rung`, best first: what a probe tries.
   * @param {Rung} rung
   */
  above(rung) {
    return this.rungs.slice(0, Math.max(0, this.index(rung)));
  }

  /**
   * A race (or a probe) was won on `rung`: stand there.
   * @param {Rung} rung
   */
  won(rung) {
    this.floor = this.index(rung);
  }

  /**
   * A connection on `rung` ended after `lived` ms. Returns the reason for stepping down when
   * this makes `cutLimit` short-lived connections in a row (a proxy cutting streams).
   * @param {Rung} rung
   * @param {number} lived
   * @param {string} reason
   * @returns {string | null}
   */
  dropped(rung, lived, reason) {
    if (lived >= this.stableAfter) {
      this._cuts.set(rung, 0);
      return null;
    }
    const cuts = (this._cuts.get(rung) ?? 0) + 1;
    this._cuts.set(rung, cuts);
    const position = this.index(rung);
    if (cuts >= this.cutLimit && position + 1 < this.rungs.length && this.floor <= position) {
      this._cuts.set(rung, 0);
      this.floor = position + 1;
      return `${rung}: cut ${this.cutLimit} times in a row, each within ${seconds(this.stableAfter)} of opening (last: ${reason})`;
    }
    return null;
  }
}

/**
 * A delay drawn uniformly from [0, min(cap, base * 2^attempt)) ms: full jitter spreads a crowd
 * of clients that lost the same server over the whole window.
 * @param {number} attempt
 * @param {number} base
 * @param {number} cap
 * @param {() => number} [random]
 */
export function fullJitter(attempt, base, cap, random = Math.random) {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 32));
  return random() * ceiling;
}

/** Failed races retried at once before backing off (behind a round-robin balancer the next
 * request usually reaches another node). */
export const RETRIES_AT_ONCE = 2;

/**
 * How long to wait before the next race, ms (protocol §9.4). `failures` counts the races that
 * failed since the last welcome: 0 right after a connection ended (a short pause in
 * [0, base)), then `RETRIES_AT_ONCE` immediate retries, then full jitter doubling from `base` up
 * to `cap`. Every welcome starts the count again: frequent cuts or one bad node among good ones
 * never grow the delay.
 * @param {number} failures
 * @param {number} base
 * @param {number} cap
 * @param {() => number} [random]
 */
export function reconnectDelay(failures, base, cap, random = Math.random) {
  if (failures <= 0) return fullJitter(0, base, cap, random);
  if (failures <= RETRIES_AT_ONCE) return 0;
  return fullJitter(failures - RETRIES_AT_ONCE, base, cap, random);
}

/**
 * The pace of upstream messages (protocol §4, "rate limits"): unlimited until the server
 * refuses a message for its rate (`err` `rate_limited` with `re` and `retry_after`, the id not
 * used up). Then: wait `retry_after`, write one message per `interval` (the largest
 * `retry_after` heard since pacing began), the ones that became due meanwhile together, until
 * every message was acknowledged. Mirror of `ladder.client.pacing`. Times in ms.
 */
export class Pacer {
  constructor() {
    /** ms between messages while pacing; 0 when not pacing */
    this.interval = 0;
    this.resumeAt = 0;
    this._due = 0;
    this._stamp = 0;
  }

  get pacing() {
    return this.interval > 0;
  }

  /**
   * @param {number} retryAfter ms
   * @param {number} now
   */
  refused(retryAfter, now) {
    const wait = Math.max(retryAfter, 1);
    this.interval = Math.max(this.interval, wait);
    this.resumeAt = Math.max(this.resumeAt, now + wait);
    this._stamp = this.resumeAt;
    this._due = 1;
  }

  /**
   * How many messages may be written now (null: any number) and, when none may, how many ms
   * until the next one may.
   * @param {number} now
   * @returns {{count: number | null, wait: number}}
   */
  allowance(now) {
    if (!this.pacing) return { count: null, wait: 0 };
    if (now < this.resumeAt) return { count: 0, wait: this.resumeAt - now };
    this._due = Math.min(64, this._due + (now - this._stamp) / this.interval);
    this._stamp = now;
    const count = Math.floor(this._due);
    return count ? { count, wait: 0 } : { count: 0, wait: (1 - this._due) * this.interval };
  }

  /** @param {number} count */
  wrote(count) {
    if (this.pacing) this._due = Math.max(0, this._due - count);
  }

  drained() {
    this.interval = this.resumeAt = this._due = 0;
  }
}

/**
 * When each rung of a race starts (protocol §9.1): rung k at `stagger[k]` ms, or at once when
 * every rung started before it already failed.
 */
export class RaceSchedule {
  /**
   * @param {readonly Rung[]} rungs
   * @param {readonly number[]} stagger
   */
  constructor(rungs, stagger) {
    this.rungs = [...rungs];
    this.stagger = stagger.length ? [...stagger] : [0];
    this.index = 0;
  }

  /**
   * The rungs to start now, `elapsed` ms into the race with `running` attempts in flight, and
   * how long until the next one is due (null: none left).
   * @param {number} elapsed
   * @param {number} running
   * @returns {{start: Rung[], wait: number | null}}
   */
  due(elapsed, running) {
    /** @type {Rung[]} */
    const start = [];
    while (this.index < this.rungs.length) {
      const at = this.stagger[Math.min(this.index, this.stagger.length - 1)];
      if (running + start.length === 0 || elapsed >= at) {
        start.push(this.rungs[this.index]);
        this.index += 1;
        continue;
      }
      return { start, wait: at - elapsed };
    }
    return { start, wait: null };
  }
}

/**
 * How long a transport may stay silent before it counts as broken, in ms (protocol §3.3, §9.2).
 * A hidden tab gets `hiddenSlack` more: Chrome aligns a background tab's timers to once a
 * minute, which delays our own acks and short polls (and so the answers to them).
 * @param {Rung} rung
 * @param {Frame} welcome
 * @param {{hidden?: boolean, hiddenSlack?: number, pollMax?: number}} [options]
 */
export function silenceLimit(rung, welcome, { hidden = false, hiddenSlack = 60_000, pollMax = 2000 } = {}) {
  const heartbeat = Number(welcome.hb ?? 20_000);
  let limit;
  if (rung === "websocket" || rung === "sse") limit = heartbeat * 1.5 + 1000;
  else if (rung === "longpoll") limit = Number(welcome.poll ?? 25_000) + heartbeat / 2 + 5000;
  else limit = pollMax + 15_000;
  return hidden ? limit + hiddenSlack : limit;
}

/**
 * What a watchdog that just fired should conclude: `alive` (something arrived in time),
 * `check` (silent too long, but the timer itself ran `late` ms late, so the page was throttled
 * or frozen: ask the server before giving up) or `dead`.
 * @param {{silent: number, limit: number, late: number, slack?: number}} state
 * @returns {"alive" | "check" | "dead"}
 */
export function silenceVerdict({ silent, limit, late, slack = 1000 }) {
  if (silent < limit) return "alive";
  return late > slack ? "check" : "dead";
}

/**
 * @param {number} ms
 */
function seconds(ms) {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

// ---------------------------------------------------------------------------------------------
// Subscriptions: a channel's position (epoch, offset) and its listeners (protocol §6)
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} Publication
 * @property {string} channel
 * @property {number} offset
 * @property {any} data
 * @property {string | null} epoch
 */

/**
 * @typedef {object} SubscribeResult
 * @property {string} channel
 * @property {string} epoch
 * @property {number} offset
 * @property {boolean} recovered false when history could not cover a gap: refetch state
 * @property {number} missed how many publications followed the reply
 */

/** @typedef {{epoch: string, offset: number}} Position */

/**
 * Follow a channel. Publications reach the listeners in offset order, each once. The
 * subscription remembers the position of the last one delivered; after a reconnect that needed
 * a new session the client resubscribes from there, so missed publications arrive first.
 */
export class Subscription {
  /**
   * @param {string} channel
   * @param {{since?: Position | null, recent?: number, unsubscribe?: (sub: Subscription) => Promise<void>}} [options]
   */
  constructor(channel, { since = null, recent = 0, unsubscribe } = {}) {
    this.channel = channel;
    /** @type {string | null} */
    this.epoch = since ? since.epoch : null;
    this.offset = since ? since.offset : 0;
    this.recent = recent;
    /** false after a gap history could not cover (a `resync`). */
    this.recovered = true;
    this.active = true;
    this.subscribedOnce = false;
    /** @type {LadderError | null} */
    this.error = null;
    /** @type {Set<(pub: Publication) => void>} */
    this._listeners = new Set();
    this._unsubscribe = unsubscribe;
    /** @type {(result: SubscribeResult) => void} */
    let resolve = () => {};
    /** @type {(error: Error) => void} */
    let reject = () => {};
    /** @type {Promise<SubscribeResult>} */
    this._ready = new Promise((yes, no) => {
      resolve = yes;
      reject = no;
    });
    this._ready.catch(() => {}); // a refusal is also visible as `error`; never unhandled
    this._resolve = resolve;
    this._reject = reject;
    this._settled = false;
  }

  /** Resolves once the server confirmed the subscription (rejects with its refusal). */
  ready() {
    return this._ready;
  }

  /** Where to resume from later: the position of the last publication delivered. */
  get position() {
    return this.epoch === null ? null : { epoch: this.epoch, offset: this.offset };
  }

  /**
   * Call `listener(pub)` for each publication; returns a function that removes it.
   * @param {(pub: Publication) => void} listener
   */
  listen(listener) {
    this._listeners.add(listener);
    return () => {
      this._listeners.delete(listener);
    };
  }

  /** Stop following the channel. */
  unsubscribe() {
    return this._unsubscribe ? this._unsubscribe(this) : Promise.resolve();
  }

  /** The `sub` frame that (re)subscribes from where this subscription stands. */
  subscribeFrame() {
    /** @type {Frame} */
    const frame = { t: "sub", ch: this.channel };
    if (this.epoch !== null) {
      frame.ep = this.epoch;
      frame.off = this.offset;
    } else if (this.recent) {
      frame.recent = this.recent;
    }
    return frame;
  }

  /**
   * The server's reply to a `sub`.
   * @param {Frame} reply
   * @returns {SubscribeResult}
   */
  confirmed(reply) {
    const askedFrom = this.epoch;
    /** @type {SubscribeResult} */
    const result = {
      channel: this.channel,
      epoch: String(reply.ep),
      offset: Number(reply.off),
      recovered: reply.rec !== false,
      missed: Number(reply.n ?? 0),
    };
    this.recovered = result.recovered;
    if (askedFrom === null || !result.recovered) {
      // A fresh start (or a gap nobody can fill): continue from the channel's position now.
      this.epoch = result.epoch;
      this.offset = result.offset - result.missed;
    }
    this.subscribedOnce = true;
    if (!this._settled) {
      this._settled = true;
      this._resolve(result);
    }
    return result;
  }

  /**
   * A publication at `offset`: hand it to the listeners unless already delivered.
   * @param {number} offset
   * @param {any} data
   * @returns {boolean} whether it was new
   */
  deliver(offset, data) {
    if (offset <= this.offset || !this.active) return false;
    this.offset = offset;
    /** @type {Publication} */
    const pub = { channel: this.channel, offset, data, epoch: this.epoch };
    for (const listener of [...this._listeners]) {
      try {
        listener(pub);
      } catch (error) {
        reportLater(error);
      }
    }
    return true;
  }

  /**
   * The channel's history was lost (new epoch): continue from there.
   * @param {string} epoch
   * @param {number} offset
   */
  resync(epoch, offset) {
    this.epoch = epoch;
    this.offset = offset;
    this.recovered = false;
  }

  /**
   * The subscription ended (refused, unsubscribed, ended by the server or the client closed).
   * @param {LadderError | null} [error]
   */
  end(error = null) {
    this.active = false;
    if (error && !this.error) this.error = error;
    if (!this._settled) {
      this._settled = true;
      this._reject(error ?? new LadderError("closed", "the subscription ended"));
    }
  }
}

/** @param {unknown} error */
function reportLater(error) {
  setTimeout(() => {
    throw error;
  }, 0);
}

// ---------------------------------------------------------------------------------------------
// Time (injectable so the state machine can be tested without waiting)
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} Clock
 * @property {() => number} now milliseconds, monotonic
 * @property {(fn: () => void, ms: number) => any} setTimeout
 * @property {(handle: any) => void} clearTimeout
 */

/** @type {Clock} */
export const realClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle),
};

// ---------------------------------------------------------------------------------------------
// Transports: one rung's connection for one attempt
// ---------------------------------------------------------------------------------------------

/** Where the server is (every transport of a client shares it). */
export class Endpoint {
  /**
   * @param {string} base `http(s)://host:port/mount` (no trailing slash)
   * @param {typeof fetch} [fetchImpl]
   */
  constructor(base, fetchImpl) {
    this.base = base.replace(/\/+$/, "");
    this.fetch = fetchImpl ?? ((input, init) => fetch(input, init));
  }

  /**
   * @param {string} path
   * @param {Record<string, string | number | null | undefined>} [query]
   */
  http(path, query = {}) {
    const url = new URL(`${this.base}/${path}`);
    for (const [key, value] of Object.entries(query)) {
      if (value !== null && value !== undefined) url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  ws() {
    return `${this.base.replace(/^http/, "ws")}/ws`;
  }
}

/**
 * @typedef {object} TransportContext
 * @property {Endpoint} endpoint
 * @property {Clock} clock
 * @property {() => number} applied the highest server sequence number delivered (poll acks)
 * @property {[number, number]} pollInterval short polling's fastest and slowest pace, ms
 */

/**
 * @typedef {object} TransportHandlers
 * @property {(frames: Frame[]) => void} onframes every batch that arrives (possibly empty: a poll answered with nothing)
 * @property {(reason: string, error: LadderError | null) => void} onclose the transport failed (called once; never after close())
 */

/**
 * One rung's connection. `open` sends the hello and resolves with the welcome once this very
 * transport proved it delivers (for SSE: once a ping went up and its pong came back down).
 * Frames that arrive before `attach` are kept and handed over by it.
 */
export class Transport {
  /**
   * @param {Rung} name
   * @param {TransportContext} ctx
   */
  constructor(name, ctx) {
    /** @type {Rung} */
    this.name = name;
    this.ctx = ctx;
    /** Frames are pushed as they come (WebSocket, SSE) rather than fetched (polls). */
    this.streaming = true;
    /** Each request already tells the server what was received (polls): no ack frames. */
    this.implicitAck = false;
    /** @type {Frame} */
    this.welcome = {};
    /** @type {Frame[]} */
    this.pending = [];
    /** @type {TransportHandlers | null} */
    this.handlers = null;
    this.closed = false;
    /** @type {TransportClosed | null} */
    this.failure = null;
    /** @type {((welcome: Frame) => void) | null} */
    this._opened = null;
    /** @type {((error: TransportClosed) => void) | null} */
    this._refused = null;
  }

  /**
   * Send `hello`; resolve with the welcome once the transport proved it delivers.
   * @param {Frame} _hello
   * @param {number} _verifyTimeout
   * @returns {Promise<Frame>}
   */
  open(_hello, _verifyTimeout) {
    return Promise.reject(new TransportClosed(`${this.name}: not implemented`));
  }

  /**
   * Write frames upstream (rejects with TransportClosed).
   * @param {Frame[]} _frames
   * @returns {Promise<void>}
   */
  send(_frames) {
    return Promise.reject(new TransportClosed(`${this.name}: not implemented`));
  }

  /** Release the connection (idempotent; no onclose). */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.release();
  }

  /** Subclasses free their sockets and timers here. */
  release() {}

  /** Something was just sent: a polling transport should ask again soon. */
  wake() {}

  /**
   * Become the client's transport: hand over what arrived meanwhile, report from now on.
   * @param {TransportHandlers} handlers
   */
  attach(handlers) {
    this.handlers = handlers;
    const pending = this.pending;
    this.pending = [];
    if (this.failure) {
      handlers.onframes(pending);
      handlers.onclose(this.failure.reason, this.failure.error);
      return;
    }
    handlers.onframes(pending);
    this.started();
  }

  /** Called once attached (polls start polling here, not during a race). */
  started() {}

  /**
   * @param {Frame[]} frames
   */
  receive(frames) {
    if (this.closed) return;
    if (this.handlers) this.handlers.onframes(frames);
    else this.pending.push(...frames);
  }

  /**
   * The first frames on this transport: the welcome (or the server's refusal) and what followed.
   * @param {Frame[]} frames
   */
  greet(frames) {
    const first = frames[0];
    if (!first) return this.fail(`${this.name}: connection ended before the welcome`);
    if (first.t === "err") {
      const error = errorOf(first);
      return this.fail(`${this.name}: refused by the server (${error.code}: ${error.reason})`, error);
    }
    if (first.t !== "welcome") return this.fail(`${this.name}: expected a welcome, got ${JSON.stringify(first.t)}`);
    this.welcome = first;
    this.pending.push(...frames.slice(1));
    this.welcomed(first);
  }

  /**
   * The welcome arrived; SSE verifies the stream before resolving open().
   * @param {Frame} welcome
   */
  welcomed(welcome) {
    this.resolveOpen(welcome);
  }

  /** @param {Frame} welcome */
  resolveOpen(welcome) {
    const opened = this._opened;
    this._opened = this._refused = null;
    opened?.(welcome);
  }

  /**
   * The transport cannot be used any more. Before the welcome, open() rejects; after it, the
   * client hears through onclose.
   * @param {string} reason
   * @param {LadderError | null} [error]
   */
  fail(reason, error = null) {
    if (this.closed || this.failure) return;
    this.failure = new TransportClosed(reason, error);
    const refused = this._refused;
    this._opened = this._refused = null;
    this.closed = true;
    this.release();
    if (refused) refused(this.failure);
    else if (this.handlers) this.handlers.onclose(reason, error);
  }

  /** @returns {Promise<Frame>} */
  opening() {
    return new Promise((resolve, reject) => {
      this._opened = resolve;
      this._refused = reject;
    });
  }
}

/** WebSocket rung: one socket, JSON text frames both ways. */
export class WebSocketTransport extends Transport {
  /** @param {TransportContext} ctx */
  constructor(ctx) {
    super("websocket", ctx);
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {LadderError | null} */
    this._refusal = null;
  }

  /**
   * @param {Frame} hello
   * @param {number} _verifyTimeout
   */
  open(hello, _verifyTimeout) {
    const opened = this.opening();
    let ws;
    try {
      ws = new WebSocket(this.ctx.endpoint.ws());
    } catch (error) {
      this.fail(`websocket: cannot connect (${String(error)})`);
      return opened;
    }
    this.ws = ws;
    let upgraded = false;
    ws.onopen = () => {
      upgraded = true;
      ws.send(encodeBatch([hello]));
    };
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") return;
      let frames;
      try {
        frames = decodeBatch(event.data);
      } catch {
        this.fail("websocket: undecodable message from the server");
        return;
      }
      if (!this.welcome.t) {
        if (frames[0]?.t === "err") this._refusal = errorOf(frames[0]);
        this.greet(frames);
      } else {
        for (const frame of frames) if (frame.t === "err" && !("s" in frame)) this._refusal = errorOf(frame);
        this.receive(frames);
      }
    };
    ws.onclose = (event) => {
      if (!upgraded) {
        this.fail("websocket: cannot connect (the upgrade was refused or blocked on the way)");
      } else if (this._refusal) {
        const error = this._refusal;
        this.fail(`websocket: refused by the server (${error.code}: ${error.reason})`, error);
      } else if (event.code === 1001) {
        // Going away: the server is shutting down (protocol §8). Resume elsewhere at once.
        const reason = `websocket: closed by the server (1001${event.reason ? ` ${event.reason}` : ""})`;
        this.fail(reason, new LadderError("shutting_down", event.reason || "server going away"));
      } else if (event.code === 1000 || event.code >= 4000) {
        this.fail(`websocket: closed by the server (${event.code}${event.reason ? ` ${event.reason}` : ""})`);
      } else {
        this.fail(`websocket: connection lost (code ${event.code})`);
      }
    };
    return opened;
  }

  /** @param {Frame[]} frames */
  send(frames) {
    const ws = this.ws;
    if (this.closed || !ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new TransportClosed("websocket: not open"));
    }
    ws.send(encodeBatch(frames));
    return Promise.resolve();
  }

  release() {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
  }
}

/**
 * @param {Response} response
 * @param {Rung} rung
 */
async function refusalOf(response, rung) {
  let body = null;
  try {
    body = JSON.parse(await response.text());
  } catch {
    // not ours: a proxy answered
  }
  const ours = body && typeof body === "object" && "code" in body;
  const url = String(response.url || "").split("?")[0];
  if (response.status === 404 && !(ours && body.code === "unknown_session")) {
    return new TransportClosed(`${rung}: no Ladder endpoint at ${url} (HTTP 404): check the mount path in the client's URL`);
  }
  if (ours) {
    const error = errorOf(body);
    return new TransportClosed(`${rung}: refused by the server (${error.code}: ${error.reason})`, error);
  }
  return new TransportClosed(`${rung}: HTTP ${response.status} from the server or a proxy${url ? ` at ${url}` : ""}`);
}

/** What the HTTP rungs share: a session id, a resume token and `POST send` upstream. */
export class HttpTransport extends Transport {
  /**
   * @param {Rung} name
   * @param {TransportContext} ctx
   */
  constructor(name, ctx) {
    super(name, ctx);
    /** @type {string | null} */
    this.sid = null;
    /** @type {string | null} */
    this.rt = null;
    /** @type {Promise<void>} */
    this._posts = Promise.resolve();
    this._abort = new AbortController();
  }

  /** @param {Frame} welcome */
  adopt(welcome) {
    this.sid = String(welcome.sid);
    this.rt = String(welcome.rt);
  }

  /**
   * POSTs go one at a time, in order (protocol §3.6).
   * @param {Frame[]} frames
   * @param {{keepalive?: boolean}} [options]
   */
  send(frames, { keepalive = false } = {}) {
    if (this.sid === null || (this.closed && !keepalive)) {
      return Promise.reject(new TransportClosed(`${this.name}: not open`));
    }
    const body = encodeBatch(frames);
    // A keepalive POST (the bye as the page goes away) must leave now, not after the queue.
    if (keepalive) return this.post(body, true);
    const post = this._posts.then(() => this.post(body, keepalive));
    this._posts = post.catch(() => {});
    return post;
  }

  /**
   * @param {string} body
   * @param {boolean} keepalive
   */
  async post(body, keepalive) {
    const { endpoint, clock } = this.ctx;
    const controller = new AbortController();
    const stop = () => controller.abort();
    this._abort.signal.addEventListener("abort", stop);
    const timer = clock.setTimeout(stop, 10_000);
    let response;
    try {
      response = await endpoint.fetch(endpoint.http("send", { sid: this.sid }), {
        method: "POST",
        body,
        headers: { "content-type": "application/x-ndjson", "x-ladder-rt": String(this.rt) },
        credentials: "include",
        cache: "no-store",
        keepalive,
        signal: keepalive ? undefined : controller.signal,
      });
    } catch (error) {
      throw new TransportClosed(`${this.name}: upstream POST failed (${String(error)})`);
    } finally {
      clock.clearTimeout(timer);
      this._abort.signal.removeEventListener("abort", stop);
    }
    if (response.status >= 300) throw await refusalOf(response, this.name);
    this.wake();
  }

  release() {
    this._abort.abort();
  }
}

/**
 * Server-Sent Events rung: an EventSource down, `POST send` up. Only one stream per transport,
 * and EventSource's own reconnect is switched off (the client decides where to reconnect).
 */
export class SSETransport extends HttpTransport {
  /** @param {TransportContext} ctx */
  constructor(ctx) {
    super("sse", ctx);
    /** @type {EventSource | null} */
    this.source = null;
    /** @type {number | null} */
    this._nonce = null;
    /** @type {any} */
    this._verifyTimer = null;
    this._verifyTimeout = 2500;
    this._resuming = false;
  }

  /**
   * @param {Frame} hello
   * @param {number} verifyTimeout
   */
  open(hello, verifyTimeout) {
    const opened = this.opening();
    this._verifyTimeout = verifyTimeout;
    this._resuming = Boolean(hello.sid);
    /** @type {Record<string, string | number | null | undefined>} */
    const query = { v: hello.v };
    if (hello.sid) Object.assign(query, { sid: hello.sid, ack: hello.ack ?? 0, rt: hello.rt });
    else Object.assign(query, { tok: hello.tok, psid: hello.psid, prt: hello.prt, pids: hello.pids });
    let source;
    try {
      source = new EventSource(this.ctx.endpoint.http("sse", query), { withCredentials: true });
    } catch (error) {
      this.fail(`sse: cannot connect (${String(error)})`);
      return opened;
    }
    this.source = source;
    source.onmessage = (event) => {
      let frames;
      try {
        frames = decodeBatch(String(event.data));
      } catch {
        this.fail("sse: undecodable event from the server");
        return;
      }
      if (!this.welcome.t) this.greet(frames);
      else if (this._nonce !== null) this._verifying(frames);
      else this.receive(frames);
    };
    source.onerror = () => {
      // EventSource would reconnect by itself; the client does that, on the rung it chooses.
      source.close();
      if (this.welcome.t) this.fail("sse: stream ended or broken");
      else this._diagnose(hello);
    };
    return opened;
  }

  /**
   * EventSource hides why it failed. When resuming, an empty POST tells whether the session is
   * still there (it has no side effects); otherwise say what we know.
   * @param {Frame} hello
   */
  async _diagnose(hello) {
    if (this._resuming && hello.sid && hello.rt) {
      this.sid = String(hello.sid);
      this.rt = String(hello.rt);
      try {
        await this.post("", false);
      } catch (error) {
        if (error instanceof TransportClosed && error.error) return this.fail(error.reason, error.error);
      }
    }
    this.fail("sse: cannot open the stream (refused, blocked or not an event stream)");
  }

  /**
   * Ping up and wait for the pong on the stream: proof that nothing buffers it (protocol §3.4).
   * @param {Frame} welcome
   */
  welcomed(welcome) {
    this.adopt(welcome);
    const nonce = Math.floor(Math.random() * 2 ** 31);
    this._nonce = nonce;
    this._verifyTimer = this.ctx.clock.setTimeout(() => {
      this.fail(`sse: stream buffered by something on the way (no pong within ${seconds(this._verifyTimeout)})`);
    }, this._verifyTimeout);
    this.send([{ t: "ping", n: nonce }]).catch((error) => {
      this.fail(error instanceof TransportClosed ? error.reason : String(error), error?.error ?? null);
    });
  }

  /** @param {Frame[]} frames */
  _verifying(frames) {
    for (const frame of frames) {
      if (this._nonce !== null && frame.t === "pong" && frame.n === this._nonce) {
        this._nonce = null;
        this.ctx.clock.clearTimeout(this._verifyTimer);
        this.resolveOpen(this.welcome);
      } else {
        this.receive([frame]);
      }
    }
  }

  release() {
    super.release();
    this.ctx.clock.clearTimeout(this._verifyTimer);
    const source = this.source;
    this.source = null;
    if (source) {
      source.onmessage = source.onerror = null;
      source.close();
    }
  }
}

/**
 * Polling rungs: `GET longpoll` (held by the server) and `GET poll` (answered at once). Each
 * GET carries the highest sequence number delivered, so no ack frames are needed and a lost
 * answer is simply sent again. Short polling speeds up after traffic and slows down when idle.
 */
export class PollingTransport extends HttpTransport {
  /**
   * @param {TransportContext} ctx
   * @param {boolean} hold
   */
  constructor(ctx, hold) {
    super(hold ? "longpoll" : "poll", ctx);
    this.hold = hold;
    this.streaming = false;
    this.implicitAck = true;
    this.interval = ctx.pollInterval[0];
    this.pollTimeout = 25_000;
    /** @type {(() => void) | null} */
    this._nudge = null;
    this._nudged = false;
  }

  /**
   * @param {Record<string, string | number | null | undefined>} query
   * @param {Record<string, string>} headers
   * @param {number} timeout
   */
  async get(query, headers, timeout) {
    const { endpoint, clock } = this.ctx;
    const controller = new AbortController();
    const stop = () => controller.abort();
    this._abort.signal.addEventListener("abort", stop);
    const timer = clock.setTimeout(stop, timeout);
    try {
      let response;
      try {
        response = await endpoint.fetch(endpoint.http(this.name, { ...query, enc: "json" }), {
          headers,
          credentials: "include",
          cache: "no-store",
          signal: controller.signal,
        });
      } catch (error) {
        throw new TransportClosed(
          controller.signal.aborted && !this.closed
            ? `${this.name}: no answer within ${seconds(timeout)}`
            : `${this.name}: request failed (${String(error)})`,
        );
      }
      if (response.status !== 200) throw await refusalOf(response, this.name);
      try {
        return decodeBatch(await response.text());
      } catch (error) {
        throw new TransportClosed(`${this.name}: unreadable answer (${String(error)})`);
      }
    } finally {
      clock.clearTimeout(timer);
      this._abort.signal.removeEventListener("abort", stop);
    }
  }

  /**
   * @param {Frame} hello
   * @param {number} _verifyTimeout
   */
  open(hello, _verifyTimeout) {
    const opened = this.opening();
    /** @type {Record<string, string>} */
    const headers = {};
    /** @type {Record<string, string | number | null | undefined>} */
    const query = { v: hello.v, open: 1 };
    if (hello.sid) {
      Object.assign(query, { sid: hello.sid, ack: hello.ack ?? 0 });
      headers["x-ladder-rt"] = String(hello.rt);
    } else if (hello.tok) {
      headers.authorization = `Bearer ${hello.tok}`;
    }
    if (hello.psid) Object.assign(query, { psid: hello.psid, prt: hello.prt, pids: hello.pids });
    this.get(query, headers, 10_000).then(
      (frames) => {
        if (frames[0]?.t === "welcome") {
          this.adopt(frames[0]);
          this.pollTimeout = Number(frames[0].poll ?? 25_000);
        }
        this.greet(frames);
      },
      (error) => this.fail(error.reason ?? String(error), error.error ?? null),
    );
    return opened;
  }

  started() {
    this._loop();
  }

  async _loop() {
    const { clock, applied, pollInterval } = this.ctx;
    while (!this.closed) {
      if (!this.hold && !this._nudged) {
        await new Promise((resolve) => {
          const timer = clock.setTimeout(() => resolve(undefined), this.interval);
          this._nudge = () => {
            clock.clearTimeout(timer);
            resolve(undefined);
          };
        });
        this._nudge = null;
      }
      this._nudged = false;
      if (this.closed) return;
      let frames;
      try {
        const timeout = this.hold ? this.pollTimeout + 10_000 : 10_000;
        frames = await this.get({ sid: this.sid, ack: applied() }, { "x-ladder-rt": String(this.rt) }, timeout);
      } catch (error) {
        const closed = error instanceof TransportClosed ? error : new TransportClosed(`${this.name}: ${String(error)}`);
        this.fail(closed.reason, closed.error);
        return;
      }
      this.interval = frames.length ? pollInterval[0] : Math.min(pollInterval[1], this.interval * 2);
      this.receive(frames);
    }
  }

  wake() {
    this.interval = this.ctx.pollInterval[0];
    this._nudged = true;
    this._nudge?.();
  }

  release() {
    super.release();
    this._nudge?.();
  }
}

/**
 * @param {Rung} rung
 * @param {TransportContext} ctx
 * @returns {Transport}
 */
export function makeTransport(rung, ctx) {
  if (rung === "websocket") return new WebSocketTransport(ctx);
  if (rung === "sse") return new SSETransport(ctx);
  return new PollingTransport(ctx, rung === "longpoll");
}

// ---------------------------------------------------------------------------------------------
// The staggered race (protocol §9.1)
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} RaceResult
 * @property {Transport} winner
 * @property {Partial<Record<Rung, TransportClosed>>} failures why better rungs failed
 * @property {Rung[]} unproven better rungs still opening when the winner won
 * @property {number} elapsed ms the race took
 */

/**
 * Open the best rung that works: rung k starts at stagger[k] ms unless every rung started so
 * far already failed; the first to open wins; the others are cancelled, or, if they opened
 * too, handed to `onLoser`. A black-holed WebSocket costs stagger[1] ms, not a timeout.
 * @param {readonly Rung[]} rungs
 * @param {(rung: Rung, signal: AbortSignal) => Promise<Transport>} open
 * @param {readonly number[]} stagger
 * @param {{onLoser: (conn: Transport) => void, clock?: Clock, signal?: AbortSignal}} options
 * @returns {Promise<RaceResult>}
 */
export function race(rungs, open, stagger, { onLoser, clock = realClock, signal }) {
  return new Promise((resolve, reject) => {
    const schedule = new RaceSchedule(rungs, stagger);
    const startedAt = clock.now();
    /** @type {Map<Rung, AbortController>} */
    const attempts = new Map();
    /** @type {Partial<Record<Rung, TransportClosed>>} */
    const failures = {};
    /** @type {any} */
    let timer = null;
    let done = false;

    const finish = () => {
      done = true;
      clock.clearTimeout(timer);
      signal?.removeEventListener("abort", cancel);
      for (const attempt of attempts.values()) attempt.abort();
    };
    const cancel = () => {
      if (done) return;
      finish();
      reject(new TransportClosed("cancelled"));
    };
    const step = () => {
      if (done) return;
      clock.clearTimeout(timer);
      const { start, wait } = schedule.due(clock.now() - startedAt, attempts.size);
      for (const rung of start) launch(rung);
      if (wait !== null) timer = clock.setTimeout(step, wait);
      else if (attempts.size === 0) {
        finish();
        reject(new AllRungsFailed(failures));
      }
    };
    /** @param {Rung} rung */
    const launch = (rung) => {
      const attempt = new AbortController();
      attempts.set(rung, attempt);
      open(rung, attempt.signal).then(
        (conn) => {
          attempts.delete(rung);
          if (done) {
            onLoser(conn);
            return;
          }
          const unproven = [...attempts.keys()].filter((r) => rungs.indexOf(r) < rungs.indexOf(rung));
          finish();
          resolve({ winner: conn, failures, unproven, elapsed: clock.now() - startedAt });
        },
        (error) => {
          attempts.delete(rung);
          if (done) return;
          failures[rung] = error instanceof TransportClosed ? error : new TransportClosed(`${rung}: ${String(error)}`);
          step();
        },
      );
    };
    if (signal?.aborted) return cancel();
    signal?.addEventListener("abort", cancel);
    step();
  });
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/** Refusals that retrying cannot fix: the client closes. */
const FATAL = new Set(["unauthorized", "origin_not_allowed", "unsupported_version"]);
/** Bytes kept free in every batch under the server's limits (for the ack that rides along). */
const HEADROOM = 64;
const UTF8 = new TextEncoder();
/** Refusals that mean the server no longer has our session: start a new one. */
const SESSION_GONE = new Set(["unknown_session", "bad_resume_token", "session_closed", "slow_consumer"]);

/**
 * @typedef {object} ClientOptions
 * @property {readonly Rung[]} [transports] rungs allowed, best first (default: all four)
 * @property {string | null | (() => string | null | undefined)} [token] credentials for the server's `authenticate` hook
 * @property {readonly number[]} [stagger] when each rung of a race starts, ms (default [0, 300, 1000, 2000])
 * @property {number} [openTimeout] ms for a rung to deliver its welcome (default 10000)
 * @property {number} [verifyTimeout] ms for an SSE stream to prove it is not buffered (default 2500)
 * @property {number | null} [connectTimeout] ms: not connected this long after start, the client emits an `error` event `connect_failed` with each rung's reason and `ready()` rejects with it (it keeps trying; default 15000, null: never)
 * @property {number} [backoffBase] first reconnect delay ceiling, ms (default 500)
 * @property {number} [backoffMax] largest reconnect delay ceiling, ms (default 5000)
 * @property {number | null} [maxAttempts] give up after this many failed races (default: never)
 * @property {number} [stableAfter] a connection that lived this long resets the cut count, ms (default 10000)
 * @property {number} [cutLimit] short-lived connections in a row before stepping down (default 3)
 * @property {number} [probeDelay] first delay before probing better rungs, ms (default 2000)
 * @property {number} [probeMaxDelay] largest delay between probes, ms (default 30000)
 * @property {[number, number]} [pollInterval] short polling's fastest and slowest pace, ms (default [50, 2000])
 * @property {number} [maxQueue] messages kept while unacknowledged or offline (default 1000)
 * @property {number} [ackEvery] acknowledge at once when this many frames are unacknowledged (default 32)
 * @property {number} [ackInterval] ... otherwise this long after the first unacknowledged frame, ms (default 1000)
 * @property {number} [hiddenSlack] extra silence tolerated in a hidden tab, ms (default 60000)
 * @property {boolean} [remember] start from the rung that won last time in this tab (sessionStorage; default true)
 * @property {boolean} [browserEvents] react to online/offline, visibility and pagehide (default true in a browser)
 * @property {Pick<Storage, "getItem" | "setItem"> | null} [storage] where the winning rung is remembered (default sessionStorage)
 * @property {typeof fetch} [fetch]
 * @property {Clock} [clock]
 * @property {() => number} [random]
 * @property {(rung: Rung, ctx: TransportContext) => Transport} [transportFactory] (tests)
 */

/**
 * @typedef {object} ClientEvents
 * @property {{transport: Rung, sessionId: string, resumed: boolean}} open a transport is up and the session live
 * @property {{transport: Rung | null, reason: string, reconnecting: boolean}} close the transport was lost (reconnecting unless closed)
 * @property {{old: Rung | null, new: Rung, reason: string}} transport the client moved to another rung
 * @property {{channel: string, epoch: string}} resync history could not cover a gap: refetch the app's state
 * @property {{reason: string}} session_lost the server no longer had the session; a new one started
 * @property {{channel: string, recovered: boolean}} resubscribed a channel was subscribed again in a new session
 * @property {{event: string, data: any}} push an event the server pushed to this session or user
 * @property {{kind: "join" | "leave", channel: string, member: Member}} presence someone joined or left a channel followed
 * @property {{code: string, reason: string}} error an error no call was waiting for (for example a failed emit)
 * @property {{rung: Rung, ok: boolean, reason: string}} probe a better rung was tried while on a lower one
 * @property {{state: ClientState, reason: string}} state the connection state changed (and why, when it got worse)
 */

/** @typedef {"disconnected" | "connecting" | "connected" | "closed"} ClientState */
/** @typedef {{c: string, u: string | null, info: any}} Member */
/** @typedef {{settle: (reply: Frame) => void, kind: string}} Waiter */

/** The Ladder client. Create it with {@link connect}. */
export class Client {
  /**
   * @param {string} url where the hub is mounted, e.g. "/ladder" or "https://host/ladder"
   * @param {ClientOptions} [options]
   */
  constructor(url, options = {}) {
    const transports = options.transports ?? TRANSPORTS;
    const unknown = transports.filter((t) => !TRANSPORTS.includes(t));
    if (!transports.length || unknown.length) {
      throw new Error(`transports must be a non-empty subset of ${TRANSPORTS.join(", ")}, not ${unknown.join(", ")}`);
    }
    const base = typeof location !== "undefined" ? new URL(url, location.href) : new URL(url);
    /** The hub's URL. */
    this.url = base.toString().replace(/\/+$/, "");
    this.rungs = TRANSPORTS.filter((t) => transports.includes(t));
    this.options = {
      stagger: options.stagger ?? [0, 300, 1000, 2000],
      openTimeout: options.openTimeout ?? 10_000,
      verifyTimeout: options.verifyTimeout ?? 2500,
      connectTimeout: options.connectTimeout === undefined ? 15_000 : options.connectTimeout,
      backoffBase: options.backoffBase ?? 500,
      backoffMax: options.backoffMax ?? 5000,
      maxAttempts: options.maxAttempts ?? null,
      probeDelay: options.probeDelay ?? 2000,
      probeMaxDelay: options.probeMaxDelay ?? 30_000,
      pollInterval: options.pollInterval ?? /** @type {[number, number]} */ ([50, 2000]),
      ackEvery: options.ackEvery ?? 32,
      ackInterval: options.ackInterval ?? 1000,
      hiddenSlack: options.hiddenSlack ?? 60_000,
    };
    this._token = options.token ?? null;
    this._clock = options.clock ?? realClock;
    this._random = options.random ?? Math.random;
    this._factory = options.transportFactory ?? makeTransport;
    this._storage = options.remember === false ? null : options.storage !== undefined ? options.storage : sessionStore();
    this._browserEvents = options.browserEvents ?? (typeof window !== "undefined" && typeof document !== "undefined");
    /** @type {TransportContext} */
    this._ctx = {
      endpoint: new Endpoint(this.url, options.fetch),
      clock: this._clock,
      applied: () => this.peer.inbox.applied,
      pollInterval: this.options.pollInterval,
    };
    this.policy = new RungPolicy(this.rungs, {
      cutLimit: options.cutLimit,
      stableAfter: options.stableAfter,
      start: this._recall(),
    });
    this.peer = new PeerState(options.maxQueue ?? 1000);
    /** @type {ClientState} */
    this.state = "disconnected";
    /** @type {string | null} the session id (changes only when the server lost the session) */
    this.sessionId = null;
    /** @type {string | null} the user id the server's authenticate hook returned */
    this.user = null;
    /** @type {string | null} this session's public id (as others see it in presence) */
    this.clientId = null;
    /** @type {{old: Rung | null, new: Rung, reason: string} | null} the last rung change */
    this.lastChange = null;
    /** @type {string | null} why the last connect attempt failed */
    this.lastFailure = null;
    /** @type {Transport | null} */
    this._conn = null;
    /** @type {Map<string, Subscription>} */
    this._subs = new Map();
    /** @type {Map<number, Waiter>} */
    this._waiting = new Map();
    /** @type {Map<string, Set<(event: any) => void>>} */
    this._listeners = new Map();
    /** @type {Rung | null} */
    this._lastRung = null;
    this._hadSession = false;
    /** Failed races since the last connection. */
    this._failures = 0;
    /** @type {Record<string, any>} the server's limits from the last welcome (`lim`) */
    this._limits = {};
    this._pacer = new Pacer();
    /** @type {any} */
    this._paceTimer = null;
    /** @type {any} */
    this._connectTimer = null;
    /** @type {LadderError | null} why the client gave up for good (later calls reject with it) */
    this._fatal = null;
    /** The server is shutting down: resume elsewhere at once, without backoff. */
    this._reconnectNow = false;
    /** @type {Record<string, string>} the latest reason each rung failed to open */
    this._reasons = {};
    /** @type {string | null} */
    this._stepReason = null;
    /** @type {string | null} */
    this._pendingLoss = null;
    this._flushing = false;
    this._lastHeard = 0;
    this._opened = 0;
    /** @type {any} */
    this._watchdog = null;
    /** @type {any} */
    this._ackTimer = null;
    /** @type {AbortController | null} */
    this._raceAbort = null;
    /** @type {AbortController | null} */
    this._probeAbort = null;
    /** @type {(() => void) | null} */
    this._wakeSleep = null;
    /** @type {((ended: {conn: Transport, reason: string}) => void) | null} */
    this._onEnded = null;
    /** @type {Promise<{conn: Transport, reason: string}> | null} */
    this._ended = null;
    /** @type {Map<number, () => void>} */
    this._pongs = new Map();
    this._checking = false;
    this._suspended = false;
    /** @type {(() => void) | null} */
    this._unsuspend = null;
    this._running = false;
    /** @type {(() => void)[]} */
    this._unhook = [];
    /** @type {(value: void) => void} */
    let ready = () => {};
    /** @type {(error: Error) => void} */
    let failed = () => {};
    /** @type {Promise<void>} */
    this._ready = new Promise((yes, no) => {
      ready = yes;
      failed = no;
    });
    this._ready.catch(() => {});
    this._readyResolve = ready;
    this._readyReject = failed;
  }

  /** The rung in use now (null while disconnected). */
  get transport() {
    return this.state === "connected" && this._conn ? this._conn.name : null;
  }

  // -- lifecycle --------------------------------------------------------------------------------

  /** Start connecting (connect() does this). Returns the client. */
  start() {
    if (this._running || this.state === "closed") return this;
    this._running = true;
    if (this._browserEvents) this._hookBrowser();
    const limit = this.options.connectTimeout;
    if (limit !== null && Number.isFinite(limit)) {
      this._connectTimer = this._clock.setTimeout(() => this._notConnected(limit), limit);
    }
    this._run().catch((error) => {
      reportLater(error);
      this._giveUp(new LadderError("internal", String(error)));
    });
    return this;
  }

  /** Resolves once connected for the first time (rejects if the client closed or gave up first). */
  ready() {
    return this._ready;
  }

  /**
   * End the session (the server forgets it at once) and release everything.
   * @returns {Promise<void>}
   */
  async close() {
    if (this.state === "closed") return;
    const conn = this._conn;
    let bye = Promise.resolve();
    if (conn && this.state === "connected") {
      bye = conn instanceof HttpTransport ? conn.send([{ t: "bye" }], { keepalive: true }) : conn.send([{ t: "bye" }]);
      bye = bye.catch(() => {});
    }
    const lastRung = this.transport;
    this._shutdown(new LadderError("closed", "the client was closed"));
    this._emit("close", { transport: lastRung, reason: "the client was closed", reconnecting: false });
    if (conn) {
      // Give the bye a moment to leave before the socket closes (it is already written for a WebSocket).
      await Promise.race([bye, new Promise((resolve) => this._clock.setTimeout(() => resolve(undefined), 1000))]);
      conn.close();
    }
  }

  /**
   * Reconnect now instead of after the backoff delay, or, when connected, check the connection
   * still works (the page calls this on `online` and when the tab becomes visible).
   * @param {string} [why]
   */
  wake(why = "woken") {
    if (this.state === "closed" || this._suspended) return;
    if (this.state === "connected") this._check(why);
    else this._wakeSleep?.();
  }

  // -- API --------------------------------------------------------------------------------------

  /**
   * Follow `channel`. `since` replays what was missed after a position; `recent: N` starts with
   * the newest N publications kept in history. Subscribing twice adds a listener to the first.
   * @param {string} channel
   * @param {((pub: Publication) => void) | null} [onPublication]
   * @param {{since?: Position | null, recent?: number}} [options]
   * @returns {Subscription}
   */
  subscribe(channel, onPublication = null, { since = null, recent = 0 } = {}) {
    this._usable();
    let sub = this._subs.get(channel);
    if (!sub || !sub.active) {
      sub = new Subscription(channel, { since, recent, unsubscribe: (s) => this._unsubscribe(s) });
      this._subs.set(channel, sub);
      this._submitSubscribe(sub);
    }
    if (onPublication) sub.listen(onPublication);
    return sub;
  }

  /**
   * Stop following `channel`.
   * @param {string} channel
   */
  unsubscribe(channel) {
    const sub = this._subs.get(channel);
    return sub ? this._unsubscribe(sub) : Promise.resolve();
  }

  /**
   * Publish to a channel (if the server permits); resolves with its position.
   * @param {string} channel
   * @param {any} data
   * @param {{timeout?: number | null}} [options]
   * @returns {Promise<Position>}
   */
  async publish(channel, data, { timeout = 10_000 } = {}) {
    const reply = await this._request({ t: "pub", ch: channel, d: data }, timeout);
    return { epoch: String(reply.ep), offset: Number(reply.off) };
  }

  /**
   * Send an event to the server's handler (queued; no acknowledgement). Throws `queue_full`.
   * @param {string} event
   * @param {any} [data]
   */
  emit(event, data = null) {
    this._submit({ t: "emit", ev: event, d: data }, null);
    this._flush();
  }

  /**
   * Call a server handler; resolves with its result or rejects with its LadderError
   * (`timeout` after `timeout` ms; null waits as long as the session lives).
   * @param {string} event
   * @param {any} [data]
   * @param {{timeout?: number | null}} [options]
   */
  call(event, data = null, { timeout = 10_000 } = {}) {
    return this._request({ t: "call", ev: event, d: data }, timeout);
  }

  /**
   * Who is in `channel`.
   * @param {string} channel
   * @param {{timeout?: number | null}} [options]
   * @returns {Promise<Member[]>}
   */
  presence(channel, { timeout = 10_000 } = {}) {
    return this._request({ t: "presence", ch: channel }, timeout);
  }

  /**
   * The newest `limit` publications kept for `channel`.
   * @param {string} channel
   * @param {{limit?: number, timeout?: number | null}} [options]
   * @returns {Promise<Publication[]>}
   */
  async history(channel, { limit = 100, timeout = 10_000 } = {}) {
    const reply = await this._request({ t: "history", ch: channel, limit }, timeout);
    return reply.pubs.map((/** @type {Frame} */ p) => ({ channel, offset: Number(p.o), data: p.d, epoch: reply.ep }));
  }

  /**
   * Call `listener(event)` for every event called `name`; returns a function that removes it.
   * @template {keyof ClientEvents} K
   * @param {K} name
   * @param {(event: ClientEvents[K]) => void} listener
   * @returns {() => void}
   */
  on(name, listener) {
    let set = this._listeners.get(name);
    if (!set) this._listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => this.off(name, listener);
  }

  /**
   * @template {keyof ClientEvents} K
   * @param {K} name
   * @param {(event: ClientEvents[K]) => void} listener
   */
  off(name, listener) {
    this._listeners.get(name)?.delete(listener);
  }

  // -- outbound plumbing ------------------------------------------------------------------------

  /** (A method, so that TypeScript does not narrow `state` across awaits.) */
  _isClosed() {
    return this.state === "closed";
  }

  _usable() {
    if (this.state === "closed") throw this._fatal ?? new LadderError("closed", "this client was closed");
  }

  /**
   * @param {Frame} frame
   * @param {((reply: Frame) => void) | null} settle
   * @param {boolean} [bounded]
   */
  _submit(frame, settle, bounded = true) {
    this._usable();
    // Refused before it takes an id: a message that cannot travel must not hold back the rest.
    const tooLarge = this._tooLarge({ ...frame, i: this.peer.outbox.last + 1 }, this._limits);
    if (tooLarge) throw tooLarge;
    const id = this.peer.submit(frame, bounded);
    if (settle) this._waiting.set(id, { settle, kind: frame.t });
    return id;
  }

  /**
   * `frame_too_large` when the encoded message exceeds the server's `lim.frame` (less
   * HEADROOM); throws a TypeError when it cannot be encoded at all.
   * @param {Frame} frame
   * @param {Record<string, any>} limits
   * @returns {LadderError | null}
   */
  _tooLarge(frame, limits) {
    const size = UTF8.encode(encodeMessage(frame)).length;
    const limit = limits.frame;
    if (typeof limit === "number" && size > limit - HEADROOM) {
      return new LadderError("frame_too_large", `this ${frame.t} is ${size} bytes encoded; the server takes frames of at most ${limit}`);
    }
    return null;
  }

  /**
   * @param {Frame} frame
   * @param {number | null | undefined} timeout
   * @returns {Promise<any>}
   */
  _request(frame, timeout) {
    return new Promise((resolve, reject) => {
      /** @type {any} */
      let timer = null;
      let done = false;
      /** @param {Frame} reply */
      const settle = (reply) => {
        if (done) return;
        done = true;
        this._clock.clearTimeout(timer);
        if (reply.t === "err") reject(errorOf(reply));
        else resolve(reply.d);
      };
      try {
        this._submit(frame, settle);
      } catch (error) {
        reject(error);
        return;
      }
      if (timeout && Number.isFinite(timeout)) {
        timer = this._clock.setTimeout(() => {
          // The message stays queued (it may still be applied); only the wait ends.
          settle({ t: "err", code: "timeout", reason: `no reply within ${seconds(timeout)}` });
        }, timeout);
      }
      this._flush();
    });
  }

  /**
   * Ask for `sub`; a `renewal` (a new session) is queued even past `maxQueue`.
   * @param {Subscription} sub
   * @param {boolean} [renewal]
   */
  _submitSubscribe(sub, renewal = false) {
    this._submit(sub.subscribeFrame(), (reply) => {
      if (reply.t === "err") {
        if (this._subs.get(sub.channel) === sub) this._subs.delete(sub.channel);
        sub.end(errorOf(reply));
        return;
      }
      if (!sub.active) return;
      const again = sub.subscribedOnce;
      const result = sub.confirmed(reply.d ?? {});
      if (again) this._emit("resubscribed", { channel: sub.channel, recovered: result.recovered });
      if (!result.recovered) this._emit("resync", { channel: sub.channel, epoch: result.epoch });
    }, !renewal);
    this._flush();
  }

  /** @param {Subscription} sub */
  async _unsubscribe(sub) {
    if (this._subs.get(sub.channel) !== sub || !sub.active) return;
    this._subs.delete(sub.channel);
    sub.end();
    if (this.state === "closed") return;
    this._submit({ t: "unsub", ch: sub.channel }, null);
    this._flush();
  }

  /**
   * Write every queued message on the current transport (one writer at a time): paced after a
   * rate refusal, and in batches the server's limits take (`lim.frame` per WebSocket message,
   * `lim.post` per POST), so a long offline queue goes out in several writes.
   */
  async _flush() {
    if (this._flushing) return;
    this._flushing = true;
    try {
      while (this.state === "connected" && this._conn) {
        const conn = this._conn;
        const { count, wait } = this._pacer.allowance(this._clock.now());
        const frames = this._batch(conn, count);
        this._pacer.wrote(frames.length);
        if (wait > 0 && this.peer.outbox.last > this.peer.cursor) this._flushLater(wait);
        if (!frames.length) break;
        // The ack goes first: a server that stops reading a batch (a message over its rate) has read it.
        const ack = conn.implicitAck ? null : this._takeAck();
        if (ack) frames.unshift(ack);
        try {
          await conn.send(frames);
        } catch (error) {
          // A transport that cannot send is broken: the messages stay queued for the next one
          // (after a handover, the loop goes on with the new transport).
          this._failed(conn, error);
          if (conn === this._conn) break;
        }
      }
    } finally {
      this._flushing = false;
    }
  }

  /**
   * The next messages to write: at most `count` (null: any number), within the byte limit.
   * @param {Transport} conn
   * @param {number | null} count
   * @returns {Frame[]}
   */
  _batch(conn, count) {
    let items = this.peer.outbox.after(this.peer.cursor);
    if (count !== null) items = items.slice(0, count);
    if (!items.length) return [];
    const limit = this._limits[conn.name === "websocket" ? "frame" : "post"];
    const budget = (typeof limit === "number" ? limit : 65_536) - HEADROOM;
    /** @type {Frame[]} */
    const batch = [];
    let size = 0;
    for (const [id, frame] of items) {
      if (items.length > 1) {
        size += UTF8.encode(JSON.stringify(frame, tagBytes)).length + 1;
        if (batch.length && size > budget) break;
      }
      batch.push(frame);
      this.peer.cursor = id;
    }
    return batch;
  }

  /** @param {number} wait ms until pacing lets the next message go */
  _flushLater(wait) {
    if (this._paceTimer !== null) return;
    this._paceTimer = this._clock.setTimeout(() => {
      this._paceTimer = null;
      this._flush();
    }, wait);
  }

  /**
   * The server refused message `id` for its rate without applying it (nor anything after it in
   * that batch): write it again after `retryAfter` seconds, paced.
   * @param {number} id
   * @param {number} retryAfter seconds
   */
  _rateLimited(id, retryAfter) {
    if (id <= this.peer.outbox.acked) return; // stale: applied since
    this.peer.cursor = Math.min(this.peer.cursor, id - 1);
    this._pacer.refused(retryAfter * 1000, this._clock.now());
    this._flushLater(Math.max(1, retryAfter * 1000));
  }

  /**
   * @param {Transport} conn
   * @param {unknown} error
   */
  _failed(conn, error) {
    if (error instanceof TransportClosed) this._connClosed(conn, error.reason, error.error);
    else this._connClosed(conn, `${conn.name}: ${String(error)}`, null);
  }

  /**
   * Send control frames (acks, pongs, pings) on `conn` now.
   * @param {Transport} conn
   * @param {Frame[]} frames
   */
  _control(conn, frames) {
    conn.send(frames).catch((error) => this._failed(conn, error));
  }

  // -- events -----------------------------------------------------------------------------------

  /**
   * @template {keyof ClientEvents} K
   * @param {K} name
   * @param {ClientEvents[K]} event
   */
  _emit(name, event) {
    for (const listener of [...(this._listeners.get(name) ?? [])]) {
      try {
        listener(event);
      } catch (error) {
        reportLater(error);
      }
    }
  }

  /**
   * @param {ClientState} state
   * @param {string} [reason]
   */
  _setState(state, reason = "") {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", { state, reason });
  }

  // -- the connection loop ----------------------------------------------------------------------

  _currentToken() {
    const token = this._token;
    const value = typeof token === "function" ? token() : token;
    return value ?? null;
  }

  /**
   * Open one rung with the current hello (resuming the session when there is one).
   * @param {Rung} rung
   * @param {AbortSignal} signal
   * @returns {Promise<Transport>}
   */
  _open(rung, signal) {
    const timeout = this.options.openTimeout;
    const conn = this._factory(rung, this._ctx);
    const hello = this.peer.hello(this._currentToken());
    return new Promise((resolve, reject) => {
      const timer = this._clock.setTimeout(() => {
        stop(new TransportClosed(`${rung}: no welcome within ${seconds(timeout)}`));
      }, timeout);
      const onAbort = () => stop(new TransportClosed(`${rung}: cancelled`));
      /** @param {TransportClosed} error */
      const stop = (error) => {
        this._clock.clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        if (conn.welcome.t && !conn.closed) this._discard(conn); // welcomed, still proving itself
        else conn.close();
        reject(error);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort);
      conn.open(hello, this.options.verifyTimeout).then(
        () => {
          this._clock.clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          if (signal.aborted || conn.closed) reject(new TransportClosed(`${rung}: cancelled`));
          else resolve(conn);
        },
        (error) => stop(error instanceof TransportClosed ? error : new TransportClosed(`${rung}: ${String(error)}`)),
      );
    });
  }

  /**
   * Close a transport that lost a race; end the session it created, if it made one.
   * @param {Transport} conn
   */
  _discard(conn) {
    if (this.peer.sid === null || conn.welcome.sid !== this.peer.sid) {
      const bye = conn.send([{ t: "bye" }]).catch(() => {});
      bye.finally(() => conn.close());
      return;
    }
    conn.close();
  }

  /**
   * Wait `ms`, or less if woken (online, tab visible). Resolves true when woken.
   * @param {number} ms
   * @returns {Promise<boolean>}
   */
  _sleep(ms) {
    return new Promise((resolve) => {
      const timer = this._clock.setTimeout(() => {
        this._wakeSleep = null;
        resolve(false);
      }, ms);
      this._wakeSleep = () => {
        this._clock.clearTimeout(timer);
        this._wakeSleep = null;
        resolve(true);
      };
    });
  }

  async _run() {
    let failures = 0; // races failed since the last welcome
    let attempts = 0; // for maxAttempts
    const base = this.options.backoffBase;
    const cap = this.options.backoffMax;
    while (this.state !== "closed") {
      if (this._suspended) {
        await new Promise((resolve) => (this._unsuspend = () => resolve(undefined)));
        this._unsuspend = null;
        failures = 0;
        continue;
      }
      this._setState("connecting");
      /** @type {RaceResult} */
      let won;
      this._raceAbort = new AbortController();
      try {
        won = await race(this.policy.candidates(), (rung, signal) => this._open(rung, signal), this.options.stagger, {
          onLoser: (conn) => this._discard(conn),
          clock: this._clock,
          signal: this._raceAbort.signal,
        });
      } catch (error) {
        if (this._isClosed() || this._suspended) continue;
        if (!(error instanceof AllRungsFailed)) throw error;
        this._note(error.failures);
        if (this._fatalRefusal(error.errors())) return;
        if (this._sessionRefused(error)) continue;
        failures += 1;
        attempts += 1;
        this._failures += 1;
        this.lastFailure = error.message;
        if (this.options.maxAttempts !== null && attempts >= this.options.maxAttempts) {
          this._giveUp(new LadderError("timeout", `could not connect after ${attempts} attempts: ${error.message}`));
          return;
        }
        this._setState("disconnected", `${this._failures} attempt${this._failures > 1 ? "s" : ""} failed: ${error.message}`);
        if (await this._sleep(reconnectDelay(failures, base, cap, this._random))) failures = 0;
        continue;
      } finally {
        this._raceAbort = null;
      }
      if (this._isClosed() || this._suspended) {
        won.winner.close();
        continue;
      }
      this._note(won.failures);
      /** @type {LadderError[]} */
      const refusals = [];
      for (const failure of Object.values(won.failures)) if (failure?.error) refusals.push(failure.error);
      if (this._fatalRefusal(refusals)) {
        // A rung that lost the race was refused for good (a page's own GETs may carry no Origin
        // while its POSTs are refused): retrying cannot help.
        this._discard(won.winner);
        return;
      }
      failures = attempts = 0; // any welcome forgives: the next node may be a good one
      const ended = await this._adopt(won.winner, describeRace(won));
      const conn = ended.conn;
      const lived = this._clock.now() - this._opened;
      this._lost(conn, ended.reason);
      if (this._isClosed()) return;
      if (this._suspended) continue;
      if (this._reconnectNow) {
        this._reconnectNow = false; // the server is going away: resume elsewhere, now
        continue;
      }
      const stepDown = this.policy.dropped(conn.name, lived, ended.reason);
      if (stepDown) this._stepReason = stepDown;
      this._setState("disconnected", ended.reason);
      await this._sleep(reconnectDelay(0, base, cap, this._random));
    }
  }

  /**
   * Remember why each rung failed (for `connect_failed`).
   * @param {Partial<Record<Rung, TransportClosed>>} failures
   */
  _note(failures) {
    for (const [rung, failure] of Object.entries(failures)) if (failure) this._reasons[rung] = failure.reason;
  }

  /**
   * Not connected `limit` ms after start: say why, once (an `error` event `connect_failed` with
   * every rung's reason; `ready()` rejects with it). The client keeps trying: a page cannot be
   * re-run the way a script can, and the server may come back.
   * @param {number} limit
   */
  _notConnected(limit) {
    this._connectTimer = null;
    if (this._hadSession || this.state === "closed") return;
    const reasons = this.policy.candidates().map((rung) => this._reasons[rung] ?? `${rung}: no answer`);
    const error = new LadderError("connect_failed", `could not connect to ${this.url} within ${seconds(limit)}: ${reasons.join("; ")}`);
    this.lastFailure = error.reason;
    console.warn(`ladder: ${error.message}`);
    this._emit("error", { code: error.code, reason: error.reason });
    this._readyReject(error);
  }

  /**
   * Give up when a refusal cannot be fixed by retrying.
   * @param {LadderError[]} errors
   */
  _fatalRefusal(errors) {
    const fatal = errors.find((e) => FATAL.has(e.code));
    if (!fatal) return false;
    this._giveUp(fatal);
    return true;
  }

  /**
   * @param {AllRungsFailed} error
   */
  _sessionRefused(error) {
    for (const refusal of error.errors()) {
      if (SESSION_GONE.has(refusal.code)) {
        this._sessionGone(`${refusal.code}: ${refusal.reason}`);
        return true;
      }
    }
    return false;
  }

  /** @param {string} reason */
  _sessionGone(reason) {
    if (this.peer.sid !== null) {
      this.peer.forgetSession();
      this._pendingLoss = reason;
    }
  }

  /** @param {LadderError} error */
  _giveUp(error) {
    if (error.code === "origin_not_allowed") {
      const origin = typeof location !== "undefined" ? location.origin : "this page's origin";
      error = new LadderError(
        error.code,
        `the server at ${this.url} does not allow requests from ${origin}: add it to the server's allowed_origins [${error.reason}]`,
      );
    }
    if (FATAL.has(error.code)) {
      this._fatal = error;
      console.warn(`ladder: giving up: ${error.message}`);
      this._emit("error", { code: error.code, reason: error.reason });
    }
    const lastRung = this.transport;
    this._shutdown(error);
    this._emit("close", { transport: lastRung, reason: `${error.code}: ${error.reason}`, reconnecting: false });
  }

  /**
   * Stop everything; fail what waits.
   * @param {LadderError} error
   */
  _shutdown(error) {
    this._setState("closed");
    this._stopTimers();
    this._clock.clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this._probeAbort?.abort();
    this._raceAbort?.abort();
    this._wakeSleep?.();
    this._unsuspend?.();
    const conn = this._conn;
    if (conn) {
      this._conn = null;
      const ended = this._onEnded;
      this._onEnded = null;
      ended?.({ conn, reason: error.reason });
    }
    for (const waiter of [...this._waiting.values()]) waiter.settle({ t: "err", code: error.code, reason: error.reason });
    this._waiting.clear();
    for (const sub of this._subs.values()) sub.end(error.code === "closed" ? null : error);
    this._readyReject(error);
    for (const unhook of this._unhook.splice(0)) unhook();
  }

  /**
   * A transport won: take over its welcome, carry messages over, resubscribe. Resolves when
   * the connection (after any probe handovers) ends.
   * @param {Transport} conn
   * @param {string} reason
   * @returns {Promise<{conn: Transport, reason: string}>}
   */
  _adopt(conn, reason) {
    const welcome = conn.welcome;
    const ended = new Promise((resolve) => (this._onEnded = resolve));
    /** @type {[number, number][] | null} */
    let moved;
    const limits = { ...(welcome.lim ?? {}) };
    /** @type {Map<number, LadderError>} */
    const oversize = new Map();
    const named = this.peer.lost !== null; // the hello named the carried ids: keep exactly those
    /** @param {Frame} frame */
    const keep = (frame) => {
      if (!carried(frame)) return false; // subscriptions are renewed below
      const tooLarge = named ? null : this._tooLarge(frame, limits);
      if (tooLarge) oversize.set(Number(frame.i), tooLarge); // queued before the limit was known
      return !tooLarge;
    };
    try {
      moved = this.peer.welcome(welcome, keep);
    } catch (error) {
      this._conn = conn;
      this._connClosed(conn, `${conn.name}: ${String(error)}`, null);
      return /** @type {Promise<{conn: Transport, reason: string}>} */ (ended);
    }
    const newSession = moved !== null;
    if (moved) this._rekey(moved, oversize);
    this._conn = conn;
    this._limits = limits;
    this.sessionId = String(welcome.sid);
    this.user = welcome.u ?? null;
    this.clientId = welcome.cid ?? null;
    const oldRung = this._lastRung;
    this._lastRung = conn.name;
    this._opened = this._lastHeard = this._clock.now();
    this._failures = 0;
    this.lastFailure = null;
    this._setState("connected");
    this._remember(conn.name);
    this.policy.won(conn.name);
    if (newSession && this._hadSession) {
      this._emit("session_lost", { reason: this._pendingLoss ?? "the server started a new session" });
    }
    this._pendingLoss = null;
    if (newSession) for (const sub of this._subs.values()) if (sub.active) this._submitSubscribe(sub, true);
    this._hadSession = true;
    if (oldRung !== conn.name) this._changed(oldRung, conn.name, this._stepReason ?? reason);
    this._stepReason = null;
    this._emit("open", { transport: conn.name, sessionId: this.sessionId, resumed: !newSession });
    this._readyResolve();
    this._attach(conn);
    this._flush();
    if (this.state === "connected" && this._conn === conn && this.policy.above(conn.name).length) this._startProbe();
    return /** @type {Promise<{conn: Transport, reason: string}>} */ (ended);
  }

  /**
   * A new session renumbered the queued messages: move the waiting callbacks along. A pending
   * `sub` was dropped from the queue (it is sent again, from its position, by the
   * resubscription); anything else not carried over was lost with the old session.
   * @param {[number, number][]} moved
   * @param {Map<number, LadderError>} oversize messages dropped as larger than the server takes
   */
  _rekey(moved, oversize) {
    const waiting = this._waiting;
    /** @type {Map<number, Waiter>} */
    const rekeyed = new Map();
    for (const [old, renumbered] of moved) {
      const waiter = waiting.get(old);
      if (waiter) {
        rekeyed.set(renumbered, waiter);
        waiting.delete(old);
      }
    }
    this._waiting = rekeyed;
    for (const [id, waiter] of waiting) {
      const error = oversize.get(id);
      if (error) waiter.settle({ t: "err", code: error.code, reason: error.reason });
      else if (waiter.kind !== "sub") {
        waiter.settle({ t: "err", code: "session_closed", reason: "the session ended before the reply arrived" });
      }
    }
    for (const [id, error] of oversize) {
      if (!waiting.has(id)) this._emit("error", { code: error.code, reason: error.reason }); // an emit
    }
  }

  /**
   * @param {Rung | null} old
   * @param {Rung} rung
   * @param {string} reason
   */
  _changed(old, rung, reason) {
    this.lastChange = { old, new: rung, reason };
    this._emit("transport", { old, new: rung, reason });
  }

  /** @param {Transport} conn */
  _attach(conn) {
    this._armWatchdog(conn);
    conn.attach({
      onframes: (frames) => this._onFrames(conn, frames),
      onclose: (reason, error) => this._connClosed(conn, reason, error),
    });
  }

  /**
   * The current transport failed (or was judged broken). Later reports are ignored.
   * @param {Transport} conn
   * @param {string} reason
   * @param {LadderError | null} error
   */
  _connClosed(conn, reason, error) {
    if (conn !== this._conn) return;
    if (error && FATAL.has(error.code)) {
      this._giveUp(error); // on any request: an upgrade, a poll, a POST
      return;
    }
    if (error?.code === "shutting_down") this._reconnectNow = true;
    else if (error && SESSION_GONE.has(error.code)) this._sessionGone(`${error.code}: ${error.reason}`);
    const ended = this._onEnded;
    this._onEnded = null;
    ended?.({ conn, reason });
  }

  /**
   * @param {Transport} conn
   * @param {string} reason
   */
  _lost(conn, reason) {
    this._probeAbort?.abort();
    this._probeAbort = null;
    this._stopTimers();
    conn.close();
    if (this._conn === conn) this._conn = null;
    for (const done of this._pongs.values()) done();
    this._pongs.clear();
    if (this.state !== "closed") {
      this._setState("disconnected", reason);
      this._emit("close", { transport: conn.name, reason, reconnecting: true });
    }
  }

  _stopTimers() {
    this._clock.clearTimeout(this._watchdog);
    this._clock.clearTimeout(this._ackTimer);
    this._clock.clearTimeout(this._paceTimer);
    this._watchdog = this._ackTimer = this._paceTimer = null;
  }

  // -- frames in ----------------------------------------------------------------------------------

  /**
   * @param {Transport} conn
   * @param {Frame[]} frames
   */
  _onFrames(conn, frames) {
    if (conn !== this._conn) return;
    this._lastHeard = this._clock.now();
    for (const frame of frames) {
      if (conn !== this._conn) return;
      try {
        this._handle(frame, conn);
      } catch (error) {
        this._failed(conn, error instanceof LadderError ? new TransportClosed(`${conn.name}: ${error.message}`, error) : error);
        return;
      }
    }
    if (!conn.implicitAck) this._maybeAck(conn);
  }

  /**
   * Acknowledge a stream (protocol §3.4): at once when `ackEvery` frames are unacknowledged,
   * otherwise once, `ackInterval` ms after the first unacknowledged frame arrived (one timer,
   * started by that frame and not moved by later ones): frames arriving within that second
   * share one ack, and a frame after a quiet spell no longer costs a request of its own at
   * once. Polls need none: each GET carries `ack`.
   * @param {Transport} conn
   */
  _maybeAck(conn) {
    const ack = this._takeAck(this.options.ackEvery);
    if (ack) this._control(conn, [ack]);
    if (this.peer.inbox.applied > this.peer.ackedOut && this._ackTimer === null) {
      this._ackTimer = this._clock.setTimeout(() => {
        this._ackTimer = null;
        if (this._conn !== conn || this.state !== "connected") return;
        const late = this._takeAck(1);
        if (late) this._control(conn, [late]);
      }, this.options.ackInterval);
    }
  }

  /**
   * The ack to send now, if at least `every` frames are unacknowledged; once everything
   * delivered is acknowledged, the pending ack timer is no longer needed.
   * @param {number} [every]
   * @returns {Frame | null}
   */
  _takeAck(every = 1) {
    const ack = this.peer.ackFrame(every);
    if (ack && this._ackTimer !== null) {
      this._clock.clearTimeout(this._ackTimer);
      this._ackTimer = null;
    }
    return ack;
  }

  /**
   * @param {Frame} frame
   * @param {Transport} conn
   */
  _handle(frame, conn) {
    if ("s" in frame) {
      for (const ready of this.peer.receive(frame)) this._deliver(ready);
      return;
    }
    switch (frame.t) {
      case "ack":
        this.peer.onAck(Number(frame.i));
        if (this.peer.outbox.size === 0) this._pacer.drained();
        break;
      case "ping": {
        // Only a WebSocket must answer (protocol §3.3): the server drops one that stays silent.
        // On SSE the ping is a heartbeat and nothing more (§3.4): a POSTed pong would cost a
        // request every `hb` for nothing. Answered at once, from the message handler:
        // background-tab timer throttling never delays it; any pending ack rides along.
        if (conn.name !== "websocket") break;
        /** @type {Frame[]} */
        const out = [{ t: "pong" }];
        const ack = this._takeAck();
        if (ack) out.push(ack);
        this._control(conn, out);
        break;
      }
      case "pong":
        if (typeof frame.n === "number") {
          this._pongs.get(frame.n)?.();
          this._pongs.delete(frame.n);
        }
        break;
      case "bye": {
        const code = String(frame.code ?? "session_closed");
        const why = `${conn.name}: session ended by the server (${code}: ${frame.reason ?? ""})`;
        if (code === "shutting_down") {
          // Not our session's end: this server is going away. Resume the session elsewhere, now.
          this._connClosed(conn, why, errorOf(frame));
          break;
        }
        this._sessionGone(`${code}: ${frame.reason ?? ""}`);
        this._connClosed(conn, why, null);
        break;
      }
      case "err":
        if (frame.code === "rate_limited" && typeof frame.re === "number") {
          this._rateLimited(frame.re, Number(frame.retry_after ?? 0));
          break;
        }
        this._emit("error", { code: String(frame.code), reason: String(frame.reason ?? "") });
        break;
      default:
        break;
    }
  }

  /** @param {Frame} frame */
  _deliver(frame) {
    switch (frame.t) {
      case "pub":
        this._subs.get(frame.ch)?.deliver(Number(frame.o), frame.d);
        break;
      case "reply":
      case "err": {
        const waiter = typeof frame.re === "number" ? this._waiting.get(frame.re) : undefined;
        if (waiter) {
          this._waiting.delete(frame.re);
          waiter.settle(frame);
        } else if (frame.t === "err") {
          this._emit("error", { code: String(frame.code), reason: String(frame.reason ?? "") });
        }
        break;
      }
      case "push":
        this._emit("push", { event: String(frame.ev), data: frame.d });
        break;
      case "join":
      case "leave":
        this._emit("presence", { kind: frame.t, channel: String(frame.ch), member: frame.m ?? {} });
        break;
      case "resync": {
        this._subs.get(frame.ch)?.resync(String(frame.ep), Number(frame.off));
        this._emit("resync", { channel: String(frame.ch), epoch: String(frame.ep) });
        break;
      }
      case "unsubd": {
        const sub = this._subs.get(frame.ch);
        if (sub) {
          this._subs.delete(frame.ch);
          sub.end(errorOf(frame));
        }
        break;
      }
      default:
        break;
    }
  }

  // -- liveness -----------------------------------------------------------------------------------

  _hidden() {
    return typeof document !== "undefined" && document.visibilityState === "hidden";
  }

  /**
   * Judge the transport by what arrives: silent past its limit, it is broken — unless our own
   * timer ran late (a throttled or frozen tab), in which case a ping decides.
   * @param {Transport} conn
   */
  _armWatchdog(conn) {
    this._clock.clearTimeout(this._watchdog);
    const limit = () =>
      silenceLimit(conn.name, conn.welcome, {
        hidden: this._hidden(),
        hiddenSlack: this.options.hiddenSlack,
        pollMax: this.options.pollInterval[1],
      });
    /** @param {number} wait */
    const arm = (wait) => {
      const due = this._clock.now() + wait;
      this._watchdog = this._clock.setTimeout(() => {
        if (this._conn !== conn || this.state !== "connected") return;
        const now = this._clock.now();
        const silent = now - this._lastHeard;
        const max = limit();
        const verdict = silenceVerdict({ silent, limit: max, late: now - due });
        if (verdict === "alive") arm(Math.max(50, max - silent));
        else if (verdict === "check") {
          this._check("the page was asleep");
          arm(Math.max(max, this.options.verifyTimeout * 2 + 1000)); // let the check decide
        } else this._connClosed(conn, `${conn.name}: nothing received for ${seconds(silent)}`, null);
      }, wait);
    };
    arm(limit());
  }

  /**
   * Ask the server for a pong; drop the transport if none comes back in time.
   * @param {string} why
   */
  _check(why) {
    const conn = this._conn;
    if (!conn || this.state !== "connected" || this._checking) return;
    this._checking = true;
    const nonce = Math.floor(this._random() * 2 ** 31);
    const timeout = this.options.verifyTimeout * 2;
    const timer = this._clock.setTimeout(() => {
      this._pongs.delete(nonce);
      this._checking = false;
      this._connClosed(conn, `${conn.name}: no answer to a check within ${seconds(timeout)} (${why})`, null);
    }, timeout);
    this._pongs.set(nonce, () => {
      this._clock.clearTimeout(timer);
      this._checking = false;
    });
    this._control(conn, [{ t: "ping", n: nonce }]);
  }

  // -- climbing back up ---------------------------------------------------------------------------

  _startProbe() {
    if (this._probeAbort) return;
    const abort = new AbortController();
    this._probeAbort = abort;
    this._probe(abort.signal).finally(() => {
      if (this._probeAbort === abort) this._probeAbort = null;
      const conn = this._conn;
      if (!abort.signal.aborted && conn && this.state === "connected" && this.policy.above(conn.name).length) {
        this._startProbe();
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
   * @param {AbortSignal} signal
   */
  async _probe(signal) {
    let delay = this.options.probeDelay;
    while (!signal.aborted && this.state === "connected" && this._conn) {
      await pause(this._clock, delay * (0.5 + 0.5 * this._random()), signal);
      const current = this._conn;
      if (signal.aborted || !current || this.state !== "connected") return;
      for (const rung of this.policy.above(current.name)) {
        /** @type {Transport} */
        let candidate;
        try {
          candidate = await this._open(rung, signal);
        } catch (error) {
          if (signal.aborted) return;
          const reason = error instanceof TransportClosed ? error.reason : String(error);
          this._emit("probe", { rung, ok: false, reason });
          if (error instanceof TransportClosed && error.error && SESSION_GONE.has(error.error.code)) {
            // Our session is gone: the current transport will learn it soon; stop probing.
            return;
          }
          continue;
        }
        if (this._conn !== current || this.state !== "connected" || signal.aborted) {
          candidate.close();
          return;
        }
        if (!candidate.welcome.resumed) {
          this._discard(candidate);
          continue;
        }
        this._emit("probe", { rung, ok: true, reason: `${rung}: round trip completed` });
        this._switch(current, candidate, `${rung} works again (probe succeeded)`);
        return;
      }
      delay = Math.min(delay * 2, this.options.probeMaxDelay);
    }
  }

  /**
   * Hand over from `old` to `candidate` (already resumed on the same session): the server
   * replays from our acknowledgement on the new transport and we drop repeats; unacknowledged
   * messages are written again on it.
   * @param {Transport} old
   * @param {Transport} candidate
   * @param {string} reason
   */
  _switch(old, candidate, reason) {
    try {
      this.peer.welcome(candidate.welcome);
    } catch (error) {
      candidate.close(); // a welcome that contradicts what we sent: stay where we are
      this._emit("probe", { rung: candidate.name, ok: false, reason: `${candidate.name}: ${String(error)}` });
      return;
    }
    this._conn = candidate;
    this._lastRung = candidate.name;
    this._opened = this._lastHeard = this._clock.now();
    this.policy.won(candidate.name);
    this._remember(candidate.name);
    this._stopTimers();
    old.close();
    this._attach(candidate);
    this._changed(old.name, candidate.name, reason);
    this._flush();
  }

  // -- rung memory (sessionStorage: per tab, survives reloads) ----------------------------------

  _key() {
    return `ladder.rung:${this.url}`;
  }

  _recall() {
    try {
      return this._storage?.getItem(this._key()) ?? null;
    } catch {
      return null;
    }
  }

  /** @param {Rung} rung */
  _remember(rung) {
    try {
      this._storage?.setItem(this._key(), rung);
    } catch {
      // storage full or disabled: the memory is only an optimisation
    }
  }

  // -- browser realities --------------------------------------------------------------------------

  _hookBrowser() {
    /**
     * @param {EventTarget} target
     * @param {string} name
     * @param {(event: any) => void} handler
     */
    const hook = (target, name, handler) => {
      target.addEventListener(name, handler);
      this._unhook.push(() => target.removeEventListener(name, handler));
    };
    hook(window, "online", () => this.wake("the network came back"));
    hook(window, "offline", () => this.wake("the network went away"));
    hook(document, "visibilitychange", () => {
      if (document.visibilityState !== "visible") return;
      // A visible tab is a person looking: reconnect now, or make sure the connection is alive.
      if (this.state === "connected" && this._clock.now() - this._lastHeard < 5000) return;
      this.wake("the tab became visible");
    });
    hook(window, "pagehide", (event) => {
      if (event.persisted) this._suspend();
      else this.close();
    });
    hook(window, "pageshow", (event) => {
      if (event.persisted) this._resume();
    });
  }

  /** The page went into the back/forward cache: release every connection, keep the session. */
  _suspend() {
    if (this.state === "closed" || this._suspended) return;
    this._suspended = true;
    this._raceAbort?.abort();
    this._wakeSleep?.();
    const conn = this._conn;
    if (conn) this._connClosed(conn, `${conn.name}: the page was hidden`, null);
  }

  /** The page came back from the back/forward cache: reconnect (resuming the session if it lives). */
  _resume() {
    if (!this._suspended) return;
    this._suspended = false;
    this._unsuspend?.();
  }
}

/**
 * Wait `ms` (less if `signal` aborts).
 * @param {Clock} clock
 * @param {number} ms
 * @param {AbortSignal} signal
 * @returns {Promise<void>}
 */
function pause(clock, ms, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clock.clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = clock.setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

/**
 * Why a race ended where it did, for the `transport` event.
 * @param {RaceResult} result
 */
function describeRace(result) {
  const parts = Object.values(result.failures).map((f) => f?.reason);
  for (const rung of result.unproven) parts.push(`${rung}: not proven within ${seconds(result.elapsed)}`);
  return parts.join("; ") || "connected";
}

function sessionStore() {
  try {
    return typeof sessionStorage !== "undefined" ? sessionStorage : null;
  } catch {
    return null; // storage disabled
  }
}

/**
 * Create a client and start connecting. It reconnects by itself until `close()`.
 * @param {string} url where the hub is mounted, e.g. "/ladder"
 * @param {ClientOptions} [options]
 */
export function connect(url, options = {}) {
  return new Client(url, options).start();
}
