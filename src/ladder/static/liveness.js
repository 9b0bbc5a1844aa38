// @ts-check
/** How long a transport may stay silent before it counts as broken (protocol §3.3, §9.2). */


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
  const heartbeat = Number(welcome.hb ?? 20_000);
  let limit;
  if (rung === "websocket" || rung === "sse") limit = heartbeat * 1.5 + 1000;
  else if (rung === "longpoll") limit = Number(welcome.poll ?? 25_000) + heartbeat / 2 + 5000;
  else limit = pollMax + 15_000;
  return hidden ? limit + hiddenSlack : limit;
}

/**
 * What a watchdog that just fired should conclude: `alive` (something arrived in time),
 * `check` (silent too long, but the timer itself ran `late` ms late, so the page was throttled
 * or frozen: ask the server before giving up) or `dead`.
 * @param {{silent: number, limit: number, late: number, slack?: number}} state
 * @returns {"alive" | "check" | "dead"}
 */
export function silenceVerdict({ silent, limit, late, slack = 1000 }) {
  if (silent < limit) return "alive";
  return late > slack ? "check" : "dead";
}
