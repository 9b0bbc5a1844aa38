// @ts-check
/** The ladder's rungs and the policy that picks the floor to stand on (no I/O, no clock). */

import { seconds } from "./clock.js";

export const PROTOCOL_VERSION = 1;

/** Every rung, best first. */
export const TRANSPORTS = /** @type {const} */ (["websocket", "sse", "longpoll", "poll"]);

/** @typedef {"websocket" | "sse" | "longpoll" | "poll"} Rung */

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
