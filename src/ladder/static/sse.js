// @ts-check
/** The Server-Sent Events rung. */

import { TransportClosed } from "./errors.js";
import { decodeBatch } from "./codec.js";
import { seconds, timerDelay } from "./clock.js";
import { HttpTransport } from "./http.js";
import { offline } from "./transport.js";
import { StreamProof, VERIFY_TIMEOUT } from "./core.js";

/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./transport.js").TransportContext} TransportContext */


/**
 * Server-Sent Events rung: an EventSource down, `POST send` up. Only one stream per transport,
 * and EventSource's own reconnect is switched off (the client decides where to reconnect).
 */
export class SSETransport extends HttpTransport {
  /** @param {TransportContext} ctx */
  constructor(ctx) {
    super("sse", ctx);
    /** @type {EventSource | null} */
    this.source = null;
    /** @type {number | null} */
    this._nonce = null;
    /** @type {any} */
    this._verifyTimer = null;
    /** @type {any} */
    this._boundTimer = null;
    this._proof = new StreamProof({ strikes: 1 });
    this._verifyTimeout = VERIFY_TIMEOUT;
    this._resuming = false;
  }

  /**
   * @param {Frame} hello
   * @param {number} verifyTimeout
   */
  open(hello, verifyTimeout) {
    const opened = this.opening();
    this._verifyTimeout = verifyTimeout;
    this._resuming = Boolean(hello.sid);
    /** @type {Record<string, string | number | null | undefined>} */
    const query = { v: hello.v, why: hello.why };
    if (hello.sid) Object.assign(query, { sid: hello.sid, ack: hello.ack ?? 0, rt: hello.rt });
    else Object.assign(query, { tok: hello.tok, psid: hello.psid, prt: hello.prt, pids: hello.pids, pu: hello.pu });
    let source;
    try {
      source = new EventSource(this.ctx.endpoint.http("sse", query), { withCredentials: true });
    } catch (error) {
      this.fail(`sse: cannot connect (${String(error)})`);
      return opened;
    }
    this.source = source;
    source.onmessage = (event) => {
      let frames;
      try {
        frames = decodeBatch(String(event.data));
      } catch {
        this.fail("sse: undecodable event from the server");
        return;
      }
      if (!this.welcome.t) this.greet(frames);
      else if (this._nonce !== null) this._verifying(frames);
      else this.receive(frames, String(event.data).length);
    };
    source.onerror = () => {
      // EventSource would reconnect by itself; the client does that, on the rung it chooses.
      source.close();
      if (this.welcome.t) this.fail("sse: stream ended or broken");
      else this._diagnose(hello);
    };
    return opened;
  }

  /**
   * EventSource hides why it failed. When resuming, an empty POST tells whether the session is
   * still there (it has no side effects); otherwise say what we know.
   * @param {Frame} hello
   */
  async _diagnose(hello) {
    if (this._resuming && hello.sid && hello.rt) {
      this.sid = String(hello.sid);
      this.rt = String(hello.rt);
      try {
        await this.post("", false);
      } catch (error) {
        if (error instanceof TransportClosed && error.error) return this.fail(error.reason, error.error);
      }
    }
    this.fail(`sse: cannot open the stream (${offline() ?? "refused, blocked or not an event stream"})`);
  }

  /**
   * Ping up and wait for the pong on the stream: proof that nothing buffers it (protocol §3.4),
   * within the verify timeout in all and within the core's bound of the POST's answer
   * (`StreamProof`): a pong that other traffic pushed through a buffer comes in time for the
   * first, late for the second.
   * @param {Frame} welcome
   */
  welcomed(welcome) {
    this.adopt(welcome);
    const clock = this.ctx.clock;
    const nonce = Math.floor(Math.random() * 2 ** 31);
    this._nonce = nonce;
    this._verifyTimer = clock.setTimeout(() => {
      this.fail(`sse: stream buffered by something on the way (no pong within ${seconds(this._verifyTimeout)})`);
    }, this._verifyTimeout);
    this._proof.sent({ nonce, now: clock.now() });
    this.send([{ t: "ping", n: nonce }]).then(
      () => {
        const wait = this._proof.answered({ nonce, now: clock.now() });
        if (wait === null || this._nonce === null) return;
        this._boundTimer = clock.setTimeout(() => {
          if (this._proof.expired({ now: clock.now() }) === "buffered") this.fail(this._proof.reason());
        }, timerDelay(wait));
      },
      (error) => {
        this.fail(error instanceof TransportClosed ? error.reason : String(error), error?.error ?? null);
      },
    );
  }

  /** @param {Frame[]} frames */
  _verifying(frames) {
    for (const frame of frames) {
      if (this._nonce !== null && frame.t === "pong" && frame.n === this._nonce) {
        this._nonce = null;
        this.ctx.clock.clearTimeout(this._verifyTimer);
        this.ctx.clock.clearTimeout(this._boundTimer);
        if (this._proof.pong({ nonce: frame.n, now: this.ctx.clock.now() }) === "buffered") {
          this.fail(this._proof.reason());
          return;
        }
        this.resolveOpen(this.welcome);
      } else {
        this.receive([frame]);
      }
    }
  }

  release() {
    super.release();
    this.ctx.clock.clearTimeout(this._verifyTimer);
    this.ctx.clock.clearTimeout(this._boundTimer);
    const source = this.source;
    this.source = null;
    if (source) {
      source.onmessage = source.onerror = null;
      source.close();
    }
  }
}
