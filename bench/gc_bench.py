"""Collector pauses during fan-out to many WebSocket subscribers (issue 13: "no collector
pause over 10 ms during fan-out to 5,000 subscribers, measured with ``gc.callbacks``").

``ladder serve gc_app:hub`` (the benchmark hub with every collection timed by
``gc.callbacks``) alone on core 0; the load generator on core 1 connects ``--subs``
msgpack WebSocket subscribers to one channel, then a publisher sends 100 B publications
for two windows: paced (``--rate`` a second, one at a time) and saturated (16 in flight).
After each window the server says what its collector did in it: collections per
generation, the longest pause, and the share of the window spent collecting.

    cd bench && ../.venv/bin/python gc_bench.py [--subs 5000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lg import servers
from lg.clients import BaseClient, Stats, make_client
from lg.measure import close_all, open_clients, payload, settle
from scenarios import Pacer


def describe(label: str, stats: dict[str, Any], seconds: float, delivered: int) -> str:
    pauses = stats["pauses"]
    by_gen = {g: [s for gen, s in pauses if gen == g] for g in (0, 1, 2)}
    longest = max((s for _, s in pauses), default=0.0)
    spent = sum(s for _, s in pauses)
    counts = ", ".join(f"gen{g} {len(v)} (max {max(v, default=0) * 1000:.1f} ms)" for g, v in by_gen.items())
    over = sum(1 for _, s in pauses if s > 0.010)
    return (
        f"{label}: {delivered / seconds:,.0f} deliveries/s; collections {counts}; "
        f"longest {longest * 1000:.1f} ms, {over} over 10 ms; {spent / seconds:.1%} of the window collecting; "
        f"objects tracked {stats['tracked']:,}, frozen {stats['frozen']:,}; "
        f"a full collection forced after the window: {stats['full'] * 1000:.1f} ms; "
        f"grown in the oldest generation during the window: {stats['grown_total']:,} objects, most {stats['grown']}"
    )


async def main(args: argparse.Namespace) -> None:
    os.environ.setdefault("BENCH_LADDER_APP", "gc_app:hub")
    os.sched_setaffinity(0, {servers.LOAD_CORE})
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logdir = Path(tempfile.mkdtemp(prefix="ladder-gc-bench-"))
    server = servers.start(args.kind, logdir)
    owned: list[BaseClient] = []
    try:
        stats = Stats()
        pub = make_client("ladder", "websocket", server.port, Stats(), encoding=args.encoding)
        owned.append(pub)
        await pub.connect()

        def make(i: int) -> BaseClient:
            return make_client("ladder", "websocket", server.port, stats, encoding=args.encoding)

        clients, failed = await open_clients(make, args.subs, channel=lambda i: "bench", owned=owned)
        print(f"{args.encoding}, {args.size} B: {len(clients)} subscribers ({failed} failed to connect); server pid {server.proc.pid}")
        await settle(2.0)
        await pub.call_async("gcstats", None)  # forget the connecting phase

        sent = [0]

        def send(k: int) -> None:
            pub.emit("pub", {"ch": "bench", "d": payload(args.size, k)})
            sent[0] += 1

        base = stats.delivered
        pacer = Pacer(args.rate, send)
        await asyncio.sleep(args.seconds)
        await pacer.stop()
        paced = await pub.call_async("gcstats", None)
        print(describe(f"paced, {args.rate:g}/s", paced, args.seconds, stats.delivered - base))

        await settle(1.0)
        await pub.call_async("gcstats", None)
        base, running = stats.delivered, True

        async def saturate() -> None:
            published = 0
            while running:
                done = (stats.delivered - base) // max(1, len(clients))
                while published - done < 16:
                    pub.emit("pub", {"ch": "bench", "d": payload(args.size, published)})
                    published += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(saturate())
        started = time.monotonic()
        await asyncio.sleep(args.seconds)
        running = False
        await task
        took = time.monotonic() - started
        saturated = await pub.call_async("gcstats", None)
        print(describe("saturated, 16 in flight", saturated, took, stats.delivered - base))
    finally:
        server.stop()
        close_all(owned)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subs", type=int, default=5000)
    parser.add_argument("--kind", default="ladder", help="ladder, or ladder-before with BENCH_BEFORE=<src>")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--size", type=int, default=100, help="payload bytes (JSON)")
    parser.add_argument("--encoding", choices=["msgpack", "json"], default="msgpack")
    sys.path.insert(0, str(Path(__file__).parent))
    asyncio.run(main(parser.parse_args()))
