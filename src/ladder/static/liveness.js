// @ts-check
/** How long a transport may stay silent before it counts as broken (protocol §3.3, §9.2). */

import * as core from "./core.js";

/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./rungs.js").Rung} Rung */

/**
 * How long a transport may stay silent before it counts as broken, in ms (protocol §3.3, §9.2).
 * A hidden tab gets `hiddenSlack` more: Chrome aligns a background tab's timers to once a
 * minute, which delays our own acks and short polls (and so the answers to them).
 * @param {Rung} rung
 * @param {Frame} welcome
 * @param {{hidden?: boolean, hiddenSlack?: number, pollMax?: number}} [options]
 */
export function silenceLimit(rung, welcome, { hidden = false, hiddenSlack = 60_000, pollMax = 2000 } = {}) {
  const [hb, poll] = [Number(welcome.hb ?? 20_000), Number(welcome.poll ?? 25_000)];
  return core.silenceLimit({ rung, hb, poll, hidden, hiddenSlack, pollMax });
}

/** What a watchdog that just fired concludes: `alive`, `check` (its timer ran late: ask) or `dead`. */
export const silenceVerdict = core.silenceVerdict;
