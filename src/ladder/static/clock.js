// @ts-check
/** Time, injectable so that the state machine can be tested without waiting. */


/**
 * @param {number} ms
 */
export function seconds(ms) {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

/**
 * @typedef {object} Clock
 * @property {() => number} now milliseconds, monotonic
 * @property {(fn: () => void, ms: number) => any} setTimeout
 * @property {(handle: any) => void} clearTimeout
 */

/** @type {Clock} */
export const realClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle),
};
