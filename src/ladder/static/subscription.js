// @ts-check
/** Subscriptions: a channel's position (epoch, offset) and its listeners (protocol §6). */

import { LadderError, requestOptions } from "./errors.js";

/** @typedef {import("./codec.js").Frame} Frame */

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
 * `subscribe`'s listener and options, checked (the same for a tab's own client and a shared
 * one): a listener that is not a function, a misspelt option, a `recent` out of range or a
 * `since` of another shape throws, instead of being ignored (`since: [epoch, 2]` subscribed
 * from now on, and `ready()` said `recovered: true`).
 * @param {unknown} onPublication
 * @param {{since?: any, recent?: any} | null | undefined} options
 * @returns {{since: Position | null, recent: number}}
 */
export function subscribeArguments(onPublication, options) {
  if (onPublication !== null && onPublication !== undefined && typeof onPublication !== "function") {
    // (subscribe(ch, {recent: 3}) took the options for the listener)
    throw new TypeError(`subscribe: the second argument is the listener (a function, or null); options go third: subscribe(channel, null, {since, recent})`);
  }
  const { since = null, recent = 0 } = requestOptions("subscribe", options ?? {}, ["since", "recent"]);
  if (!Number.isInteger(recent) || recent < 0 || recent > 10_000) {
    throw new RangeError(`recent must be an integer from 0 to 10000, not ${String(recent)}`);
  }
  const shaped = since === null || (typeof since === "object" && typeof since.epoch === "string" && since.epoch !== "" && Number.isInteger(since.offset) && since.offset >= 0);
  if (!shaped) {
    throw new TypeError(`since must be {epoch, offset} as sub.position gives it, e.g. {epoch: "a1b2", offset: 42}, not ${JSON.stringify(since) ?? String(since)}`);
  }
  return { since, recent };
}

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
    /** @type {import("./core.js").Renewal | null} the core's count of renewals refused in a row (made at the first) */
    this._renewal = null;
    /** @type {(() => void) | null} cancels a renewal refused for now, waiting to be sent again */
    this._retry = null;
    /** @type {((error: LadderError | null) => void) | null} told once when it ends (the tabs' hub: the tabs following it end with it) */
    this._onEnd = null;
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
   * A renewal refused for now waits to be sent again; `cancel` stops it.
   * @param {() => void} cancel
   */
  retryLater(cancel) {
    this.cancelRetry();
    this._retry = cancel;
  }

  /** A renewal refused for now waits: no `sub` of this session is in flight, and the server holds none. */
  get waitingToRenew() {
    return this._retry !== null;
  }

  cancelRetry() {
    const cancel = this._retry;
    this._retry = null;
    cancel?.();
  }

  /**
   * The subscription ended (refused, unsubscribed, ended by the server or the client closed).
   * @param {LadderError | null} [error]
   */
  end(error = null) {
    const was = this.active;
    this.active = false;
    this.cancelRetry();
    if (error && !this.error) this.error = error;
    if (!this._settled) {
      this._settled = true;
      this._reject(error ?? new LadderError("closed", "the subscription ended"));
    }
    if (was) this._onEnd?.(error);
  }
}

/** @param {unknown} error */
export function reportLater(error) {
  setTimeout(() => {
    throw error;
  }, 0);
}
