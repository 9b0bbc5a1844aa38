// @ts-check
/**
 * One connection for every tab: `connect(url, options)` returns a `SharedClient` (unless
 * `share: false`, or where `canShare` says no), the
 * tab's side of a connection held by the hub (`tabs.js`) in a `SharedWorker` (`worker.js`) or
 * in a leader tab (`leader.js`). It has the `Client`'s API; its subscriptions, calls and
 * replies are its own. Browsers allow six
 * HTTP/1.1 connections per host for all tabs together: shared, twelve tabs on SSE cost one
 * stream, and the server one session (presence counts the browser once).
 *
 * Messages to the hub are checked here first (a value that cannot be sent throws in this tab,
 * at once) and travel as the JSON the wire will carry, so the worker sends exactly what a tab
 * of its own would have sent.
 */

import { REQUEST_TIMEOUT } from "./core.js";
import { checkRefreshToken, errorOf, errorOfClose, LadderError, requestOptions } from "./errors.js";
import { encodeMessage } from "./codec.js";
import { tooLarge } from "./outbound.js";
import { Subscription, subscribeArguments } from "./subscription.js";
import { allowedRungs } from "./rungs.js";
import { hookPage, reachHub } from "./leader.js";
import { Emitter, emit } from "./events.js";
import { Readiness } from "./readiness.js";

/** @typedef {import("./driver.js").ClientOptions} ClientOptions */
/** @typedef {import("./driver.js").ClientState} ClientState */
/** @typedef {import("./events.js").ClientEvents} ClientEvents */
/** @typedef {import("./events.js").Member} Member */
/** @typedef {import("./subscription.js").Position} Position */
/** @typedef {import("./subscription.js").Publication} Publication */
/** @typedef {import("./rungs.js").Rung} Rung */
/** @typedef {import("./codec.js").Frame} Frame */

/** What a later call hears once the client is closed, in a tab's own client's words. */
const closedError = () => new LadderError("closed", "this client was closed");
const LEADER_LOST = "the tab holding the shared connection went away";

/** Options that do not concern the shared connection. */
const TAB_ONLY = ["share", "remember", "browserEvents", "token"];

/** @param {{code: string, reason?: string, retryAfter?: number, details?: unknown}} body */
function asError(body) {
  return errorOf({ code: body.code, reason: body.reason ?? "", retry_after: body.retryAfter, details: body.details });
}

/** @typedef {{resolve: (value: any) => void, reject: (error: Error) => void, sent?: boolean}} Waiter */

/** A tab's client of the connection it shares with the other tabs of the browser. */
export class SharedClient extends Emitter {
  /**
   * @param {string} url where the hub is mounted
   * @param {ClientOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    const rungs = allowedRungs(options.transports);
    /** The hub's URL. */
    this.url = new URL(url, location.href).toString().replace(/\/+$/, "");
    /** The rungs allowed, best first. */
    this.rungs = rungs;
    /** This client shares its connection with the other tabs. */
    this.shared = /** @type {const} */ (true);
    /** How many tabs share the connection (this one included; 0 until the worker said). */
    this.tabs = 0;
    /** @type {ClientState} */
    this.state = "disconnected";
    /** @type {Rung | null} the rung in use now (null while disconnected) */
    this.transport = null;
    // The shared client's state, as the hub last said (see Client).
    /** @type {string | null} */ this.sessionId = null;
    /** @type {string | null} */ this.user = null;
    /** @type {string | null} */ this.clientId = null;
    /** @type {{old: Rung | null, new: Rung, reason: string} | null} */ this.lastChange = null;
    /** @type {string | null} */ this.lastFailure = null;
    /** @type {"indexeddb" | "memory" | "off" | null} */ this.outboxStorage = null;
    /** @type {string | null} */ this.outboxReason = null;
    this.restored = 0;
    /** @type {import("./outbox.js").RestoredMessage[]} */ this.restoredMessages = [];
    /** @type {string | null | undefined} the record the shared client took them from (a new one: `restored`; undefined: no state yet) */
    this._restoredFrom = undefined;
    /** @type {Record<string, unknown>} */
    this._options = {};
    for (const [name, value] of Object.entries(options)) {
      if (!TAB_ONLY.includes(name) && value !== undefined) this._options[name] = value;
    }
    this._token = options.token ?? null;
    this._browserEvents = options.browserEvents ?? typeof window !== "undefined";
    /** @type {Record<string, any>} */
    this._limits = {};
    /** @type {Map<string, Subscription>} */
    this._subs = new Map();
    /** @type {Map<string, string | null>} the session each subscription was last confirmed in */
    this._confirmedIn = new Map();
    /** @type {Map<number, Waiter>} */
    this._waiting = new Map();
    this._nextId = 0;
    /** @type {import("./leader.js").Link | null} the way to the hub */
    this._link = null;
    /** Whether the hub answered this tab's join (until then, messages wait). */
    this._joined = false;
    /** @type {any[]} messages written before the worker answered */
    this._queued = [];
    /** @type {string | null} */
    this._tab = null;
    /** @type {string | null} the session of this tab's last `open` */
    this._session = null;
    /** a `session_lost` was told since that `open` */
    this._toldLost = false;
    /** this tab heard `open` and no `close` since */
    this._up = false;
    /** @type {(() => void) | null} */
    this._release = null;
    /** @type {LadderError | null} */
    this._fatal = null;
    this._running = false;
    /** @type {(() => void)[]} */
    this._unhook = [];
    /** what `ready()` answers (the same rule as a tab's own client) */
    this._readiness = new Readiness();
    this._started = 0;
    /** the tab has been connected (`connectTimeout` bounds the first connection only) */
    this._connectedOnce = false;
    /** the tab heard `connect_failed` (told once) */
    this._toldLate = false;
  }

  // -- lifecycle --------------------------------------------------------------------------------

  /** Join the shared connection (connect() does this). Returns the client. */
  start() {
    if (this._running || this.state === "closed") return this;
    this._running = true;
    /** when this tab started (its `connectTimeout` runs from there) */
    this._started = Date.now();
    if (this._browserEvents) {
      this._unhook = hookPage({
        wake: (why) => this.wake(why),
        close: () => this._close(true),
        hide: () => this._hide(),
        show: () => {
          if (this.state !== "closed" && !this._tab) this._attach();
        },
      });
    }
    this._attach();
    return this;
  }

  /** Resolves once the shared connection is up (rejects if it closed or gave up first). */
  ready() {
    return this._readiness.promise;
  }

  /**
   * Leave the shared connection; the last tab to leave ends the session (`bye`).
   * @returns {Promise<void>}
   */
  async close() {
    this._close(false);
  }

  /**
   * Leave: `going`, the page is going away (`pagehide`), and the last tab's unsent messages
   * stay in the outbox for the next page, as with a client of the tab's own.
   * @param {boolean} going
   */
  _close(going) {
    if (this.state === "closed") return;
    const last = this.transport;
    this._detach(going, !going);
    this._end(new LadderError("closed", "the client was closed"), closedError());
    this._emit("state", { state: "closed", reason: "the client was closed" }); // (as a tab's own client)
    if (last !== null) this._emit("close", { transport: last, reason: "the client was closed", reconnecting: false });
  }

  /**
   * Reconnect now, or check the live connection still works (for every tab).
   * @param {string} [why]
   */
  wake(why = "woken") {
    if (this.state !== "closed") this._post({ op: "wake", why });
  }

  // -- API --------------------------------------------------------------------------------------

  /**
   * Follow `channel` (this tab's own subscription; the connection subscribes once for all tabs).
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
      this._post({ op: "sub", ch: channel, since, recent });
    }
    if (onPublication) sub.listen(onPublication);
    return sub;
  }

  /** @param {string} channel */
  unsubscribe(channel) {
    const sub = this._subs.get(channel);
    return sub ? this._unsubscribe(sub) : Promise.resolve();
  }

  /**
   * @param {string} channel
   * @param {any} data
   * @param {{timeout?: number | null}} [options]
   * @returns {Promise<Position>}
   */
  async publish(channel, data, options = {}) {
    const { timeout = REQUEST_TIMEOUT } = requestOptions("publish", options);
    return this._request({ t: "pub", ch: channel, d: data }, { kind: "publish", ch: channel }, timeout);
  }

  /**
   * Send an event to the server's handler (queued by the shared connection; not acknowledged).
   * Throws at once for data that cannot be sent and `frame_too_large`; `queue_full` arrives
   * as an `error` event of this tab.
   * @param {string} event
   * @param {any} [data]
   */
  emit(event, data = null) {
    this._usable();
    const d = this._portable({ t: "emit", ev: event, d: data });
    this._post({ op: "emit", ev: event, d });
  }

  /**
   * @param {string} event
   * @param {any} [data]
   * @param {{timeout?: number | null}} [options]
   */
  call(event, data = null, options = {}) {
    const { timeout = REQUEST_TIMEOUT } = requestOptions("call", options);
    return this._request({ t: "call", ev: event, d: data }, { kind: "call", ev: event }, timeout);
  }

  /**
   * @param {string} channel
   * @param {{timeout?: number | null}} [options]
   * @returns {Promise<Member[]>}
   */
  presence(channel, options = {}) {
    const { timeout = REQUEST_TIMEOUT } = requestOptions("presence", options);
    return this._request(null, { kind: "presence", ch: channel }, timeout);
  }

  /**
   * New credentials for the shared session (every tab's), without reconnecting.
   * @param {string | null} [token]
   * @param {{timeout?: number | null}} [options]
   * @returns {Promise<void>}
   */
  async refresh(token = null, options = {}) {
    const { timeout = REQUEST_TIMEOUT } = requestOptions("refresh", options);
    checkRefreshToken(token);
    await this._request(null, { kind: "refresh", tok: token }, timeout);
  }

  /**
   * @param {string} channel
   * @param {{limit?: number, timeout?: number | null}} [options]
   * @returns {Promise<Publication[]>}
   */
  async history(channel, options = {}) {
    const { limit = 100, timeout = REQUEST_TIMEOUT } = requestOptions("history", options, ["limit", "timeout"]);
    return this._request(null, { kind: "history", ch: channel, limit }, timeout);
  }

  /**
   * Resolves once the server has acknowledged every message the shared connection sent or
   * queued so far, this tab's included (a `Client`'s `flush`, in the tab holding it).
   * @param {{timeout?: number | null}} [options]
   * @returns {Promise<void>}
   */
  async flush(options = {}) {
    const { timeout = null } = requestOptions("flush", options);
    await this._request(null, { kind: "flush" }, timeout);
  }

  /**
   * Resolves once the shared connection keeps every message this tab submitted so far where
   * its outbox keeps them.
   * @returns {Promise<void>}
   */
  persisted() {
    // As a tab's own client's, it never fails: a closed client keeps nothing more (a refusal
    // that ended the shared connection rejected it, and a page awaiting it threw).
    if (this.state === "closed") return Promise.resolve();
    return this._request(null, { kind: "persisted" }, null).then(
      () => {},
      (error) => {
        if (this.state !== "closed") throw error;
      },
    );
  }

  // -- plumbing ---------------------------------------------------------------------------------

  _usable() {
    if (this.state === "closed") throw this._fatal ?? new LadderError("closed", "this client was closed");
  }

  /**
   * The message's data as the wire will carry it; throws what the `Client` would throw.
   * @param {Frame} frame
   */
  _portable(frame) {
    const encoded = encodeMessage(frame);
    const refusal = tooLarge({ ...frame, i: 1 }, this._limits);
    if (refusal) throw refusal;
    return JSON.parse(encoded).d;
  }

  /**
   * @param {Frame | null} frame the message, when it carries data to check
   * @param {Record<string, any>} fields
   * @param {number | null | undefined} timeout
   * @returns {Promise<any>}
   */
  _request(frame, fields, timeout) {
    return new Promise((resolve, reject) => {
      this._usable();
      const id = ++this._nextId;
      /** @type {Record<string, any>} */
      const message = { op: "req", id, ...fields, timeout: timeout ?? null };
      if (frame) message.d = this._portable(frame);
      this._waiting.set(id, { resolve, reject });
      this._post(message);
    });
  }

  /** @param {Subscription} sub */
  async _unsubscribe(sub) {
    if (this._subs.get(sub.channel) !== sub || !sub.active) return;
    this._subs.delete(sub.channel);
    this._confirmedIn.delete(sub.channel);
    sub.end();
    if (this.state !== "closed") this._post({ op: "unsub", ch: sub.channel });
  }

  /**
   * Send to the hub; until the hub answered this tab's join, messages wait (in order).
   * @param {Record<string, any>} message
   */
  _post(message) {
    if (!this._tab) return;
    const full = { ...message, tab: this._tab };
    if (this._link && this._joined) this._send(full);
    else this._queued.push(full);
  }

  /** @param {Record<string, any>} message */
  _send(message) {
    if (message.op === "req") {
      const waiter = this._waiting.get(message.id);
      if (waiter) waiter.sent = true;
    }
    /** @type {import("./leader.js").Link} */ (this._link).post(message);
  }

  /** Reach the hub of this URL and options as a new tab (`leader.js`). */
  _attach() {
    const tab = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    this._tab = tab;
    this._queued = [];
    // (a token function keeps a tab on a connection of its own: canShare; here it is a string)
    const token = () => (typeof this._token === "string" ? this._token : null);
    reachHub(this.url, this._options, token, tab, {
      receive: (message) => {
        if (this._tab === tab) this._receive(message);
      },
      join: (join) => {
        if (this._tab === tab) this._join(join);
      },
      linked: (link, release) => {
        if (this._tab !== tab) {
          link.close();
          release();
          return false;
        }
        [this._link, this._release] = [link, release];
        return true;
      },
    });
  }

  /**
   * Join the hub (again, when a new leader took over): this tab's channels from where each
   * stands, then what waited. Requests the previous hub had taken and not answered fail: it
   * is gone, and they may or may not have been applied.
   * @param {Record<string, any>} join
   */
  _join(join) {
    const link = /** @type {import("./leader.js").Link} */ (this._link);
    if (this._joined) {
      const error = new LadderError("leader_lost", "the tab holding the shared connection went away; the message may or may not have been applied");
      for (const [id, waiter] of this._waiting) {
        if (!waiter.sent) continue;
        this._waiting.delete(id);
        waiter.reject(error);
      }
      this._leaderLost();
    }
    this._joined = false;
    // (never connected yet, nor told: the hub tells `connect_failed` `connectTimeout` after
    // this tab started, once)
    link.post({ ...join, started: this._connectedOnce || this._toldLate ? null : this._started });
    for (const sub of this._subs.values()) {
      if (sub.active) link.post({ op: "sub", ch: sub.channel, since: sub.position, recent: sub.position ? 0 : sub.recent, tab: join.tab });
    }
    this._queued = this._queued.filter((message) => message.op !== "sub" && message.op !== "unsub");
  }

  /**
   * Leave the hub (it releases this tab's channels at once) and the lock.
   * @param {boolean} [going] the page is going away
   * @param {boolean} [drop] closed by the app: the messages this tab sent that the connection
   *   has not written yet are dropped (as a client of the tab's own drops them)
   */
  _detach(going = false, drop = false) {
    if (!this._tab) return;
    if (this._link && this._joined) this._link.post({ op: "leave", tab: this._tab, going, drop });
    this._link?.close();
    this._link = null;
    this._joined = false;
    this._tab = null;
    this._release?.();
    this._release = null;
  }

  /**
   * The tab holding the connection went away, and its transport with it: told as a tab's own
   * client tells a lost connection (`state` disconnected, then `close`, reconnecting), so that
   * the `open` the next connection brings pairs with a `close` (protocol §9.10).
   */
  _leaderLost() {
    if (!this._up || this.state === "closed") return;
    const transport = this.transport;
    this._up = false;
    this.state = "disconnected";
    this.transport = null;
    this._emit("state", { state: "disconnected", reason: LEADER_LOST });
    this._emit("close", { transport, reason: LEADER_LOST, reconnecting: true });
  }

  /**
   * A tab that joins a connection already up hears what a tab of its own would have heard
   * getting there (`open`, `state`, `transport` from null): an app that drives its page from
   * those events would otherwise never see this tab connected.
   * @param {string} before the tab's state until it joined
   */
  _caughtUp(before) {
    if (this.state === before || this.state === "closed") return;
    const reason = "joined the connection the browser's tabs share";
    if (this.state === "connected") this._opened({ transport: this.transport, sessionId: this.sessionId });
    this._emit("state", { state: this.state, reason });
    if (this.state === "connected") this._emit("transport", { old: null, new: this.transport, reason });
  }

  /**
   * `open` as this tab saw it: `resumed` says whether this tab had the session before (the
   * connection may have had it before the tab joined: a tab's first `open` is not resumed).
   * @param {{transport: Rung | null, sessionId: string | null}} event
   */
  _opened(event) {
    this._lostUntold();
    const resumed = this._session !== null && this._session === event.sessionId;
    this._session = event.sessionId;
    this._toldLost = false;
    this._up = true;
    this._emit("open", { ...event, resumed });
  }

  /**
   * The connection's session changed while this tab was away from it, with no `session_lost`
   * the tab could hear (the tab holding the connection went away and the next one started
   * another): told as a tab's own client would tell it.
   */
  _lostUntold() {
    if (this._session === null || this._toldLost || this.sessionId === this._session) return;
    this._toldLost = true;
    this._emit("session_lost", { reason: "the connection the browser's tabs share started a new session (the tab holding it went away)" });
  }

  /** @param {any} message */
  _receive(message) {
    switch (message.op) {
      case "state": {
        const before = this.state;
        this._apply(message.state);
        if (!this._joined) {
          this._joined = true;
          const queued = this._queued;
          this._queued = [];
          for (const waiting of queued) this._send(waiting);
          this._caughtUp(before);
        }
        break;
      }
      case "tabs":
        this.tabs = message.count;
        this._emit("tabs", { count: message.count });
        break;
      case "subok": {
        const sub = this._subs.get(message.ch);
        if (!sub || !sub.active) break;
        const r = message.result;
        const again = sub.subscribedOnce;
        const before = this._confirmedIn.get(sub.channel);
        this._confirmedIn.set(sub.channel, this.sessionId);
        const result = sub.confirmed({ ep: r.epoch, off: r.offset, rec: r.recovered, n: r.missed });
        // Followed again in another session (the tab holding the connection went away, and the
        // next one started a new session): told as a tab's own client tells a renewal.
        if (again && before !== this.sessionId) this._emit("resubscribed", { channel: sub.channel, recovered: result.recovered });
        if (!result.recovered) this._emit("resync", { channel: sub.channel, epoch: result.epoch, offset: sub.offset });
        break;
      }
      case "suberr": {
        const sub = this._subs.get(message.ch);
        if (!sub) break;
        this._subs.delete(message.ch);
        this._confirmedIn.delete(message.ch);
        sub.end(asError(message.error));
        break;
      }
      case "pub":
        this._subs.get(message.ch)?.deliver(message.o, message.d);
        break;
      case "resync":
        this._subs.get(message.ch)?.resync(message.ep, message.off);
        this._emit("resync", { channel: message.ch, epoch: message.ep, offset: message.off });
        break;
      case "reply": {
        const waiter = this._waiting.get(message.id);
        if (!waiter) break;
        this._waiting.delete(message.id);
        if (message.ok) waiter.resolve(message.value);
        else waiter.reject(asError(message.error));
        break;
      }
      case "event":
        this._event(message.name, message.event, message.state);
        break;
      default:
        break;
    }
  }

  /**
   * @param {string} name
   * @param {any} event
   * @param {any} state
   */
  _event(name, event, state) {
    if (state) this._apply(state);
    if (name === "error" && event.code === "connect_failed") {
      this._toldLate = true;
      this._readiness.late(asError(event));
    }
    // Closed for good: at its `close` when a transport was up (it follows `state` closed),
    // else at `state` closed (no `close` follows: it pairs with an `open`, protocol §9.10).
    const up = this._up;
    if (name === "close") this._up = false;
    const ended = name === "close" ? !event.reconnecting : name === "state" && event.state === "closed" && !up;
    if (ended) {
      this._detach();
      // What was pending fails with why it ended (`session_closed: …`, as in the connection's
      // own tab); later calls with the fatal error, if any, else `closed` (protocol §9.4).
      const why = errorOfClose(String(event.reason ?? "")) ?? new LadderError("closed", event.reason);
      this._end(this._fatal ?? why, this._fatal ?? closedError());
    }
    if (name === "open") return this._opened(event);
    if (name === "session_lost") this._toldLost = true;
    if (name === "resubscribed" && this._confirmedIn.has(event.channel)) this._confirmedIn.set(event.channel, this.sessionId);
    this._emit(/** @type {keyof ClientEvents} */ (name), event);
  }

  /** @param {any} state the shared client's state (`tabs.js` snapshot) */
  _apply(state) {
    if (this.state === "closed") return;
    this.state = state.state;
    this.transport = state.transport;
    this.sessionId = state.sessionId;
    this.user = state.user;
    this.clientId = state.clientId;
    this.lastChange = state.lastChange;
    this.lastFailure = state.lastFailure;
    [this.outboxStorage, this.outboxReason, this.restored] = [state.outboxStorage, state.outboxReason, state.restored];
    this.restoredMessages = state.restoredMessages ?? [];
    // A record the shared client took over since this tab first heard of it (what it had taken
    // before, the tab reads in restoredMessages).
    const taken = state.restoredFrom ?? null;
    const fresh = this._restoredFrom !== undefined && taken !== null && taken !== this._restoredFrom && this.restored > 0;
    this._restoredFrom = taken;
    this._limits = state.limits ?? {};
    if (state.fatal) this._fatal = asError(state.fatal);
    if (state.state === "connected") {
      this._connectedOnce = true;
      this._readiness.connected();
    }
    if (fresh) this._emit("restored", { count: this.restored, messages: this.restoredMessages });
  }

  /**
   * Closed for good: every wait ends with `error`, every later call with `later`.
   * @param {LadderError} error
   * @param {LadderError} [later]
   */
  _end(error, later = error) {
    this.state = "closed";
    this.transport = null;
    this._fatal = this._fatal ?? later;
    this._readiness.ended(error);
    for (const waiter of this._waiting.values()) waiter.reject(error);
    this._waiting.clear();
    for (const sub of this._subs.values()) sub.end(error);
    this._subs.clear();
    for (const unhook of this._unhook) unhook();
    this._unhook = [];
  }

  /**
   * @param {keyof ClientEvents} name
   * @param {any} event
   */
  _emit(name, event) {
    emit(/** @type {any} */ (this), name, event);
  }

  /** The page entered the back/forward cache: leave; calls still waiting fail (they may still be applied). */
  _hide() {
    this._detach();
    const error = new LadderError("closed", "the page entered the back/forward cache (the message may still be applied)");
    for (const waiter of this._waiting.values()) waiter.reject(error);
    this._waiting.clear();
  }
}
