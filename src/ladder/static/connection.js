// @ts-check
/**
 * The connection loop: race the rungs, adopt the winner's welcome, and decide what a lost
 * transport leads to (same rung, next rung, new session, give up).
 */

import { afterRace, afterTransport, ENDED_ON_PURPOSE, FATAL, why } from "./core.js";
import { askWhy as askServer } from "./http.js";
import { AllRungsFailed, checkTokenLength, LadderError, shown, TransportClosed } from "./errors.js";
import { race } from "./race.js";
import { seconds } from "./clock.js";
import { WebSocketTransport } from "./websocket.js";
import { SSETransport } from "./sse.js";
import { PollingTransport } from "./polling.js";

/** @typedef {import("./driver.js").Client} Client */
/** @typedef {import("./clock.js").Clock} Clock */
/** @typedef {import("./race.js").RaceResult} RaceResult */
/** @typedef {import("./rungs.js").Rung} Rung */
/** @typedef {import("./transport.js").Transport} Transport */
/** @typedef {import("./transport.js").TransportContext} TransportContext */

/**
 * @param {Rung} rung
 * @param {TransportContext} ctx
 * @returns {Transport}
 */
export function makeTransport(rung, ctx) {
  if (rung === "websocket") return new WebSocketTransport(ctx);
  if (rung === "sse") return new SSETransport(ctx);
  return new PollingTransport(ctx, rung === "longpoll");
}

/** @param {Client} client */
export async function currentToken(client) {
  const token = client._token;
  const value = await (typeof token === "function" ? token() : token);
  if (value !== null && value !== undefined && typeof value !== "string") {
    // (sent as it was: a Response, an object, a number reached the server as "[object …]")
    throw new TypeError(`the token function returned ${shown(value)}: return a string (or a promise of one), or null`);
  }
  checkTokenLength(value);
  return value ?? null;
}

/**
 * The token for a hello on `rung`; a token function that throws (or rejects) fails that
 * rung, saying so.
 * @param {Client} client
 * @param {Rung} rung
 * @param {boolean} [racing] a rung of the current race
 * @returns {Promise<string | null>}
 */
async function tokenFor(client, rung, racing = false) {
  try {
    if (!racing) return await client._currentToken();
    // A race's rungs share one answer (a token function may fetch it: once per race, not per rung).
    if (!client._raceToken) {
      const asked = { pending: true, token: client._currentToken() };
      asked.token.then(() => (asked.pending = false), () => (asked.pending = false));
      client._raceToken = asked;
    }
    return await client._raceToken.token;
  } catch (error) {
    throw new TransportClosed(`${rung}: the client's token function failed: ${String(error)}`);
  }
}

/**
 * Open one rung with the current hello (resuming the session when there is one), saying in
 * one word why (the core's `why` of how the last connection ended; "probe" for a probe).
 * @param {Client} client
 * @param {Rung} rung
 * @param {AbortSignal} signal
 * @param {string | null} [reason]
 * @param {boolean} [racing] a rung of the current race (its rungs share one token)
 * @returns {Promise<Transport>}
 */
export function open(client, rung, signal, reason = client._lastEnd, racing = false) {
  const timeout = client.options.openTimeout;
  const conn = client._factory(rung, client._ctx);
  return new Promise((resolve, reject) => {
    const timer = client._clock.setTimeout(() => {
      stop(new TransportClosed(`${rung}: no welcome within ${seconds(timeout)}`));
    }, timeout);
    const onAbort = () => stop(new TransportClosed(`${rung}: cancelled`));
    /** @param {TransportClosed} error */
    const stop = (error) => {
      client._clock.clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      if (conn.welcome.t && !conn.closed) client._discard(conn); // welcomed, still proving itself
      else conn.close();
      reject(error);
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort);
    // (the token first, within the same openTimeout: a token function may fetch it)
    tokenFor(client, rung, racing).then((token) => {
      // (stopped meanwhile, by the timer or the race: no socket for it)
      if (signal.aborted || conn.closed) throw new TransportClosed(`${rung}: cancelled`);
      return conn.open(client.peer.hello(token, why({ reason })), client.options.verifyTimeout);
    }).then(
      () => {
        client._clock.clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted || conn.closed) reject(new TransportClosed(`${rung}: cancelled`));
        else resolve(conn);
      },
      (error) => stop(error instanceof TransportClosed ? error : new TransportClosed(`${rung}: ${String(error)}`)),
    );
  });
}

/**
 * Close a transport that lost a race; end the session it created, if it made one.
 * @param {Client} client
 * @param {Transport} conn
 */
export function discard(client, conn) {
  if (client.peer.sid === null || conn.welcome.sid !== client.peer.sid) {
    const bye = conn.send([{ t: "bye" }]).catch(() => {});
    bye.finally(() => conn.close());
    return;
  }
  conn.close();
}

/**
 * Wait `ms`, or less if woken (online, tab visible). Resolves true when woken.
 * @param {Client} client
 * @param {number} ms
 * @returns {Promise<boolean>}
 */
export function sleep(client, ms) {
  return new Promise((resolve) => {
    const timer = client._clock.setTimeout(() => {
      client._wakeSleep = null;
      resolve(false);
    }, ms);
    client._wakeSleep = () => {
      client._clock.clearTimeout(timer);
      client._wakeSleep = null;
      resolve(true);
    };
  });
}

/** How long a failed race waits for the server to say why its hidden rungs were refused (ms). */
const ASK_WAIT = 3000;

/** @param {Client} client */
export async function run(client) {
  const reconnect = client._reconnect; // the core decides every wait and when to give up
  await client._outboxOpened; // messages a previous page left go first, naming their session
  while (client.state !== "closed") {
    if (client._suspended) {
      await new Promise((resolve) => (client._unsuspend = () => resolve(undefined)));
      client._unsuspend = null;
      reconnect.woken();
      continue;
    }
    client._setState("connecting");
    client._raceToken = null; // (asked by the race's first rung)
    reconnect.started({ now: client._clock.now() });
    /** @type {RaceResult} */
    let won;
    client._raceAbort = new AbortController();
    try {
      won = await race(client.policy.candidates(), (rung, signal) => client._open(rung, signal, undefined, true), client.options.stagger, {
        onLoser: (conn) => client._discard(conn),
        clock: client._clock,
        signal: client._raceAbort.signal,
        tokenRefreshable: client._refreshable(),
      });
    } catch (error) {
      if (client._isClosed() || client._suspended) continue;
      if (!(error instanceof AllRungsFailed)) throw error;
      client._note(error.failures);
      const outcome = afterRace({ codes: error.errors().map((e) => e.code), won: false, tokenRefreshable: client._refreshable() });
      if (outcome === "give_up") {
        client._giveUp(client._fatalOf(error.errors()));
        return;
      }
      const stranded = client.policy.stranded();
      if (stranded !== null) {
        // No rung left to try: a user's mistake (the client's transports, the server's), not the network.
        client._giveUp(new LadderError("unsupported_transport", stranded));
        return;
      }
      if (outcome === "new_session") {
        const gone = error.errors().find((e) => afterTransport({ via: "refusal", code: e.code }) === "new_session");
        if (gone) client._sessionGone(`${gone.code}: ${gone.reason}`);
        continue;
      }
      // The first failure since a welcome on rungs that hide their refusals: ask why, waiting
      // for the answer a moment before telling the app of the failure. A refusal that
      // retrying cannot fix then ends the client with `error` and `state` alone, as a rung
      // that says why itself does (it showed `disconnected`, `connecting` first, and one race
      // more); a slower answer ends it from where the loop has got to.
      if (reconnect.attempts === 0) {
        const asked = client._askWhy(error).catch(() => false);
        /** @type {any} */
        let timer = null;
        const waited = new Promise((resolve) => (timer = client._clock.setTimeout(() => resolve(false), ASK_WAIT)));
        const gaveUp = await Promise.race([asked, waited]);
        client._clock.clearTimeout(timer);
        if (gaveUp === true || client._isClosed()) return;
      }
      const step = reconnect.failed({ now: client._clock.now(), rand: client._random() });
      const attempts = reconnect.attempts;
      client.lastFailure = error.message;
      client._lastEnd = error.message;
      if ("give_up" in step) {
        // Only `timeout` (maxAttempts) here: the first connect's deadline is reported by its timer.
        client._giveUp(new LadderError("timeout", `could not connect after ${attempts} attempts: ${error.message}`));
        return;
      }
      client._setState("disconnected", `${attempts} attempt${attempts > 1 ? "s" : ""} failed: ${error.message}`);
      if (await client._sleep(step.wait)) reconnect.woken();
      continue;
    } finally {
      client._raceAbort = null;
    }
    if (client._isClosed() || client._suspended) {
      won.winner.close();
      continue;
    }
    client._note(won.failures);
    /** @type {LadderError[]} */
    const refusals = [];
    for (const failure of Object.values(won.failures)) if (failure?.error) refusals.push(failure.error);
    if (afterRace({ codes: refusals.map((e) => e.code), won: true, tokenRefreshable: client._refreshable() }) === "give_up") {
      // A rung that lost the race was refused for good (a page's own GETs may carry no Origin
      // while its POSTs are refused): retrying cannot help.
      client._discard(won.winner);
      client._giveUp(client._fatalOf(refusals));
      return;
    }
    const ended = await client._adopt(won.winner, describeRace(won));
    const conn = ended.conn;
    const lived = client._clock.now() - client._opened;
    const heard = client._lastHeard - client._opened;
    client._lost(conn, ended.reason);
    client._lastEnd = ended.reason;
    if (client._isClosed()) return;
    if (client._suspended) continue;
    if (client._reconnectNow) {
      client._reconnectNow = false; // the server is going away: resume elsewhere, now
      continue;
    }
    const action = client._endAction ?? "resume";
    client._endAction = null;
    const stepDown = client.policy.dropped(conn.name, lived, ended.reason, heard, action);
    if (stepDown) client._stepReason = stepDown;
    client._setState("disconnected", ended.reason);
    await client._sleep(reconnect.ended({ action, rand: client._random(), lived }));
  }
}

/**
 * Remember why each rung failed (for `connect_failed`).
 * @param {Client} client
 * @param {Partial<Record<Rung, TransportClosed>>} failures
 */
export function note(client, failures) {
  for (const [rung, failure] of Object.entries(failures)) {
    if (!failure) continue;
    const asked = client._asked !== null && HIDDEN.has(rung) && !failure.error ? `; asked by a POST: ${client._asked}` : "";
    client._reasons[rung] = failure.reason + asked;
    if (failure.error?.code === "unsupported_transport") client.policy.notOffered(/** @type {Rung} */ (rung), failure.error.details);
  }
}

/**
 * `connect_failed` as it stands now: each rung's reason (also for a tab that joined the
 * connection the browser's tabs share while it was down, `tabs.js`).
 * @param {Client} client
 * @param {number} limit ms
 */
export function connectFailure(client, limit) {
  const silent = client._raceToken?.pending ? "still waiting for the client's token function" : "no answer";
  const reasons = client.policy.candidates().map((rung) => client._reasons[rung] ?? `${rung}: ${silent}`);
  return new LadderError("connect_failed", `could not connect to ${client.url} within ${seconds(limit)}: ${reasons.join("; ")}`);
}

/**
 * Not connected `limit` ms after start: say why, once (an `error` event `connect_failed` with
 * every rung's reason; `ready()` rejects with it). The client keeps trying: a page cannot be
 * re-run the way a script can, and the server may come back.
 * @param {Client} client
 * @param {number} limit
 */
export function notConnected(client, limit) {
  client._connectTimer = null;
  if (client.state === "closed" || client._reconnect.expired() !== "report") return;
  const error = connectFailure(client, limit);
  client.lastFailure = error.reason;
  console.warn(`ladder: ${error.message}`);
  client._emit("error", { code: error.code, reason: error.reason });
  client._readiness.late(error);
}

/**
 * A race failed on rungs whose refusal a browser hides (a WebSocket upgrade, an event stream,
 * a poll that got no answer: preflighted for a token) and on nothing readable: ask why where
 * the answer can be read (`askWhy`). A refusal that retrying cannot fix (a page on an origin
 * the server does not allow) gives up, as on any request; a missing endpoint goes into those
 * rungs' reasons (`connect_failed` says it).
 * True when the client gave up.
 * @param {Client} client
 * @param {AllRungsFailed} error
 */
export async function askWhy(client, error) {
  // A poll that got no answer at all is hidden too: with a token its GET is preflighted, and a
  // refused origin's preflight cannot be read (a page on long polling looped for ever).
  const hidden = Object.entries(error.failures).filter(
    ([rung, failure]) => failure && !failure.error && (HIDDEN.has(rung) || failure.status === null),
  );
  // (rungs refused as not offered explain nothing of the hidden ones: ask all the same)
  if (!hidden.length || error.errors().some((e) => e.code !== "unsupported_transport")) return false;
  let token = null;
  let tokenless = false;
  try {
    // A hello's credentials (the answer is theirs): the race's, not asked of the function again.
    token = await (client._raceToken?.token ?? client._currentToken());
  } catch {
    // the token function failed: the rungs' reasons say so already; ask without one
    tokenless = true;
  }
  const rungs = /** @type {Rung[]} */ (hidden.map(([rung]) => rung));
  const told = await askServer(client._ctx.endpoint, token, rungs);
  if (told === null || client._isClosed()) return false;
  // Asked with no token (its function failed): a refusal of credentials answers that question,
  // not the client's hellos (the next race asks the function again).
  if (tokenless && CREDENTIALS.has(told.error?.code ?? "")) return false;
  const tokenRefreshable = client._refreshable();
  if (told.error && afterTransport({ via: "refusal", code: told.error.code, tokenRefreshable }) === "give_up") {
    client._giveUp(told.error);
    return true;
  }
  if (told.error?.code === "unsupported_transport") {
    // (the POST names every hidden rung: those the server offers, its details.tr keeps in)
    const { details } = told.error;
    const offered = /** @type {{tr?: unknown} | null} */ (details)?.tr;
    for (const rung of rungs) if (!Array.isArray(offered) || !offered.includes(rung)) client.policy.notOffered(rung, details);
    const stranded = client.policy.stranded();
    if (stranded !== null) {
      client._giveUp(new LadderError("unsupported_transport", stranded));
      return true;
    }
  }
  // Kept until a welcome: every later race's reasons carry it (they replaced it, and the
  // connect_failed of a mistyped mount path said nothing of the 404 the POST found).
  client._asked = told.reason;
  for (const [rung, failure] of hidden) client._reasons[rung] = `${failure?.reason}; asked by a POST: ${told.reason}`;
  return false;
}

/** Refusals of a request's credentials (an `authenticate` hook's forbidden included). */
const CREDENTIALS = new Set(["unauthorized", "token_expired", "forbidden"]);

/** Rungs whose refusals a browser does not let the page read. */
const HIDDEN = new Set(["websocket", "sse"]);

/**
 * The refusal among `errors` that retrying cannot fix (the core's tables decide).
 * @param {Client} client
 * @param {LadderError[]} errors
 * @returns {LadderError}
 */
export function fatalOf(client, errors) {
  const tokenRefreshable = client._refreshable();
  const fatal = errors.find((e) => afterTransport({ via: "refusal", code: e.code, tokenRefreshable }) === "give_up");
  if (!fatal) throw new Error("no refusal here gives up");
  return fatal;
}

/** Whether an expired token is worth retrying (the token is a callable). @param {Client} client */
export function refreshable(client) {
  return typeof client._token === "function";
}

/**
 * @param {string} reason
 * @param {Client} client
 */
export function sessionGone(client, reason) {
  if (client.peer.sid !== null) {
    client.peer.forgetSession();
    client._pendingLoss = reason;
    client._outbox?.changed();
  }
}

/** Codes besides the core's `FATAL` that end the client for good, reported as an `error` event. */
const FINAL = new Set(["token_expired", "timeout", "unsupported_transport"]);

/**
 * Close the client for good. `final`: later calls fail with this error (not `closed`), and
 * an `error` event reports it.
 * @param {Client} client
 * @param {LadderError} error
 * @param {boolean} [final]
 */
export function giveUp(client, error, final = FATAL.has(error.code) || FINAL.has(error.code)) {
  if (error.code === "origin_not_allowed") {
    const origin = typeof location !== "undefined" ? location.origin : "this page's origin";
    error = new LadderError(
      error.code,
      `the server at ${client.url} does not allow requests from ${origin}: add it to the server's allowed_origins [${error.reason}]`,
    );
  }
  if (final) {
    client._fatal = error;
    console.warn(`ladder: giving up: ${error.message}`);
    client._emit("error", { code: error.code, reason: error.reason });
  }
  const lastRung = client.transport;
  const reason = `${error.code}: ${error.reason}`;
  client._shutdown(error, reason);
  // (`close` pairs with an `open`: none when no transport was up, protocol §9.10)
  if (lastRung !== null) client._emit("close", { transport: lastRung, reason, reconnecting: false });
}

/**
 * Stop everything; fail what waits.
 * @param {Client} client
 * @param {LadderError} error
 * @param {string} [reason] the `state` event's (a refusal's: `code: reason`)
 */
export function shutdown(client, error, reason = error.reason) {
  client._setState("closed", reason);
  client._stopTimers();
  client._clock.clearTimeout(client._connectTimer);
  client._connectTimer = null;
  client._probeAbort?.abort();
  client._raceAbort?.abort();
  client._wakeSleep?.();
  client._unsuspend?.();
  const conn = client._conn;
  if (conn) {
    client._conn = null;
    const ended = client._onEnded;
    client._onEnded = null;
    ended?.({ conn, reason: error.reason });
  }
  for (const waiter of [...client._waiting.values()]) waiter.settle({ t: "err", code: error.code, reason: error.reason });
  client._waiting.clear();
  for (const done of client._drained.splice(0)) done(error); // (a flush waiting: nothing will acknowledge it)
  for (const sub of client._subs.values()) sub.end(error.code === "closed" ? null : error);
  client._readiness.ended(error);
  // Closed by the app or for good: its messages go with it; a page going away keeps them.
  // (Still opening: openOutbox sees the client closed and lets the outbox go itself.)
  client._outboxReleased = client._outboxOpened
    .then(() => client._outbox?.close({ forget: !client._leaving }))
    .catch(() => {});
  for (const unhook of client._unhook.splice(0)) unhook();
}

/**
 * The current transport ended; what follows is the core's `afterTransport` decision. Later
 * reports are ignored.
 * @param {Client} client
 * @param {Transport} conn
 * @param {string} reason
 * @param {LadderError | null} error the server's refusal or bye, if any
 * @param {"bye" | "refusal" | "close"} [via]
 */
export function connClosed(client, conn, reason, error, via = error ? "refusal" : "close") {
  if (conn !== client._conn) return;
  const action = afterTransport({ via, code: error?.code ?? null, tokenRefreshable: client._refreshable() });
  if (error && action === "give_up") {
    // A refusal on any request (an upgrade, a poll, a POST) is an error the app hears of; the
    // server ending the session on purpose (`hub.disconnect`, as a bye or as the refusal of a
    // short poll that was not there for the bye) is not: no `error` event, later calls fail
    // with `closed` (protocol §9.4, as the Python client does).
    client._giveUp(error, error.code !== ENDED_ON_PURPOSE);
    return;
  }
  client._endAction = action;
  if (action === "resume_now") client._reconnectNow = true;
  else if (error && action === "new_session") client._sessionGone(`${error.code}: ${error.reason}`);
  const ended = client._onEnded;
  client._onEnded = null;
  ended?.({ conn, reason });
}

/**
 * @param {Client} client
 * @param {Transport} conn
 * @param {string} reason
 */
export function lost(client, conn, reason) {
  client._probeAbort?.abort();
  client._probeAbort = null;
  client._stopTimers();
  conn.close();
  if (client._conn === conn) client._conn = null;
  for (const done of client._pongs.values()) done();
  client._pongs.clear();
  if (client.state !== "closed") {
    client._setState("disconnected", reason);
    client._emit("close", { transport: conn.name, reason, reconnecting: true });
  }
}

/** @param {Client} client */
export function stopTimers(client) {
  client._clock.clearTimeout(client._watchdog);
  client._clock.clearTimeout(client._ackTimer);
  client._clock.clearTimeout(client._paceTimer);
  client._clock.clearTimeout(client._refreshTimer);
  client._clock.clearTimeout(client._proofTimer);
  client._proof = client._proofTimer = null;
  client._watchdog = client._ackTimer = client._paceTimer = client._refreshTimer = null;
  client._refreshDue = null;
}

/**
 * Wait `ms` (less if `signal` aborts).
 * @param {Clock} clock
 * @param {number} ms
 * @param {AbortSignal} signal
 * @returns {Promise<void>}
 */
export function pause(clock, ms, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clock.clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = clock.setTimeout(done, ms);
    signal.addEventListener("abort", done);

  });
}

/**
 * Why a race ended where it did, for the `transport` event.
 * @param {RaceResult} result
 */
function describeRace(result) {
  const parts = Object.values(result.failures).map((f) => f?.reason);
  for (const rung of result.unproven) parts.push(`${rung}: not proven within ${seconds(result.elapsed)}`);
  return parts.join("; ") || "connected";
}
