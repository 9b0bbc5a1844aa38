// @ts-check
/** Liveness while connected: the silence watchdog, checks, and the browser's sleep, wake and network events. */

import { silenceLimit, silenceVerdict } from "./liveness.js";
import { seconds } from "./clock.js";

/** @typedef {import("./driver.js").Client} Client */
/** @typedef {import("./transport.js").Transport} Transport */

/** Whether the page is hidden (its timers are throttled, so silences are judged more loosely). */
export function hidden() {
  return typeof document !== "undefined" && document.visibilityState === "hidden";
}

/**
 * Judge the transport by what arrives: silent past its limit, it is broken — unless our own
 * timer ran late (a throttled or frozen tab), in which case a ping decides.
 * @param {Client} client
 * @param {Transport} conn
 */
export function armWatchdog(client, conn) {
  client._clock.clearTimeout(client._watchdog);
  const limit = () =>
    silenceLimit(conn.name, conn.welcome, {
      hidden: client._hidden(),
      hiddenSlack: client.options.hiddenSlack,
      pollMax: client.options.pollInterval[1],
    });
  /** @param {number} wait */
  const arm = (wait) => {
    const due = client._clock.now() + wait;
    client._watchdog = client._clock.setTimeout(() => {
      if (client._conn !== conn || client.state !== "connected") return;
      const now = client._clock.now();
      const silent = now - client._lastHeard;
      const max = limit();
      const verdict = silenceVerdict({ silent, limit: max, late: now - due });
      if (verdict === "alive") arm(Math.max(50, max - silent));
      else if (verdict === "check") {
        client._check("the page was asleep");
        arm(Math.max(max, client.options.verifyTimeout * 2 + 1000)); // let the check decide
      } else client._connClosed(conn, `${conn.name}: nothing received for ${seconds(silent)}`, null);
    }, wait);
  };
  arm(limit());
}

/**
 * Ask the server for a pong; drop the transport if none comes back in time.
 * @param {Client} client
 * @param {string} why
 */
export function check(client, why) {
  const conn = client._conn;
  if (!conn || client.state !== "connected" || client._checking) return;
  client._checking = true;
  const nonce = Math.floor(client._random() * 2 ** 31);
  const timeout = client.options.verifyTimeout * 2;
  const timer = client._clock.setTimeout(() => {
    client._pongs.delete(nonce);
    client._checking = false;
    client._connClosed(conn, `${conn.name}: no answer to a check within ${seconds(timeout)} (${why})`, null);
  }, timeout);
  client._pongs.set(nonce, () => {
    client._clock.clearTimeout(timer);
    client._checking = false;
  });
  client._control(conn, [{ t: "ping", n: nonce }]);
}

/** @param {Client} client */
export function hookBrowser(client) {
  /**
   * @param {EventTarget} target
   * @param {string} name
   * @param {(event: any) => void} handler
   */
  const hook = (target, name, handler) => {
    target.addEventListener(name, handler);
    client._unhook.push(() => target.removeEventListener(name, handler));
  };
  hook(window, "online", () => client.wake("the network came back"));
  hook(window, "offline", () => client.wake("the network went away"));
  hook(document, "visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    // A visible tab is a person looking: reconnect now, or make sure the connection is alive.
    if (client.state === "connected" && client._clock.now() - client._lastHeard < 5000) return;
    client.wake("the tab became visible");
  });
  hook(window, "pagehide", (event) => {
    if (event.persisted) client._suspend();
    else client.close();
  });
  hook(window, "pageshow", (event) => {
    if (event.persisted) client._resume();
  });
}

/**
 * The page went into the back/forward cache: release every connection, keep the session.
 * @param {Client} client
 */
export function suspend(client) {
  if (client.state === "closed" || client._suspended) return;
  client._suspended = true;
  client._raceAbort?.abort();
  client._wakeSleep?.();
  const conn = client._conn;
  if (conn) client._connClosed(conn, `${conn.name}: the page was hidden`, null);
}

/**
 * The page came back from the back/forward cache: reconnect (resuming the session if it lives).
 * @param {Client} client
 */
export function resume(client) {
  if (!client._suspended) return;
  client._suspended = false;
  client._unsuspend?.();
}
