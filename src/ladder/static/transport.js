// @ts-check
/** Transports: where the server is, and one rung's connection for one attempt (the base class). */

import { errorOf, TransportClosed } from "./errors.js";

/** @typedef {import("./clock.js").Clock} Clock */
/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./errors.js").LadderError} LadderError */
/** @typedef {import("./rungs.js").Rung} Rung */

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
 * @property {import("./core.js").LongPollHold} [holding] how long long polls ask to be held (shorter once a proxy cut them: protocol §3.5), shared by the client's transports
 */

/**
 * @typedef {object} TransportHandlers
 * @property {(frames: Frame[], size?: number) => void} onframes every batch that arrives (possibly empty: a poll answered with nothing) and its size in characters, when the transport counts it (streams)
 * @property {(reason: string, error: LadderError | null) => void} onclose the transport failed (called once; never after close())
 */

/**
 * One rung's connection. `open` sends the hello and resolves with the welcome once this very
 * transport proved it delivers (for SSE: once a ping went up and its pong came back down).
 * Frames that arrive before `attach` are kept and handed over by it.
 */
/**
 * What a connection that could not be made says when the browser itself knows it has no
 * network (the refusal or blocked upgrade it would otherwise blame is not the cause).
 * @returns {string | null}
 */
export function offline() {
  return globalThis.navigator?.onLine === false ? "this browser is offline" : null;
}

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
    /** Writes go by their own request (`POST send`): a failed one may be written again. */
    this.separateUpstream = false;
    /** @type {Frame} */
    this.welcome = {};
    /** @type {Frame[]} */
    this.pending = [];
    /** Characters of the messages whose frames are pending. */
    this.pendingSize = 0;
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
    const size = this.pendingSize;
    this.pending = [];
    this.pendingSize = 0;
    if (this.failure) {
      handlers.onframes(pending, size);
      handlers.onclose(this.failure.reason, this.failure.error);
      return;
    }
    handlers.onframes(pending, size);
    this.started();
  }

  /** Called once attached (polls start polling here, not during a race). */
  started() {}

  /**
   * @param {Frame[]} frames
   * @param {number} [size] characters of the message they came in (streams: the server keeps
   *   them until acknowledged, and the client acks before half its `lim.qbytes` fills)
   */
  receive(frames, size = 0) {
    if (this.closed) return;
    if (this.handlers) this.handlers.onframes(frames, size);
    else {
      this.pending.push(...frames);
      this.pendingSize += size;
    }
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
