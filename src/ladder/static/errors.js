// @ts-check
/** Errors the client raises and reports: refusals with stable codes, ended transports. */

/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./rungs.js").Rung} Rung */

/** A refusal with a stable `code` (switch on it) and a `reason` for people. */
export class LadderError extends Error {
  /**
   * @param {string} code
   * @param {string} [reason]
   * @param {number} [retryAfter] seconds, for `rate_limited`
   * @param {unknown} [details] what a handler attached (`LadderError(..., details=...)`)
   */
  constructor(code, reason = "", retryAfter, details) {
    super(reason ? `${code}: ${reason}` : code);
    this.name = "LadderError";
    /** @type {string} */
    this.code = code;
    /** @type {string} */
    this.reason = reason;
    /** @type {number | undefined} */
    this.retryAfter = retryAfter;
    /** @type {unknown} */
    this.details = details;
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
    /** @type {number | null} the HTTP status of an answer that was not the server's (a proxy's), if any */
    this.status = null;
    /** @type {number | null} the bytes of a `POST send` refused with HTTP 413 by something that is not the server (a proxy's body limit) */
    this.tooLarge = null;
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

/** The longest token a server takes (protocol §3.1). */
export const MAX_TOKEN = 8192;

/**
 * A token the server takes, or a TypeError saying why not (a longer one was refused on every
 * connection, and retried until `connectTimeout`).
 * @param {unknown} token
 */
export function checkTokenLength(token) {
  if (typeof token === "string" && token.length > MAX_TOKEN) {
    throw new TypeError(`the token is ${token.length} characters: a server takes at most ${MAX_TOKEN} (send a reference to the credentials, such as a session id, rather than the credentials)`);
  }
}

/**
 * A token handed to `refresh(token)`: a string the server takes, or null for the client's own
 * (anything else reached the server as "[object Object]"; a longer one was refused there).
 * @param {unknown} token
 */
export function checkRefreshToken(token) {
  if (token !== null && token !== undefined && typeof token !== "string") {
    throw new TypeError(`refresh(token): token must be a string, or null for the client's own, not ${shown(token)}`);
  }
  checkTokenLength(token);
}

/**
 * A value as an error message shows it (JSON.stringify writes NaN and Infinity as null).
 * @param {unknown} value
 * @returns {string}
 */
export function shown(value) {
  if (typeof value === "number" || typeof value === "bigint" || value === undefined) return String(value);
  if (typeof value === "function") return "a function";
  // (in an array too: "not [0,null]" read as if null were refused)
  if (Array.isArray(value)) return `[${value.map(shown).join(",")}]`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/**
 * The error a server's WebSocket close reason names (`code: reason`, protocol §8), or null.
 * @param {string} reason
 * @returns {LadderError | null}
 */
export function errorOfClose(reason) {
  const match = /^([a-z0-9_]+): /.exec(reason);
  return match ? new LadderError(match[1], reason.slice(match[0].length)) : null;
}

/**
 * An error frame or body as a LadderError (a `retry_after` that is no wait, negative or
 * endless, read as absent; no code: `internal`).
 * @param {Frame} frame
 */
export function errorOf(frame) {
  const wait = frame.retry_after;
  const retry = typeof wait === "number" && wait >= 0 && wait < Infinity ? wait : undefined;
  return new LadderError(frame.code ? String(frame.code) : "internal", String(frame.reason ?? ""), retry, frame.details ?? undefined);
}

/**
 * The `error` event of an `err` frame nothing waited for: `code`, `reason`, and `details` and
 * `retryAfter` when the frame has them.
 * @param {Frame} frame
 * @returns {{code: string, reason: string, details?: unknown, retryAfter?: number}}
 */
export function errorEvent(frame) {
  const error = errorOf(frame);
  /** @type {{code: string, reason: string, details?: unknown, retryAfter?: number}} */
  const event = { code: error.code, reason: error.reason };
  if (error.details !== undefined) event.details = error.details;
  if (error.retryAfter !== undefined) event.retryAfter = error.retryAfter;
  return event;
}

/**
 * The options of a request (`call`, `publish`, `presence`, `history`), refusing a misspelt
 * one and a timeout that is not a number of milliseconds (a misspelt option is otherwise
 * ignored, and `{timeout: "5s"}` or one thought in seconds waits the wrong time).
 * @template {Record<string, any>} T
 * @param {string} method
 * @param {T} options
 * @param {readonly string[]} [names]
 * @returns {T}
 */
export function requestOptions(method, options, names = ["timeout"]) {
  if (options !== undefined && options !== null && (typeof options !== "object" || Array.isArray(options))) {
    // (history(ch, 2) or call(ev, d, 5000), written the Python way, were ignored)
    throw new TypeError(`${method}: options are an object, e.g. {${names[0]}: ${JSON.stringify(options)}}, not ${JSON.stringify(options)}`);
  }
  const unknown = Object.keys(options ?? {}).filter((name) => !names.includes(name));
  if (unknown.length) throw new TypeError(`${method}: unknown option ${unknown.map((n) => JSON.stringify(n)).join(", ")}; the options are ${names.join(", ")}`);
  const timeout = options?.timeout;
  if (timeout !== undefined && timeout !== null && !(typeof timeout === "number" && Number.isFinite(timeout) && timeout > 0)) {
    throw new TypeError(`${method}: timeout is in milliseconds (a number above 0, or null to wait as long as the session lives), not ${shown(timeout)}`);
  }
  return options ?? /** @type {T} */ ({});
}
