// @ts-check
/** What the HTTP rungs share: the upstream `POST send` and the reading of refusals. */

import { errorOf, TransportClosed } from "./errors.js";
import { encodeBatch } from "./codec.js";
import { Transport } from "./transport.js";

/** Frames a POST may carry alongside another one still answered (protocol §3.6): a `bye` too. */
export const UNORDERED = new Set(["ack", "ping", "pong", "bye"]);
const UTF8 = new TextEncoder();

/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./rungs.js").Rung} Rung */
/** @typedef {import("./transport.js").TransportContext} TransportContext */

/**
 * @param {Response} response
 * @param {Rung | "send"} rung
 */
export async function refusalOf(response, rung) {
  let body = null;
  try {
    body = JSON.parse(await response.text());
  } catch {
    // not ours: a proxy answered
  }
  const ours = body && typeof body === "object" && "code" in body;
  const url = String(response.url || "").split("?")[0];
  if (response.status === 404 && !(ours && body.code === "unknown_session")) {
    return new TransportClosed(`${rung}: no Ladder endpoint at ${url} (HTTP 404): check the mount path in the client's URL`);
  }
  if (ours) {
    const error = errorOf(body);
    return new TransportClosed(`${rung}: refused by the server (${error.code}: ${error.reason})`, error);
  }
  return new TransportClosed(`${rung}: HTTP ${response.status} from the server or a proxy${url ? ` at ${url}` : ""}`);
}

/**
 * Why the server refuses this page, asked where the answer can be read: a browser hides the
 * answer to a refused WebSocket upgrade or event stream. An empty `POST send` naming no
 * session opens nothing on the server; its refusal (`origin_not_allowed` comes with CORS
 * headers; `unauthorized` for the hello's credentials, protocol §3.6) or a 404 says what the
 * hidden answers could not. It names the rungs whose answers were hidden (`tr`): one the
 * server does not offer is refused `unsupported_transport`, naming those it does. Null when it
 * says nothing more (the server is reachable and answers 204, or `bad_request` as servers
 * before 204 did), or cannot be reached.
 * @param {import("./transport.js").Endpoint} endpoint
 * @param {string | null} [token] the token a hello would carry
 * @param {readonly Rung[]} [rungs] the rungs whose refusals were hidden
 * @returns {Promise<TransportClosed | null>}
 */
export async function askWhy(endpoint, token = null, rungs = []) {
  const url = endpoint.http("send", rungs.length ? { tr: rungs.join(",") } : {});
  /**
   * The refusal of the question asked with `bearer`: null when nothing is refused, undefined
   * when no answer could be read.
   * @param {string | null} bearer
   * @returns {Promise<TransportClosed | null | undefined>}
   */
  const ask = async (bearer) => {
    /** @type {RequestInit} */
    const init = { method: "POST", body: "", signal: AbortSignal.timeout(10_000) };
    if (bearer) init.headers = { Authorization: `Bearer ${bearer}` };
    let response;
    try {
      response = await endpoint.fetch(url, init);
    } catch {
      return undefined;
    }
    return response.ok ? null : refusalOf(response, "send");
  };
  const told = await ask(token);
  if (told === undefined) {
    if (!token) return null;
    // With a token the question is preflighted, and a refused origin's preflight carries no
    // CORS headers (protocol §8): asked without it (no preflight), the refusal is readable.
    // Only that refusal is taken from the tokenless answer (it is not the hello's).
    const bare = await ask(null);
    return bare?.error?.code === "origin_not_allowed" ? bare : null;
  }
  return told?.error?.code === "bad_request" ? null : told;
}

/** What the HTTP rungs share: a session id, a resume token and `POST send` upstream. */
export class HttpTransport extends Transport {
  /**
   * @param {Rung} name
   * @param {TransportContext} ctx
   */
  constructor(name, ctx) {
    super(name, ctx);
    this.separateUpstream = true;
    /** @type {string | null} */
    this.sid = null;
    /** @type {string | null} */
    this.rt = null;
    /** @type {Promise<void>} */
    this._posts = Promise.resolve();
    this._abort = new AbortController();
  }

  /** @param {Frame} welcome */
  adopt(welcome) {
    this.sid = String(welcome.sid);
    this.rt = String(welcome.rt);
  }

  /**
   * POSTs of messages go one at a time, in order (protocol §3.6); acks, pings and pongs at
   * once: a POST held while a long call is applied must not hold them back.
   * @param {Frame[]} frames
   * @param {{keepalive?: boolean}} [options]
   */
  send(frames, { keepalive = false } = {}) {
    if (this.sid === null || (this.closed && !keepalive)) {
      return Promise.reject(new TransportClosed(`${this.name}: not open`));
    }
    const body = encodeBatch(frames);
    // A keepalive POST (the bye as the page goes away) must leave now, not after the queue.
    if (keepalive) return this.post(body, true);
    if (frames.every((frame) => UNORDERED.has(String(frame.t)))) return this.post(body, false);
    const post = this._posts.then(() => this.post(body, keepalive));
    this._posts = post.catch(() => {});
    return post;
  }

  /**
   * @param {string} body
   * @param {boolean} keepalive
   */
  async post(body, keepalive) {
    const { endpoint, clock } = this.ctx;
    const controller = new AbortController();
    const stop = () => controller.abort();
    this._abort.signal.addEventListener("abort", stop);
    const timer = clock.setTimeout(stop, 10_000);
    let response;
    try {
      response = await endpoint.fetch(endpoint.http("send", { sid: this.sid }), {
        method: "POST",
        body,
        headers: { "content-type": "application/x-ndjson", "x-ladder-rt": String(this.rt) },
        credentials: "include",
        cache: "no-store",
        keepalive,
        signal: keepalive ? undefined : controller.signal,
      });
    } catch (error) {
      throw new TransportClosed(`${this.name}: upstream POST failed (${String(error)})`);
    } finally {
      clock.clearTimeout(timer);
      this._abort.signal.removeEventListener("abort", stop);
    }
    if (response.status >= 300) {
      const refused = await refusalOf(response, this.name);
      if (response.status === 413 && refused.error === null) refused.tooLarge = UTF8.encode(body).length; // (not the server's 413)
      throw refused;
    }
    this.wake();
  }

  release() {
    this._abort.abort();
  }
}
