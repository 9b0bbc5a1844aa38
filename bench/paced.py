"""S10: where most chat and dashboard apps live — one publication at a time, and calls.

Issue 13's first two judging lines, measured exactly as it states them, with the servers
of ``BENCH_SERVERS`` (Ladder, Node Socket.IO, python-socketio by default) in one run:

* **paced fan-out**: ``s10_subs`` (1,000) WebSocket subscribers on one channel (room); a
  publisher on its own WebSocket sends ``s10_rate`` (20) publications a second, evenly
  spaced, of 100 B JSON (``pub`` events, as in S2). Nothing is saturated: every fan-out
  ends long before the next one starts, so what is measured is the cost of one
  publication at a time. Per window: server CPU µs per delivery (utime + stime from
  ``/proc`` over the window ÷ deliveries counted by the load generator) and publish →
  delivery latency p50/p99 from every 10th subscriber.
* **RPC**: then, on the same server, the first ``s10_callers`` (100) of those clients
  call back to back (one call outstanding each, the next sent from the reply), as S4:
  acks/s and server CPU µs per call.

Ladder runs twice, once per encoding (its clients' ``json`` text frames, what the browser
client uses, and ``msgpack``, the Python client's default), each on a fresh server;
Socket.IO is JSON text. A server that delivers less than 95 % of what was published in
the window "cannot sustain" the rate (its latency then only measures its growing queue).

``BENCH_LG=node`` runs the same scenario with a load generator in Node (``lg-node/paced.cjs``,
the ``ws`` package and ``msgpackr``, on the load generator's core) instead of the
Python one, Ladder again in both encodings: a Node client reads a message for less than the
Python one spends, so the latencies it measures are less its own (with 1,000 subscribers
they are still bound by it: see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from statistics import median
from typing import Any

from lg import servers
from lg.clients import BaseClient, Stats, make_client
from lg.measure import Window, close_all, open_clients, payload, settle
from scenarios import _CallLoop, _measure_paced, server_of

NODE_LG = os.environ.get("BENCH_LG") == "node"


def configs(kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    """(server, encoding) pairs: Ladder servers in both encodings, Socket.IO in JSON."""
    out: list[tuple[str, str]] = []
    for kind in kinds:
        if server_of(kind) == "ladder":
            out += [(kind, "json"), (kind, "msgpack")]
        else:
            out.append((kind, "json"))
    return out


async def s10(cfg: Any, kind: str, encoding: str) -> dict[str, Any]:
    if NODE_LG:
        return await s10_node(cfg, kind, encoding)
    server = servers.start(kind, cfg.logdir)
    stats = Stats()
    owned: list[BaseClient] = []
    try:
        pub = make_client(server_of(kind), "websocket", server.port, Stats(), encoding=encoding)
        owned.append(pub)
        async with asyncio.timeout(20):
            await pub.connect()

        def make(i: int) -> BaseClient:
            return make_client(server_of(kind), "websocket", server.port, stats, sample=i % 10 == 0,
                               encoding=encoding)

        clients, failed = await open_clients(make, cfg.s10_subs, channel=lambda i: "bench", owned=owned)
        await settle(1.0)

        def send(k: int) -> None:
            pub.emit("pub", {"ch": "bench", "d": payload(100, k)})

        fan = await _measure_paced(server, stats, cfg.s10_rate, send, cfg.s10_warmup, cfg.s10_window,
                                   f"S10-{kind}-{encoding}-fanout")
        expected = fan["sent"] * len(clients)
        fan["delivered_ratio"] = fan["delivered"] / expected if expected else None
        fan["sustained"] = (fan["delivered_ratio"] or 0) >= 0.95
        # What is still queued (a server that cannot keep up) drains before the calls.
        await asyncio.sleep(1.0 if fan["sustained"] else 5.0)

        calls_stats = Stats()
        calls = _CallLoop(calls_stats)
        for client in clients[: cfg.s10_callers]:
            calls.fire(client)
        await asyncio.sleep(cfg.s10_rpc_warmup)
        window = Window(server, calls_stats, f"S10-{kind}-{encoding}-rpc")
        window.start()
        await asyncio.sleep(cfg.s10_rpc_window)
        rpc = window.stop()
        calls.running = False
        return {
            "server": kind, "encoding": encoding, "subs": len(clients), "rate": cfg.s10_rate,
            "connect_failures": failed, "lost_connections": stats.closed,
            "fanout": fan,
            "rpc": {**rpc, "callers": min(cfg.s10_callers, len(clients)),
                    "acks_per_s": rpc["per_s"], "cpu_us_per_call": rpc["cpu_us_per_delivery"]},
        }
    finally:
        server.stop()
        close_all(owned)


async def s10_node(cfg: Any, kind: str, encoding: str) -> dict[str, Any]:
    """S10 driven by ``lg-node/paced.cjs``, pinned to the load generator's core."""
    server = servers.start(kind, cfg.logdir)
    try:
        args = {"kind": server_of(kind), "port": server.port, "pid": server.pid, "core": servers.SERVER_CORE,
                "subs": cfg.s10_subs, "rate": cfg.s10_rate, "warmup": cfg.s10_warmup, "window": cfg.s10_window,
                "rpcWarmup": cfg.s10_rpc_warmup,
                "callers": cfg.s10_callers, "rpcWindow": cfg.s10_rpc_window, "spread": True,
                "encoding": encoding}
        cmd = ["taskset", "-c", str(servers.LOAD_CORE), "node", str(servers.BENCH / "lg-node" / "paced.cjs"),
               json.dumps(args)]
        done = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True,
                                       timeout=60 + cfg.s10_seconds,
                                       env={**os.environ, "NODE_PATH": str(servers.NODE_MODULES)})
        if done.returncode != 0:
            raise RuntimeError(f"lg-node/paced.cjs exited with {done.returncode}: {done.stderr[-500:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.stop()
    fan = out["fanout"]
    fan["sustained"] = (fan["delivered_ratio"] or 0) >= 0.95
    return {"server": kind, "encoding": encoding, "subs": out["subs"], "rate": cfg.s10_rate, "lg": "node",
            "connect_failures": 0, "lost_connections": 0, "fanout": fan, "rpc": out["rpc"]}


def summary(rec: dict[str, Any]) -> str:
    fan, rpc = rec["fanout"], rec["rpc"]
    held = "" if fan["sustained"] else f" (cannot sustain: {fan['delivered_ratio']:.0%} delivered)"
    if fan.get("first_ms") is not None:  # (Node load generator: first and last arrival)
        held += (f", first / last subscriber {fan['first_ms']} / {fan['last_ms']} ms, "
                 f"load generator {fan['lg_cpu_us_per_delivery']:.1f} CPU-µs/delivery")
    return (f"{rec['server']}/{rec['encoding']}: fan-out {fan['cpu_us_per_delivery'] or 0:.1f} CPU-µs/delivery, "
            f"p50 {fan['p50_ms']} ms, p99 {fan['p99_ms']} ms{held}; "
            f"RPC {rpc['acks_per_s']:.0f} acks/s, {rpc['cpu_us_per_call'] or 0:.1f} CPU-µs/call"
            + (f", load generator {rpc['lg_cpu_us_per_call']:.1f} CPU-µs/call ({rpc['lg_busy']:.0%} busy)"
               if rpc.get("lg_cpu_us_per_call") is not None else "")
            + f" (other processes on the server core {fan['other_on_server_core']:.2f} / "
            f"{rpc['other_on_server_core']:.2f})")


METRICS = (
    ("fanout", "cpu_us_per_delivery", "fan-out CPU-µs/delivery"),
    ("fanout", "p50_ms", "fan-out p50 ms"),
    ("fanout", "p99_ms", "fan-out p99 ms"),
    ("rpc", "acks_per_s", "RPC acks/s"),
    ("rpc", "cpu_us_per_call", "RPC CPU-µs/call"),
)


def medians(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float | None]]:
    """Per (server, encoding): the median of each metric over the repetitions."""
    out: dict[tuple[str, str], dict[str, float | None]] = {}
    for key in sorted({(r["server"], r["encoding"]) for r in records}):
        these = [r for r in records if (r["server"], r["encoding"]) == key]
        row: dict[str, float | None] = {}
        for part, metric, label in METRICS:
            values = [r[part][metric] for r in these if r[part].get(metric) is not None]
            row[label] = median(values) if values else None
        row["sustained"] = float(all(r["fanout"]["sustained"] for r in these))
        row["reps"] = float(len(these))
        out[key] = row
    return out


def table(records: list[dict[str, Any]], reference: str = "node") -> str:
    """A markdown table of the medians, with each Ladder row's ratio to ``reference``."""
    meds = medians(records)
    ref = meds.get((reference, "json"))
    labels = [label for _, _, label in METRICS]
    lines = ["| server | encoding | " + " | ".join(labels) + " | reps |",
             "|---|---|" + "---|" * len(labels) + "---|"]

    def fmt(v: float | None) -> str:
        return "–" if v is None else f"{v:,.1f}"

    for (kind, enc), row in meds.items():
        name = servers.LABELS.get(kind, kind)
        if not row["sustained"]:
            name += " (cannot sustain 20/s)"
        lines.append(f"| {name} | {enc} | " + " | ".join(fmt(row[lb]) for lb in labels)
                     + f" | {int(row['reps'] or 0)} |")
    if ref is not None:
        for (kind, enc), row in meds.items():
            if server_of(kind) != "ladder":
                continue
            cells = []
            for lb in labels:
                a, b = row[lb], ref[lb]
                cells.append("–" if a is None or not b else f"{a / b:.2f}×")
            lines.append(f"| {servers.LABELS.get(kind, kind)} ÷ {servers.LABELS.get(reference, reference)} "
                         f"| {enc} | " + " | ".join(cells) + " | |")
    return "\n".join(lines)
