// S10 with a load generator in Node (`ws`): paced fan-out and RPC against one running server.
//
//   node paced.cjs '{"kind": "ladder"|"node", "port": P, "pid": PID, "core": 0, "subs": 1000,
//                   "rate": 20, "warmup": 22, "window": 24, "callers": 100, "rpcWarmup": 1,
//                   "rpcWindow": 2, "encoding": "json"|"msgpack"}'
//
// "acks": false makes Ladder's clients never acknowledge (nor pong): not a client anyone
// should write (the server's queue grows until the session is dropped), only a measure of
// what the acknowledgements cost the generator and the server within a short window.
//
// Prints one JSON line: {"fanout": {...}, "rpc": {...}}. bench/paced.py runs it (BENCH_LG=node)
// beside the Python load generator: a Node client reads a WebSocket message for a fraction
// of what the Python one spends, so the latencies it measures are more the server's own.
// Ladder's clients speak JSON text frames as the browser client does, or with "encoding":
// "msgpack" binary frames as the Python client does by default (msgpackr, the fastest msgpack
// codec in JavaScript: it reads a delivery in 0.42 µs where @msgpack/msgpack took 1.09 µs and
// JSON.parse 0.53 µs; a batch is maps one after the other) — hello, sub, ack after 256-512 frames or 1 s of quiet, pongs; Socket.IO's
// speak Engine.IO 4 over a raw WebSocket (open, namespace connect, a join event with an ack,
// pongs), as in bench/lg/clients.py.
"use strict";

const fs = require("fs");
const WebSocket = require("ws");
const { Packr, Unpackr } = require("msgpackr");

const cfg = JSON.parse(process.argv[2]);
const MSGPACK = cfg.encoding === "msgpack";
// The count of unacknowledged frames acked at once, drawn from [256, 512] as the clients draw
// it (again after each such ack); the welcome's lim bounds never bind on 100 B frames.
const drawAckAt = () => Math.ceil(256 + Math.random() * 256);
// One each, reused, as a client keeps its codec; plain maps (msgpackr's record extension is
// not msgpack that a Ladder server reads).
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
const packr = new Packr({ useRecords: false });
const now = () => performance.now() / 1000; // seconds, this process's clock
const PAD = "x".repeat(Math.max(0, 100 - JSON.stringify({ ts: 12345.678901234, n: 10000, pad: "" }).length));
const payload = (n) => ({ ts: now(), n, pad: PAD });

const stats = { delivered: 0, lat: [], spread: new Map() };

// The clients with frames to acknowledge once the stream has been quiet for 1 s. The clients'
// rule, kept for all of them by one sweep every 50 ms rather than a timer each: 1,000 timers
// that fire every second of a steady stream (never quiet) and arm themselves again cost this
// process about 0.3 us per delivery, which a client alone in its browser never pays. A frame
// notes the sweep's count rather than the time (a clock read per delivery, which Socket.IO's
// unsampled clients below never make), so "quiet" is 21 sweeps with nothing heard: 1.00-1.05 s.
const SWEEP_MS = 50;
const QUIET_SWEEPS = Math.ceil(1000 / SWEEP_MS) + 1;
const QUIET = new Set();
let sweeps = 0;
setInterval(() => {
  sweeps += 1;
  for (const client of QUIET) if (sweeps - client.heard >= QUIET_SWEEPS) client.send([client.ack()]);
}, SWEEP_MS).unref();

// Per publication (by its n): when the first and the last subscriber got it.
function arrived(d, t) {
  const seen = stats.spread.get(d.n);
  if (seen === undefined) stats.spread.set(d.n, [d.ts, t, t]);
  else seen[2] = t;
}

class LadderClient {
  constructor(sample) {
    this.sample = sample;
    this.nextI = 1;
    this.lastS = 0;
    this.ackedS = 0;
    this.ackAt = drawAckAt();
    this.waiting = new Map();
  }
  open() {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(`ws://127.0.0.1:${cfg.port}/ws`, { perMessageDeflate: false });
      this.ws.on("open", () => this.send([{ t: "hello", v: 1 }]));
      this.ws.on("error", reject);
      this.welcome = resolve;
      this.ws.on("message", MSGPACK ? (data) => this.binary(data) : (data) => this.message(data.toString()));
    });
  }
  binary(data) {
    this.t0 = 0;
    this.pong = false;
    unpackr.unpackMultiple(data, (f) => this.frame(f));
    this.after();
  }
  // One WebSocket message: its frames one per line (most often one), read without building
  // arrays of lines or frames, as lean as SioClient's reading of a packet.
  message(text) {
    this.t0 = 0;
    this.pong = false;
    let start = 0;
    let nl;
    while ((nl = text.indexOf("\n", start)) >= 0) {
      this.frame(JSON.parse(text.slice(start, nl)));
      start = nl + 1;
    }
    this.frame(JSON.parse(start ? text.slice(start) : text));
    this.after();
  }
  after() {
    if (cfg.acks === false) return; // measures what the acks cost (no client should do this)
    const pending = this.lastS - this.ackedS;
    const due = pending >= this.ackAt;
    if (due) this.ackAt = drawAckAt();
    if (due || (pending && this.pong)) this.send(this.pong ? [{ t: "pong" }, this.ack()] : [this.ack()]);
    else if (this.pong) this.send([{ t: "pong" }]);
    else if (pending) {
      this.heard = sweeps;
      QUIET.add(this);
    }
  }
  frame(f) {
    const s = f.s;
    if (s !== undefined) {
      if (s <= this.lastS) return;
      this.lastS = s;
      if (f.t === "pub") {
        stats.delivered += 1;
        if (this.sample || cfg.spread) {
          const t = this.t0 || (this.t0 = now());
          if (this.sample) stats.lat.push(t - f.d.ts);
          if (cfg.spread) arrived(f.d, t);
        }
      } else if (f.t === "reply" || f.t === "err") {
        const callback = this.waiting.get(f.re);
        if (callback) {
          this.waiting.delete(f.re);
          callback(f.d);
        }
      }
    } else if (f.t === "ping") this.pong = true;
    else if (f.t === "welcome") this.welcome();
  }
  ack() {
    QUIET.delete(this);
    this.ackedS = this.lastS;
    return { t: "ack", s: this.lastS };
  }
  send(frames) {
    if (MSGPACK) {
      this.ws.send(frames.length === 1 ? packr.pack(frames[0]) : Buffer.concat(frames.map((f) => packr.pack(f))));
      return;
    }
    let text = JSON.stringify(frames[0]);
    for (let i = 1; i < frames.length; i += 1) text += "\n" + JSON.stringify(frames[i]);
    this.ws.send(text);
  }
  submit(frame, callback) {
    frame.i = this.nextI++;
    if (callback) this.waiting.set(frame.i, callback);
    this.send(this.lastS > this.ackedS ? [frame, this.ack()] : [frame]);
  }
  join(channel) {
    return new Promise((resolve) => this.submit({ t: "sub", ch: channel }, resolve));
  }
  emit(ev, d) {
    this.submit({ t: "emit", ev, d });
  }
  call(ev, d, callback) {
    this.submit({ t: "call", ev, d }, callback);
  }
  close() {
    QUIET.delete(this);
    this.ws.terminate();
  }
}

class SioClient {
  constructor(sample) {
    this.sample = sample;
    this.nextId = 0;
    this.waiting = new Map();
  }
  open() {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(`ws://127.0.0.1:${cfg.port}/socket.io/?EIO=4&transport=websocket`, {
        perMessageDeflate: false,
      });
      this.ws.on("error", reject);
      this.ws.on("message", (data) => {
        const p = data.toString();
        const c = p[0];
        if (c === "4") {
          const kind = p[1];
          if (kind === "2") {
            stats.delivered += 1;
            // Every event is decoded, as socket.io-client's parser does (and as every Ladder
            // frame is read above); only the sampled clients also note when it came.
            const d = JSON.parse(p.slice(2))[1];
            if (this.sample || cfg.spread) {
              const t = now();
              if (this.sample) stats.lat.push(t - d.ts);
              if (cfg.spread) arrived(d, t);
            }
          } else if (kind === "3") {
            let j = 2;
            while (p.charCodeAt(j) >= 48 && p.charCodeAt(j) <= 57) j += 1;
            const id = Number(p.slice(2, j));
            const callback = this.waiting.get(id);
            if (callback) {
              this.waiting.delete(id);
              callback(JSON.parse(p.slice(j))[0]);
            }
          } else if (kind === "0") resolve();
        } else if (c === "2") this.ws.send("3");
        else if (c === "0") this.ws.send("40");
      });
    });
  }
  join(channel) {
    return new Promise((resolve) => this.call("join", channel, resolve));
  }
  emit(ev, d) {
    this.ws.send("42" + JSON.stringify([ev, d]));
  }
  call(ev, d, callback) {
    const id = this.nextId++;
    this.waiting.set(id, callback);
    this.ws.send("42" + id + JSON.stringify([ev, d]));
  }
  close() {
    this.ws.terminate();
  }
}

const Client = cfg.kind === "ladder" ? LadderClient : SioClient;
const sleep = (s) => new Promise((resolve) => setTimeout(resolve, s * 1000));
const TICK = 100; // USER_HZ: /proc counts CPU time in 1/100 s

function serverTicks() {
  const stat = fs.readFileSync(`/proc/${cfg.pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

function coreBusy() {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n").find((l) => l.startsWith(`cpu${cfg.core} `));
  const v = line.split(/\s+/).slice(1).map(Number);
  return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]; // user nice system irq softirq steal
}

function window() {
  const start = { t: now(), server: serverTicks(), core: coreBusy(), lg: process.cpuUsage() };
  return () => {
    const elapsed = now() - start.t;
    const lg = process.cpuUsage(start.lg);
    const server = (serverTicks() - start.server) / TICK;
    const other = Math.max(0, (coreBusy() - start.core) / TICK - server);
    return { elapsed, serverCpu: server, otherOnServerCore: other / elapsed, lgCpu: (lg.user + lg.system) / 1e6 };
  };
}

function spreads() {
  const first = [];
  const last = [];
  for (const [ts, a, b] of stats.spread.values()) {
    first.push(a - ts);
    last.push(b - ts);
  }
  const ms = (v) => +(quantile(v.sort((x, y) => x - y), 0.5) * 1000).toFixed(3);
  return { first_ms: ms(first), last_ms: ms(last) };
}

function quantile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function main() {
  const pub = new Client(false);
  await pub.open();
  const clients = [];
  for (let i = 0; i < cfg.subs; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(cfg.subs, i + 50); j += 1) {
      const client = new Client(j % 10 === 0);
      clients.push(client);
      batch.push(client.open().then(() => client.join("bench")));
    }
    await Promise.all(batch);
  }
  await sleep(1.0);

  // Paced fan-out: evenly spaced publications; warm-up, then the measured window.
  let sent = 0;
  let windowSent = 0;
  const interval = 1000 / cfg.rate;
  let running = true;
  const started = performance.now();
  const pace = () => {
    if (!running) return;
    pub.emit("pub", { ch: "bench", d: payload(sent) });
    sent += 1;
    windowSent += 1;
    setTimeout(pace, Math.max(0, started + sent * interval - performance.now()));
  };
  pace();
  await sleep(cfg.warmup);
  stats.delivered = 0;
  stats.lat = [];
  stats.spread.clear();
  windowSent = 0;
  const fanWindow = window();
  await sleep(cfg.window);
  running = false;
  const fan = fanWindow();
  const delivered = stats.delivered;
  const lat = stats.lat.slice().sort((a, b) => a - b);
  const expected = windowSent * clients.length;
  await sleep(1.0);

  // RPC: the first `callers` clients call back to back, one call outstanding each.
  let calls = 0;
  let calling = true;
  const fire = (client) => {
    client.call("rpc", payload(calls), () => {
      calls += 1;
      if (calling) fire(client);
    });
  };
  clients.slice(0, cfg.callers).forEach(fire);
  await sleep(cfg.rpcWarmup);
  const before = calls;
  const rpcWindow = window();
  await sleep(cfg.rpcWindow);
  const rpc = rpcWindow();
  const answered = calls - before;
  calling = false;

  const out = {
    fanout: {
      sent: windowSent,
      delivered,
      delivered_ratio: expected ? delivered / expected : null,
      cpu_us_per_delivery: delivered ? (fan.serverCpu * 1e6) / delivered : null,
      p50_ms: lat.length ? +(quantile(lat, 0.5) * 1000).toFixed(3) : null,
      p99_ms: lat.length ? +(quantile(lat, 0.99) * 1000).toFixed(3) : null,
      samples: lat.length,
      ...(cfg.spread ? spreads() : {}),
      other_on_server_core: fan.otherOnServerCore,
      lg_cpu_us_per_delivery: delivered ? (fan.lgCpu * 1e6) / delivered : null,
    },
    rpc: {
      callers: Math.min(cfg.callers, clients.length),
      acks_per_s: answered / rpc.elapsed,
      cpu_us_per_call: answered ? (rpc.serverCpu * 1e6) / answered : null,
      other_on_server_core: rpc.otherOnServerCore,
      lg_cpu_us_per_call: answered ? (rpc.lgCpu * 1e6) / answered : null,
      lg_busy: rpc.lgCpu / rpc.elapsed,
    },
    subs: clients.length,
  };
  process.stdout.write(JSON.stringify(out) + "\n");
  pub.close();
  clients.forEach((c) => c.close());
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
