/**
 * Types for Ladder's browser client (`<mount>/client.js`, a plain ES module).
 *
 *     import { connect } from "/ladder/client.js";
 *     const client = connect("/ladder", { token: "alice" });
 *     client.subscribe<ChatMessage>("room:lobby", (pub) => render(pub.data), { recent: 50 });
 *     const { offset } = await client.call<{ offset: number }>("chat.send", { room: "lobby", text: "hi" });
 *
 * See docs/browser.md. tests/js/types.test.mjs checks that client.js satisfies these declarations.
 */

export declare const PROTOCOL_VERSION: 1;

/** Every rung, best first. */
export declare const TRANSPORTS: readonly ["websocket", "sse", "longpoll", "poll"];

/** One transport: WebSocket, Server-Sent Events (+ POST up), long polling, short polling. */
export type Rung = "websocket" | "sse" | "longpoll" | "poll";

/** `connecting` → `connected` → `disconnected` (reconnecting) … → `closed` (for good). */
export type ClientState = "disconnected" | "connecting" | "connected" | "closed";

/** A refusal with a stable `code` (switch on it) and a `reason` for people. */
export declare class LadderError extends Error {
  constructor(code: string, reason?: string, retryAfter?: number, details?: unknown);
  /** e.g. `timeout`, `forbidden`, `unknown_event`, `handler_error`, `closed`, `queue_full`, `leader_lost` (shared tabs), or an app's own code. */
  code: string;
  reason: string;
  /** Seconds to wait, for `rate_limited`. */
  retryAfter: number | undefined;
  /** What the handler attached to its error (`LadderError(code, reason, details=...)`), if anything. */
  details: unknown;
}

/** One message in a channel. */
export interface Publication<T = any> {
  channel: string;
  /** Position in the channel (1, 2, 3, … within an epoch). */
  offset: number;
  data: T;
  epoch: string | null;
}

/** A message a previous page left, that this client sends first (`restoredMessages`). */
export interface RestoredMessage<T = any> {
  kind: "emit" | "call" | "publish";
  /** The event of an `emit` or a `call` (null for a `publish`). */
  event: string | null;
  /** The channel of a `publish` (null otherwise). */
  channel: string | null;
  /** A copy of the data sent. */
  data: T;
}

/** Where a subscription stands; pass it as `since` to resume later. */
export interface Position {
  epoch: string;
  offset: number;
}

/** How a (re)subscription went. */
export interface SubscribeResult {
  channel: string;
  epoch: string;
  offset: number;
  /** False when history could not cover a gap: refetch the app's state for this channel. */
  recovered: boolean;
  /** How many publications followed the reply (missed ones, or the `recent` ones). */
  missed: number;
}

/** A presence member: `c` is the public id of a session, `u` its user, `info` what the server attached (absent when it attached nothing). */
export interface Member {
  c: string;
  u: string | null;
  info?: any;
}

/** A channel followed by the client. Publications arrive in offset order, each once. */
export declare class Subscription<T = any> {
  constructor(channel: string, options?: { since?: Position | null; recent?: number });
  readonly channel: string;
  /** Epoch and offset of the last publication delivered. */
  epoch: string | null;
  offset: number;
  /** False after a gap history could not cover (a `resync`). */
  recovered: boolean;
  /** False once refused, unsubscribed, ended by the server, or the client closed. */
  active: boolean;
  /** Why the subscription ended, if it was refused or ended by the server. */
  error: LadderError | null;
  /** Resolves when the server confirmed the subscription (rejects with its refusal). */
  ready(): Promise<SubscribeResult>;
  /** Where to resume from later (null before the first confirmation). */
  readonly position: Position | null;
  /** Add a listener; returns a function that removes it. */
  listen(listener: (pub: Publication<T>) => void): () => void;
  unsubscribe(): Promise<void>;
}

export interface TransportEvent {
  old: Rung | null;
  new: Rung;
  reason: string;
}

/** What `client.on(name, listener)` reports. */
export interface ClientEvents {
  /** A transport is up and the session live (`resumed`: the same session as before). */
  open: { transport: Rung; sessionId: string; resumed: boolean };
  /** The transport was lost; the client reconnects unless `reconnecting` is false (closed). */
  close: { transport: Rung | null; reason: string; reconnecting: boolean };
  /** The client moved to another rung: down after a failure, up after a probe. */
  transport: TransportEvent;
  /** History could not cover a gap in `channel`: refetch the app's state for it. */
  /** The subscription goes on from `offset` in `epoch`; `history` returns what it skipped, up to it. */
  resync: { channel: string; epoch: string; offset: number };
  /** The server no longer had the session; a new one started (queued messages carried over). */
  session_lost: { reason: string };
  /** A channel was subscribed again in a new session; `recovered` says whether nothing was lost. */
  resubscribed: { channel: string; recovered: boolean };
  /** An event the server pushed to this session or user. */
  push: { event: string; data: any };
  /** Someone joined or left a channel this client follows. */
  presence: { kind: "join" | "leave"; channel: string; member: Member };
  /** An error no call was waiting for (for example a failed `emit`, or the refusal of a subscription renewed in a new session, naming the channel); `details` and `retryAfter` when the server's `err` had them (a handler's `LadderError`). */
  error: { code: string; reason: string; details?: unknown; retryAfter?: number };
  /** A better rung was tried while standing on a lower one. */
  probe: { rung: Rung; ok: boolean; reason: string };
  /** The connection state changed (`reason`: why, when it got worse). */
  state: { state: ClientState; reason: string };
  /** How many tabs share the connection now (only a `SharedClient` reports it). */
  tabs: { count: number };
  /**
   * The client took over messages a previous page left (or, sharing a connection, that the
   * tab holding it before left), and sends them first: `restored` and `restoredMessages` say
   * them too. Each tab sharing the connection hears it once per record the shared client
   * takes over while the tab is there; a tab that joins later reads `restoredMessages`.
   */
  restored: { count: number; messages: readonly RestoredMessage[] };
}

export interface ClientOptions {
  /** Rungs allowed, best first (default: all four). */
  transports?: readonly Rung[];
  /**
   * Credentials for the server's `authenticate` hook: a string, or a function returning one
   * (called once per race, whose rungs share the answer, and for every probe, within
   * `openTimeout`; again `refreshMargin` before the credentials expire, to refresh them over
   * the live session; a function keeps the tab on a connection of its own).
   */
  token?: string | null | (() => string | null | undefined | Promise<string | null | undefined>);
  /** When each rung of a race starts, ms (default [0, 300, 1000, 2000]). */
  stagger?: readonly number[];
  /** How long a rung may take to deliver its welcome, ms (default 10000). */
  openTimeout?: number;
  /** How long an SSE stream has to prove it is not buffered (ping → pong), ms (default 2500). */
  verifyTimeout?: number;
  /**
   * Not connected this long after start (ms): an `error` event `connect_failed` with every rung's
   * reason, and `ready()` rejects with it; the client keeps trying (default 15000; null: never).
   */
  connectTimeout?: number | null;
  /**
   * Reconnect delays (protocol §9.4), ms: after a connection ended, [0, backoffBase); failed
   * races twice at once, then full jitter doubling from backoffBase up to backoffMax; every
   * welcome starts over (defaults 500, 5000).
   */
  backoffBase?: number;
  backoffMax?: number;
  /** Give up after this many failed races (default: never). */
  maxAttempts?: number | null;
  /** A connection that lived this long resets the cut count, ms (default 10000). */
  stableAfter?: number;
  /** Short-lived connections in a row before stepping down a rung (default 3). */
  cutLimit?: number;
  /** Probing better rungs: first delay and largest delay, ms, jittered (defaults 2000, 30000). */
  probeDelay?: number;
  probeMaxDelay?: number;
  /** Short polling's fastest and slowest pace, ms (default [50, 2000]). */
  pollInterval?: [number, number];
  /** Messages kept while unacknowledged or offline (default 1000; past it: `queue_full`). */
  maxQueue?: number;
  /** Acknowledge a stream at once when about `ackEvery` frames are unacknowledged (a count drawn from [ackEvery/2, ackEvery], at most half the server's `lim.queue`; or half its `lim.qbytes` in bytes), otherwise once it has been quiet for `ackInterval` ms (defaults 512, 1000). */
  ackEvery?: number;
  ackInterval?: number;
  /** Extra silence tolerated while the tab is hidden (Chrome throttles its timers), ms (default 60000). */
  hiddenSlack?: number;
  /** With a `token` function: refresh the credentials this long before they expire (halfway through their life for shorter ones), ms (default 60000). */
  refreshMargin?: number;
  /** Start from the rung that won last time in this tab (sessionStorage; default true). */
  remember?: boolean;
  /**
   * Share one connection (and one session) with the other tabs of this browser that connect to
   * the same hub with the same options: a SharedWorker (or a leader tab) holds it, `connect`
   * returns a `SharedClient` (default true; false: a connection of this tab's own). Ignored
   * where `canShare` is false.
   */
  share?: boolean;
  /** React to online/offline, visibility changes and pagehide/pageshow (default true in a browser). */
  browserEvents?: boolean;
  /**
   * Keep unacknowledged `emit`, `publish` and `call` messages in IndexedDB, so that the next page
   * of this tab (or another tab, once this one is gone) sends them, each applied once (default
   * true in a browser; without IndexedDB they are kept in memory, and `outboxStorage` says so).
   */
  outbox?: boolean;
  /** Most bytes of unacknowledged messages kept (default 1048576; past it: `queue_full`). */
  outboxBytes?: number;
  /** Where the winning rung and this tab's outbox id are remembered (default sessionStorage). */
  storage?: Pick<Storage, "getItem" | "setItem"> | null;
  fetch?: typeof fetch;
}

export interface CallOptions {
  /** ms; null waits as long as the session lives (default 10000). */
  timeout?: number | null;
}

/**
 * What a `Client` and a `SharedClient` both offer: `connect()` returns either (a `SharedClient`
 * is not a `Client` at run time: `instanceof Client` is false for it; test `client.shared`).
 */
export interface LadderClient {
  /** The hub's absolute URL. */
  readonly url: string;
  /** The rung in use now (null while disconnected). */
  readonly transport: Rung | null;
  readonly state: ClientState;
  /** The session id (changes only when the server lost the session). */
  readonly sessionId: string | null;
  /** The user id the server's `authenticate` hook returned. */
  readonly user: string | null;
  /** This session's public id, as others see it in presence. */
  readonly clientId: string | null;
  /** The last rung change and why. */
  readonly lastChange: TransportEvent | null;
  /** Why the last connect attempt failed. */
  readonly lastFailure: string | null;
  /** Whether this client shares its connection with the browser's other tabs (false here; a `SharedClient` is true). */
  readonly shared: boolean;
  /** Where unacknowledged messages are kept: IndexedDB, memory (`outboxReason` says why), off; null until known. */
  readonly outboxStorage: "indexeddb" | "memory" | "off" | null;
  /** Why the outbox is not in IndexedDB (null when it is). */
  readonly outboxReason: string | null;
  /** How many messages a previous page of this tab (or a tab that is gone) left, that this client sends. */
  readonly restored: number;
  /** Those messages, in the order they go out first, as the app sent them (to show them as being sent; a restored call's answer goes nowhere). */
  readonly restoredMessages: readonly RestoredMessage[];
  /** Resolves once every message submitted so far is kept where it outlives the page (at once when the outbox is off or in memory). */
  persisted(): Promise<void>;
  /** Start connecting (`connect()` does this). */
  start(): this;
  /** Resolves once connected for the first time; rejects with `connect_failed` after `connectTimeout`, or with the reason the client gave up. */
  ready(): Promise<void>;
  /** End the session (the server forgets it at once) and release everything. */
  close(): Promise<void>;
  /** Reconnect now (not after the backoff delay), or check a live connection still works. */
  wake(why?: string): void;
  /** Follow a channel: `since` replays what was missed after a position; `recent: N` starts with the newest N kept. Where the app's permissions keep the channel's history from this client, `recent` is refused `forbidden` and `since` is not recovered (a `resync` event). */
  subscribe<T = any>(
    channel: string,
    onPublication?: ((pub: Publication<T>) => void) | null,
    options?: { since?: Position | null; recent?: number },
  ): Subscription<T>;
  unsubscribe(channel: string): Promise<void>;
  /** Publish to a channel (if the server permits). */
  publish(channel: string, data: unknown, options?: CallOptions): Promise<Position>;
  /**
   * Send an event to a server handler (queued; not acknowledged). Throws a TypeError for data
   * that cannot be sent (a BigInt, an object that contains itself), `frame_too_large`,
   * `queue_full`, or `closed` (or the error the client gave up with, e.g. `origin_not_allowed`).
   */
  emit(event: string, data?: unknown): void;
  /**
   * Call a server handler: its return value, or its error as a LadderError (a TypeError for data that cannot be sent).
   * The server applies a session's messages one at a time, in order: a handler that takes long (or never returns)
   * holds this client's later calls, emits and subscriptions until it does (with a SharedClient, every tab's: they
   * share one session).
   */
  call<R = any>(event: string, data?: unknown, options?: CallOptions): Promise<R>;
  /** Who is in a channel (with presence on). */
  presence(channel: string, options?: CallOptions): Promise<Member[]>;
  /**
   * New credentials for this session without reconnecting (with none: the client's own `token`;
   * a function is called). A client whose `token` is a function does this by itself.
   * Rejects with `unauthorized`, `token_expired` or `forbidden` (another user's token).
   */
  refresh(token?: string | null, options?: CallOptions): Promise<void>;
  /** Resolves once the server has acknowledged every message sent or queued so far (what `close()` would drop is then applied); rejects with `LadderError("timeout")` after `timeout` ms (the messages stay queued; null, the default: as long as it takes) and with the error the client ends with. A `SharedClient` waits for the shared connection's. */
  flush(options?: CallOptions): Promise<void>;
  /** The newest `limit` publications kept, oldest first; fewer when they would take more than half of the server's `lim.qbytes` (the newest that fit). */
  history<T = any>(channel: string, options?: { limit?: number } & CallOptions): Promise<Publication<T>[]>;
  /** Listen to an event; returns a function that removes the listener. */
  on<K extends keyof ClientEvents>(name: K, listener: (event: ClientEvents[K]) => void): () => void;
  /** Remove a listener `on` added (as the function `on` returned does); false when it was not listening. A listener added twice is one listener. An unknown name throws `TypeError`, as in `on`. */
  off<K extends keyof ClientEvents>(name: K, listener: (event: ClientEvents[K]) => void): boolean;
}

/** The Ladder client: one session kept alive across rungs, reconnects and sessions. */
export interface Client extends LadderClient {}
export declare class Client {
  constructor(url: string, options?: ClientOptions);
}

/**
 * A tab's side of a connection shared by the tabs of a browser (what `connect(url, options)` returns where `canShare` holds).
 * The API is the `Client`'s (not a subclass of it); subscriptions, calls and replies are this
 * tab's own. `queue_full` on `emit` arrives as an `error` event instead of being thrown.
 */
export interface SharedClient extends LadderClient {
  /** Always true: this client shares its connection. */
  readonly shared: true;
  /** How many tabs share the connection, this one included (0 until the worker said). */
  readonly tabs: number;
}
export declare class SharedClient {
  constructor(url: string, options?: ClientOptions);
}

/**
 * Whether `connect(url, options)` shares (unless `share: false`): the browser has SharedWorker
 * or BroadcastChannel, and Web Locks; the hub and client.js are on the page's origin; none
 * of `fetch`, `storage` (or the test hooks `clock`, `random`, `transportFactory`, `indexedDB`,
 * `locks`) is given; and `token` is not a function (a tab refreshing its own credentials keeps
 * a connection of its own).
 */
export declare function canShare(url: string, options: ClientOptions): boolean;

/** Create a client and start connecting; it reconnects by itself until `close()`. */
export declare function connect(url: string, options?: ClientOptions): Client | SharedClient;
