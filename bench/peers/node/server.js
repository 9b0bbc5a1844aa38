// The Node Socket.IO peer: the same handlers as bench/ladder_app.py and peers/psio_app.py.
//
//   node server.js PORT      (settings from BENCH_NODE: {"pingInterval": ms, "pingTimeout": ms,
//                             "recovery": true for connection state recovery, S8})
//
// The ws engine (the default) uses bufferutil for masking when it is installed; both
// permessage-deflate and HTTP compression are off. Modules resolve through NODE_PATH
// (bench/.peers/node/node_modules), set by the harness.
"use strict";

const { Server } = require("socket.io");

const port = Number(process.argv[2]);
const config = JSON.parse(process.env.BENCH_NODE || "{}");

// Make sure the fast path is really there: ws loads bufferutil lazily, by this very name.
require("bufferutil");

const io = new Server(port, {
  perMessageDeflate: false,
  httpCompression: false,
  cors: { origin: "*" },
  serveClient: false,
  transports: ["polling", "websocket"],
  pingInterval: config.pingInterval || 25000,
  pingTimeout: config.pingTimeout || 20000,
  // S8: Socket.IO's own answer to lost messages (its defaults: 2 min, middlewares skipped).
  ...(config.recovery ? { connectionStateRecovery: { maxDisconnectionDuration: 120000, skipMiddlewares: true } } : {}),
});

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack(true);
  });
  socket.on("pub", (m) => {
    io.to(m.ch).emit("msg", m.d);
  });
  socket.on("chat", (m) => {
    io.to(m.ch).emit("msg", m.d);
  });
  socket.on("rpc", (data, ack) => {
    if (typeof ack === "function") ack(data);
  });
  socket.on("hi", (data, ack) => {
    if (typeof ack === "function") ack("hi");
    else if (typeof data === "function") data("hi");
  });
});

process.on("SIGUSR2", () => {
  if (global.gc) global.gc();
});
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
