// @ts-check
/**
 * What `ready()` answers, for a client of the tab's own and for a tab sharing a connection:
 * one rule, so the two cannot drift. It resolves once connected; it rejects with
 * `connect_failed` while the client has not connected in time (the client goes on trying, and
 * once it connects a later `ready()` resolves); it rejects for good once the client is closed
 * or gave up.
 */
export class Readiness {
  constructor() {
    /** @type {(value: void) => void} */
    let yes = () => {};
    /** @type {(error: Error) => void} */
    let no = () => {};
    /** @type {Promise<void>} what `ready()` returns now */
    this.promise = new Promise((resolve, reject) => [yes, no] = [resolve, reject]);
    this.promise.catch(() => {});
    this._yes = yes;
    this._no = no;
    /** rejected with `connect_failed`, not (yet) connected */
    this._late = false;
    /** closed or gave up: nothing changes the answer any more */
    this._ended = false;
  }

  /** Connected: `ready()` resolves, including one that rejected with `connect_failed`. */
  connected() {
    if (this._ended) return;
    if (this._late) this.promise = Promise.resolve();
    this._late = false;
    this._yes();
  }

  /**
   * Not connected within `connectTimeout`: a waiting `ready()` rejects (the client keeps trying).
   * @param {Error} error
   */
  late(error) {
    if (this._ended) return;
    this._late = true;
    this._no(error);
  }

  /**
   * Closed or gave up: `ready()` rejects with why (a promise already settled stays as it was).
   * @param {Error} error
   */
  ended(error) {
    this._ended = true;
    this._no(error);
  }
}
