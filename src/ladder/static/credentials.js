// @ts-check
/**
 * The session's credentials kept fresh over the live session (protocol §4 `refresh`, §9.12):
 * with a `token` function, a `refresh` when the core's `refreshDelay` says (about
 * `refreshMargin` before `exp`), so a session outlives its tokens without a reconnect.
 */

import { REQUEST_TIMEOUT, refreshDelay } from "./core.js";
import { checkRefreshToken, LadderError } from "./errors.js";

/** @typedef {import("./driver.js").Client} Client */

/**
 * ms of Unix time (the server's `exp` is Unix time; the client's clock may be a fake).
 * @param {Client} client
 */
function wallNow(client) {
  return client._clock.wall ? client._clock.wall() : Date.now();
}

/**
 * Send new credentials for this session; with no `token`, the client's own (a function is
 * called). Resolves once the server took them.
 * @param {Client} client
 * @param {string | null} token
 * @param {number | null} timeout
 */
export async function refresh(client, token, timeout) {
  checkRefreshToken(token);
  const fresh = token ?? (await client._currentToken());
  if (!fresh) throw new LadderError("unauthorized", "no token to refresh with: pass one, or give the client a `token`");
  const reply = await client._request({ t: "refresh", tok: fresh }, timeout);
  // Kept only once accepted: a refused one (another user's) would be the next connection's.
  if (token != null && typeof client._token !== "function") client._token = token;
  credentialsExpire(client, reply?.exp);
}

/**
 * The server said when the credentials expire (`exp`, Unix seconds, or null): arm the refresh.
 * @param {Client} client
 * @param {unknown} exp
 */
export function credentialsExpire(client, exp) {
  client._expires = typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : null;
  armRefresh(client);
}

/**
 * Arm the refresh timer (only with a `token` function and credentials that expire);
 * `retry`: the last refresh failed.
 * @param {Client} client
 * @param {boolean} [retry]
 */
export function armRefresh(client, retry = false) {
  client._clock.clearTimeout(client._refreshTimer);
  client._refreshTimer = null;
  client._refreshDue = null;
  if (client._expires === null || typeof client._token !== "function" || client._isClosed()) return;
  const now = wallNow(client);
  const delay = refreshDelay({ expires: client._expires, now, margin: client.options.refreshMargin, retry });
  client._refreshDue = now + delay;
  client._refreshTimer = client._clock.setTimeout(() => maybeRefresh(client, true), delay);
}

/**
 * Refresh when due: `due` from its timer; otherwise, as frames arrive, whether a timer a
 * sleeping machine or a throttled tab held back is overdue.
 * @param {Client} client
 * @param {boolean} [due]
 */
export function maybeRefresh(client, due = false) {
  const when = client._refreshDue;
  if (when === null || client._refreshing || client._isClosed()) return;
  if (!due && wallNow(client) < when) return;
  client._refreshing = true;
  client._refreshDue = null;
  refresh(client, null, REQUEST_TIMEOUT)
    .catch((error) => {
      if (client._isClosed()) return;
      console.warn(`ladder: token refresh failed: ${error instanceof LadderError ? error.message : String(error)}`);
      // Told to the app too: credentials it cannot renew end the session at their expiry.
      if (error instanceof LadderError) client._emit("error", { code: error.code, reason: `token refresh failed: ${error.reason}` });
      armRefresh(client, true);
    })
    .finally(() => {
      client._refreshing = false;
    });
}
