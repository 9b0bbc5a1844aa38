// @ts-check
/** Time, injectable so that the state machine can be tested without waiting. */

import * as core from "./core.js";

/**
 * A duration as reasons write it (the core's `seconds`: `0.5 s`, `10 s`).
 * @param {number} ms
 */
export function seconds(ms) {
  return core.seconds({ ms });
}

/**
 * @typedef {object} Clock
 * @property {() => number} now milliseconds, monotonic
 * @property {(fn: () => void, ms: number) => any} setTimeout
 * @property {(handle: any) => void} clearTimeout
 * @property {() => number} [wall] milliseconds of Unix time (default `Date.now`)
 */

/** @type {Clock} */
export const realClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle),
  wall: () => Date.now(),
};

/**
 * Wait for `promise` to settle, but at most `ms`: for a last step worth a bounded wait
 * (a `bye` leaving, an outbox let go), never an error.
 * @param {Promise<unknown>} promise
 * @param {number} ms
 * @param {Clock} [clock]
 * @returns {Promise<void>}
 */
export function atMost(promise, ms, clock = realClock) {
  /** @type {any} */
  let timer;
  const late = new Promise((resolve) => (timer = clock.setTimeout(() => resolve(undefined), ms)));
  return Promise.race([promise.then(() => {}, () => {}), late]).then(() => clock.clearTimeout(timer));
}

/**
 * A `setTimeout` delay that fires no earlier than `ms` by the clock: browsers truncate a
 * fractional delay to whole milliseconds, so a timer set for 1000.7 ms ran 0.7 ms before the
 * deadline it was set for, found nothing late yet, and the check it was for never ran again.
 * @param {number} ms
 */
export function timerDelay(ms) {
  return Math.ceil(ms) + 1;
}
