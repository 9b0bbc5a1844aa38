// @ts-check
/** The pace of upstream messages under the server's rate limits (protocol §4). */

/**
 * The pace of upstream messages (protocol §4, "rate limits"): unlimited until the server
 * refuses a message for its rate (`err` `rate_limited` with `re` and `retry_after`, the id not
 * used up). Then: wait `retry_after`, write one message per `interval` (the largest
 * `retry_after` heard since pacing began), the ones that became due meanwhile together, until
 * every message was acknowledged. Mirror of `ladder.client.pacing`. Times in ms.
 */
export class Pacer {
  constructor() {
    /** ms between messages while pacing; 0 when not pacing */
    this.interval = 0;
    this.resumeAt = 0;
    this._due = 0;
    this._stamp = 0;
  }

  get pacing() {
    return this.interval > 0;
  }

  /**
   * @param {number} retryAfter ms
   * @param {number} now
   */
  refused(retryAfter, now) {
    const wait = Math.max(retryAfter, 1);
    this.interval = Math.max(this.interval, wait);
    this.resumeAt = Math.max(this.resumeAt, now + wait);
    this._stamp = this.resumeAt;
    this._due = 1;
  }

  /**
   * How many messages may be written now (null: any number) and, when none may, how many ms
   * until the next one may.
   * @param {number} now
   * @returns {{count: number | null, wait: number}}
   */
  allowance(now) {
    if (!this.pacing) return { count: null, wait: 0 };
    if (now < this.resumeAt) return { count: 0, wait: this.resumeAt - now };
    this._due = Math.min(64, this._due + (now - this._stamp) / this.interval);
    this._stamp = now;
    const count = Math.floor(this._due);
    return count ? { count, wait: 0 } : { count: 0, wait: (1 - this._due) * this.interval };
  }

  /** @param {number} count */
  wrote(count) {
    if (this.pacing) this._due = Math.max(0, this._due - count);
  }

  drained() {
    this.interval = this.resumeAt = this._due = 0;
  }
}
