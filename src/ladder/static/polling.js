// @ts-check
/** The polling rungs: long polling and short polling. */

import { LongPollHold, PollPace, pollAgainIn } from "./core.js";
import { TransportClosed } from "./errors.js";
import { decodeBatch } from "./codec.js";
import { seconds } from "./clock.js";
import { HttpTransport, refusalOf } from "./http.js";
import { offline } from "./transport.js";

/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./transport.js").TransportContext} TransportContext */


/**
 * Polling rungs: `GET longpoll` (held by the server) and `GET poll` (answered at once). Each
 * GET carries the highest sequence number delivered, so no ack frames are needed and a lost
 * answer is simply sent again. Short polling speeds up after messages (sequenced frames) and slows down when idle.
 */
export class PollingTransport extends HttpTransport {
  /**
   * @param {TransportContext} ctx
   * @param {boolean} hold
   */
  constructor(ctx, hold) {
    super(hold ? "longpoll" : "poll", ctx);
    this.hold = hold;
    this.streaming = false;
    this.implicitAck = true;
    /** Short polling's pace (the core decides: fast while messages flow, slower while idle). */
    this.pace = new PollPace({ fastest: ctx.pollInterval[0], slowest: ctx.pollInterval[1] });
    this.interval = this.pace.interval;
    this.pollTimeout = 25_000;
    /** How long a long poll asks to be held: the client's, shared by its transports. */
    this.holding = ctx.holding ?? new LongPollHold();
    /** @type {(() => void) | null} */
    this._nudge = null;
    this._nudged = false;
  }

  /**
   * @param {Record<string, string | number | null | undefined>} query
   * @param {Record<string, string>} headers
   * @param {number} timeout
   */
  async get(query, headers, timeout) {
    const { endpoint, clock } = this.ctx;
    const controller = new AbortController();
    const stop = () => controller.abort();
    this._abort.signal.addEventListener("abort", stop);
    const timer = clock.setTimeout(stop, timeout);
    try {
      let response;
      try {
        response = await endpoint.fetch(endpoint.http(this.name, { ...query, enc: "json" }), {
          headers,
          credentials: "include",
          cache: "no-store",
          signal: controller.signal,
        });
      } catch (error) {
        throw new TransportClosed(
          controller.signal.aborted && !this.closed
            ? `${this.name}: no answer within ${seconds(timeout)}`
            : `${this.name}: cannot connect to ${endpoint.http(this.name)} (${String(error)}): ${offline() ?? unreachableHint(endpoint.base)}`,
        );
      }
      if (response.status !== 200) {
        const refused = await refusalOf(response, this.name);
        if (!refused.error) refused.status = response.status;
        throw refused;
      }
      try {
        return decodeBatch(await response.text());
      } catch (error) {
        const kind = (response.headers.get("content-type") ?? "no content type").split(";")[0];
        throw new TransportClosed(
          `${this.name}: the answer from ${endpoint.http(this.name)} is not Ladder's (${kind}, ${String(error)}): no Ladder endpoint there, or a proxy answered`,
        );
      }
    } finally {
      clock.clearTimeout(timer);
      this._abort.signal.removeEventListener("abort", stop);
    }
  }

  /**
   * @param {Frame} hello
   * @param {number} _verifyTimeout
   */
  open(hello, _verifyTimeout) {
    const opened = this.opening();
    /** @type {Record<string, string>} */
    const headers = {};
    /** @type {Record<string, string | number | null | undefined>} */
    const query = { v: hello.v, why: hello.why, open: 1 };
    if (hello.sid) {
      Object.assign(query, { sid: hello.sid, ack: hello.ack ?? 0 });
      headers["x-ladder-rt"] = String(hello.rt);
    } else if (hello.tok) {
      headers.authorization = `Bearer ${hello.tok}`;
    }
    if (hello.psid) Object.assign(query, { psid: hello.psid, prt: hello.prt, pids: hello.pids, pu: hello.pu });
    this.get(query, headers, 10_000).then(
      (frames) => {
        if (frames[0]?.t === "welcome") {
          this.adopt(frames[0]);
          this.pollTimeout = Number(frames[0].poll ?? 25_000);
        }
        this.greet(frames);
      },
      (error) => this.fail(error.reason ?? String(error), error.error ?? null),
    );
    return opened;
  }

  started() {
    this._loop();
  }

  async _loop() {
    const { clock, applied } = this.ctx;
    while (!this.closed) {
      if (!this.hold && !this._nudged) {
        await new Promise((resolve) => {
          const timer = clock.setTimeout(() => resolve(undefined), this.interval);
          this._nudge = () => {
            clock.clearTimeout(timer);
            resolve(undefined);
          };
        });
        this._nudge = null;
      }
      this._nudged = false;
      if (this.closed) return;
      let frames;
      let waited = 0;
      while (frames === undefined) {
        const asked = clock.now();
        try {
          const timeout = this.hold ? this.pollTimeout + 10_000 : 10_000;
          const hold = this.hold ? this.holding.hold : null;
          frames = await this.get({ sid: this.sid, ack: applied(), ...(hold === null ? {} : { hold }) }, { "x-ladder-rt": String(this.rt) }, timeout);
        } catch (error) {
          const closed = error instanceof TransportClosed ? error : new TransportClosed(`${this.name}: ${String(error)}`);
          // A proxy's answer to a held poll (its read timeout, shorter than the hold): ask for less.
          if (this.hold && closed.status !== null) this.holding.cut({ held: clock.now() - asked, status: closed.status });
          // Refused for the address's request rate: asked again (the core's pollAgainIn).
          const after = closed.error?.retryAfter;
          const pause = pollAgainIn({ code: closed.error?.code ?? null, retryAfter: after == null ? null : after * 1000, waited });
          if (pause === null || this.closed) {
            this.fail(closed.reason, closed.error);
            return;
          }
          waited += pause;
          await new Promise((resolve) => clock.setTimeout(() => resolve(undefined), pause));
        }
      }
      this.interval = this.pace.answered({ frames });
      this.receive(frames);
    }
  }

  wake() {
    this.pace.woken();
    this.interval = this.pace.interval;
    this._nudged = true;
    this._nudge?.();
  }

  release() {
    super.release();
    this._nudge?.();
  }
}

/**
 * What a fetch that failed outright most likely needs. A browser tells a server that is down
 * from one that answered without CORS headers (a server that is not Ladder, a proxy's error
 * page) no more than "Failed to fetch": for another origin, both are named.
 * @param {string} base
 */
function unreachableHint(base) {
  const page = globalThis.location?.origin;
  if (!page || page === "null" || new URL(base).origin === page) return "is the server running there?";
  return `is the server running there, and is it Ladder (a server or proxy that sends no CORS headers for ${page} fails the same way)?`;
}
