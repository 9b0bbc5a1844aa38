// @ts-check
/**
 * The `Client`: its public API and its state. It drives the sans-I/O parts with timers and
 * transports; each group of its methods lives in the module of that concept (the type of each
 * one-line method names it).
 */

import * as connection from "./connection.js";
import * as switching from "./switching.js";
import * as outbound from "./outbound.js";
import * as inbound from "./inbound.js";
import * as credentials from "./credentials.js";
import * as events from "./events.js";
import { Emitter } from "./events.js";
import { checkTokenLength, LadderError, requestOptions, shown } from "./errors.js";
import { MAX_QUEUE, PeerState } from "./peer.js";
import { RungPolicy, allowedRungs } from "./rungs.js";
import {
  ACK_EVERY, ACK_INTERVAL, BACKOFF_BASE, BACKOFF_MAX, CONNECT_TIMEOUT, CUT_LIMIT, HIDDEN_SLACK, LongPollHold, OPEN_TIMEOUT, POLL_FASTEST, POLL_SLOWEST,
  PROBE_DELAY, PROBE_MAX_DELAY, ProbeSchedule, Reconnect, REFRESH_MARGIN, REQUEST_TIMEOUT, STABLE_AFTER, STAGGER, UpstreamRetry, VERIFY_TIMEOUT,
} from "./core.js";
import { Pacer } from "./pacing.js";
import { Readiness } from "./readiness.js";
import { atMost, realClock } from "./clock.js";
import { reportLater, Subscription, subscribeArguments } from "./subscription.js";
import { Endpoint } from "./transport.js";
import { HttpTransport } from "./http.js";
import { makeTransport } from "./connection.js";
import { sessionStore } from "./switching.js";

/** @typedef {import("./events.js").ClientEvents} ClientEvents */
/** @typedef {import("./outbox.js").RestoredMessage} RestoredMessage */
/** @typedef {import("./clock.js").Clock} Clock */
/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./events.js").Member} Member */
/** @typedef {import("./subscription.js").Position} Position */
/** @typedef {import("./subscription.js").Publication} Publication */
/** @typedef {import("./rungs.js").Rung} Rung */
import { Transport } from "./transport.js"; // for the types
/** @typedef {import("./transport.js").TransportContext} TransportContext */

/**
 * A method of the client that the module named in its type implements (it takes the client first).
 * @template {(client: any, ...args: any[]) => any} F
 * @typedef {F extends (client: any, ...args: infer A) => infer R ? (...args: A) => R : never} Method
 */


/**
 * @typedef {object} ClientOptions
 * @property {readonly Rung[]} [transports] rungs allowed, best first (default: all four)
 * @property {string | null | (() => string | null | undefined | Promise<string | null | undefined>)} [token] credentials for the server's `authenticate` hook
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
 * @property {number} [ackEvery] acknowledge at once when about this many frames are unacknowledged (a count drawn from [ackEvery/2, ackEvery]; default 512)
 * @property {number} [ackInterval] ... otherwise once the stream has been quiet this long, ms (default 1000)
 * @property {number} [hiddenSlack] extra silence tolerated in a hidden tab, ms (default 60000)
 * @property {number} [refreshMargin] with a `token` function: refresh the credentials this long before they expire (halfway through for shorter ones), ms (default 60000)
 * @property {boolean} [remember] start from the rung that won last time in this tab (sessionStorage; default true)
 * @property {boolean} [share] share one connection with the other tabs of the browser (a SharedWorker or a leader tab; default true where `canShare` holds; false: a connection of this tab's own; see shared.js)
 * @property {boolean} [browserEvents] react to online/offline, visibility and pagehide (default true in a browser)
 * @property {boolean} [outbox] keep unacknowledged messages (`emit`, `publish`, `call`) in IndexedDB, so that they are sent once after a reload or by another tab (default true in a browser)
 * @property {number} [outboxBytes] most bytes of unacknowledged messages kept (default 1048576; past it `queue_full`)
 * @property {Pick<Storage, "getItem" | "setItem"> | null} [storage] where the winning rung and this tab's outbox id are remembered (default sessionStorage)
 * @property {IDBFactory} [indexedDB] (tests)
 * @property {LockManager} [locks] (tests)
 * @property {typeof fetch} [fetch]
 * @property {Clock} [clock]
 * @property {() => number} [random]
 * @property {(rung: Rung, ctx: TransportContext) => Transport} [transportFactory] (tests)
 */

/** @typedef {"disconnected" | "connecting" | "connected" | "closed"} ClientState */

/** @typedef {{settle: (reply: Frame) => void, kind: string}} Waiter */

/** The Ladder client. Create it with {@link connect}. */
/** The option names a client takes (a misspelt one would be ignored: it throws instead). */
const OPTIONS = Object.freeze([
  "transports", "token", "stagger", "openTimeout", "verifyTimeout", "connectTimeout", "backoffBase", "backoffMax",
  "maxAttempts", "stableAfter", "cutLimit", "probeDelay", "probeMaxDelay", "pollInterval", "maxQueue", "ackEvery",
  "ackInterval", "hiddenSlack", "refreshMargin", "remember", "share", "browserEvents", "outbox", "outboxBytes", "storage", "indexedDB",
  "locks", "fetch", "clock", "random", "transportFactory",
]);

/**
 * Refuse a misspelt option or a wrong `transports` at once, naming the fix (also for a tab
 * sharing a connection: in its worker, a throw would reach no one). Returns the rungs.
 * @param {ClientOptions} options
 */
export function checkOptions(options) {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(`options are an object, e.g. {transports: ["websocket", "sse"]}, not ${shown(options)}`);
  }
  const unknown = Object.keys(options).filter((name) => !OPTIONS.includes(name));
  if (unknown.length) throw new TypeError(`unknown option ${unknown.map((n) => JSON.stringify(n)).join(", ")}; the options are ${OPTIONS.join(", ")}`);
  const given = /** @type {Record<string, unknown>} */ (options);
  for (const name of MS) {
    const value = given[name];
    if (value === undefined || (value === null && NULLABLE.has(name))) continue;
    if (!isMs(value) || (value === 0 && !ZERO_OK.has(name))) {
      const least = ZERO_OK.has(name) ? ">= 0" : "above 0";
      throw new TypeError(`${name} must be a number of ms ${least}${NULLABLE.has(name) ? " (or null)" : ""}, not ${shown(value)}`);
    }
  }
  for (const [low, high] of ORDERED) ordered(low, high, given);
  for (const name of COUNTS) {
    const value = given[name];
    if (value === undefined || (value === null && NULLABLE.has(name))) continue;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1) throw new TypeError(`${name} must be a whole number >= 1, not ${shown(value)}`);
  }
  for (const name of FLAGS) {
    const value = given[name];
    if (value !== undefined && typeof value !== "boolean") throw new TypeError(`${name} must be true or false, not ${shown(value)}`);
  }
  const { token } = options;
  if (token !== undefined && token !== null && typeof token !== "string" && typeof token !== "function") {
    // (sent as String(token): {user: "ada"} authenticated "[object Object]")
    throw new TypeError(`token must be a string, a function returning one, or null, not ${shown(token)}`);
  }
  checkTokenLength(token);
  const { pollInterval, stagger } = options;
  const positive = (/** @type {unknown} */ value) => isMs(value) && /** @type {number} */ (value) > 0;
  if (pollInterval !== undefined && !(Array.isArray(pollInterval) && pollInterval.length === 2 && pollInterval.every(positive) && pollInterval[0] <= pollInterval[1])) {
    throw new TypeError(`pollInterval must be [fastest, slowest] in ms above 0 with fastest <= slowest, not ${shown(pollInterval)}`);
  }
  const rising = (/** @type {number[]} */ list) => list.every((value, i) => i === 0 || value >= list[i - 1]);
  if (stagger !== undefined && !(Array.isArray(stagger) && stagger.length >= 1 && stagger.every(isMs) && rising(stagger))) {
    throw new TypeError(`stagger must be an array of ms that never goes down, one per rung of a race in order (e.g. [0, 300, 1000, 2000]; a shorter one repeats its last), not ${shown(stagger)}`);
  }
  return allowedRungs(options.transports);
}

/** Options that are true or false. */
const FLAGS = ["remember", "share", "browserEvents", "outbox"];

/**
 * The hub's address: a string (or a URL), as the page would write it.
 * @param {unknown} url
 * @returns {string}
 */
export function checkUrl(url) {
  /** @type {string} */
  let text;
  if (typeof url === "string" && url !== "") text = url;
  else if (typeof URL !== "undefined" && url instanceof URL) text = url.toString();
  else throw new TypeError(`url must be where the hub is mounted, e.g. "/ladder" or "https://example.com/ladder", not ${shown(url)}`);
  // (as the Python client: a ws:// or ftp:// address, or one with a query, failed later in a
  // transport's words, or dialled `/?x=1/ws` and blamed the mount path)
  const authority = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(text);
  if (authority !== null && /[\s\u0000-\u001f\u007f]/.test(authority[1])) {
    // (a browser's URL took "exa mple.com" as "exa%20mple.com", which no server answers)
    throw new TypeError(`url ${JSON.stringify(text)}: a host holds no space or control character (e.g. "https://example.com/ladder")`);
  }
  let parsed;
  try {
    parsed = typeof location !== "undefined" ? new URL(text, location.href) : new URL(text);
  } catch {
    throw new TypeError(`url ${JSON.stringify(text)} is not an address: where the hub is mounted, e.g. "/ladder" or "https://example.com/ladder"`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new TypeError(`url ${JSON.stringify(text)} must start with http:// or https:// (or be a path on this page's origin, e.g. "/ladder"): the address the hub is mounted at`);
  }
  if (parsed.port === "0") {
    throw new TypeError(`url ${JSON.stringify(text)}: the port is not a number from 1 to 65535 (port 0 is no server's)`);
  }
  if (parsed.search || parsed.hash || /[?#]$/.test(text)) {
    throw new TypeError(`url ${JSON.stringify(text)}: the hub's address takes no query or fragment (the client adds each endpoint's path and query to it); pass credentials with the token option`);
  }
  return text;
}

/** Options that are a time in ms. */
const MS = ["openTimeout", "verifyTimeout", "connectTimeout", "backoffBase", "backoffMax", "stableAfter", "probeDelay", "probeMaxDelay", "ackInterval", "hiddenSlack", "refreshMargin"];
/** Options that are a count. */
const COUNTS = ["maxAttempts", "cutLimit", "maxQueue", "ackEvery", "outboxBytes"];
/** Options null turns off. */
const NULLABLE = new Set(["connectTimeout", "maxAttempts"]);
/** Times that may be 0 (every other must be above 0, as in the Python client: a 0 ms open timeout never connects, 0 ms backoff is a reconnect loop). */
const ZERO_OK = new Set(["hiddenSlack"]);
/** Pairs whose first may not exceed the second. */
const ORDERED = [["backoffBase", "backoffMax"], ["probeDelay", "probeMaxDelay"]];
/**
 * The defaults of the options the core's decisions take, read from the core (its constants
 * are its classes' defaults too): a copy here could part from them, and a pair's rule (one
 * given alone moves the other's default) would then compare with a default nobody applies.
 * @type {Readonly<Record<string, number>>}
 */
const DEFAULTS = Object.freeze({
  backoffBase: BACKOFF_BASE,
  backoffMax: BACKOFF_MAX,
  connectTimeout: CONNECT_TIMEOUT,
  probeDelay: PROBE_DELAY,
  probeMaxDelay: PROBE_MAX_DELAY,
  stableAfter: STABLE_AFTER,
  cutLimit: CUT_LIMIT,
});

/**
 * @param {"backoffBase" | "probeDelay"} low
 * @param {"backoffMax" | "probeMaxDelay"} high
 * @param {ClientOptions} options
 */
function pair(low, high, options) {
  const [a, b] = ordered(low, high, /** @type {Record<string, unknown>} */ (options));
  return /** @type {Record<typeof low | typeof high, number>} */ ({ [low]: a, [high]: b });
}

/**
 * A pair (`backoffBase`/`backoffMax`, `probeDelay`/`probeMaxDelay`) as it applies, as in the
 * Python client: the one given alone moves the other's default with it (a `backoffMax` of 300
 * lowers the base with it; a `probeDelay` of 60000 raises the cap); both given and
 * contradicting each other throws, whatever their values (a value equal to its default is
 * given all the same).
 * @param {string} low
 * @param {string} high
 * @param {Record<string, unknown>} given
 * @returns {[number, number]}
 */
function ordered(low, high, given) {
  const [a, b] = [Number(given[low] ?? DEFAULTS[low]), Number(given[high] ?? DEFAULTS[high])];
  if (a <= b) return [a, b];
  if (given[high] == null) return [a, a];
  if (given[low] == null) return [b, b];
  throw new TypeError(`${low} (${a} ms) must not exceed ${high} (${b} ms)`);
}

/**
 * The options the core's decisions take, as they apply (defaults filled in, a pair's rule
 * applied).
 * @param {ClientOptions} options
 */
function resolveOptions(options) {
  return {
    stagger: options.stagger ?? [...STAGGER],
    openTimeout: options.openTimeout ?? OPEN_TIMEOUT,
    verifyTimeout: options.verifyTimeout ?? VERIFY_TIMEOUT,
    connectTimeout: options.connectTimeout === undefined ? DEFAULTS.connectTimeout : options.connectTimeout,
    ...pair("backoffBase", "backoffMax", options),
    maxAttempts: options.maxAttempts ?? null,
    ...pair("probeDelay", "probeMaxDelay", options),
    pollInterval: options.pollInterval ?? /** @type {[number, number]} */ ([POLL_FASTEST, POLL_SLOWEST]),
    ackEvery: options.ackEvery ?? ACK_EVERY,
    ackInterval: options.ackInterval ?? ACK_INTERVAL,
    hiddenSlack: options.hiddenSlack ?? HIDDEN_SLACK,
    refreshMargin: options.refreshMargin ?? REFRESH_MARGIN,
  };
}

/**
 * What decides whether two tabs share a connection: the options as they apply, every one
 * named once and in one order (`{maxQueue: 5, outboxBytes: 5000}` and the same reversed, or
 * `{}` and `{openTimeout: 10000}`, the default, are the same connection). Options of the tab
 * alone (`share`, `remember`, `browserEvents`) are left out; the token is given apart.
 * @param {ClientOptions} options (checked)
 */
export function sharedOptions(options) {
  return {
    ...resolveOptions(options),
    transports: allowedRungs(options.transports),
    stableAfter: options.stableAfter ?? DEFAULTS.stableAfter,
    cutLimit: options.cutLimit ?? DEFAULTS.cutLimit,
    maxQueue: options.maxQueue ?? MAX_QUEUE,
    outbox: options.outbox !== false,
    outboxBytes: options.outboxBytes ?? OUTBOX_BYTES,
  };
}

/** Bytes of unacknowledged messages kept by default (`outboxBytes`). */
const OUTBOX_BYTES = 1_048_576;

/** @param {unknown} value */
function isMs(value) {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

export class Client extends Emitter {
  /**
   * @param {string} url where the hub is mounted, e.g. "/ladder" or "https://host/ladder"
   * @param {ClientOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    options ??= {};
    const rungs = checkOptions(options);
    const base = typeof location !== "undefined" ? new URL(checkUrl(url), location.href) : new URL(checkUrl(url));
    /** The hub's URL. */
    this.url = base.toString().replace(/\/+$/, "");
    this.rungs = rungs;
    this.options = resolveOptions(options);
    this._token = options.token ?? null;
    this._clock = options.clock ?? realClock;
    this._random = options.random ?? Math.random;
    this._factory = options.transportFactory ?? makeTransport;
    this._storage = options.remember === false ? null : options.storage !== undefined ? options.storage : sessionStore();
    this._browserEvents = options.browserEvents ?? (typeof window !== "undefined" && typeof document !== "undefined");
    /** @type {"indexeddb" | "memory" | "off" | null} where unacknowledged messages are kept ("memory": IndexedDB missing or refused, `outboxReason` says why); null until known */
    this.outboxStorage = options.outbox === false || (options.outbox === undefined && typeof window === "undefined") ? "off" : null;
    /** @type {string | null} why the outbox is not in IndexedDB */
    this.outboxReason = null;
    /** @type {boolean} whether this client shares its connection with other tabs (a `SharedClient`) */
    this.shared = false;
    /** How many messages a previous page (or a closed tab) left that this client took over. */
    this.restored = 0;
    /** @type {RestoredMessage[]} those messages, in the order they go out first (to show them as being sent) */
    this.restoredMessages = [];
    /** @type {string | null} the owner of the record they came from (tabs sharing this client tell `restored` once per record) */
    this.restoredFrom = null;
    this.outboxBytes = options.outboxBytes ?? OUTBOX_BYTES;
    this._outboxOptions = {
      storage: options.storage !== undefined ? options.storage : sessionStore(),
      factory: options.indexedDB,
      locks: options.locks,
    };
    /** @type {import("./outbox.js").DurableOutbox | null} */
    this._outbox = null;
    /** The page is going away (not closed by the app): the outbox stays for the next page. */
    this._leaving = false;
    /** @type {TransportContext} */
    this._ctx = {
      endpoint: new Endpoint(this.url, options.fetch),
      clock: this._clock,
      applied: () => this.peer.inbox.applied,
      pollInterval: this.options.pollInterval,
      holding: new LongPollHold(),
    };
    this.policy = new RungPolicy(this.rungs, {
      cutLimit: options.cutLimit ?? DEFAULTS.cutLimit,
      stableAfter: options.stableAfter ?? DEFAULTS.stableAfter,
      start: this._recall(),
    });
    this.peer = new PeerState(options.maxQueue ?? MAX_QUEUE);
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
    /** @type {Rung | null} */
    this._lastRung = null;
    this._hadSession = false;
    const limit = this.options.connectTimeout;
    /** The core's reconnect bookkeeping: delays, `maxAttempts`, the first connect's deadline. */
    this._reconnect = new Reconnect({
      base: this.options.backoffBase,
      cap: this.options.backoffMax,
      connectTimeout: limit !== null && Number.isFinite(limit) ? limit : null,
      maxAttempts: this.options.maxAttempts,
      atDeadline: "report", // a page cannot be re-run the way a script can: say so, keep trying
      stableAfter: this.policy.stableAfter,
    });
    /** @type {Record<string, any>} the server's limits from the last welcome (`lim`) */
    this._limits = {};
    /** @type {number | null} bytes per `POST send` a proxy on the way takes, once a 413 of its showed it */
    this._postCap = null;
    this._pacer = new Pacer();
    /** @type {any} */
    this._paceTimer = null;
    /** @type {any} */
    this._connectTimer = null;
    /** @type {LadderError | null} why the client gave up for good (later calls reject with it) */
    this._fatal = null;
    /** The server is shutting down: resume elsewhere at once, without backoff. */
    this._reconnectNow = false;
    /** @type {import("./core.js").Action | null} how the last transport ended (the core's `afterTransport`), for the pause after it */
    this._endAction = null;
    /** @type {string | null} what the diagnostic POST of the last failed races said (`askWhy`), until a welcome */
    this._asked = null;
    /** @type {string | null} why the last connection or race ended (the next hello's `why`) */
    this._lastEnd = null;
    /** @type {Record<string, string>} the latest reason each rung failed to open */
    this._reasons = {};
    /** @type {string | null} */
    this._stepReason = null;
    /** @type {string | null} */
    this._pendingLoss = null;
    this._flushing = false;
    /** @type {((error: LadderError | null) => void)[]} flushes waiting for every message to be acknowledged */
    this._drained = [];
    /** @type {{conn: Transport | null, count: UpstreamRetry}} the failed writes of a transport so far (kept across flushes) */
    this._retry = { conn: null, count: new UpstreamRetry() };
    this._lastHeard = 0;
    this._opened = 0;
    /** @type {any} */
    this._watchdog = null;
    /** @type {any} */
    this._ackTimer = null;
    /** @type {import("./core.js").StreamProof | null} the checks that the stream (SSE) is not buffered */
    this._proof = null;
    /** @type {any} */
    this._proofTimer = null;
    /** @type {number | null} when the session's credentials expire (ms of Unix time), if they do */
    this._expires = null;
    /** @type {any} fires when a `token` function's credentials are due for a refresh */
    this._refreshTimer = null;
    /** @type {number | null} when (ms of Unix time) `_refreshTimer` is due */
    this._refreshDue = null;
    this._refreshing = false;
    /** @type {AbortController | null} */
    this._raceAbort = null;
    /** @type {AbortController | null} */
    this._probeAbort = null;
    /** when to probe the better rungs; lasts across reconnects on one rung */
    this._probes = new ProbeSchedule();
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
    /** what `ready()` answers */
    this._readiness = new Readiness();
    /** @type {{pending: boolean, token: Promise<string | null>} | null} the current race's token, asked once */
    this._raceToken = null;
    /** @type {Promise<void>} settles once the durable outbox is open and restored (or off) */
    this._outboxOpened = Promise.resolve();
    /** @type {Promise<void>} settles once a closed client's outbox is written and its lock let go */
    this._outboxReleased = Promise.resolve();
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
    this._outboxOpened = this._openOutbox();
    const now = this._clock.now();
    const deadline = this._reconnect.started({ now });
    if (deadline !== null) this._connectTimer = this._clock.setTimeout(() => this._notConnected(deadline - now), deadline - now);
    this._run().catch((error) => {
      reportLater(error);
      this._giveUp(new LadderError("internal", String(error)));
    });
    return this;
  }

  /** Resolves once connected for the first time (rejects if the client closed or gave up first, or with `connect_failed` while it has not connected yet; once it has, a later `ready()` resolves). */
  ready() {
    return this._readiness.promise;
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
    if (lastRung !== null) this._emit("close", { transport: lastRung, reason: "the client was closed", reconnecting: false });
    if (conn) {
      // Give the bye a moment to leave before the socket closes (it is already written for a WebSocket).
      await atMost(bye, 1000, this._clock);
      conn.close();
    }
  }

  /**
   * Resolves once the server has acknowledged every message sent or queued so far (a pending
   * ack of ours goes out at once too): what `close()` would drop is then applied. Rejects with
   * `LadderError("timeout")` after `timeout` ms (the messages stay queued; null, the default:
   * as long as it takes), and with the error the client ends with.
   * @param {{timeout?: number | null}} [options]
   * @returns {Promise<void>}
   */
  flush(options = {}) {
    return outbound.flushed(this, options);
  }

  /**
   * Resolves once every message submitted so far is kept where it outlives the page (at once
   * when the outbox is off or in memory).
   * @returns {Promise<void>}
   */
  async persisted() {
    await this._outboxOpened;
    await this._outbox?.saved();
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
  subscribe(channel, onPublication = null, options = {}) {
    this._usable();
    const { since, recent } = subscribeArguments(onPublication, options);
    let sub = this._subs.get(channel);
    if (!sub || !sub.active) {
      sub = new Subscription(channel, { since, recent, unsubscribe: (s) => this._unsubscribe(s) });
      this._subs.set(channel, sub);
      try {
        this._submitSubscribe(sub);
      } catch (error) {
        // Refused before it was sent (queue_full, a name that cannot travel): not followed.
        // Kept, the next subscribe returned it unsent (ready() waited for ever).
        if (this._subs.get(channel) === sub) this._subs.delete(channel);
        sub.end(null);
        throw error;
      }
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
  async publish(channel, data, options = {}) {
    const { timeout = REQUEST_TIMEOUT } = requestOptions("publish", options);
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
   * Call a server handler; resolves with its result (null for a handler that returned None:
   * its reply carries no `d`) or rejects with its LadderError (`timeout` after `timeout` ms;
   * null waits as long as the session lives).
   * @param {string} event
   * @param {any} [data]
   * @param {{timeout?: number | null}} [options]
   */
  call(event, data = null, options = {}) {
    const { timeout = REQUEST_TIMEOUT } = requestOptions("call", options);
    return this._request({ t: "call", ev: event, d: data }, timeout).then((result) => result ?? null);
  }

  /**
   * Who is in `channel`.
   * @param {string} channel
   * @param {{timeout?: number | null}} [options]
   * @returns {Promise<Member[]>}
   */
  presence(channel, options = {}) {
    const { timeout = REQUEST_TIMEOUT } = requestOptions("presence", options);
    return this._request({ t: "presence", ch: channel }, timeout);
  }

  /**
   * Give the server new credentials for this session without reconnecting; with no `token`,
   * the client's own (a function is called). A client whose `token` is a function does this
   * by itself shortly before the credentials expire (`refreshMargin`).
   * @param {string | null} [token]
   * @param {{timeout?: number | null}} [options]
   * @returns {Promise<void>}
   */
  refresh(token = null, options = {}) {
    const { timeout = REQUEST_TIMEOUT } = requestOptions("refresh", options);
    return credentials.refresh(this, token, timeout);
  }

  /**
   * The newest `limit` publications kept for `channel`, oldest first; fewer when they would
   * take more than half of what the session may leave unacknowledged (the server's
   * `lim.qbytes`, 8 MiB by default): then the newest that fit (protocol §4).
   * @param {string} channel
   * @param {{limit?: number, timeout?: number | null}} [options]
   * @returns {Promise<Publication[]>}
   */
  async history(channel, options = {}) {
    const { limit = 100, timeout = REQUEST_TIMEOUT } = requestOptions("history", options, ["limit", "timeout"]);
    const reply = await this._request({ t: "history", ch: channel, limit }, timeout);
    return reply.pubs.map((/** @type {Frame} */ p) => ({ channel, offset: Number(p.o), data: p.d, epoch: reply.ep }));
  }

  // -- outbound plumbing ------------------------------------------------------------------------

  /** (A method, so that TypeScript does not narrow `state` across awaits.) */
  _isClosed() {
    return this.state === "closed";
  }

  _usable() {
    if (this.state === "closed") throw this._fatal ?? new LadderError("closed", "this client was closed");
  }

  // The methods below are implemented by the module of their concept; each takes the client first.

  // -- writing ----------------------------------------------------------------------------------

  /** @type {Method<typeof outbound.submit>} */ _submit(...a) { return outbound.submit(this, ...a); }
  /** @type {Method<typeof outbound.withdraw>} */ _withdraw(...a) { return outbound.withdraw(this, ...a); }
  /** @type {typeof outbound.tooLarge} */ _tooLarge(...a) { return outbound.tooLarge(...a); }
  /** @type {Method<typeof outbound.request>} */ _request(...a) { return outbound.request(this, ...a); }
  /** @type {Method<typeof outbound.submitSubscribe>} */ _submitSubscribe(...a) { return outbound.submitSubscribe(this, ...a); }
  /** @type {Method<typeof outbound.unsubscribe>} */ _unsubscribe(...a) { return outbound.unsubscribe(this, ...a); }
  /** @type {Method<typeof outbound.flush>} */ _flush(...a) { return outbound.flush(this, ...a); }
  /** @type {Method<typeof outbound.acked>} */ _acked(...a) { return outbound.acked(this, ...a); }
  /** @type {Method<typeof outbound.batch>} */ _batch(...a) { return outbound.batch(this, ...a); }
  /** @type {Method<typeof outbound.flushLater>} */ _flushLater(...a) { return outbound.flushLater(this, ...a); }
  /** @type {Method<typeof outbound.rateLimited>} */ _rateLimited(...a) { return outbound.rateLimited(this, ...a); }
  /** @type {Method<typeof outbound.failed>} */ _failed(...a) { return outbound.failed(this, ...a); }
  /** @type {Method<typeof outbound.control>} */ _control(...a) { return outbound.control(this, ...a); }
  /** @type {Method<typeof outbound.openOutbox>} */ _openOutbox(...a) { return outbound.openOutbox(this, ...a); }
  /** @type {Method<typeof outbound.leave>} */ _leave(...a) { return outbound.leave(this, ...a); }

  // -- events -----------------------------------------------------------------------------------

  /** @type {Method<typeof events.emit>} */ _emit(...a) { return events.emit(this, ...a); }
  /** @type {Method<typeof events.setState>} */ _setState(...a) { return events.setState(this, ...a); }

  // -- the connection loop ----------------------------------------------------------------------

  /** @type {Method<typeof connection.currentToken>} */ _currentToken(...a) { return connection.currentToken(this, ...a); }
  /** @type {Method<typeof connection.open>} */ _open(...a) { return connection.open(this, ...a); }
  /** @type {Method<typeof connection.discard>} */ _discard(...a) { return connection.discard(this, ...a); }
  /** @type {Method<typeof connection.sleep>} */ _sleep(...a) { return connection.sleep(this, ...a); }
  /** @type {Method<typeof connection.run>} */ _run(...a) { return connection.run(this, ...a); }
  /** @type {Method<typeof connection.note>} */ _note(...a) { return connection.note(this, ...a); }
  /** @type {Method<typeof connection.notConnected>} */ _notConnected(...a) { return connection.notConnected(this, ...a); }
  /** @type {Method<typeof connection.connectFailure>} */ _connectFailure(...a) { return connection.connectFailure(this, ...a); }
  /** @type {Method<typeof connection.fatalOf>} */ _fatalOf(...a) { return connection.fatalOf(this, ...a); }
  /** @type {Method<typeof connection.askWhy>} */ _askWhy(...a) { return connection.askWhy(this, ...a); }
  /** @type {Method<typeof connection.refreshable>} */ _refreshable() { return connection.refreshable(this); }
  /** @type {Method<typeof connection.sessionGone>} */ _sessionGone(...a) { return connection.sessionGone(this, ...a); }
  /** @type {Method<typeof connection.giveUp>} */ _giveUp(...a) { return connection.giveUp(this, ...a); }
  /** @type {Method<typeof connection.shutdown>} */ _shutdown(...a) { return connection.shutdown(this, ...a); }
  /** @type {Method<typeof switching.adopt>} */ _adopt(...a) { return switching.adopt(this, ...a); }
  /** @type {Method<typeof switching.rekey>} */ _rekey(...a) { return switching.rekey(this, ...a); }
  /** @type {Method<typeof switching.changed>} */ _changed(...a) { return switching.changed(this, ...a); }
  /** @type {Method<typeof switching.attach>} */ _attach(...a) { return switching.attach(this, ...a); }
  /** @type {Method<typeof connection.connClosed>} */ _connClosed(...a) { return connection.connClosed(this, ...a); }
  /** @type {Method<typeof connection.lost>} */ _lost(...a) { return connection.lost(this, ...a); }
  /** @type {Method<typeof connection.stopTimers>} */ _stopTimers(...a) { return connection.stopTimers(this, ...a); }

  // -- frames in ----------------------------------------------------------------------------------

  /** @type {Method<typeof inbound.onFrames>} */ _onFrames(...a) { return inbound.onFrames(this, ...a); }
  /** @type {Method<typeof inbound.maybeAck>} */ _maybeAck(...a) { return inbound.maybeAck(this, ...a); }
  /** @type {Method<typeof inbound.ackPolicy>} */ _ackPolicy() { return inbound.ackPolicy(this); }
  /** @type {Method<typeof credentials.credentialsExpire>} */ _credentialsExpire(...a) { return credentials.credentialsExpire(this, ...a); }
  /** @type {Method<typeof credentials.maybeRefresh>} */ _maybeRefresh(...a) { return credentials.maybeRefresh(this, ...a); }
  /** @type {Method<typeof inbound.takeAck>} */ _takeAck(...a) { return inbound.takeAck(this, ...a); }
  /** @type {Method<typeof inbound.handle>} */ _handle(...a) { return inbound.handle(this, ...a); }
  /** @type {Method<typeof inbound.deliver>} */ _deliver(...a) { return inbound.deliver(this, ...a); }

  // -- liveness -----------------------------------------------------------------------------------

  /** @type {typeof inbound.hidden} */ _hidden() { return inbound.hidden(); }
  /** @type {Method<typeof inbound.armWatchdog>} */ _armWatchdog(...a) { return inbound.armWatchdog(this, ...a); }
  /** @type {Method<typeof inbound.check>} */ _check(...a) { return inbound.check(this, ...a); }
  /** @type {Method<typeof inbound.armProof>} */ _armProof(...a) { return inbound.armProof(this, ...a); }

  // -- climbing back up ---------------------------------------------------------------------------

  /** @type {Method<typeof switching.startProbe>} */ _startProbe(...a) { return switching.startProbe(this, ...a); }
  /** @type {Method<typeof switching.probe>} */ _probe(...a) { return switching.probe(this, ...a); }
  /** @type {Method<typeof switching.switchTo>} */ _switch(...a) { return switching.switchTo(this, ...a); }

  // -- rung memory (sessionStorage: per tab, survives reloads) ----------------------------------

  /** @type {Method<typeof switching.memoryKey>} */ _key(...a) { return switching.memoryKey(this, ...a); }
  /** @type {Method<typeof switching.recall>} */ _recall(...a) { return switching.recall(this, ...a); }
  /** @type {Method<typeof switching.remember>} */ _remember(...a) { return switching.remember(this, ...a); }

  // -- browser realities --------------------------------------------------------------------------

  /** @type {Method<typeof inbound.hookBrowser>} */ _hookBrowser(...a) { return inbound.hookBrowser(this, ...a); }
  /** @type {Method<typeof inbound.suspend>} */ _suspend(...a) { return inbound.suspend(this, ...a); }
  /** @type {Method<typeof inbound.resume>} */ _resume(...a) { return inbound.resume(this, ...a); }
}
