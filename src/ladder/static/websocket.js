// @ts-check
/** The WebSocket rung. */

import { errorOf, errorOfClose, LadderError, TransportClosed } from "./errors.js";
import { decodeBatch, encodeBatch } from "./codec.js";
import { offline, Transport } from "./transport.js";

/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./transport.js").TransportContext} TransportContext */

/** WebSocket rung: one socket, JSON text frames both ways. */
export class WebSocketTransport extends Transport {
  /** @param {TransportContext} ctx */
  constructor(ctx) {
    super("websocket", ctx);
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {LadderError | null} */
    this._refusal = null;
  }

  /**
   * @param {Frame} hello
   * @param {number} _verifyTimeout
   */
  open(hello, _verifyTimeout) {
    const opened = this.opening();
    let ws;
    try {
      ws = new WebSocket(this.ctx.endpoint.ws());
    } catch (error) {
      this.fail(`websocket: cannot connect (${String(error)})`);
      return opened;
    }
    this.ws = ws;
    let upgraded = false;
    ws.onopen = () => {
      upgraded = true;
      ws.send(encodeBatch([hello]));
    };
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") return;
      let frames;
      try {
        frames = decodeBatch(event.data);
      } catch {
        this.fail("websocket: undecodable message from the server");
        return;
      }
      if (!this.welcome.t) {
        if (frames[0]?.t === "err") this._refusal = errorOf(frames[0]);
        this.greet(frames);
      } else {
        for (const frame of frames) if (frame.t === "err" && !("s" in frame)) this._refusal = errorOf(frame);
        this.receive(frames, event.data.length);
      }
    };
    ws.onclose = (event) => {
      if (!upgraded) {
        this.fail(`websocket: cannot connect (${offline() ?? "the upgrade was refused or blocked on the way"})`);
      } else if (this._refusal) {
        const error = this._refusal;
        this.fail(`websocket: refused by the server (${error.code}: ${error.reason})`, error);
      } else if (event.code === 1001) {
        // Going away: the server is shutting down (protocol §8). Resume elsewhere at once.
        const reason = `websocket: closed by the server (1001${event.reason ? ` ${event.reason}` : ""})`;
        this.fail(reason, new LadderError("shutting_down", event.reason || "server going away"));
      } else if (event.code === 1000 || event.code >= 4000 || errorOfClose(event.reason)) {
        // A refusal (`code: reason`): the core's tables decide what follows, as for an `err`.
        const error = event.code === 1000 ? null : errorOfClose(event.reason);
        this.fail(`websocket: closed by the server (${event.code}${event.reason ? ` ${event.reason}` : ""})`, error);
      } else {
        this.fail(`websocket: connection lost (code ${event.code})`);
      }
    };
    return opened;
  }

  /** @param {Frame[]} frames */
  send(frames) {
    const ws = this.ws;
    if (this.closed || !ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new TransportClosed("websocket: not open"));
    }
    ws.send(encodeBatch(frames));
    return Promise.resolve();
  }

  release() {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
  }
}
