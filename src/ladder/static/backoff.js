// @ts-check
/** Reconnect delays: full jitter so that a crowd cut at once does not come back at once. */

import * as core from "./core.js";

/**
 * A delay drawn uniformly from [0, min(cap, base * 2^attempt)) ms: full jitter spreads a crowd
 * of clients that lost the same server over the whole window.
 * @param {number} attempt
 * @param {number} base
 * @param {number} cap
 * @param {() => number} [random]
 */
export function fullJitter(attempt, base, cap, random = Math.random) {
  return core.fullJitter({ attempt, base, cap, rand: random() });
}

/** Failed races retried at once before backing off (the core's). */
export const RETRIES_AT_ONCE = core.RETRIES_AT_ONCE;

/**
 * How long to wait before the next race, ms (protocol §9.4). `failures` counts the races that
 * failed since the last welcome: 0 right after a connection ended (a short pause in
 * [0, base)), then `RETRIES_AT_ONCE` immediate retries, then full jitter doubling from `base` up
 * to `cap`. Every welcome starts the count again: frequent cuts or one bad node among good ones
 * never grow the delay.
 * @param {number} failures
 * @param {number} base
 * @param {number} cap
 * @param {() => number} [random]
 */
export function reconnectDelay(failures, base, cap, random = Math.random) {
  return core.reconnectDelay({ failures, base, cap, rand: random() });
}
