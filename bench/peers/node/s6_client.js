// S6: socket.io-client's time to first message.
//
//   node s6_client.js URL CAP_SECONDS tryall|default
//
// tryall:  transports ["websocket", "polling"] with tryAllTransports (socket.io-client 4.8+):
//          WebSocket first, and on a transport error the next transport.
// default: the library's defaults (HTTP long-polling first, then upgrade to WebSocket).
// The clock starts just before io() and stops when the ack of emit("hi") arrives.
// Prints "ready", waits for a line on stdin, then prints one JSON line: {"ms": ..., "transport": ...} or {"ms": null, "error": ...}.
"use strict";

const { io } = require("socket.io-client");

const [url, capArg, mode] = process.argv.slice(2);
const cap = Number(capArg) * 1000;
const options = mode === "tryall" ? { transports: ["websocket", "polling"], tryAllTransports: true } : {};

let done = false;
function finish(result) {
  if (done) return;
  done = true;
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));
}

function start() {
  const t0 = performance.now();
  const socket = io(url, { ...options, forceNew: true, reconnection: true });
  socket.on("connect", async () => {
    try {
      await socket.timeout(cap).emitWithAck("hi");
      finish({ ms: performance.now() - t0, transport: socket.io.engine.transport.name });
    } catch (err) {
      finish({ ms: null, error: String(err) });
    }
  });
  setTimeout(() => finish({ ms: null, error: `no reply within ${cap / 1000} s` }), cap);
}

// Modules are loaded: say so, and start when the harness says go (all clients at once).
process.stdout.write("ready\n");
process.stdin.once("data", () => {
  process.stdin.pause();
  start();
});
