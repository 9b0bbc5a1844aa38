// @ts-check
/** One logical connection's bookkeeping across sessions and transports (mirror of ladder.protocol.peer). */

import { LadderError, MAX_TOKEN } from "./errors.js";
import { carried, formatIds, Inbox, Outbox } from "./reliable.js";
import { PROTOCOL_VERSION } from "./rungs.js";

/** Messages a client keeps while unacknowledged or offline, by default (a full queue refuses the next one). */
export const MAX_QUEUE = 1000;

/** @typedef {import("./codec.js").Frame} Frame */

/**
 * Client bookkeeping for one logical connection, across sessions and transports: numbers the
 * client's messages (`i`) and keeps them until acknowledged; drops server frames (`s`) already
 * delivered. A welcome says where the server stands (protocol §1, §3.2).
 */
export class PeerState {
  constructor(maxQueue = MAX_QUEUE) {
    /** @type {string | null} */
    this.sid = null;
    /** @type {string | null} resume token */
    this.token = null;
    /** @type {[string, string] | null} the session lost last (id, resume token), named by the next hello */
    this.lost = null;
    /** @type {number[] | null} the lost session's ids of the first queued messages, when restored from a durable outbox (else: every carried message, as numbered) */
    this.lostIds = null;
    /** @type {string | null} the current session's user as a hello says it (its welcome's `u`, "" for an anonymous one; null: none welcomed yet) */
    this.user = null;
    /** @type {string | null} the lost session's user, said in the next hello as `pu` (null: not known) */
    this.lostUser = null;
    /** @type {Inbox<Frame>} */
    this.inbox = new Inbox();
    /** @type {Outbox<Frame>} */
    this.outbox = new Outbox(maxQueue);
    /** Highest message id written on the current transport (`cursor`). */
    this._cursor = 0;
    /** Highest message id written on any transport, in this session (or the one lost): the server may have it. */
    this.written = 0;
    /** Highest server sequence number the server has been told we have. */
    this.ackedOut = 0;
    /** Bytes received since the last ack (or welcome): the server keeps them until acked. */
    this.unackedBytes = 0;
  }

  /** Highest message id written on the current transport. */
  get cursor() {
    return this._cursor;
  }

  set cursor(id) {
    this._cursor = id;
    this.written = Math.max(this.written, id);
  }

  /**
   * The hello for a new transport: resumes the session when there is one. `why` says in one
   * word why this transport is being opened (for the server's metrics).
   * @param {string | null} [token]
   * @param {string | null} [why]
   */
  hello(token, why) {
    /** @type {Frame} */
    const frame = { t: "hello", v: PROTOCOL_VERSION };
    if (why != null) frame.why = why;
    if (this.sid !== null) {
      frame.sid = this.sid;
      frame.rt = this.token;
      frame.ack = this.inbox.applied;
    } else if (this.lost !== null) {
      const ids = this.lostIds ?? this.outbox.after(0).filter(([, item]) => carried(item)).map(([i]) => i);
      if (ids.length > 0) {
        Object.assign(frame, { psid: this.lost[0], prt: this.lost[1], pids: formatIds(ids) });
        // (a longer id is left to the server, which decides by what it knows)
        if (this.lostUser !== null && this.lostUser.length <= MAX_TOKEN) frame.pu = this.lostUser;
      }
    }
    if (token != null) frame.tok = token;
    return frame;
  }

  /**
   * Adopt a welcome. Returns null for a resumed session; for a new one, the [old id, new id]
   * pairs of the messages carried over (`keep` filters which are: by default all but `sub`
   * and `unsub`, which the client renews itself).
   * @param {Frame} welcome
   * @param {(frame: Frame) => boolean} [keep]
   * @returns {[number, number][] | null}
   */
  welcome(welcome, keep = carried) {
    this.unackedBytes = 0;
    this.user = welcome.u == null ? "" : String(welcome.u);
    if (welcome.sid === this.sid && welcome.resumed) {
      const ack = Number(welcome.ack ?? 0);
      if (ack > this.outbox.last) {
        throw new LadderError("bad_frame", `server acknowledged ${ack} of ${this.outbox.last} messages`);
      }
      this.outbox.ack(ack);
      this.cursor = ack;
      this.ackedOut = this.inbox.applied;
      return null;
    }
    this.sid = String(welcome.sid);
    this.token = String(welcome.rt);
    this.lost = null;
    this.lostIds = null;
    this.lostUser = null;
    this.inbox.reset();
    this.ackedOut = 0;
    const written = this.written;
    this._cursor = 0;
    this.written = 0;
    /** @type {[number, number][]} */
    const moved = [];
    const firstOld = this.outbox.acked + 1;
    this.outbox.renumber().forEach((frame, offset) => {
      if (keep(frame)) {
        frame.i = this.outbox.push(frame);
        moved.push([firstOld + offset, frame.i]);
        // (written in the session lost, it may have been applied there)
        if (firstOld + offset <= written) this.written = frame.i;
      }
    });
    return moved;
  }

  /** The session is gone for good; the next hello starts a new one. */
  forgetSession() {
    if (this.sid !== null && this.token !== null) {
      this.lost = [this.sid, this.token];
      this.lostIds = null;
      this.lostUser = this.user;
    }
    this.sid = null;
    this.token = null;
    this.user = null;
  }

  /**
   * Before any session: take over messages a previous page (or another tab) kept, in front of
   * those queued meanwhile. `lost` is the session they were numbered in and `ids` their ids
   * there (the next hello names them, `psid`/`prt`/`pids`, so the server applies only what
   * that session had not); null for messages no server has seen. Returns the [old id, new id]
   * pairs of the messages queued meanwhile, which move behind the restored ones.
   * `user` is that session's user as a hello says it (`pu`), when known.
   * @param {[string, string] | null} lost
   * @param {number[] | null} ids
   * @param {Frame[]} frames
   * @param {string | null} [user]
   * @returns {[number, number][]}
   */
  restore(lost, ids, frames, user = null) {
    if (this.sid !== null || this.lost !== null) throw new LadderError("bad_frame", "messages are restored only before any session");
    const queued = this.outbox.renumber();
    this.cursor = 0;
    for (const frame of frames) frame.i = this.outbox.push(frame, false);
    if (lost !== null && ids !== null && ids.length) {
      this.lost = lost;
      this.lostIds = ids.slice(0, frames.length);
      this.lostUser = user;
    }
    return queued.map((frame, k) => {
      const old = k + 1;
      frame.i = this.outbox.push(frame, false);
      return /** @type {[number, number]} */ ([old, frame.i]);
    });
  }

  /**
   * Number a message and keep it until acknowledged (`queue_full` past the bound).
   * `bounded = false` is for the subscriptions a new session renews: the carried messages may
   * fill the queue, and refusing the renewal would end a subscription nobody left.
   * @param {Frame} frame
   * @param {boolean} [bounded]
   */
  submit(frame, bounded = true) {
    frame.i = this.outbox.last + 1;
    this.outbox.push(frame, bounded);
    return /** @type {number} */ (frame.i);
  }

  /**
   * Take back the queued messages `drop` picks among those never written on any transport
   * (a tab sharing the connection closed: its unsent messages are dropped, as a client of its
   * own drops them); the messages after them are numbered again, so none goes missing.
   * Messages written already stay (the server may have them), and so do those restored from
   * a previous page. Returns the ids taken out, and the [old id, new id] pairs of those moved.
   * @param {(frame: Frame) => boolean} drop
   * @returns {{removed: number[], moved: [number, number][]}}
   */
  withdraw(drop) {
    const floor = Math.max(this.written, this._cursor, this.outbox.acked + (this.lostIds?.length ?? 0));
    const result = this.outbox.withdraw(floor, drop);
    for (const [id, frame] of this.outbox.after(floor)) frame.i = id;
    return result;
  }

  /** Messages not yet written on the current transport, oldest first. */
  unsent() {
    const items = this.outbox.after(this.cursor);
    if (items.length) this.cursor = items[items.length - 1][0];
    return items.map(([, frame]) => frame);
  }

  /**
   * The server applied every message up to `upto`.
   * @param {number} upto
   */
  onAck(upto) {
    this.outbox.ack(Math.min(upto, this.outbox.last));
  }

  /**
   * A sequenced frame: the frames now deliverable, in order (repeats dropped).
   * @param {Frame} frame
   */
  receive(frame) {
    return this.inbox.offer(Number(frame.s), frame);
  }

  /**
   * An ack to send, once at least `every` frames arrived since the last one.
   * @returns {Frame | null}
   */
  ackFrame(every = 1) {
    const applied = this.inbox.applied;
    if (applied > this.ackedOut && applied - this.ackedOut >= every) {
      this.ackedOut = applied;
      this.unackedBytes = 0;
      return { t: "ack", s: applied };
    }
    return null;
  }
}
