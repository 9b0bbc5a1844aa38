// @ts-check
/**
 * The tabs that share one connection: the side of sharing that holds the real `Client` (it runs
 * in the `SharedWorker`, `worker.js`). One session for every tab of the browser profile; each
 * tab keeps its own subscriptions, calls and replies:
 *
 * - a channel is subscribed once, however many tabs follow it (a count per channel; the last
 *   tab to leave unsubscribes), and its publications go to the tabs that follow it, in order;
 * - a tab that joins a channel already followed starts where it asked (`recent`, `since`): the
 *   hub reads what it missed from the channel's history and holds the live publications back
 *   until those went out, so the tab gets each publication once, in order (refused history,
 *   `recent` is refused and `since` not recovered, as the server answers one tab alone);
 * - replies go to the tab that asked; a tab that died (its Web Lock is released) is forgotten.
 *
 * Messages between a tab and the hub are plain objects with an `op` (see `shared.js`).
 */

import { REQUEST_TIMEOUT } from "./core.js";
import { LadderError } from "./errors.js";
import { reportLater } from "./subscription.js";

/** @typedef {import("./driver.js").Client} Client */
/** @typedef {import("./driver.js").ClientOptions} ClientOptions */
/** @typedef {import("./subscription.js").Subscription} Subscription */
/** @typedef {import("./subscription.js").Position} Position */
/** @typedef {{postMessage: (message: any) => void}} Port */

/** Events every tab hears; the others (`resync`, `resubscribed`, `presence`) go to the tabs following that channel. */
const BROADCAST = ["open", "close", "transport", "state", "probe", "session_lost", "error", "push"];
const PER_CHANNEL = ["resubscribed", "presence"];

/** What a tab needs to know of the shared client's state. @param {Client} client */
export function snapshot(client) {
  return {
    state: client.state,
    transport: client.transport,
    sessionId: client.sessionId,
    user: client.user,
    clientId: client.clientId,
    lastChange: client.lastChange,
    lastFailure: client.lastFailure,
    // Where the shared client keeps unacknowledged messages (where it has an outbox).
    outboxStorage: /** @type {any} */ (client).outboxStorage ?? "off",
    outboxReason: /** @type {any} */ (client).outboxReason ?? null,
    restored: /** @type {any} */ (client).restored ?? 0,
    restoredMessages: /** @type {any} */ (client).restoredMessages ?? [],
    // Which record they came from: each tab tells `restored` once per record the shared client
    // takes over while the tab is there (see SharedClient._apply).
    restoredFrom: /** @type {any} */ (client).restoredFrom ?? null,
    limits: client._limits,
    // Why the shared client gave up for good (set before its `error` and `close` events go
    // out): every tab's later calls fail with it, as a client of the tab's own would.
    fatal: client._fatal ? errorBody(client._fatal) : null,
  };
}

/** @param {unknown} error */
function errorBody(error) {
  if (error instanceof LadderError) return { code: error.code, reason: error.reason, retryAfter: error.retryAfter, details: error.details };
  return { code: "internal", reason: String(error) };
}

/**
 * One tab's place in a channel. Until it is `live`, publications for it wait in `held`
 * (the ones it missed are being read from history).
 */
class Membership {
  constructor() {
    this.live = false;
    /** @type {any[]} */
    this.held = [];
  }
}

/** One tab: its port and the channels it follows. */
class Tab {
  /**
   * @param {string} id
   * @param {Port} port
   */
  constructor(id, port) {
    this.id = id;
    this.port = port;
    /** @type {Map<string, Membership>} */
    this.channels = new Map();
    /** @type {any} the tab's `connectTimeout`, while it waits for its first connection */
    this.timer = null;
    /** @type {WeakSet<object>} the messages this tab sent (dropped, if still unsent, when it closes) */
    this.sent = new WeakSet();
  }

  /** The tab connected (or left): its `connectTimeout` no longer runs. */
  connected() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  /** @param {any} message */
  post(message) {
    try {
      this.port.postMessage(message);
    } catch {
      // A closed port or channel: the tab, or this hub's leader tab, is going away.
    }
  }

  /**
   * A message about `channel`: now, or after the catch-up when the tab is still catching up.
   * @param {string} channel
   * @param {any} message
   * @param {boolean} [hold] keep it for a tab whose subscription is on its way
   */
  deliver(channel, message, hold = true) {
    const member = this.channels.get(channel);
    if (!member) return;
    if (member.live) this.post(message);
    else if (hold) member.held.push(message);
  }
}

/** The shared client and the tabs using it. */
export class TabHub {
  /**
   * @param {(url: string, options: ClientOptions) => Client} makeClient
   * @param {((message: any, tabs: string[]) => void) | null} [broadcast] one message for many
   *   tabs at once (a leader's BroadcastChannel reaches every tab anyway)
   */
  constructor(makeClient, broadcast = null) {
    this._make = makeClient;
    this._broadcast = broadcast;
    /** @type {Client | null} */
    this.client = null;
    /** @type {Map<string, Tab>} */
    this.tabs = new Map();
    /** @type {Map<string, Subscription>} the one real subscription per channel */
    this.subs = new Map();
  }

  /**
   * A message from a tab.
   * @param {Port} port
   * @param {any} message
   */
  receive(port, message) {
    if (message.op === "join") {
      this.join(message.tab, port, message.url, message.options, message.lock, message.started ?? null);
      return;
    }
    const tab = this.tabs.get(message.tab);
    if (!tab || !this.client) return;
    const client = this.client;
    switch (message.op) {
      case "sub":
        this.subscribe(tab, message.ch, message.since ?? null, message.recent ?? 0);
        break;
      case "unsub":
        this.unsubscribe(tab, message.ch);
        break;
      case "emit":
        try {
          this._sending(tab, () => client.emit(message.ev, message.d));
        } catch (error) {
          tab.post({ op: "event", name: "error", event: errorBody(error) });
        }
        break;
      case "req":
        this._sending(tab, () => this.request(tab, message));
        break;
      case "wake":
        client.wake(message.why);
        break;
      case "leave":
        // (closed by its app: what it sent and the connection has not, it drops, as a client
        // of the tab's own drops its unsent messages; a page going away leaves them)
        if (message.drop === true) client._withdraw?.((frame) => tab.sent.has(frame));
        this.leave(tab.id, message.going === true);
        break;
      default:
        break;
    }
  }

  /**
   * A tab joins (or joins again: a new leader, see `leader.js`): the first one starts the
   * client with its URL and options (tabs with other options use another hub, `shared.js`).
   * The tab holds the Web Lock `lock` for as long as it lives; the hub asks for it too and is
   * given it when the tab is gone (closed, crashed, navigated away, with or without a word).
   * @param {string} id
   * @param {Port} port
   * @param {string} url
   * @param {ClientOptions} options
   * @param {string} [lock]
   * @param {number | null} [started] when the tab started (`Date.now()`), while it has never
   *   been connected: not connected `connectTimeout` after it, the tab hears `connect_failed`
   *   as a client of its own would, also when it joined a connection that was down
   */
  join(id, port, url, options, lock, started = null) {
    if (!this.client || this.client.state === "closed") this.client = this._start(url, options);
    let tab = this.tabs.get(id);
    if (!tab) {
      tab = new Tab(id, port);
      this.tabs.set(id, tab);
      if (lock && typeof navigator !== "undefined" && navigator.locks) {
        navigator.locks.request(lock, () => this.leave(id, true)).catch(() => {});
      }
      this._deadline(tab, started);
    }
    this._count(); // (before the state: a tab's ready() may resolve on it, and read client.tabs)
    tab.post({ op: "state", state: snapshot(this.client) });
  }

  /**
   * Send for `tab`: the messages the client queues meanwhile are the tab's.
   * @param {Tab} tab
   * @param {() => void} send
   */
  _sending(tab, send) {
    const queue = /** @type {Client} */ (this.client).peer?.outbox;
    const before = queue?.last ?? 0;
    try {
      send();
    } finally {
      if (queue && queue.last > before) for (const [, frame] of queue.after(before)) tab.sent.add(frame);
    }
  }

  /**
   * The tab's `connectTimeout`, from when it started: still not connected then, it hears the
   * `error` event `connect_failed` with each rung's reason as they stand (its `ready()`
   * rejects with it), as a client of its own would; the connection goes on trying.
   * @param {Tab} tab
   * @param {number | null} started
   */
  _deadline(tab, started) {
    const client = /** @type {Client} */ (this.client);
    const limit = client.options?.connectTimeout;
    if (started === null || limit === null || limit === undefined || client.state === "connected") return;
    tab.timer = setTimeout(() => {
      tab.timer = null;
      if (this.client !== client || this.tabs.get(tab.id) !== tab) return;
      if (client.state === "connected" || client.state === "closed") return;
      const error = client._connectFailure(limit);
      tab.post({ op: "event", name: "error", event: { code: error.code, reason: error.reason }, state: snapshot(client) });
    }, Math.max(0, started + limit - Date.now()));
  }

  /**
   * Stop: the session ends (this hub's leader tab is going away). Resolves once unsent
   * messages are written for the next leader and the outbox is free for it to claim.
   * @returns {Promise<void>}
   */
  stop() {
    const client = this.client;
    this.client = null;
    for (const tab of this.tabs.values()) tab.connected();
    this.tabs.clear();
    this.subs.clear();
    // The page is going away, not the app closing: unsent messages stay for the next leader.
    return client ? client._leave() : Promise.resolve();
  }

  /**
   * A tab left (closed, navigated away, or died): its channels are released, and with the
   * last tab the session ends. When that tab's page went away (`going`) rather than its app
   * calling `close()`, unsent messages stay in the outbox for the next tab, as a client of the
   * tab's own would keep them.
   * @param {string} id
   * @param {boolean} [going]
   */
  leave(id, going = false) {
    const tab = this.tabs.get(id);
    if (!tab) return;
    this.tabs.delete(id);
    tab.connected();
    for (const channel of [...tab.channels.keys()]) this.unsubscribe(tab, channel);
    this._count();
    if (!this.tabs.size && this.client) {
      const client = this.client;
      this.client = null;
      this.subs.clear();
      (going ? client._leave() : client.close()).catch(reportLater);
    }
  }

  /**
   * @param {Tab} tab
   * @param {string} channel
   * @param {Position | null} since
   * @param {number} recent
   */
  subscribe(tab, channel, since, recent) {
    const client = /** @type {Client} */ (this.client);
    if (tab.channels.has(channel)) return;
    const member = new Membership();
    tab.channels.set(channel, member);
    let sub = this.subs.get(channel);
    if (!sub || !sub.active) {
      // The first tab: the real subscription starts where this tab asked.
      const fresh = client.subscribe(channel, (pub) => this._fanOut(channel, { op: "pub", ch: channel, o: pub.offset, d: pub.data, ep: pub.epoch }), { since, recent });
      this.subs.set(channel, fresh);
      fresh._onEnd = (error) => this._ended(channel, fresh, error);
      fresh.ready().then(
        (result) => this._live(tab, channel, member, { op: "subok", ch: channel, result }, []),
        (error) => this._refused(tab, channel, member, fresh, error),
      );
      return;
    }
    const shared = sub;
    shared.ready().then(
      () => this._catchUp(tab, channel, member, shared, since, recent),
      (error) => this._refused(tab, channel, member, shared, error),
    );
  }

  /**
   * A tab follows a channel other tabs already follow: from the shared subscription's position
   * now, after what it missed (read from history). Live publications wait meanwhile.
   * @param {Tab} tab
   * @param {string} channel
   * @param {Membership} member
   * @param {Subscription} sub
   * @param {Position | null} since
   * @param {number} recent
   */
  async _catchUp(tab, channel, member, sub, since, recent) {
    if (tab.channels.get(channel) !== member) return;
    const epoch = /** @type {string} */ (sub.epoch);
    const now = sub.offset;
    const client = /** @type {Client} */ (this.client);
    /** @type {any[]} */
    let missed = [];
    let recovered = true;
    try {
      if (since && since.epoch === epoch && since.offset < now) {
        const reply = await client._request({ t: "history", ch: channel, ep: epoch, off: since.offset, limit: now - since.offset }, REQUEST_TIMEOUT);
        missed = reply.pubs.filter((/** @type {any} */ p) => p.o > since.offset && p.o <= now);
        recovered = reply.complete !== false && (missed.length === 0 || missed[0].o === since.offset + 1);
      } else if (since && since.epoch !== epoch) {
        recovered = false;
      } else if (!since && recent > 0) {
        const reply = await client._request({ t: "history", ch: channel, limit: recent }, REQUEST_TIMEOUT);
        missed = reply.pubs.filter((/** @type {any} */ p) => p.o <= now).slice(-recent);
      }
    } catch (error) {
      if (!since && recent > 0 && error instanceof LadderError && error.code === "forbidden") {
        // This tab may not read the channel's history: refused, as the server refuses a
        // subscription asking for `recent` (protocol §7); the other tabs go on.
        this._refused(tab, channel, member, sub, error);
        return;
      }
      recovered = !since; // the history could not be read: say so when the tab asked to recover
    }
    if (tab.channels.get(channel) !== member) return;
    const result = { channel, epoch, offset: now, recovered, missed: missed.length };
    const pubs = missed.map((p) => ({ op: "pub", ch: channel, o: p.o, d: p.d, ep: epoch }));
    this._live(tab, channel, member, { op: "subok", ch: channel, result }, pubs, now);
  }

  /**
   * @param {Tab} tab
   * @param {string} channel
   * @param {Membership} member
   * @param {any} confirmation
   * @param {any[]} missed
   * @param {number} [upTo] held publications up to this offset were among the missed ones
   */
  _live(tab, channel, member, confirmation, missed, upTo = -1) {
    if (tab.channels.get(channel) !== member) return;
    tab.post(confirmation);
    for (const message of missed) tab.post(message);
    for (const message of member.held) if (message.op !== "pub" || message.o > upTo) tab.post(message);
    member.held = [];
    member.live = true;
  }

  /**
   * @param {Tab} tab
   * @param {string} channel
   * @param {Membership} member
   * @param {Subscription} sub
   * @param {unknown} error
   */
  _refused(tab, channel, member, sub, error) {
    if (this.subs.get(channel) === sub && !sub.active) this.subs.delete(channel);
    if (tab.channels.get(channel) !== member) return;
    tab.channels.delete(channel);
    tab.post({ op: "suberr", ch: channel, error: errorBody(error) });
  }

  /**
   * The shared subscription ended without the hub asking (a renewal in a new session refused
   * for good, the client giving up): every tab following it is told, and its subscription
   * ends, as a client of the tab's own would end it.
   * @param {string} channel
   * @param {Subscription} sub
   * @param {LadderError | null} error
   */
  _ended(channel, sub, error) {
    if (this.subs.get(channel) !== sub || !error) return; // (the hub unsubscribed it: no tab follows it)
    this.subs.delete(channel);
    for (const tab of this.tabs.values()) {
      if (tab.channels.delete(channel)) tab.post({ op: "suberr", ch: channel, error: errorBody(error) });
    }
  }

  /**
   * @param {Tab} tab
   * @param {string} channel
   */
  unsubscribe(tab, channel) {
    if (!tab.channels.delete(channel)) return;
    for (const other of this.tabs.values()) if (other.channels.has(channel)) return;
    const sub = this.subs.get(channel);
    this.subs.delete(channel);
    if (sub && this.client && this.client.state !== "closed") sub.unsubscribe().catch(reportLater);
  }

  /**
   * A call, publish, presence or history for one tab: the answer goes back to it alone.
   * @param {Tab} tab
   * @param {any} message
   */
  request(tab, message) {
    const client = /** @type {Client} */ (this.client);
    const options = { timeout: message.timeout ?? null };
    /** @type {Promise<any>} */
    let pending;
    try {
      if (message.kind === "call") pending = client.call(message.ev, message.d, options);
      else if (message.kind === "publish") pending = client.publish(message.ch, message.d, options);
      else if (message.kind === "presence") pending = client.presence(message.ch, options);
      else if (message.kind === "refresh") pending = client.refresh(message.tok ?? null, options);
      else if (message.kind === "flush") pending = client.flush(options);
      else if (message.kind === "persisted") {
        // (with what it took over from a page that is gone, known once its outbox is open)
        pending = Promise.resolve(/** @type {any} */ (client).persisted?.()).then(() => {
          this.tabs.get(tab.id)?.post({ op: "state", state: snapshot(client) });
        });
      }
      else pending = client.history(message.ch, { ...options, limit: message.limit });
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.then(
      (value) => this.tabs.get(tab.id)?.post({ op: "reply", id: message.id, ok: true, value }),
      (error) => this.tabs.get(tab.id)?.post({ op: "reply", id: message.id, ok: false, error: errorBody(error) }),
    );
  }

  /**
   * @param {string} channel
   * @param {any} message
   * @param {boolean} [hold] keep it for the tabs whose subscription is on its way
   */
  _fanOut(channel, message, hold = true) {
    if (!this._broadcast) {
      for (const tab of this.tabs.values()) tab.deliver(channel, message, hold);
      return;
    }
    /** @type {string[]} */
    const live = [];
    for (const tab of this.tabs.values()) {
      const member = tab.channels.get(channel);
      if (member?.live) live.push(tab.id);
      else if (member && hold) member.held.push(message);
    }
    if (live.length) this._broadcast(message, live);
  }

  /** Every tab hears how many tabs share the connection. */
  _count() {
    const count = this.tabs.size;
    for (const tab of this.tabs.values()) tab.post({ op: "tabs", count });
  }

  /**
   * @param {string} url
   * @param {ClientOptions} options
   */
  _start(url, options) {
    // The durable outbox also in a SharedWorker (where a Client's default is off): the last
    // tab's page may go away with messages the server has not acknowledged.
    const client = this._make(url, { outbox: true, ...options, browserEvents: false, remember: false });
    for (const name of BROADCAST) {
      client.on(/** @type {any} */ (name), (event) => {
        if (this.client !== client) return;
        if (name === "open") for (const tab of this.tabs.values()) tab.connected();
        // (each tab hears it `connectTimeout` after it started, not after the connection did)
        if (name === "error" && event.code === "connect_failed") return;
        const state = snapshot(client);
        for (const tab of this.tabs.values()) tab.post({ op: "event", name, event, state });
      });
    }
    for (const name of PER_CHANNEL) {
      client.on(/** @type {any} */ (name), (event) => {
        if (this.client === client) this._fanOut(event.channel, { op: "event", name, event });
      });
    }
    client.on("resync", (event) => {
      const sub = this.subs.get(event.channel);
      if (this.client !== client || !sub) return;
      // (not held for a tab whose subscription is on its way: its confirmation says whether
      // it recovered, and a held resync made it hear the gap twice)
      this._fanOut(event.channel, { op: "resync", ch: event.channel, ep: sub.epoch, off: sub.offset }, false);
    });
    return client.start();
  }
}
