// @ts-check
/** What the client reports to the app (`client.on(name, listener)`) and its connection state. */

import { reportLater } from "./subscription.js";

/** @typedef {import("./driver.js").Client} Client */
/** @typedef {import("./driver.js").ClientState} ClientState */
/** @typedef {import("./rungs.js").Rung} Rung */

/**
 * @typedef {object} ClientEvents
 * @property {{transport: Rung, sessionId: string, resumed: boolean}} open a transport is up and the session live
 * @property {{transport: Rung | null, reason: string, reconnecting: boolean}} close the transport was lost (reconnecting unless closed)
 * @property {{old: Rung | null, new: Rung, reason: string}} transport the client moved to another rung
 * @property {{channel: string, epoch: string, offset: number}} resync history could not cover a gap: refetch the app's state (the subscription goes on from offset)
 * @property {{reason: string}} session_lost the server no longer had the session; a new one started
 * @property {{channel: string, recovered: boolean}} resubscribed a channel was subscribed again in a new session
 * @property {{event: string, data: any}} push an event the server pushed to this session or user
 * @property {{kind: "join" | "leave", channel: string, member: Member}} presence someone joined or left a channel followed
 * @property {{code: string, reason: string}} error an error no call was waiting for (for example a failed emit, or the refusal of a subscription renewed in a new session)
 * @property {{rung: Rung, ok: boolean, reason: string}} probe a better rung was tried while on a lower one
 * @property {{state: ClientState, reason: string}} state the connection state changed (and why, when it got worse)
 * @property {{count: number}} tabs how many tabs share the connection (only a `SharedClient`, shared.js, reports it)
 * @property {{count: number, messages: RestoredMessage[]}} restored the client took over messages a previous page (or a shared connection's previous holder) left, and sends them first
 */

/** @typedef {import("./outbox.js").RestoredMessage} RestoredMessage */

/** @typedef {{c: string, u: string | null, info?: any}} Member */

/** The names `on` takes (a misspelt one would never fire: it throws instead). */
export const EVENTS = Object.freeze([
  "open", "close", "transport", "resync", "session_lost", "resubscribed", "push", "presence", "error",
  "probe", "state", "tabs", "restored",
]);

/** Listeners by event name: what a `Client` and a tab's `SharedClient` both offer the app. */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<(event: any) => void>>} */
    this._listeners = new Map();
  }

  /**
   * Call `listener(event)` for every event called `name`; returns a function that removes it.
   * @template {keyof ClientEvents} K
   * @param {K} name
   * @param {(event: ClientEvents[K]) => void} listener
   * @returns {() => void}
   */
  on(name, listener) {
    checkEventName(name);
    if (typeof listener !== "function") throw new TypeError(`on(${JSON.stringify(name)}, listener): the listener must be a function, not ${typeof listener}`);
    let set = this._listeners.get(name);
    if (!set) this._listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => this.off(name, listener);
  }

  /**
   * Stop calling `listener` for `name`; false when it was not listening. A listener added
   * twice is one listener (called once per event). An unknown name throws, as in `on`.
   * @template {keyof ClientEvents} K
   * @param {K} name
   * @param {(event: ClientEvents[K]) => void} listener
   * @returns {boolean}
   */
  off(name, listener) {
    checkEventName(name);
    return this._listeners.get(name)?.delete(listener) ?? false;
  }
}

/** @param {string} name */
function checkEventName(name) {
  if (!EVENTS.includes(name)) throw new TypeError(`unknown event ${JSON.stringify(name)}; one of ${EVENTS.join(", ")}`);
}

/**
 * @template {keyof ClientEvents} K
 * @param {Client} client
 * @param {K} name
 * @param {ClientEvents[K]} event
 */
export function emit(client, name, event) {
  for (const listener of [...(client._listeners.get(name) ?? [])]) {
    try {
      listener(event);
    } catch (error) {
      reportLater(error);
    }
  }
}

/**
 * @param {Client} client
 * @param {ClientState} state
 * @param {string} [reason]
 */
export function setState(client, state, reason = "") {
  if (client.state === state) return;
  client.state = state;
  client._emit("state", { state, reason });
}
