// @ts-check
/** The pace of upstream messages under the server's rate limits (protocol §4). */

import * as core from "./core.js";

/**
 * The pace of upstream messages (protocol §4, "rate limits"): unlimited until the server
 * refuses a message for its rate (`err` `rate_limited` with `re` and `retry_after`, the id not
 * used up). Then: wait `retry_after`, write one message per `interval` (the largest
 * `retry_after` heard since pacing began), the ones that became due meanwhile together, until
 * every message was acknowledged. The core's `Pacer` (which decides), with positional
 * arguments. Times in ms.
 */
export class Pacer {
  constructor() {
    this.core = new core.Pacer();
  }

  /** ms between messages while pacing; 0 when not pacing */
  get interval() {
    return this.core.interval;
  }

  get resumeAt() {
    return this.core.resumeAt;
  }

  get pacing() {
    return this.core.pacing;
  }

  /**
   * @param {number} retryAfter ms
   * @param {number} now
   */
  refused(retryAfter, now) {
    this.core.refused({ retryAfter, now });
  }

  /**
   * How many messages may be written now (null: any number) and, when none may, how many ms
   * until the next one may.
   * @param {number} now
   * @param {boolean} [separateUpstream] each write a `POST send` (POST_GAP apart at least)
   * @returns {{count: number | null, wait: number}}
   */
  allowance(now, separateUpstream = false) {
    return this.core.allowance({ now, separateUpstream });
  }

  /** @param {number} count */
  wrote(count) {
    this.core.wrote({ count });
  }

  /** @param {number} count messages written under the allowance whose write failed */
  returned(count) {
    this.core.returned({ count });
  }

  drained() {
    this.core.drained();
  }
}
