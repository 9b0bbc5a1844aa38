"""What a Redis engine's presence sweep costs with many channels: Redis scripts, time, CPU.

One node (a ``RedisEngine`` in this process, on a fresh redis-server) holds ``--channels``
channels with one member each (``presence_ttl`` 60 s), of which ``--due`` have a member
whose time ran out (how long adding them took is printed too). One sweep is then timed (every node runs one every ``sweep_every``,
5 s by default): the ``EVALSHA`` calls it made, its wall time, this process's CPU and
redis-server's. Then a second sweep, with nothing left to expire.

    cd bench && ../.venv/bin/python presence_sweep_bench.py [--channels 20000] [--due 100]
    cd bench && PYTHONPATH=<other checkout>/src ../.venv/bin/python presence_sweep_bench.py

Not part of ``bench/run``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
from typing import Any

import redis.asyncio as aioredis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from shards_bench import cpu_seconds, start_redis

import ladder
from ladder.engine.base import Member
from ladder.engine.redis import RedisEngine


class Sink:
    leaves = 0

    def on_publication(self, pub: Any) -> None: ...
    def on_presence(self, channel: str, kind: str, member: Member) -> None:
        if kind == "leave":
            self.leaves += 1

    def on_reset(self, *args: Any) -> None: ...
    def on_node_message(self, message: bytes) -> None: ...
    def on_route_lost(self) -> None: ...


async def evalsha_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def timed_sweep(node: RedisEngine, client: aioredis.Redis, redis_pid: int) -> dict[str, float]:
    calls, redis_cpu = await evalsha_calls(client), cpu_seconds(redis_pid)
    cpu, wall = time.process_time(), time.perf_counter()
    await node._presence.sweep()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "scripts": await evalsha_calls(client) - calls,
        "wall_ms": wall * 1000,
        "node_cpu_ms": cpu * 1000,
        "redis_cpu_ms": (cpu_seconds(redis_pid) - redis_cpu) * 1000,
    }


async def main(args: argparse.Namespace) -> None:
    proc, port, folder = start_redis()
    url = f"redis://127.0.0.1:{port}/0"
    node, sink = RedisEngine(url, sweep_every=3600), Sink()
    client = aioredis.from_url(url)
    try:
        await node.start(sink)
        adding, redis_cpu = time.perf_counter(), cpu_seconds(proc.pid)
        for start in range(0, args.channels, 500):
            await asyncio.gather(
                *(
                    node.presence_add(f"room:{n}", Member(f"c{n}", "u"), ttl=-1 if n < args.due else 60)
                    for n in range(start, min(start + 500, args.channels))
                )
            )
        adding, redis_cpu = time.perf_counter() - adding, cpu_seconds(proc.pid) - redis_cpu
        print(f"ladder from {os.path.dirname(ladder.__file__)}")
        print(
            f"{args.channels} channels with a member, {args.due} of them expired; adding them "
            f"(500 at a time) took {adding:.2f} s, redis-server {redis_cpu:.2f} s of CPU"
        )
        for name in ("first sweep", "second sweep"):
            figures = await timed_sweep(node, client, proc.pid)
            print(f"{name}: " + ", ".join(f"{key} {value:.1f}" for key, value in figures.items()))
    finally:
        await client.aclose()
        await node.stop()
        proc.terminate()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=20000)
    parser.add_argument("--due", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
