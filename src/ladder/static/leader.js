// @ts-check
/**
 * How a tab reaches the hub (`tabs.js`) that holds the shared connection, and stays with it
 * (its Web Lock, the page's lifecycle events): a `SharedWorker`
 * where the browser has one, otherwise a leader tab. The leader is elected with the Web Locks
 * API (the tab holding the lock named after the hub and options runs the hub in its page) and
 * the tabs talk to it over a `BroadcastChannel` of the same name. When the leader goes away —
 * closed, crashed, frozen — its lock passes to a waiting tab, which starts a hub of its own
 * and says so (`leader`); every tab then joins it again and follows its channels from where
 * each stood, so publications are neither lost nor doubled.
 */

import { Client, sharedOptions } from "./driver.js";
import { TabHub } from "./tabs.js";
import { reportLater } from "./subscription.js";
import { atMost } from "./clock.js";

/** @typedef {import("./driver.js").ClientOptions} ClientOptions */

/**
 * @typedef {object} Link
 * @property {(message: any) => void} post send a message to the hub
 * @property {() => void} close leave (a leader also hands over)
 * @property {"worker" | "leader"} kind
 */

/** ms a leader going away waits for its outbox to be written and let go before handing over. */
const HANDOVER_WAIT = 2000;

/** Options a tab cannot hand to a worker (functions and objects of the page): sharing is off with them. */
const LOCAL = ["fetch", "clock", "random", "transportFactory", "storage", "indexedDB", "locks"];

/**
 * Whether `connect(url, options)` can share: the browser has `SharedWorker` or
 * `BroadcastChannel`, and Web Locks; the hub and the client's modules are on the page's
 * origin; no option is a page's object; and `token` is not a function (the shared client
 * could not call it to refresh the credentials before they expire: such a tab keeps a
 * connection of its own, refreshed over its live session).
 * @param {string} url
 * @param {ClientOptions} options
 */
export function canShare(url, options) {
  if (typeof SharedWorker !== "function" && typeof BroadcastChannel !== "function") return false;
  if (typeof location === "undefined" || typeof navigator === "undefined" || !navigator.locks) return false;
  const given = /** @type {Record<string, unknown>} */ (options);
  if (LOCAL.some((name) => given[name] !== undefined)) return false;
  if (typeof given.token === "function") return false;
  const hub = new URL(url, location.href);
  return hub.origin === location.origin && new URL(import.meta.url).origin === location.origin;
}

/**
 * Reach the hub of `url` and `options` as tab `tab`: take a Web Lock named after the tab (held
 * until it leaves or dies: the hub's sign that it is gone), then link to the hub — its
 * SharedWorker, or the leader tab — and join it (`join` again whenever a new leader starts).
 * @param {string} url
 * @param {Record<string, unknown>} options the options the hub's client gets (no token)
 * @param {() => string | null | undefined} token
 * @param {string} tab
 * @param {{receive: (message: any) => void, join: (join: Record<string, any>) => void, linked: (link: Link, release: () => void) => boolean}} handlers
 *   `linked` is given the link and the lock's release, and says whether the tab still wants them
 */
export function reachHub(url, options, token, tab, { receive, join, linked }) {
  const lock = `ladder-tab ${tab}`;
  navigator.locks
    .request(lock, () => new Promise((release) => {
      const shared = { ...options, token: token() ?? null };
      // Named after the options as they apply: the same connection whatever their order, and
      // whether a default is given or left out.
      const name = `ladder ${JSON.stringify([url, { ...sharedOptions(options), token: shared.token }])}`;
      const again = () => join({ op: "join", tab, url, options: shared, lock });
      const done = () => release(undefined);
      // A worker that cannot start (its script refused by a Content-Security-Policy, or not
      // served) leaves the tabs to elect a leader instead.
      const elect = () => {
        if (linked(leaderLink(name, tab, receive, again), done)) again();
      };
      /** @type {Link | null} */
      let link = null;
      try {
        if (typeof SharedWorker === "function") {
          link = workerLink(name, receive, () => {
            link?.close();
            elect();
          });
        }
      } catch {
        link = null;
      }
      if (!link) elect();
      else if (linked(link, done)) again();
    }))
    .catch(reportLater);
}

/**
 * The hub in a SharedWorker (`worker.js`).
 * @param {string} name the worker's name: tabs with the same hub and options share it
 * @param {(message: any) => void} receive
 * @param {() => void} failed the worker could not start
 * @returns {Link}
 */
export function workerLink(name, receive, failed) {
  const worker = new SharedWorker(new URL("./worker.js", import.meta.url), { type: "module", name });
  worker.onerror = failed;
  const port = worker.port;
  port.onmessage = (event) => receive(event.data);
  port.start();
  return { kind: "worker", post: (message) => port.postMessage(message), close: () => port.close() };
}

/**
 * The hub in whichever tab holds the leader lock (this one, maybe later).
 * @param {string} name
 * @param {string} tab this tab's id
 * @param {(message: any) => void} receive
 * @param {() => void} newLeader a new hub started: join it again
 * @returns {Link}
 */
export function leaderLink(name, tab, receive, newLeader) {
  const channel = new BroadcastChannel(name);
  const lockName = `${name} leader`;
  /** @type {TabHub | null} the hub, while this tab leads */
  let hub = null;
  /** @type {(() => void) | null} */
  let abdicate = null;
  let closed = false;
  let frozen = false;
  /** @type {Map<string, {postMessage: (message: any) => void}>} */
  const ports = new Map();

  /** @param {string} id */
  const portOf = (id) => {
    let port = ports.get(id);
    if (!port) {
      port =
        id === tab
          ? { postMessage: (/** @type {any} */ m) => queueMicrotask(() => receive(m)) }
          : { postMessage: (/** @type {any} */ m) => channel.postMessage({ ...m, to: id }) };
      ports.set(id, port);
    }
    return port;
  };

  /** @type {(() => void) | null} the leader answered this tab's `alive?` */
  let answered = null;
  channel.onmessage = (event) => {
    const message = event.data;
    if (message.to === "*") {
      if (message.op === "leader") {
        answered?.(); // a leader that just started is alive: no need to take over
        newLeader();
      }
      else if (message.tabs?.includes(tab)) receive(message);
    } else if (message.op === "alive?") {
      if (hub) channel.postMessage({ op: "alive", to: message.from });
    } else if (message.to === tab) {
      if (message.op === "alive") answered?.();
      else receive(message);
    } else if (hub && message.to === undefined && message.tab) hub.receive(portOf(message.tab), message);
  };

  /** @param {{granted: boolean}} held */
  const lead = (held) =>
    new Promise((resolve) => {
      if (closed || frozen) {
        resolve(undefined);
        return;
      }
      held.granted = true;
      abdicate = () => resolve(undefined);
      hub = new TabHub((url, options) => new Client(url, options), (message, tabs) => {
        channel.postMessage({ ...message, to: "*", tabs });
        if (tabs.includes(tab)) portOf(tab).postMessage(message);
      });
      channel.postMessage({ op: "leader", to: "*" });
      newLeader();
    });
  const stepDown = () => {
    const leading = hub;
    hub = null;
    const released = leading?.stop();
    const letGo = abdicate;
    abdicate = null;
    if (!letGo) return;
    // The next leader takes over the messages this one could not send only once this one's
    // outbox lock is free: hand over after it (bounded, should IndexedDB hang). A tab
    // freezing hands over at once (its timers stop; the others would steal the lock anyway).
    if (!released || frozen) letGo();
    else atMost(released, HANDOVER_WAIT).then(letGo);
  };
  /** @type {AbortController | null} */
  let candidacy = null;
  /** @param {boolean} [steal] take the lock from a leader that stopped answering */
  const stand = (steal = false) => {
    candidacy?.abort();
    candidacy = steal ? null : new AbortController();
    const options = steal ? { steal: true } : { signal: /** @type {AbortController} */ (candidacy).signal };
    const held = { granted: false };
    navigator.locks.request(lockName, options, () => lead(held)).catch(() => {
      if (!held.granted) return; // withdrawn before it was granted
      // Stolen: this tab led while it was frozen, and another took over. Follow it.
      stepDown();
      if (closed || frozen) return;
      stand();
      newLeader();
    });
  };
  stand();

  // A frozen leader runs no code, and holds every tab's connection hostage. It steps down when
  // told (`freeze`); when it is not, a visible tab notices that the leader no longer answers
  // (`alive?`, answered from the message handler) and takes the lock from it (`steal`).
  const CHECK = 2000;
  const ANSWER = 3000;
  const check = () => {
    if (closed || frozen || hub || answered || (typeof document !== "undefined" && document.visibilityState !== "visible")) return;
    const timer = setTimeout(() => {
      answered = null;
      if (!closed && !frozen && !hub) stand(true);
    }, ANSWER);
    answered = () => {
      clearTimeout(timer);
      answered = null;
    };
    channel.postMessage({ op: "alive?", from: tab });
  };
  const watch = setInterval(check, CHECK * (1 + Math.random() / 2));
  const onFreeze = () => {
    frozen = true;
    candidacy?.abort();
    candidacy = null;
    stepDown();
  };
  const onResume = () => {
    frozen = false;
    if (closed) return;
    stand();
    newLeader();
  };
  if (typeof document !== "undefined") {
    document.addEventListener("freeze", onFreeze);
    document.addEventListener("resume", onResume);
  }

  return {
    kind: "leader",
    post(message) {
      // (a leave dropping this tab's unsent messages at once: a leader closing steps down
      // right after, and its hub with it)
      if (hub && message.op === "leave" && message.drop) hub.receive(portOf(tab), message);
      else if (hub) queueMicrotask(() => hub?.receive(portOf(tab), message));
      else channel.postMessage(message);
    },
    close() {
      closed = true;
      clearInterval(watch);
      candidacy?.abort();
      stepDown();
      channel.close();
      if (typeof document !== "undefined") {
        document.removeEventListener("freeze", onFreeze);
        document.removeEventListener("resume", onResume);
      }
    },
  };
}

/**
 * The page's events reach the shared connection: the network is back or a person looks at the
 * tab (`wake`); a page going away leaves at once (`close`); one entering the back/forward
 * cache leaves (`hide`) and joins again when shown (`show`), following its channels from
 * where they stood. Returns the functions that remove the listeners.
 * @param {{wake: (why: string) => void, close: () => void, hide: () => void, show: () => void}} page
 * @returns {(() => void)[]}
 */
export function hookPage({ wake, close, hide, show }) {
  /** @type {(() => void)[]} */
  const unhook = [];
  /**
   * @param {EventTarget} target
   * @param {string} name
   * @param {(event: any) => void} handler
   */
  const hook = (target, name, handler) => {
    target.addEventListener(name, handler);
    unhook.push(() => target.removeEventListener(name, handler));
  };
  hook(window, "online", () => wake("the network came back"));
  hook(window, "offline", () => wake("the network went away"));
  hook(document, "visibilitychange", () => {
    if (document.visibilityState === "visible") wake("the tab became visible");
  });
  hook(window, "pagehide", (event) => (event.persisted ? hide() : close()));
  hook(window, "pageshow", (event) => {
    if (event.persisted) show();
  });
  return unhook;
}
