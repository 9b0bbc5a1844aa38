// @ts-check
/** The reliable stream (mirror of ladder.protocol.reliable): numbered messages out, in order and once in. */

import { LadderError } from "./errors.js";

/** @typedef {import("./codec.js").Frame} Frame */

/**
 * Numbered items kept until the peer acknowledges them cumulatively.
 * @template T
 */
export class Outbox {
  /** @param {number} maxItems */
  constructor(maxItems) {
    this.maxItems = maxItems;
    /** Number of the newest item (0 before the first). */
    this.last = 0;
    /** Highest number acknowledged; everything up to it is forgotten. */
    this.acked = 0;
    /** @type {T[]} */
    this._items = [];
  }

  get size() {
    return this._items.length;
  }

  /**
   * Number and keep `item`; `queue_full` past the bound (`bounded = false`: kept anyway, for
   * the few items the protocol itself must send).
   * @param {T} item
   * @param {boolean} [bounded]
   */
  push(item, bounded = true) {
    if (bounded && this._items.length >= this.maxItems) {
      throw new LadderError(
        "queue_full",
        `${this._items.length} messages are waiting to be sent or acknowledged (the client's max_queue / maxQueue): wait until they are acknowledged (flush() waits for that) or raise the bound`,
      );
    }
    this._items.push(item);
    this.last += 1;
    return this.last;
  }

  /**
   * Forget everything numbered `upto` or lower.
   * @param {number} upto
   */
  ack(upto) {
    if (upto > this.last) throw new LadderError("bad_frame", `ack ${upto} is beyond the last sent number ${this.last}`);
    const count = upto - this.acked;
    if (count <= 0) return 0;
    this._items.splice(0, count);
    this.acked = upto;
    return count;
  }

  /**
   * Items numbered above `cursor` (and above the ack), oldest first, as [number, item].
   * @param {number} cursor
   * @returns {[number, T][]}
   */
  after(cursor) {
    const start = Math.max(cursor, this.acked);
    return this._items.slice(start - this.acked).map((item, k) => /** @type {[number, T]} */ ([start + k + 1, item]));
  }

  /**
   * Take out the items numbered above `floor` that `drop` picks, and number the ones after
   * them again, in order, so that no number goes missing: returns the numbers taken out and
   * the [old, new] numbers of those moved. Only for items no peer has seen (above `floor`).
   * @param {number} floor
   * @param {(item: T) => boolean} drop
   * @returns {{removed: number[], moved: [number, number][]}}
   */
  withdraw(floor, drop) {
    const start = Math.max(floor, this.acked);
    const head = this._items.slice(0, start - this.acked);
    /** @type {T[]} */
    const kept = [];
    /** @type {number[]} */
    const removed = [];
    /** @type {[number, number][]} */
    const moved = [];
    this._items.slice(start - this.acked).forEach((item, k) => {
      const id = start + k + 1;
      if (drop(item)) {
        removed.push(id);
        return;
      }
      kept.push(item);
      if (start + kept.length !== id) moved.push([id, start + kept.length]);
    });
    this._items = head.concat(kept);
    this.last = start + kept.length;
    return { removed, moved };
  }

  /** Take every kept item out and restart numbering at 1 (for a brand-new session). */
  renumber() {
    const items = this._items;
    this._items = [];
    this.last = 0;
    this.acked = 0;
    return items;
  }
}

/**
 * Hands each number out once and in order; early arrivals wait (within a window) for the gap.
 * @template T
 */
export class Inbox {
  constructor(window = 100_000) {
    this.window = window;
    /** Every number up to this one has been handed out; higher ones have not. */
    this.applied = 0;
    /** @type {Map<number, T>} */
    this._early = new Map();
  }

  /**
   * Accept `item` numbered `number`; return what is now ready, in order (repeats yield nothing).
   * @param {number} number
   * @param {T} item
   * @returns {T[]}
   */
  offer(number, item) {
    if (number <= this.applied || this._early.has(number)) return [];
    if (number > this.applied + this.window) {
      throw new LadderError("too_far_ahead", `message ${number} arrived while waiting for ${this.applied + 1}`);
    }
    if (number !== this.applied + 1) {
      this._early.set(number, item);
      return [];
    }
    const ready = [item];
    this.applied = number;
    while (this._early.has(this.applied + 1)) {
      this.applied += 1;
      ready.push(/** @type {T} */ (this._early.get(this.applied)));
      this._early.delete(this.applied);
    }
    return ready;
  }

  /** How many early items wait for a gap to fill. */
  get waiting() {
    return this._early.size;
  }

  reset() {
    this.applied = 0;
    this._early.clear();
  }
}

/**
 * Whether an unacknowledged message moves to a new session (subscriptions are renewed instead).
 * @param {Frame} frame
 */
export function carried(frame) {
  return frame.t !== "sub" && frame.t !== "unsub";
}

/**
 * Ascending message ids as ranges, the hello's `pids` (protocol §3.1): [3, 4, 5, 8] is "3-5,8".
 * @param {number[]} ids
 */
export function formatIds(ids) {
  /** @type {string[]} */
  const parts = [];
  let start = ids[0];
  ids.forEach((id, k) => {
    if (ids[k + 1] === id + 1) return;
    parts.push(start === id ? String(id) : `${start}-${id}`);
    start = ids[k + 1];
  });
  return parts.join(",");
}
