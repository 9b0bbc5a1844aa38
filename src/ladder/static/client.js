// @ts-check
/**
 * Ladder browser client: plain ES modules (no build step), served at `<mount>/client.js` and
 * beside it one module per concept (the same names as the Python client's modules).
 *
 *     import { connect } from "/ladder/client.js";
 *     const client = connect("/ladder", { token: "alice" });
 *     client.on("transport", (e) => console.log(`${e.old} -> ${e.new}: ${e.reason}`));
 *     client.subscribe("room:lobby", (pub) => console.log(pub.offset, pub.data), { recent: 50 });
 *     const result = await client.call("chat.send", { room: "lobby", text: "hi" }, { timeout: 5000 });
 *
 * It implements protocol version 1 (docs/protocol.md) with the same ladder and guarantees as
 * the Python client (`ladder.client`), and the same decisions: `core` is a port of the Python
 * client core (`ladder.protocol.client`), and both run the shared vectors (tests/vectors).
 * This module is the entry point: `connect` and a re-export of every module's public names.
 * The sans-I/O modules (`core`, `reliable`, `peer`, `rungs`, `backoff`, `pacing`, `race`,
 * `liveness`, `codec`) have no timers and no sockets. The `Client` (`driver`) runs them with
 * timers and the transports (`transport`, `websocket`, `http`, `sse`, `polling`); its methods
 * live in the modules of their concepts (`connection`, `switching`, `outbound`, `inbound`,
 * `events`), as in the Python client; `outbox` keeps unacknowledged messages for the next page.
 */

import { checkOptions, checkUrl, Client } from "./driver.js";
import { SharedClient } from "./shared.js";
import { canShare } from "./leader.js";

// The public names of every module, so that one import of client.js reaches them all.
export { LadderError, TransportClosed, AllRungsFailed, errorOf } from "./errors.js";
export { encodeBatch, unencodable, encodeMessage, decodeBatch } from "./codec.js";
export { Outbox, Inbox, carried, formatIds } from "./reliable.js";
export { PeerState } from "./peer.js";
export { DurableOutbox, DURABLE, memoryStore, indexedDbStore, snapshot, carriedFrom } from "./outbox.js";
export { PROTOCOL_VERSION, TRANSPORTS, RungPolicy } from "./rungs.js";
export { fullJitter, RETRIES_AT_ONCE, reconnectDelay } from "./backoff.js";
export { Pacer } from "./pacing.js";
export { RaceSchedule, race } from "./race.js";
export { silenceLimit, silenceVerdict } from "./liveness.js";
export { realClock } from "./clock.js";
export { Subscription } from "./subscription.js";
export { Endpoint, Transport } from "./transport.js";
export { WebSocketTransport } from "./websocket.js";
export { HttpTransport } from "./http.js";
export { SSETransport } from "./sse.js";
export { PollingTransport } from "./polling.js";
export { makeTransport } from "./connection.js";
export { Client } from "./driver.js";
export { SharedClient } from "./shared.js";
export { canShare } from "./leader.js";
export { TabHub } from "./tabs.js";

/** @typedef {import("./driver.js").ClientOptions} ClientOptions */


/**
 * Create a client and start connecting. It reconnects by itself until `close()`. Wherever the
 * browser allows it (`canShare`) the tabs of the browser share one connection: the client is a
 * `SharedClient` with the same API. `share: false` gives the tab a connection of its own.
 * @param {string} url where the hub is mounted, e.g. "/ladder"
 * @param {ClientOptions} [options]
 * @returns {Client | SharedClient}
 */
export function connect(url, options = {}) {
  options ??= {};
  checkUrl(url);
  checkOptions(options);
  if (options.share !== false && canShare(url, options)) return new SharedClient(url, options).start();
  return new Client(url, options).start();
}
