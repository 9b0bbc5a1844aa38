// @ts-check
/** The ladder's rungs and the policy that picks the floor to stand on (no I/O, no clock). */

import * as core from "./core.js";

export const PROTOCOL_VERSION = 1;

/** Every rung, best first. */
export const TRANSPORTS = /** @type {const} */ (["websocket", "sse", "longpoll", "poll"]);

/** @typedef {"websocket" | "sse" | "longpoll" | "poll"} Rung */

/**
 * The rungs a client may use, best first: `transports` checked against the ladder (a tab's
 * own client and a tab sharing a connection apply the same rule).
 * @param {readonly Rung[]} [transports]
 * @returns {Rung[]}
 */
export function allowedRungs(transports = TRANSPORTS) {
  if (!Array.isArray(transports)) {
    throw new TypeError(`transports must be an array of rung names, e.g. [${JSON.stringify(transports)}], not a ${typeof transports}`);
  }
  const unknown = transports.filter((t) => !TRANSPORTS.includes(t));
  if (!transports.length || unknown.length) {
    throw new TypeError(`transports must be a non-empty subset of ${TRANSPORTS.join(", ")}, not ${unknown.join(", ") || "[]"}`);
  }
  return TRANSPORTS.filter((t) => transports.includes(t));
}

/**
 * The ladder's state for one client: the floor it stands on and its recent cuts. The core's
 * `RungPolicy` (which decides), with positional arguments.
 */
export class RungPolicy {
  /**
   * @param {readonly Rung[]} rungs allowed, best first
   * @param {{cutLimit?: number, stableAfter?: number, start?: string | null}} [options]
   */
  constructor(rungs, { cutLimit, stableAfter, start = null } = {}) {
    this.core = new core.RungPolicy({ rungs, cutLimit, stableAfter, start }); // (undefined: the core's defaults)
  }

  /** @returns {Rung[]} */
  get rungs() {
    return /** @type {Rung[]} */ (this.core.rungs);
  }

  get floor() {
    return this.core.floor;
  }

  get cutLimit() {
    return this.core.cutLimit;
  }

  get stableAfter() {
    return this.core.stableAfter;
  }

  /** @param {Rung} rung */
  index(rung) {
    return this.rungs.indexOf(rung);
  }

  get current() {
    return /** @type {Rung} */ (this.core.current);
  }

  /** Rungs to race on (re)connect: from the floor down. */
  candidates() {
    return /** @type {Rung[]} */ (this.core.candidates());
  }

  /**
   * Better rungs than `rung`, best first: what a probe tries.
   * @param {Rung} rung
   */
  above(rung) {
    return /** @type {Rung[]} */ (this.core.above({ rung }));
  }

  /**
   * The delay the probes from `rung` start with (the core's `probeWait`).
   * @param {Rung} rung
   * @param {number} first ms
   */
  probeWait(rung, first) {
    return this.core.probeWait({ rung, first });
  }

  /** @param {readonly string[]} rungs what the server's welcome offers (`tr`): probes try no other */
  offered(rungs) {
    this.core.offered({ rungs });
  }

  /**
   * `rung` was refused with `unsupported_transport` (`details`: the refusal's; its `tr` says what the server offers).
   * @param {Rung} rung
   * @param {unknown} [details]
   */
  notOffered(rung, details = null) {
    this.core.notOffered({ rung, details });
  }

  /** Why to give up when the server offers none of the allowed rungs, else null. */
  stranded() {
    return this.core.stranded();
  }

  /** @param {Rung} rung a race (or a probe) was won there: stand there */
  won(rung) {
    this.core.won({ rung });
  }

  /**
   * A connection on `rung` ended after `lived` ms (`heard`: ms from its opening to the last
   * thing it delivered; `action`: what its end leads to): the reason for stepping down, or null.
   * @param {Rung} rung
   * @param {number} lived
   * @param {string} reason
   * @param {number | null} [heard]
   * @param {string | null} [action]
   */
  dropped(rung, lived, reason, heard = null, action = null) {
    return this.core.dropped({ rung, lived, reason, heard, action });
  }
}
