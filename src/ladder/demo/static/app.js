// The demo chat: rooms, presence, history on joining, typing, and a badge that shows the
// ladder moving. Everything real-time goes through Ladder's browser client.
import { connect } from "/ladder/client.js";

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.search);
const NAMES = { websocket: "WebSocket", sse: "SSE", longpoll: "Long polling", poll: "Polling" };
const ROOM = /^[a-z0-9-]{1,32}$/;
const NICK = /^[\p{L}\p{N}_ .-]{1,24}$/u; // the server's rule (app.py): letters and digits of any script
const NICK_RULE = "1 to 24 letters, digits, spaces, _ . or -";
const KEEP = 500; // messages shown at most: older ones leave the page, which stays light

// -- who and where ------------------------------------------------------------------------------

function browserId() {
  // The network panel's blocks apply to requests carrying this cookie (see NetworkPanel in netpanel.py).
  const found = document.cookie.match(/(?:^|; )ladder-net=([^;]+)/);
  if (found) return found[1];
  const id = crypto.randomUUID?.() ?? String(Math.random()).slice(2);
  document.cookie = `ladder-net=${id}; path=/; SameSite=Strict`;
  return id;
}

async function askNickname() {
  const dialog = $("#join");
  const input = $("#nick");
  // Escape would close the dialog and leave the page waiting for a name for good.
  dialog.addEventListener("cancel", (event) => event.preventDefault());
  input.addEventListener("input", () => {
    const name = input.value.trim();
    input.setCustomValidity(!name ? "a name needs a letter or a digit" : NICK.test(name) ? "" : NICK_RULE);
  });
  dialog.showModal();
  input.focus();
  // (On "close", not "submit": closing gives the focus back to where it was, the page's body.)
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  $("#text").focus(); // ready to type a message
  return input.value.trim();
}

browserId();
const nick = params.get("nick") || localStorage.getItem("ladder-demo-nick") || (await askNickname());
localStorage.setItem("ladder-demo-nick", nick);
$("#me").textContent = nick;
$("#rename").addEventListener("click", () => {
  // Load the page again, without a ?nick=, so that it asks (the room in the URL stays).
  localStorage.removeItem("ladder-demo-nick");
  const url = new URL(location.href);
  url.searchParams.delete("nick");
  history.replaceState(null, "", url);
  location.reload();
});

// Client options can come from the URL, for experiments and tests: ?transports=sse,longpoll&probe=500
// The tabs of this browser share one connection (&share=0: one per tab).
const options = { token: nick, share: params.get("share") !== "0" };
if (params.get("transports")) options.transports = params.get("transports").split(",");
if (params.get("probe")) options.probeDelay = Number(params.get("probe"));
if (params.get("verify")) options.verifyTimeout = Number(params.get("verify"));

const client = connect("/ladder", options);

// -- the badge and the event log -------------------------------------------------------------------

function log(text, kind = "") {
  const item = document.createElement("li");
  item.className = kind;
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  item.append(time, " ", text);
  const list = $("#log");
  list.prepend(item);
  while (list.children.length > 40) list.lastChild.remove();
}

// The client's reasons are precise but terse; the badge says what they mean for a person. An
// SSE stream that opened but delivered nothing (not even the pong of its proof) is what a
// buffering proxy does; "not proven" alone may also be a slow stream, unless this page's own
// network panel is buffering streams.
const bufferingOn = () => document.querySelector('[data-block="buffered"]')?.checked === true;
const PLAIN = [
  [
    /^sse: not proven within (.+)$/,
    (m) =>
      bufferingOn()
        ? `sse: a proxy buffers the event stream (nothing came through within ${m[1]})`
        : `sse: nothing came through within ${m[1]} (a proxy may be buffering the event stream)`,
  ],
  [/^sse: stream buffered by something on the way \((.+)\)$/, (m) => `sse: a proxy buffers the event stream (${m[1]})`],
];

function inWords(reason) {
  return reason
    .split("; ")
    .map((part) => {
      for (const [pattern, say] of PLAIN) {
        const match = part.match(pattern);
        if (match) return say(match);
      }
      return part;
    })
    .join("; ");
}

function showBadge() {
  const badge = $("#badge");
  const rung = client.transport;
  badge.dataset.rung = rung ?? "none";
  $("#badge-rung").textContent = rung ? NAMES[rung] : client.state === "closed" ? "closed" : "reconnecting…";
  const change = client.lastChange;
  $("#badge-why").textContent = inWords(rung ? (change?.reason ?? "") : (client.lastFailure ?? ""));
  for (const item of document.querySelectorAll("#ladder li")) {
    item.classList.toggle("active", item.dataset.rung === rung);
    item.classList.toggle("unused", !client.rungs.includes(item.dataset.rung));
  }
}

client.on("transport", (e) => {
  log(`${e.old ? `${NAMES[e.old]} → ` : ""}${NAMES[e.new]}: ${e.reason}`, "change");
  showBadge();
});
client.on("open", (e) => log(`connected on ${NAMES[e.transport]}${e.resumed ? " (session resumed)" : ""}`));

// Messages the page before a reload could not send go out first from this one (the client takes
// them over before it connects, offline too): shown as being sent until their room shows them.
client.persisted().then(() => {
  for (const message of client.restoredMessages) {
    const data = message.data ?? {};
    if (message.event === "chat.send" && typeof data.text === "string") sending(data.room, data.text, data.id);
  }
  if (client.restored) log(`sending ${client.restored} message${client.restored > 1 ? "s" : ""} left by the page before`);
});
client.on("close", (e) => log(`disconnected: ${e.reason}`, "bad"));
client.on("state", () => showBadge());
client.on("probe", (e) => log(`probe ${NAMES[e.rung]}: ${e.ok ? "works" : e.reason}`, e.ok ? "" : "bad"));
client.on("session_lost", (e) => log(`new session (${e.reason})`, "bad"));
client.on("resubscribed", (e) => log(`resubscribed to ${e.channel}${e.recovered ? ", nothing missed" : ""}`));
client.on("resync", (e) => {
  if (e.channel.startsWith("typing:")) return; // keeps no history: nothing was lost
  log(`${e.channel}: history lost, refetching`, "bad");
  if (e.channel === `room:${current?.room}`) refetch(current, e.epoch);
});
client.on("error", (e) => log(`server: ${e.code} ${e.reason}`, "bad"));
client.on("tabs", (e) => showTabs(e.count));
showBadge();

function showTabs(count) {
  // How many tabs of this browser share the connection (the client shares when it can).
  const shown = $("#badge-tabs");
  shown.hidden = !client.shared;
  shown.textContent = count === 1 ? "1 tab" : `${count} tabs`;
  shown.title = `one connection shared by ${shown.textContent} of this browser`;
}

// -- rooms, messages, presence, typing -------------------------------------------------------------

const rooms = JSON.parse(localStorage.getItem("ladder-demo-rooms") || '["lobby", "random"]');
let current = null; // { room, sub, typing, refetching }
const members = new Map(); // public session id -> nick
const typers = new Map(); // nick -> when
const pending = new Set(); // outgoing messages not yet seen in the room

function renderRooms() {
  const list = $("#rooms");
  list.replaceChildren(
    ...rooms.map((room) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = `#${room}`;
      link.textContent = `#${room}`;
      link.className = room === current?.room ? "current" : "";
      item.append(link);
      return item;
    }),
  );
}

function renderMembers() {
  const nicks = [...new Set(members.values())].sort((a, b) => a.localeCompare(b));
  $("#members").replaceChildren(
    ...nicks.map((name) => {
      const item = document.createElement("li");
      item.textContent = name;
      if (name === nick) item.className = "self";
      return item;
    }),
  );
  $("#member-count").textContent = nicks.length ? String(nicks.length) : "";
}

async function refreshPresence(room) {
  try {
    const list = await client.presence(`room:${room}`, { timeout: null });
    if (current?.room !== room) return;
    members.clear();
    for (const member of list) members.set(member.c, member.info?.nick ?? member.u);
    renderMembers();
  } catch (error) {
    log(`presence: ${error.message}`, "bad");
  }
}

function scrolledDown() {
  const scroller = $("#scroller");
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

function scrollDown() {
  const scroller = $("#scroller");
  scroller.scrollTop = scroller.scrollHeight;
}

function messageItem(name, text, when) {
  const item = document.createElement("li");
  item.className = name === nick ? "msg mine" : "msg";
  const head = document.createElement("div");
  head.className = "meta";
  const who = document.createElement("b");
  who.textContent = name;
  const time = document.createElement("time");
  time.textContent = when;
  head.append(who, time);
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  item.append(head, body);
  return item;
}

// The list shows a room's messages in channel order, each once, with their position: offsets
// count within an epoch, and a new epoch (the channel's history lost) starts them over.
function show(pub) {
  const list = $("#messages");
  let before = list.lastElementChild;
  while (before && before.dataset.epoch === pub.epoch && Number(before.dataset.offset) >= pub.offset) {
    if (Number(before.dataset.offset) === pub.offset) {
      delete before.dataset.stale; // shown already, and still in the room's history
      return;
    }
    before = before.previousElementSibling;
  }
  const { nick: name, text, ts, id } = pub.data;
  for (const mine of pending) {
    if (id !== undefined && mine.id === id) {
      mine.item.remove(); // sent by this page or, before a reload, by the one it replaced
      pending.delete(mine);
    }
  }
  const item = messageItem(name, text, new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  item.dataset.epoch = pub.epoch;
  item.dataset.offset = String(pub.offset);
  if (before) before.after(item);
  else list.prepend(item);
  if (list.children.length > KEEP) {
    list.firstElementChild.remove();
    $("#older").hidden = false;
  }
}

// A message being sent shows "sending…" until its room's list has reached its position (within
// its epoch: offsets of two epochs say nothing of each other). One not answered yet has no
// position, and an empty list has reached none.
function settle() {
  const newest = $("#messages").lastElementChild;
  if (!newest) return;
  for (const mine of pending) {
    const reached = mine.epoch === newest.dataset.epoch && mine.offset <= Number(newest.dataset.offset);
    if (mine.room === current?.room && reached) {
      mine.item.remove();
      pending.delete(mine);
    }
  }
}

function onMessage(pub) {
  const stick = scrolledDown();
  show(pub);
  if ($("#room-status").textContent === "a new room") $("#room-status").textContent = "";
  typers.delete(pub.data.nick);
  renderTyping();
  settle();
  if (stick) scrollDown();
}

function fromHistory(count) {
  return count ? `${count} earlier message${count > 1 ? "s" : ""} from history` : "a new room";
}

// The room's history was lost (the server restarted on the memory engine; or this page was away
// longer than the history reaches): show the room as the server has it now, as a reload would.
// What is shown meanwhile stays until the answer; what arrives meanwhile is kept.
async function refetch(room, epoch) {
  const asked = (room.refetching = {});
  for (const item of $("#messages").children) item.dataset.stale = "";
  $("#room-status").textContent = "history lost: refetching…";
  let pubs;
  try {
    pubs = await client.history(`room:${room.room}`, { limit: 50, timeout: null });
  } catch (error) {
    if (room.refetching === asked) $("#room-status").textContent = `could not refetch: ${error.message}`;
    return;
  }
  if (current !== room || room.refetching !== asked) return; // another room, or a later refetch
  const stick = scrolledDown();
  const kept = pubs.filter((pub) => pub.epoch === epoch);
  for (const pub of kept) show(pub);
  for (const item of $("#messages").querySelectorAll("[data-stale]")) item.remove();
  $("#older").hidden = true;
  for (const mine of pending) {
    if (mine.room === room.room && mine.epoch !== undefined && mine.epoch !== epoch) {
      mine.item.remove(); // published in the history that is gone
      pending.delete(mine);
    }
  }
  settle();
  $("#room-status").textContent = fromHistory(kept.length);
  if (stick) scrollDown();
}

function renderTyping() {
  const now = Date.now();
  for (const [name, when] of typers) if (now - when > 3000) typers.delete(name);
  const names = [...typers.keys()];
  $("#typing").textContent = names.length
    ? `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`
    : "";
}
setInterval(renderTyping, 1000);

function join(room) {
  if (current?.room === room) return;
  if (current) {
    current.sub.unsubscribe();
    current.typing.unsubscribe();
  }
  if (!rooms.includes(room)) {
    rooms.push(room);
    localStorage.setItem("ladder-demo-rooms", JSON.stringify(rooms));
  }
  $("#messages").replaceChildren();
  $("#older").hidden = true;
  members.clear();
  typers.clear();
  renderMembers();
  renderTyping();
  $("#room-title").textContent = `#${room}`;
  $("#text").placeholder = `Message #${room}`;
  $("#room-status").textContent = "joining…";
  // History on joining: the subscription asks for the newest 50 kept, delivered before live ones.
  const sub = client.subscribe(`room:${room}`, onMessage, { recent: 50 });
  const typing = client.subscribe(`typing:${room}`, (pub) => {
    if (pub.data.nick === nick) return;
    typers.set(pub.data.nick, Date.now());
    renderTyping();
  });
  current = { room, sub, typing, refetching: null };
  renderRooms();
  sub.ready().then(
    (result) => {
      if (current?.sub !== sub) return;
      $("#room-status").textContent = fromHistory(result.missed);
      scrollDown();
      refreshPresence(room);
    },
    (error) => ($("#room-status").textContent = `could not join: ${error.message}`),
  );
}

client.on("presence", (e) => {
  if (e.channel !== `room:${current?.room}`) return;
  if (e.kind === "join") members.set(e.member.c, e.member.info?.nick ?? e.member.u);
  else members.delete(e.member.c);
  renderMembers();
});
client.on("resubscribed", (e) => {
  if (e.channel === `room:${current?.room}`) refreshPresence(current.room);
});

// Each message carries an id the room's copy shows again: a message a reload carried over (its
// answer went with the old page) is recognised by it.
function sending(room, text, id) {
  const item = messageItem(nick, text, "sending…");
  item.classList.add("pending");
  $("#outbox").append(item);
  scrollDown();
  const mine = { item, room, id };
  pending.add(mine);
  return mine;
}

function send(text) {
  const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  const mine = sending(current.room, text, id);
  const { item } = mine;
  // No timeout: while offline the message waits in the client's queue and goes out on reconnect.
  const sent = client.call("chat.send", { room: current.room, text, id }, { timeout: null });
  sent.then(
    ({ epoch, offset }) => {
      Object.assign(mine, { epoch, offset });
      settle();
    },
    (error) => {
      item.classList.replace("pending", "failed");
      item.querySelector("time").textContent = `not sent: ${error.reason || error.code}`;
      pending.delete(mine);
    },
  );
  return sent;
}

$("#composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("#text");
  const text = input.value.trim();
  if (!text && input.value) {
    // Kept as typed, and said why (a message of spaces alone is nothing to send).
    input.setCustomValidity("a message needs more than spaces");
    input.reportValidity();
    return;
  }
  if (!text || !current) return;
  input.value = "";
  send(text);
});

let lastTyping = 0;
$("#text").addEventListener("input", () => {
  $("#text").setCustomValidity("");
  // Typing is ephemeral: not worth queueing while disconnected.
  if (!current || client.state !== "connected" || Date.now() - lastTyping < 2000) return;
  lastTyping = Date.now();
  client.emit("chat.typing", { room: current.room });
});

$("#new-room").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("#new-room-name");
  const room = input.value.trim().toLowerCase();
  if (!ROOM.test(room)) return;
  input.value = "";
  location.hash = room;
});

function roomFromHash() {
  const room = decodeURIComponent(location.hash.slice(1));
  return ROOM.test(room) ? room : params.get("room") || "lobby";
}
window.addEventListener("hashchange", () => join(roomFromHash()));
join(roomFromHash());

// -- the network panel -------------------------------------------------------------------------------

const switches = [...document.querySelectorAll("[data-block]")];

function showBlocks(blocked) {
  for (const input of switches) input.checked = blocked.includes(input.dataset.block);
  const offline = blocked.includes("offline");
  for (const item of document.querySelectorAll("#ladder li")) {
    const rung = item.dataset.rung;
    const hit =
      offline ||
      (rung === "websocket" && blocked.includes("websocket")) ||
      (rung === "sse" && (blocked.includes("sse") || blocked.includes("buffered")));
    item.classList.toggle("blocked", hit);
  }
}

async function setBlocks(blocked) {
  const response = await fetch("/net", { method: "POST", body: JSON.stringify({ block: blocked }) });
  const { block } = await response.json();
  showBlocks(block);
  return block;
}

for (const input of switches) {
  input.addEventListener("change", async () => {
    const blocked = switches.filter((s) => s.checked).map((s) => s.dataset.block);
    log(blocked.length ? `network: ${blocked.join(", ")}` : "network: all clear");
    await setBlocks(blocked);
    // A browser fires `online` when its network comes back; the client reconnects at once on it.
    if (input.dataset.block === "offline" && !input.checked) window.dispatchEvent(new Event("online"));
  });
}
fetch("/net")
  .then((response) => response.json())
  .then(({ block }) => showBlocks(block));

let bursts = 0;
$("#burst").addEventListener("click", () => {
  bursts += 1;
  for (let n = 1; n <= 10; n++) send(`burst ${bursts}: ${n}/10`);
});

// For the curious (and for the browser tests): the client and a few helpers.
window.demo = {
  client,
  join,
  send,
  setBlocks,
  messages: () =>
    [...document.querySelectorAll("#messages li")].map((li) => ({
      epoch: li.dataset.epoch,
      offset: Number(li.dataset.offset),
      nick: li.querySelector(".meta b").textContent,
      text: li.querySelector(".text").textContent,
    })),
};
