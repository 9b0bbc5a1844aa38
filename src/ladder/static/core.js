// @ts-check
/**
 * The client's decisions, with no I/O: time passed in (ms), decisions out. A port of the
 * Python core (`ladder.protocol.client`), the same names in camelCase; each function and
 * method takes one object of named arguments, as the Python ones take keyword arguments.
 * Randomness is passed in too (`rand`, a draw from [0, 1)), so every decision is reproducible.
 * The shared conformance vectors (tests/vectors/*.json) pin every one of them in both
 * languages; docs/protocol.md §9 states them for third-party clients.
 */

import { MAX_QUEUE } from "./peer.js";

/** @typedef {"resume" | "back_off" | "resume_now" | "new_session" | "give_up"} Action */

// -- acking --------------------------------------------------------------------------------------

/**
 * Unacknowledged frames at which an ack goes at once, at most (drawn from [every/2, every]).
 * The server keeps 16 bytes per unacknowledged frame (the frame is shared by a publication's
 * subscribers); each ack costs a write (on SSE a POST). See protocol §9.7.
 */
export const ACK_EVERY = 512;
/** ms of quiet after which the frames unacknowledged are acknowledged. */
export const ACK_INTERVAL = 1000;

/**
 * When to acknowledge the server's messages on a stream (protocol §9.7): at once when the
 * frames unacknowledged reach a count drawn from [every/2, every] (drawn again after each such
 * ack: the subscribers of one channel do not all ack on the same publication), or half the
 * server's `lim.queue`, or their bytes half its `lim.qbytes`; otherwise once the stream has
 * been quiet for `interval` ms. One timer, started by the first unacknowledged frame and never
 * moved: when it fires, `due` says how much of the quiet spell is left.
 */
export class AckPolicy {
  /** @param {{every?: number, interval?: number}} [options] */
  constructor({ every = ACK_EVERY, interval = ACK_INTERVAL } = {}) {
    this.every = every;
    this.interval = interval;
    /** @type {number | null} half the server's `lim.queue` (null until a welcome says) */
    this.maxFrames = null;
    /** @type {number | null} half the server's `lim.qbytes` (null until a welcome says) */
    this.maxBytes = null;
    /** Unacknowledged frames at which the next ack goes at once. */
    this.at = every;
  }

  /**
   * A transport was welcomed with the server's limits `lim`: ack before half its queue of
   * unacknowledged frames (`queue`) or bytes (`qbytes`) fills.
   * @param {{lim: Record<string, any>, rand: number}} args
   */
  welcome({ lim, rand }) {
    this.maxFrames = half(lim.queue);
    this.maxBytes = half(lim.qbytes);
    this._draw(rand);
  }

  /**
   * Frames were delivered, `unacked` of them (`unackedBytes` bytes) not yet acknowledged:
   * "now" (send an ack; the next count is drawn with `rand`), "timer" (start the ack timer) or
   * "none". `implicit`: the transport acks by itself (polls).
   * @param {{unacked: number, timerRunning: boolean, implicit?: boolean, unackedBytes?: number, rand?: number}} args
   * @returns {"now" | "timer" | "none"}
   */
  received({ unacked, timerRunning, implicit = false, unackedBytes = 0, rand = 0.5 }) {
    if (implicit || unacked <= 0) return "none";
    if (unacked >= this.at || (this.maxBytes !== null && unackedBytes >= this.maxBytes)) {
      this._draw(rand);
      return "now";
    }
    return timerRunning ? "none" : "timer";
  }

  /**
   * The ack timer fired, the last frame having arrived `quiet` ms ago: ms still to wait (start
   * the timer again for that long), or 0: acknowledge now.
   * @param {{quiet: number}} args
   * @returns {number}
   */
  due({ quiet }) {
    return Math.max(0, this.interval - quiet);
  }

  /** @param {number} rand */
  _draw(rand) {
    const at = Math.max(1, Math.ceil(this.every / 2 + (rand * this.every) / 2));
    this.at = this.maxFrames === null ? at : Math.min(at, this.maxFrames);
  }
}

/**
 * Half a limit the welcome gave, or null when it gave none (or not a positive integer).
 * @param {unknown} limit
 * @returns {number | null}
 */
const half = (limit) => (Number.isInteger(limit) && /** @type {number} */ (limit) > 0 ? Math.max(1, Math.floor(/** @type {number} */ (limit) / 2)) : null);

// -- backoff -------------------------------------------------------------------------------------

/** Failed races retried at once before backing off (the next request may reach another node). */
export const RETRIES_AT_ONCE = 2;
/** ms: the reconnect delays' first ceiling (protocol §9.4); the client's `backoffBase` by default. */
export const BACKOFF_BASE = 500;
/** ms: their largest ceiling; the client's `backoffMax` by default. */
export const BACKOFF_MAX = 5000;
/** ms: how long the first connection may take (§9.5); the client's `connectTimeout` by default. */
export const CONNECT_TIMEOUT = 15_000;

/**
 * A delay in [0, min(cap, base * 2^attempt)), `rand` being a draw from [0, 1).
 * @param {{attempt: number, base: number, cap: number, rand: number}} args
 */
export function fullJitter({ attempt, base, cap, rand }) {
  return Math.min(cap, base * 2 ** Math.min(attempt, 32)) * rand;
}

/**
 * The pause before the next race, `failures` races having failed since the last welcome:
 * none failed: [0, base); then `atOnce` immediate retries; then full jitter from `base` to `cap`.
 * @param {{failures: number, base: number, cap: number, rand: number, atOnce?: number}} args
 */
export function reconnectDelay({ failures, base, cap, rand, atOnce = RETRIES_AT_ONCE }) {
  if (failures <= 0) return fullJitter({ attempt: 0, base, cap, rand });
  if (failures <= atOnce) return 0;
  return fullJitter({ attempt: failures - atOnce, base, cap, rand });
}

/**
 * The reconnect bookkeeping of one client (ms): how long to wait, and when to give up.
 * `connectTimeout` bounds the first connection only (null: no bound); `maxAttempts` bounds
 * races failed in a row (null: forever). `atDeadline` is what the first connect's deadline
 * leads to: "give_up" (a script: `connect()` raises) or "report" (a page, which cannot be
 * re-run: say so once and keep trying).
 */
export class Reconnect {
  /** @param {{base?: number, cap?: number, atOnce?: number, connectTimeout?: number | null, maxAttempts?: number | null, atDeadline?: "give_up" | "report", stableAfter?: number}} [options] */
  constructor({ base = BACKOFF_BASE, cap = BACKOFF_MAX, atOnce = RETRIES_AT_ONCE, connectTimeout = CONNECT_TIMEOUT, maxAttempts = null, atDeadline = "give_up", stableAfter = STABLE_AFTER } = {}) {
    if (atDeadline !== "give_up" && atDeadline !== "report") throw new TypeError(`atDeadline must be "give_up" or "report", not ${JSON.stringify(atDeadline)}`);
    this.base = base;
    this.cap = cap;
    this.atOnce = atOnce;
    this.connectTimeout = connectTimeout;
    this.maxAttempts = maxAttempts;
    /** Races failed since the last welcome or wake (the delay grows with it). */
    this.failures = 0;
    /** Races failed since the last welcome (`maxAttempts` counts these). */
    this.attempts = 0;
    this.connected = false;
    /** @type {number | null} */
    this.deadline = null;
    this.atDeadline = atDeadline;
    this.stableAfter = stableAfter;
    /** Connections in a row that ended within `stableAfter` of their welcome. */
    this.short = 0;
    /** The deadline was reported (atDeadline "report"): once is enough. */
    this.reported = false;
  }

  /**
   * The client starts connecting at `now`: returns the first connect's deadline.
   * @param {{now: number}} args
   */
  started({ now }) {
    if (!this.connected && this.connectTimeout !== null && this.deadline === null) this.deadline = now + this.connectTimeout;
    return this.deadline;
  }

  /**
   * A race failed at `now`: `{wait}` before the next, or `{give_up, at}` (`connect_failed` once
   * the next try would pass the first connect's deadline; `timeout` after `maxAttempts`).
   * @param {{now: number, rand: number}} args
   * @returns {{wait: number} | {give_up: string, at: number}}
   */
  failed({ now, rand }) {
    this.failures += 1;
    this.attempts += 1;
    if (this.maxAttempts !== null && this.attempts >= this.maxAttempts) return { give_up: "timeout", at: now };
    const delay = reconnectDelay({ failures: this.failures, base: this.base, cap: this.cap, rand, atOnce: this.atOnce });
    if (this.atDeadline === "give_up" && !this.connected && this.deadline !== null && now + delay >= this.deadline) {
      return { give_up: "connect_failed", at: Math.max(now, this.deadline) };
    }
    return { wait: delay };
  }

  /**
   * The first connect's deadline passed without a welcome (the port's timer fired, perhaps
   * during a race): "give_up", "report" (once), or null (connected, no deadline, or reported).
   * @returns {"give_up" | "report" | null}
   */
  expired() {
    if (this.connected || this.deadline === null) return null;
    if (this.atDeadline === "give_up") return "give_up";
    if (this.reported) return null;
    this.reported = true;
    return "report";
  }

  /** Something says the network is back (online, the page visible): the delay starts again (`maxAttempts` still counts every failed race). */
  woken() {
    this.failures = 0;
  }

  /** A welcome: the count starts again and the first connect's deadline is gone. */
  welcomed() {
    this.failures = this.attempts = 0;
    this.connected = true;
    this.deadline = null;
  }

  /**
   * An established connection ended with `action` `lived` ms after its welcome: the pause
   * before reconnecting, [0, base) (a crowd that lost the server comes back spread out); none
   * for `resume_now`. After `back_off` (a refusal) from the second connection in a row that
   * ended so within `stableAfter`: full jitter doubling up to `cap`, so a server that
   * welcomes, then cannot serve, is not reconnected to a few times a second (a connection cut
   * on the way is not that: a flaky network is reconnected at once, each time).
   * @param {{action: string, rand: number, lived?: number | null}} args
   */
  ended({ action, rand, lived = null }) {
    if (action === "resume_now") return 0;
    if (action === "back_off" && lived !== null && lived < this.stableAfter) this.short += 1;
    else this.short = 0;
    return fullJitter({ attempt: Math.max(0, this.short - 1), base: this.base, cap: this.cap, rand });
  }
}

// -- climbing back -------------------------------------------------------------------------------

/** ms: the delay the probes start from (protocol §9.3); the client's `probeDelay` by default. */
export const PROBE_DELAY = 2000;
/** ms: the longest delay between probes; the client's `probeMaxDelay` by default. */
export const PROBE_MAX_DELAY = 30_000;

/** Delays (ms) between probes of the better rungs: from `first` doubling up to `cap`, each drawn from [delay/2, delay). */
export class ProbeSchedule {
  /**
   * One schedule lasts while the client stands on one rung: a reconnect on the same rung (a
   * proxy cutting long polls every few seconds) goes on with it, since the rungs above are no
   * likelier to work for it. Started again from `first` only where a new rung is reached.
   * @param {{first?: number, cap?: number}} [options]
   */
  constructor({ first = PROBE_DELAY, cap = PROBE_MAX_DELAY } = {}) {
    this.first = first;
    this.cap = cap;
    this.delay = first;
    /** @type {string | null} where the client stood when last told (`stand`) */
    this.rung = null;
    /** @type {number | null} when the next probe is due (ms, the driver's clock), once drawn with `now` */
    this.due = null;
    this._fresh = true;
  }

  /**
   * The pause before the next probe; the one after doubles. With `now`, the probe's time is
   * kept for a reconnect (`resume`).
   * @param {{rand: number, now?: number}} args
   */
  nextDelay({ rand, now }) {
    const pause = this.delay * (0.5 + 0.5 * rand);
    this.delay = Math.min(this.delay * 2, this.cap);
    this.due = now === undefined ? null : now + pause;
    return pause;
  }

  /** A new lower rung was reached: start from `first` again. */
  reset() {
    this.delay = this.first;
    this.due = null;
  }

  /**
   * The client stands on `rung` now (every welcome, a probe's too): on another rung than
   * before, the next `resume` starts the schedule again.
   * @param {{rung: string}} args
   */
  stand({ rung }) {
    if (rung !== this.rung) {
      this.rung = rung;
      this._fresh = true;
    }
  }

  /**
   * The pause before the first probe from a connection that just opened (`first` and `cap`:
   * the schedule's, were it to start again). On a rung just reached: drawn from
   * `[first/2, first)`, doubling after. After a reconnect on the same rung: the probe that was
   * due keeps its time, and the delays after it go on doubling; one that fell due while
   * reconnecting is drawn again from `[first/2, first)` (a crowd coming back from an outage
   * does not probe at once).
   * @param {{first: number, cap: number, rand: number, now: number}} args
   */
  resume({ first, cap, rand, now }) {
    if (this._fresh) {
      this._fresh = false;
      this.first = first;
      this.cap = cap;
      this.reset();
    } else if (this.due !== null) {
      if (this.due > now) return this.due - now;
      const pause = this.first * (0.5 + 0.5 * rand);
      this.due = now + pause;
      return pause;
    }
    return this.nextDelay({ rand, now });
  }
}

// -- credentials: when to refresh them over the live session -------------------------------------

/** ms: the shortest wait before a refresh (a clock far off the server's sees every `exp` as past). */
export const REFRESH_FLOOR = 1000;

/** ms: the shortest wait after a refresh that failed (the token function threw, the server refused). */
export const REFRESH_RETRY = 5000;

/**
 * ms until credentials expiring at `expires` should be refreshed, at `now` (both ms of Unix
 * time), `margin` ms ahead, but never sooner than halfway through what is left of them (a
 * token shorter than the margin is refreshed once per half-life, not in a loop); `retry`:
 * the last refresh failed (protocol §9.12).
 * @param {{expires: number, now: number, margin: number, retry?: boolean}} args
 */
export function refreshDelay({ expires, now, margin, retry = false }) {
  const left = expires - now;
  const delay = left > 0 ? left - Math.min(margin, left / 2) : 0;
  return Math.max(delay, retry ? REFRESH_RETRY : REFRESH_FLOOR);
}

// -- ending: what ends a transport or a race leads to (two tables) --------------------------------

/** Refusals that retrying cannot fix, on any request. */
export const FATAL = new Set(["unauthorized", "origin_not_allowed", "unsupported_version"]);
/** Refusals meaning the server no longer has the session. */
export const SESSION_GONE = new Set(["unknown_session", "session_closed", "slow_consumer", "bad_resume_token"]);

/**
 * The server ended the session on purpose (`hub.disconnect`): heard as a `bye` or, by a client
 * that was not listening then (a short poll), as the refusal of its next request; either way
 * the client gives up, without an `error` event.
 */
export const ENDED_ON_PURPOSE = "session_closed";

/** A `bye` by its code; any other code ended this session only: start a new one. @type {Record<string, Action>} */
const BYE = { session_closed: "give_up", shutting_down: "resume_now" };

/** A refused request (HTTP status, WebSocket close code or `err`) by its code. @type {Record<string, Action>} */
const REFUSAL = {
  ...Object.fromEntries([...FATAL].map((code) => [code, /** @type {Action} */ ("give_up")])),
  ...Object.fromEntries([...SESSION_GONE].map((code) => [code, /** @type {Action} */ ("new_session")])),
  [ENDED_ON_PURPOSE]: "give_up",
  shutting_down: "resume_now",
  token_expired: "resume", // (a token function is called again; a fixed token: give_up, below)
  // The server heard nothing from the client for two heartbeats: the connection failed the
  // client (a proxy forwarding only one way), not the server: a cut (RungPolicy.dropped).
  heartbeat_timeout: "resume",
};

/**
 * How an established connection ended, and what follows. `via`: "bye" (no code means
 * `session_closed`), "refusal" (a request on the transport was refused with `code`) or "close".
 * @param {{via: "bye" | "refusal" | "close", code?: string | null, tokenRefreshable?: boolean}} args
 * @returns {Action}
 */
export function afterTransport({ via, code = null, tokenRefreshable = true }) {
  // A fixed token that expired: a bye says so as a refusal does, and a new session with it is refused so.
  if (code === "token_expired" && !tokenRefreshable && via !== "close") return "give_up";
  if (via === "bye") return BYE[code ?? "session_closed"] ?? "new_session";
  if (via === "refusal" && code !== null) return REFUSAL[code] ?? "back_off";
  return "resume";
}

/**
 * Whether a refusal with `code`, on any rung of a race, ends the client: a fatal refusal, the
 * session's end on purpose, or an expired token that cannot be refreshed. No other rung can
 * help then, so the race stops at once (`RaceSchedule.failed`).
 * @param {string | null | undefined} code
 * @param {boolean} tokenRefreshable
 */
function givesUp(code, tokenRefreshable) {
  return code != null && (FATAL.has(code) || code === ENDED_ON_PURPOSE || (code === "token_expired" && !tokenRefreshable));
}

/**
 * What a race leads to, from the refusal codes heard on any of its rungs: one that `givesUp`
 * gives up even when another rung won; else a winner is adopted; with none, a gone session
 * is replaced at once, anything else retried with backoff.
 * @param {{codes: readonly string[], won: boolean, tokenRefreshable?: boolean}} args
 * @returns {"adopt" | "give_up" | "new_session" | "retry"}
 */
export function afterRace({ codes, won, tokenRefreshable = true }) {
  if (codes.some((code) => givesUp(code, tokenRefreshable))) return "give_up";
  if (won) return "adopt";
  if (codes.some((code) => SESSION_GONE.has(code))) return "new_session";
  return "retry";
}

/**
 * Only a WebSocket answers the server's `ping` with `pong`; on SSE a ping is a heartbeat.
 * @param {{rung: string}} args
 */
export function answersPing({ rung }) {
  return rung === "websocket";
}

// -- durations in reasons ------------------------------------------------------------------------

/**
 * `ms` as a reason writes it, the same in both clients: seconds to the millisecond (at least
 * 1 ms), without trailing zeros: `0.5 s`, `10 s`, `0.001 s`, as the protocol writes its
 * durations (a call timed out "within 500 ms" in this client, "within 0.5 s" in the other).
 * @param {{ms: number}} args
 */
export function seconds({ ms }) {
  return `${Math.max(1, Math.round(ms)) / 1000} s`;
}

/**
 * The reason of a request (`call`, `publish`, `presence`, `history`) that had no answer
 * within its `timeout` ms: the `timeout` error's.
 * @param {{timeout: number}} args
 */
export function noReply({ timeout }) {
  return `no reply within ${seconds({ ms: timeout })}`;
}

// -- the ladder ----------------------------------------------------------------------------------

/** Every rung, best first. */
export const RUNGS = ["websocket", "sse", "longpoll", "poll"];

/** A reason's words → the one word a hello's `why` carries (first match wins). */
const WHY = [
  ["buffered", "buffered"], ["cut ", "cut"], ["heartbeat", "heartbeat"], ["nothing received", "heartbeat"],
  ["refused", "refused"], ["cannot connect", "refused"], ["not open after", "timeout"], ["no welcome", "timeout"],
  ["probe", "probe"], ["lost", "lost"], ["closed", "lost"], ["session ended", "lost"],
];

/**
 * The `why` of the next hello from why the previous connection ended (null on the first
 * connect). Probes say `probe`; anything unrecognised is `error`.
 * @param {{reason: string | null}} args
 * @returns {string | null}
 */
export function why({ reason }) {
  if (reason === null || reason === undefined) return null;
  const lowered = reason.toLowerCase();
  return WHY.find(([needle]) => lowered.includes(needle))?.[1] ?? "error";
}

/** ms a connection must live to forgive the cuts before it (protocol §9.2); the client's `stableAfter` by default. */
export const STABLE_AFTER = 10_000;
/** Connections in a row cut sooner than that before the client steps down a rung; its `cutLimit` by default. */
export const CUT_LIMIT = 3;

/** The ladder's state for one client: the floor it stands on and its recent cuts. */
export class RungPolicy {
  /** @param {{rungs: readonly string[], cutLimit?: number, stableAfter?: number, start?: string | null}} options */
  constructor({ rungs, cutLimit = CUT_LIMIT, stableAfter = STABLE_AFTER, start = null }) {
    if (!rungs.length) throw new Error("at least one transport is needed");
    this.rungs = RUNGS.filter((rung) => rungs.includes(rung));
    this.cutLimit = cutLimit;
    this.stableAfter = stableAfter;
    this.floor = start !== null && this.rungs.includes(start) ? this.rungs.indexOf(start) : 0;
    /** @type {Record<string, number>} */
    this._cuts = Object.fromEntries(this.rungs.map((rung) => [rung, 0]));
    /** @type {Record<string, number>} times stepped down from each rung for its cuts since it last held */
    this._stepped = Object.fromEntries(this.rungs.map((rung) => [rung, 0]));
    /** @type {string[] | null} the rungs the server's last welcome offered (`tr`), when it said */
    this._offered = null;
    /** @type {Set<string>} allowed rungs the server refused as not offered (`unsupported_transport`) */
    this._refused = new Set();
    /** @type {string[] | null} the rungs the last such refusal said the server offers (its `details.tr`) */
    this._told = null;
  }

  get current() {
    return this.rungs[this.floor];
  }

  /**
   * Rungs to race on (re)connect: from the floor down, but none the server refused as not
   * offered; when that leaves none, every allowed rung it did not refuse (none: `stranded`).
   */
  candidates() {
    const below = this.rungs.slice(this.floor).filter((rung) => !this._refused.has(rung));
    return below.length ? below : this.rungs.filter((rung) => !this._refused.has(rung));
  }

  /**
   * Better rungs than `rung`, best first: what a probe tries (of those the server offers,
   * once a welcome said which; none it refused as not offered).
   * @param {{rung: string}} args
   */
  above({ rung }) {
    const offered = this._offered;
    return this.rungs.slice(0, this.rungs.indexOf(rung)).filter((r) => !this._refused.has(r) && (offered === null || offered.includes(r)));
  }

  /**
   * A welcome listed the rungs its server offers (`tr`): a probe does not try the others,
   * which would be refused every time for as long as the client lives.
   * @param {{rungs: readonly string[]}} args
   */
  offered({ rungs }) {
    this._offered = [...rungs];
    for (const rung of rungs) this._refused.delete(rung);
  }

  /**
   * `rung` was refused with `unsupported_transport`; `details`: the refusal's, whose `tr`
   * lists the rungs the server offers, when it says. No race or probe tries the rungs it does
   * not offer until a welcome lists them.
   * @param {{rung: string, details?: unknown}} args
   */
  notOffered({ rung, details = null }) {
    this._refused.add(rung);
    const offered = details !== null && typeof details === "object" ? /** @type {{tr?: unknown}} */ (details).tr : null;
    if (Array.isArray(offered) && offered.every((r) => typeof r === "string")) {
      this._told = [...offered];
      for (const r of this.rungs) if (!offered.includes(r)) this._refused.add(r);
    }
  }

  /**
   * Why to give up, when the server refused every rung this client allows as not offered (a
   * user's mistake on one side or the other, which no retry mends), else null.
   * @returns {string | null}
   */
  stranded() {
    if (this.rungs.some((rung) => !this._refused.has(rung))) return null;
    const allowed = this.rungs.join(", ");
    const fix = `or offer ${oneOf(this.rungs)} on the server`;
    if (this._told === null) {
      return `this client allows only ${allowed} (its transports option), which the server does not offer (its transports setting): allow another rung in the client's transports, ${fix}`;
    }
    return `this client allows only ${allowed} (its transports option) and the server offers only ${this._told.join(", ")} (its transports setting): allow ${oneOf(this._told)} in the client's transports, ${fix}`;
  }

  /**
   * A race (or a probe) was won on `rung`: stand there.
   * @param {{rung: string}} args
   */
  won({ rung }) {
    this.floor = this.rungs.indexOf(rung);
  }

  /**
   * A connection on `rung` ended after `lived` ms (`heard`: ms from its opening to the last
   * thing it delivered): the reason for stepping down when this makes `cutLimit` short-lived
   * connections in a row, or when the stream was found buffered (`reason` itself), else null. One dropped for its silence worked only until it went
   * quiet: a proxy that passes the welcome, then silently stops forwarding, cuts too. One the
   * server ended with a refusal (`action` "back_off": `engine_unavailable`, `internal`, …) is
   * not a cut: the rung carried the server's word, and a lower rung reaches that server no
   * better; the cuts before it stand. One the server closed for hearing nothing from the
   * client (`heartbeat_timeout`) is a cut whatever it lived: the server had stopped hearing
   * it two heartbeats before, while the client, hearing the server, saw nothing wrong (a
   * proxy forwarding one way only).
   * @param {{rung: string, lived: number, reason: string, heard?: number | null, action?: string | null}} args
   */
  dropped({ rung, lived, reason, heard = null, action = null }) {
    const at = this.rungs.indexOf(rung);
    if (why({ reason }) === "buffered" && at + 1 < this.rungs.length && this.floor <= at) {
      // As at the open: a stream found buffered is abandoned for the rung below (§9.2).
      this._cuts[rung] = 0;
      this.floor = at + 1;
      return reason;
    }
    if (heard !== null && why({ reason }) === "heartbeat") lived = Math.min(lived, heard);
    if (reason.includes(UNHEARD)) lived = 0;
    if (lived >= this.stableAfter) {
      this._cuts[rung] = this._stepped[rung] = 0;
      return null;
    }
    if (action === "back_off") return null;
    this._cuts[rung] += 1;
    const position = this.rungs.indexOf(rung);
    if (this._cuts[rung] >= this.cutLimit && position + 1 < this.rungs.length && this.floor <= position) {
      this._cuts[rung] = 0;
      this._stepped[rung] += 1;
      this.floor = position + 1;
      if (reason.includes(UNHEARD)) return `${rung}: cut ${this.cutLimit} times in a row (last: ${reason})`; // (it lived longer: the server had stopped hearing it)
      return `${rung}: cut ${this.cutLimit} times in a row, each within ${this.stableAfter / 1000} s of opening (last: ${reason})`;
    }
    return null;
  }

  /**
   * The delay `d` (ms) the probes from `rung` start with: `first`, unless the client stepped
   * down for its cuts from a rung a probe tries (any offered rung above `rung`, not only the
   * one just above: cut on WebSocket, a race can land two rungs lower when SSE fails); then
   * `stableAfter` doubled for each step down from the most stepped-down of those rungs since
   * it last held, up to `PROBE_WAIT_CAP` (a probe would find it open and climb straight back
   * to be cut again).
   * @param {{rung: string, first: number}} args
   */
  probeWait({ rung, first }) {
    const stepped = Math.max(0, ...this.above({ rung }).map((r) => this._stepped[r]));
    if (!stepped) return first;
    return Math.max(first, Math.min(this.stableAfter * 2 ** stepped, PROBE_WAIT_CAP));
  }
}

/** @param {readonly string[]} rungs */
const oneOf = (rungs) => (rungs.length === 1 ? rungs[0] : `one of ${rungs.join(", ")}`);

/** The code of a connection the server closed for hearing nothing from the client, as its reason carries it. */
const UNHEARD = "heartbeat_timeout";

/** ms: the longest delay probes start with after steps down for cuts (a probe every 80-160 s). */
export const PROBE_WAIT_CAP = 160_000;

// -- proving a stream ----------------------------------------------------------------------------

/** ms: the least time a pong may take after its POST was answered (§9.2). */
export const PROOF_FLOOR = 1000;
/** The most round trips of its POST a pong may take after the POST was answered. */
export const PROOF_FACTOR = 4;
/** Late pongs in a row that prove a live stream buffered (one may be a stalled client). */
export const PROOF_STRIKES = 2;
/** ms: a pong's deadline noticed later than this means the client, not the stream, was asleep. */
const ASLEEP = 1000;
/** ms an SSE stream's first pong may take (a check on a live stream: twice this) before the stream counts as failed. */
export const VERIFY_TIMEOUT = 2500;

/**
 * ms a pong may arrive after the answer to its POST, which took `roundTrip` ms.
 * @param {{roundTrip: number}} args
 */
export function pongBound({ roundTrip }) {
  return Math.max(PROOF_FLOOR, PROOF_FACTOR * roundTrip);
}

/**
 * Whether `rung`'s downstream must keep proving it is not buffered (SSE only).
 * @param {{rung: string}} args
 */
export function provesStream({ rung }) {
  return rung === "sse";
}

/**
 * The checks that a stream (SSE) is not buffered: a POSTed ping whose pong must come within
 * `pongBound` of the POST's answer (the server writes the pong before it answers), every
 * `every` ms; `strikes` late pongs among the last `strikes + 1` checks prove it buffered (1
 * at the open, 2 on a live stream: one late pong may be a page whose timers or script ran
 * late). Not in a row: the check made at once after a late pong can leave a proxy's buffer
 * in the same flush as the late one, in time. Arriving before a timeout is not enough: a
 * busy stream pushes a pong through a buffer within one.
 */
export class StreamProof {
  /** @param {{every?: number, strikes?: number}} [options] */
  constructor({ every = 20_000, strikes = PROOF_STRIKES } = {}) {
    this.every = every;
    this.strikes = strikes;
    /** @type {number | null} the ping whose pong is awaited */
    this.nonce = null;
    this.sentAt = 0;
    /** @type {number | null} when the pong is late (once its POST was answered) */
    this.deadline = null;
    /** @type {boolean[]} whether each of the last checks was late (at most `strikes + 1`, or 1) */
    this.recent = [];
    /** when the next check is due */
    this.nextAt = 0;
  }

  /** The stream was proven (its open's check): the next check in `every`. @param {{now: number}} args */
  start({ now }) {
    this.nonce = this.deadline = null;
    this.recent = [];
    this.nextAt = now + this.every;
  }

  /** Late pongs among the last checks. */
  get late() {
    return this.recent.filter(Boolean).length;
  }

  /** @param {boolean} late */
  _checked(late) {
    this.recent.push(late);
    this.recent.splice(0, this.recent.length - (this.strikes > 1 ? this.strikes + 1 : 1));
  }

  /** ms until the next ping should go (0: now), or null while one is awaited. @param {{now: number}} args */
  due({ now }) {
    return this.nonce !== null ? null : Math.max(0, this.nextAt - now);
  }

  /** A ping with `nonce` is being POSTed. @param {{nonce: number, now: number}} args */
  sent({ nonce, now }) {
    this.nonce = nonce;
    this.sentAt = now;
    this.deadline = null;
  }

  /**
   * The POST of ping `nonce` was answered: ms to wait for its pong (then call `expired`), or
   * null when there is nothing to wait for (its pong came first, or another ping replaced it).
   * @param {{nonce: number, now: number}} args
   */
  answered({ nonce, now }) {
    if (nonce !== this.nonce) return null;
    const bound = pongBound({ roundTrip: now - this.sentAt });
    this.deadline = now + bound;
    return bound;
  }

  /** The POST of ping `nonce` failed: it proves nothing. @param {{nonce: number}} args */
  failed({ nonce }) {
    if (nonce === this.nonce) this.nonce = this.deadline = null;
  }

  /**
   * A pong with `nonce` arrived: "proven", "again" (late: ping again now), "buffered" (late
   * in `strikes` of the last checks) or "none" (not the awaited one).
   * @param {{nonce: unknown, now: number}} args
   * @returns {"proven" | "again" | "buffered" | "none"}
   */
  pong({ nonce, now }) {
    if (this.nonce === null || nonce !== this.nonce) return "none";
    if (this.deadline !== null && now > this.deadline) return this._strike(now);
    this.nonce = this.deadline = null;
    this._checked(false);
    // From the ping, not the pong: a pong arrives as a buffer flushes, and a check timed from
    // it came at the same point of every flush cycle, where its pong was in time.
    this.nextAt = this.sentAt + this.every;
    return "proven";
  }

  /**
   * The pong's deadline passed with no pong: "again" or "buffered" as a late pong, "none" when
   * nothing is late. Noticed over ASLEEP late, the page was asleep: "again", without a strike.
   * @param {{now: number}} args
   * @returns {"proven" | "again" | "buffered" | "none"}
   */
  expired({ now }) {
    const deadline = this.deadline;
    if (this.nonce === null || deadline === null || now < deadline) return "none";
    if (now - deadline > ASLEEP) {
      this.nonce = this.deadline = null;
      this.nextAt = now;
      return "again";
    }
    return this._strike(now);
  }

  /** @param {number} now @returns {"again" | "buffered"} */
  _strike(now) {
    this.nonce = this.deadline = null;
    this._checked(true);
    if (this.late >= this.strikes) return "buffered";
    this.nextAt = now;
    return "again";
  }

  /** Why the stream is abandoned (a hello's `why` reads `buffered` in it). @param {{rung?: string}} [args] */
  reason({ rung = "sse" } = {}) {
    const times = this.strikes === 1 ? "" : `, in ${this.late} of its last ${this.recent.length} checks`;
    return `${rung}: stream buffered by something on the way (its pong came over ${PROOF_FLOOR / 1000} s and ${PROOF_FACTOR} round trips after its ping was answered${times})`;
  }
}

// -- liveness ------------------------------------------------------------------------------------

/** A watchdog firing more than this late (ms) means the client, not the link, was asleep. */
export const LATE_SLACK = 1000;
/** ms more a hidden page's transport may stay silent (browsers throttle its timers; the browser client only). */
export const HIDDEN_SLACK = 60_000;

/**
 * How long (ms) `rung` may stay silent: a stream 1.5 hb + 1 s; a long poll its hold + hb/2 + 5 s;
 * a short poll its slowest interval + 15 s; a hidden page `hiddenSlack` more.
 * @param {{rung: string, hb?: number, poll?: number, hidden?: boolean, hiddenSlack?: number, pollMax?: number}} args
 */
export function silenceLimit({ rung, hb = 20_000, poll = 25_000, hidden = false, hiddenSlack = HIDDEN_SLACK, pollMax = POLL_SLOWEST }) {
  let limit;
  if (rung === "websocket" || rung === "sse") limit = hb * 1.5 + 1000;
  else if (rung === "longpoll") limit = poll + hb / 2 + 5000;
  else limit = pollMax + 15_000;
  return hidden ? limit + hiddenSlack : limit;
}

/**
 * What a watchdog that fired `late` ms after it was due concludes, the transport having been
 * silent `silent` ms: "alive" (rearm), "check" (ping; drop only without a pong), "dead".
 * @param {{silent: number, limit: number, late: number, slack?: number}} args
 * @returns {"alive" | "check" | "dead"}
 */
export function silenceVerdict({ silent, limit, late, slack = LATE_SLACK }) {
  if (silent < limit) return "alive";
  return late > slack ? "check" : "dead";
}

/** ms: a visible tab heard from this recently needs no check when it becomes visible again. */
export const RECENT = 5000;

/**
 * What a page or machine event leads to (protocol §9.2, docs/browser.md "Mobile and
 * background"). `cause`: `pagehide` / `pageshow` (with `persisted`: the back/forward cache),
 * `freeze` / `resume` (a frozen tab), `visible`, `online`, `offline`; `state` the client's;
 * `silent` ms since the transport last delivered anything. "suspend" (release every
 * connection, keep the session), "resume" (reconnect now, resuming it), "leave" (say `bye`,
 * keep unsent messages for the next page), "check" (ping; drop the transport without a pong
 * in time), "reconnect" (now, instead of after the backoff), or "none".
 * @param {{cause: string, state: string, silent?: number, persisted?: boolean, recent?: number}} args
 * @returns {"suspend" | "resume" | "leave" | "check" | "reconnect" | "none"}
 */
export function wakeAction({ cause, state, silent = 0, persisted = false, recent = RECENT }) {
  if (state === "closed") return "none";
  if (cause === "pagehide") return persisted ? "suspend" : "leave";
  if (cause === "pageshow") return persisted ? "resume" : "none";
  if (cause === "freeze") return "none"; // nothing runs while frozen: `resume` decides
  const connected = state === "connected";
  if (cause === "offline") return connected ? "check" : "none";
  if (cause === "visible" && connected && silent < recent) return "none";
  if (cause === "resume" || cause === "visible" || cause === "online") return connected ? "check" : "reconnect";
  return "none";
}

// -- pacing --------------------------------------------------------------------------------------

/** ms: the shortest pace, whatever a server says. */
export const MIN_INTERVAL = 1;
/** Most messages that may become due while the client was busy (one batch at most). */
export const MAX_DUE = 64;

/**
 * ms at least between two writes while pacing over `POST send` (the due ones go together):
 * each POST is a request of the client's address, which the server bounds too.
 */
export const POST_GAP = 50;

/** The pace of upstream messages (protocol §4): unlimited until the server refuses one for its rate. */
export class Pacer {
  constructor() {
    /** ms between messages while pacing; 0 when not pacing. */
    this.interval = 0;
    this.resumeAt = 0;
    this._due = 0;
    this._stamp = 0;
    this._writtenAt = -1e12;
  }

  get pacing() {
    return this.interval > 0;
  }

  /**
   * The server refused a message for its rate: wait `retryAfter` ms, then pace.
   * @param {{retryAfter: number, now: number}} args
   */
  refused({ retryAfter, now }) {
    retryAfter = Math.max(retryAfter, MIN_INTERVAL);
    this.interval = Math.max(this.interval, retryAfter);
    this.resumeAt = Math.max(this.resumeAt, now + retryAfter);
    this._stamp = this.resumeAt;
    this._due = 1; // the refused message, once the wait is over
  }

  /**
   * How many messages may be written now (null: any number) and, when none may, how long until
   * one may. Over a separate upstream (`POST send`, each write a request) writes are POST_GAP
   * apart at least, what became due meanwhile written together.
   * @param {{now: number, separateUpstream?: boolean}} args
   * @returns {{count: number | null, wait: number}}
   */
  allowance({ now, separateUpstream = false }) {
    const gap = separateUpstream ? POST_GAP : 0;
    if (!this.pacing) return { count: null, wait: 0 };
    if (now < this.resumeAt) return { count: 0, wait: this.resumeAt - now };
    if (now < this._writtenAt + gap) return { count: 0, wait: this._writtenAt + gap - now };
    this._due = Math.min(MAX_DUE, this._due + (now - this._stamp) / this.interval);
    this._stamp = now;
    const due = Math.floor(this._due);
    if (due === 0) return { count: 0, wait: (1 - this._due) * this.interval };
    this._writtenAt = now;
    return { count: due, wait: 0 };
  }

  /** @param {{count: number}} args `count` messages were written under the current allowance */
  wrote({ count }) {
    if (this.pacing) this._due = Math.max(0, this._due - count);
  }

  /** @param {{count: number}} args `count` messages written under the allowance were not taken (their write failed): due again */
  returned({ count }) {
    if (this.pacing) this._due = Math.min(MAX_DUE, this._due + count);
  }

  /** Every message was acknowledged: write freely again. */
  drained() {
    this.interval = 0;
    this.resumeAt = 0;
    this._due = 0;
  }
}

/** ms a poll refused for the address's request rate waits in all before its transport is given up. */
export const POLL_REFUSED_MAX = 10_000;

/**
 * A poll refused with `code` (`retryAfter` ms, as the refusal said; `waited`: ms already
 * waited for this poll): when to poll again (ms), or null to give the transport up. A
 * `rate_limited` poll (the server's requests per address: not the transport's fault) is asked
 * again after `retryAfter` (50 ms at least), for up to POLL_REFUSED_MAX in all.
 * @param {{code: string | null, retryAfter: number | null, waited: number}} args
 * @returns {number | null}
 */
export function pollAgainIn({ code, retryAfter, waited }) {
  if (code !== "rate_limited" || waited >= POLL_REFUSED_MAX) return null;
  return Math.min(Math.max(retryAfter ?? 0, 50), POLL_REFUSED_MAX - waited);
}

/** ms between short polls while messages flow. */
export const POLL_FASTEST = 50;
/** ms between short polls at most, while idle. */
export const POLL_SLOWEST = 2000;

/**
 * Short polling's interval (ms): the fastest while messages flow, doubling up to the slowest
 * while idle. Only sequenced frames count as traffic (an `ack` or a `pong` answers our writes).
 */
export class PollPace {
  /** @param {{fastest?: number, slowest?: number}} [options] */
  constructor({ fastest = POLL_FASTEST, slowest = POLL_SLOWEST } = {}) {
    this.fastest = fastest;
    this.slowest = slowest;
    this.interval = fastest;
  }

  /**
   * A poll was answered with `frames`: the pause before the next poll.
   * @param {{frames: readonly Record<string, any>[]}} args
   */
  answered({ frames }) {
    this.interval = frames.some((frame) => "s" in frame) ? this.fastest : Math.min(this.slowest, this.interval * 2);
    return this.interval;
  }

  /** The client wrote something or was woken: poll now, then fast. */
  woken() {
    this.interval = this.fastest;
    return 0;
  }
}

/** ms: a long poll held less than this when a proxy answered it says nothing of a timeout. */
export const HOLD_CUT_FLOOR = 2000;

/**
 * A proxy's answers for a request it gave up waiting on (504 Gateway Timeout; Cloudflare's 524):
 * not 502, which a proxy sends when the server died (a crash lowered every client's hold for good).
 */
export const TIMED_OUT = new Set([504, 524]);

/** ms at least between a proxy's cut and the hold asked: the server releases a held poll within about a second of its hold. */
export const HOLD_MARGIN = 1500;

/**
 * How long a client asks the server to hold its long polls (protocol §3.5 `hold`, ms; null: the
 * server's `poll`). A proxy whose read timeout is shorter than the server's hold answers a held
 * poll itself (504, TIMED_OUT) every time: the client then asks for
 * three quarters of what that poll was held, or HOLD_MARGIN less when that is less, and never
 * more again, as the proxy stays. A poll answered so within HOLD_CUT_FLOOR says nothing of a
 * timeout; the server's own refusals are not the proxy's.
 */
export class LongPollHold {
  constructor() {
    /** @type {number | null} */
    this.hold = null;
  }

  /**
   * A long poll held `held` ms got HTTP `status` from something that is not the server.
   * @param {{held: number, status: number}} args
   */
  cut({ held, status }) {
    if (!TIMED_OUT.has(status) || held < HOLD_CUT_FLOOR) return;
    const asked = Math.floor(held - Math.max(held * 0.25, HOLD_MARGIN));
    if (this.hold === null || asked < this.hold) this.hold = asked;
  }
}

// -- renewal: a subscription renewed in a new session that the server refuses --------------------

/**
 * Refusals of a `sub` that say "later" (protocol §8). Not `rate_limited`: a message over the
 * rate is not applied and is written again by pacing (§4), never refused.
 */
export const RETRYABLE = new Set(["engine_unavailable"]);

/**
 * The renewals of one subscription (ms). A renewal is the client's own doing (its session was
 * lost): refused with a code that says "later", it is sent again after a pause drawn as the
 * reconnect delays are (full jitter from `base` up to `cap`, the client's `backoffBase` and
 * `backoffMax`), from where it was, until the server takes it or refuses it for good. The app
 * hears once per outage, and of a renewal refused for good too. A fresh `subscribe()` refused
 * is its caller's to decide (`ready()` rejects): nothing is retried nor told then.
 */
export class Renewal {
  /** @param {{base?: number, cap?: number}} [options] */
  constructor({ base = BACKOFF_BASE, cap = BACKOFF_MAX } = {}) {
    this.base = base;
    this.cap = cap;
    /** Refusals in a row since the subscription was last confirmed (the pause grows with it). */
    this.refusals = 0;
  }

  /**
   * The `sub` of `channel` was refused with `code`: `{retry_in}` (with `tell`, the `error`
   * event's reason, at the first refusal in a row), or `{end: true}` (with `tell` for a
   * `renewal`; a fresh subscribe is told by `ready()`).
   * @param {{channel: string, code: string, reason: string, rand: number, renewal?: boolean}} args
   * @returns {{retry_in: number, tell?: string} | {end: true, tell?: string}}
   */
  refused({ channel, code, reason, rand, renewal = true }) {
    if (!renewal) return { end: true };
    this.refusals += 1;
    const refusal = `renewing the subscription to '${channel}' in a new session was refused (${code}: ${reason})`;
    if (!RETRYABLE.has(code)) return { end: true, tell: `${refusal}: it ended; subscribe again to follow the channel` };
    /** @type {{retry_in: number, tell?: string}} */
    const step = { retry_in: fullJitter({ attempt: this.refusals - 1, base: this.base, cap: this.cap, rand }) };
    if (this.refusals === 1) step.tell = `${refusal}: it is sent again, from where it was, until the server takes it`;
    return step;
  }

  /** The server took the subscription: the next outage starts the count again. */
  confirmed() {
    this.refusals = 0;
  }
}

// -- the race and the upstream -------------------------------------------------------------------

/** ms, per rung in ladder order. */
export const STAGGER = [0, 300, 1000, 2000];
/** ms a started rung has to deliver its welcome before it counts as failed. */
export const OPEN_TIMEOUT = 10_000;

/**
 * Which rungs to start when, for one race (protocol §9.1); a refusal no rung can get past (a
 * bad token, a refused origin) ends the race at once.
 */
export class RaceSchedule {
  /** @param {{rungs: readonly string[], stagger?: readonly number[], tokenRefreshable?: boolean}} options */
  constructor({ rungs, stagger = STAGGER, tokenRefreshable = true }) {
    this.rungs = [...rungs];
    this.stagger = stagger.length ? [...stagger] : [0];
    this.tokenRefreshable = tokenRefreshable;
    this.index = 0;
    this.over = false;
  }

  /**
   * A rung failed, refused with `code` (null: no refusal heard). True when the race is over
   * (the client gives up): start no other rung, stop waiting for those opening.
   * @param {{code: string | null}} args
   * @returns {boolean}
   */
  failed({ code }) {
    if (givesUp(code, this.tokenRefreshable)) {
      this.over = true;
      this.index = this.rungs.length;
    }
    return this.over;
  }

  /**
   * The rungs to start `elapsed` ms into the race with `running` attempts in flight, and how
   * long until the next is due (null: none left).
   * @param {{elapsed: number, running: number}} args
   * @returns {{start: string[], wait: number | null}}
   */
  due({ elapsed, running }) {
    /** @type {string[]} */
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

/** ms before each new attempt of a failed `POST send` (each times a draw from [0.75, 1]). */
export const RETRY_DELAYS = [100, 400, 1000];
/** ms: the longest pause before writing again what the server keeps refusing for now (§9.8). */
export const REFUSED_CAP = 5000;

/** A failed upstream write: written again after short pauses over `POST send`, or the transport dropped. */
export class UpstreamRetry {
  /** @param {{delays?: readonly number[]}} [options] */
  constructor({ delays = RETRY_DELAYS } = {}) {
    this.delays = [...delays];
    this.failures = 0;
    /** failures without the server's word (no refusal code): past the delays, the rung is broken */
    this.unanswered = 0;
  }

  /**
   * A write failed (`code`: the server's refusal, if any): `{retry_in}` or `{drop: attempts}`.
   * A refusal for now (a code that neither gives up nor says the session is gone) never drops
   * a separate upstream: the rung works, and the pause grows instead, up to `REFUSED_CAP`.
   * `tooLarge`: the bytes of a `POST send` something other than the server refused with HTTP
   * 413 (a proxy's body limit), `alone` whether it carried one message only: written again
   * as it was, it was refused again on every rung and in every session. Messages are written
   * in POSTs of at most half as many bytes (`{shrink, retry_in: 0}`); one message alone too
   * large ends the client (`{give_up: reason}`, naming the fix). `retryAfter`: ms the
   * refusal said to wait (a POST over the address's request rate, `429`): never written again
   * sooner.
   * @param {{separateUpstream: boolean, code?: string | null, rand: number, tooLarge?: number | null, alone?: boolean, retryAfter?: number | null}} args
   * @returns {{retry_in: number} | {drop: number} | {shrink: number, retry_in: number} | {give_up: string}}
   */
  failed({ separateUpstream, code = null, rand, tooLarge = null, alone = false, retryAfter = null }) {
    if (tooLarge !== null) {
      if (alone) {
        return {
          give_up: `a POST of ${tooLarge} bytes (one message) was refused by something on the way with HTTP 413, not by the server: raise that proxy's request body limit (nginx: client_max_body_size) to the server's lim.post, or send smaller messages`,
        };
      }
      return { shrink: Math.max(1, Math.floor(tooLarge / 2)), retry_in: 0 };
    }
    this.failures += 1;
    const refused = code !== null && (SESSION_GONE.has(code) || FATAL.has(code));
    if (!separateUpstream || refused) return { drop: this.failures };
    if (code === null) {
      this.unanswered += 1;
      if (this.unanswered > this.delays.length) return { drop: this.failures };
    }
    const n = this.failures;
    const last = this.delays.length;
    const delay = n <= last ? this.delays[n - 1] : Math.min(this.delays[last - 1] * 2 ** (n - last), REFUSED_CAP);
    return { retry_in: Math.max(delay * (0.75 + 0.25 * rand), retryAfter ?? 0) };
  }

  sent() {
    this.failures = this.unanswered = 0;
  }
}

// -- the options' defaults ------------------------------------------------------------------------

/** ms a request (`call`, `publish`, `presence`, `history`, `refresh`) waits for its answer. */
export const REQUEST_TIMEOUT = 10_000;
/** ms before credentials expire at which a token function is asked for new ones. */
export const REFRESH_MARGIN = 60_000;

/**
 * Every option both clients take, with its default (protocol §9.14; ms, in the protocol's
 * snake_case names: the browser client's options are their camelCase forms). The driver takes
 * them from the constants above; this table is what the conformance vectors pin.
 * @returns {Record<string, number | number[]>}
 */
export function clientDefaults() {
  return {
    stagger: [...STAGGER],
    open_timeout: OPEN_TIMEOUT,
    verify_timeout: VERIFY_TIMEOUT,
    connect_timeout: CONNECT_TIMEOUT,
    backoff_base: BACKOFF_BASE,
    backoff_max: BACKOFF_MAX,
    stable_after: STABLE_AFTER,
    cut_limit: CUT_LIMIT,
    probe_delay: PROBE_DELAY,
    probe_max_delay: PROBE_MAX_DELAY,
    poll_interval: [POLL_FASTEST, POLL_SLOWEST],
    max_queue: MAX_QUEUE,
    ack_every: ACK_EVERY,
    ack_interval: ACK_INTERVAL,
    refresh_margin: REFRESH_MARGIN,
    request_timeout: REQUEST_TIMEOUT,
  };
}
