// @ts-check
/** The staggered race (protocol §9.1): its schedule (sans-I/O) and the race that runs it. */

import * as core from "./core.js";
import { AllRungsFailed, TransportClosed } from "./errors.js";
import { realClock } from "./clock.js";

/** @typedef {import("./clock.js").Clock} Clock */
/** @typedef {import("./rungs.js").Rung} Rung */
/** @typedef {import("./transport.js").Transport} Transport */

/**
 * When each rung of a race starts (protocol §9.1): rung k at `stagger[k]` ms, or at once when
 * every rung started before it already failed.
 */
export class RaceSchedule {
  /**
   * @param {readonly Rung[]} rungs
   * @param {readonly number[]} stagger
   * @param {boolean} [tokenRefreshable]
   */
  constructor(rungs, stagger, tokenRefreshable = true) {
    this.core = new core.RaceSchedule({ rungs, stagger, tokenRefreshable });
  }

  /**
   * A rung failed with this refusal (null: none heard): true when the race is over.
   * @param {string | null} code
   */
  failed(code) {
    return this.core.failed({ code });
  }

  /**
   * The rungs to start `elapsed` ms into the race with `running` attempts in flight, and how
   * long until the next is due (null: none left).
   * @param {number} elapsed
   * @param {number} running
   * @returns {{start: Rung[], wait: number | null}}
   */
  due(elapsed, running) {
    return /** @type {{start: Rung[], wait: number | null}} */ (this.core.due({ elapsed, running }));
  }
}

/**
 * @typedef {object} RaceResult
 * @property {Transport} winner
 * @property {Partial<Record<Rung, TransportClosed>>} failures why better rungs failed
 * @property {Rung[]} unproven better rungs still opening when the winner won
 * @property {number} elapsed ms the race took
 */

/**
 * Open the best rung that works: rung k starts at stagger[k] ms unless every rung started so
 * far already failed; the first to open wins; the others are cancelled, or, if they opened
 * too, handed to `onLoser`. A black-holed WebSocket costs stagger[1] ms, not a timeout; a
 * refusal the client gives up on (`RaceSchedule.failed`) ends the race at once.
 * @param {readonly Rung[]} rungs
 * @param {(rung: Rung, signal: AbortSignal) => Promise<Transport>} open
 * @param {readonly number[]} stagger
 * @param {{onLoser: (conn: Transport) => void, clock?: Clock, signal?: AbortSignal, tokenRefreshable?: boolean}} options
 * @returns {Promise<RaceResult>}
 */
export function race(rungs, open, stagger, { onLoser, clock = realClock, signal, tokenRefreshable = true }) {
  return new Promise((resolve, reject) => {
    const schedule = new RaceSchedule(rungs, stagger, tokenRefreshable);
    const startedAt = clock.now();
    /** @type {Map<Rung, AbortController>} */
    const attempts = new Map();
    /** @type {Partial<Record<Rung, TransportClosed>>} */
    const failures = {};
    /** @type {any} */
    let timer = null;
    let done = false;

    const finish = () => {
      done = true;
      clock.clearTimeout(timer);
      signal?.removeEventListener("abort", cancel);
      for (const attempt of attempts.values()) attempt.abort();
    };
    const cancel = () => {
      if (done) return;
      finish();
      reject(new TransportClosed("cancelled"));
    };
    const step = () => {
      if (done) return;
      clock.clearTimeout(timer);
      const { start, wait } = schedule.due(clock.now() - startedAt, attempts.size);
      for (const rung of start) launch(rung);
      if (wait !== null) timer = clock.setTimeout(step, wait);
      else if (attempts.size === 0) {
        finish();
        reject(new AllRungsFailed(failures));
      }
    };
    /** @param {Rung} rung */
    const launch = (rung) => {
      const attempt = new AbortController();
      attempts.set(rung, attempt);
      open(rung, attempt.signal).then(
        (conn) => {
          attempts.delete(rung);
          if (done) {
            onLoser(conn);
            return;
          }
          const unproven = [...attempts.keys()].filter((r) => rungs.indexOf(r) < rungs.indexOf(rung));
          finish();
          resolve({ winner: conn, failures, unproven, elapsed: clock.now() - startedAt });
        },
        (error) => {
          attempts.delete(rung);
          if (done) return;
          const failure = error instanceof TransportClosed ? error : new TransportClosed(`${rung}: ${String(error)}`);
          failures[rung] = failure;
          if (schedule.failed(failure.error?.code ?? null)) {
            finish();
            reject(new AllRungsFailed(failures));
          } else step();
        },
      );
    };
    if (signal?.aborted) return cancel();
    signal?.addEventListener("abort", cancel);
    step();
  });
}
