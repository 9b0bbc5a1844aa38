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
