// @ts-check
/**
 * The `SharedWorker` that holds the one connection every tab of a browser profile shares
 * (`connect(url, options)`, see `shared.js`). The hub serves it beside `client.js`;
 * it runs the same `Client` as a single tab does, with the same ladder and guarantees.
 *
 * Where a browser has no SharedWorker, a tab elected leader runs the same hub (`leader.js`).
 */

import { Client } from "./driver.js";
import { TabHub } from "./tabs.js";

const hub = new TabHub((url, options) => new Client(url, options));
const scope = /** @type {any} */ (globalThis);

scope.onconnect = (/** @type {MessageEvent} */ event) => {
  const port = event.ports[0];
  port.onmessage = (/** @type {MessageEvent} */ message) => {
    hub.receive(port, message.data);
  };
  port.start();
};
