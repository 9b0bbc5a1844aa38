"""What a Redis engine's presence sweep costs with many channels: Redis scripts, time, CPU.

One node (a ``RedisEngine`` in this process, on a fresh redis-server; with ``--cluster`` a
``RedisClusterEngine`` on a fresh six-node Redis Cluster, three primaries) holds ``--channels``
channels with one member each (``presence_ttl`` 60 s), of which ``--due`` have a member
whose time ran out (how long adding them took is printed too). One sweep is then timed (every node runs one every ``sweep_every``,
5 s by default): the ``EVALSHA`` calls it made, its wall time, this process's CPU and
redis-server's. Then a second sweep, with nothing left to expire.

    cd bench && ../.venv/bin/python presence_sweep_bench.py [--channels 20000] [--due 100]
    cd bench && ../.venv/bin/python presence_sweep_bench.py --cluster --together 50
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

import redis as redis_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from shards_bench import cpu_seconds, start_redis

import ladder
from ladder.engine.base import Engine, Member
from ladder.engine.redis import RedisEngine
from ladder.engine.rediscluster import RedisClusterEngine


class Sink:
    def on_publication(self, pub: Any) -> None: ...
    def on_presence(self, channel: str, kind: str, member: Member) -> None: ...

    def on_reset(self, *args: Any) -> None: ...
    def on_node_message(self, message: bytes) -> None: ...
    def on_route_lost(self) -> None: ...


def evalsha_calls(ports: list[int]) -> int:
    """Scripts run by these redis-servers (a ``NOSCRIPT`` answer is not one)."""
    calls = 0
    for port in ports:
        client = redis_py.Redis(port=port)
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
        calls += int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))
        client.close()
    return calls


async def timed_sweep(node: Engine, ports: list[int], pids: list[int]) -> dict[str, float]:
    calls, redis_cpu = evalsha_calls(ports), sum(map(cpu_seconds, pids))
    cpu, wall = time.process_time(), time.perf_counter()
    await node._presence.sweep()  # type: ignore[attr-defined]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "scripts": evalsha_calls(ports) - calls,
        "wall_ms": wall * 1000,
        "node_cpu_ms": cpu * 1000,
        "redis_cpu_ms": (sum(map(cpu_seconds, pids)) - redis_cpu) * 1000,
    }


async def measure(args: argparse.Namespace, node: Engine, ports: list[int], pids: list[int]) -> None:
    await node.start(Sink())
    try:
        adding, redis_cpu = time.perf_counter(), sum(map(cpu_seconds, pids))
        for start in range(0, args.channels, args.together):
            await asyncio.gather(
                *(
                    node.presence_add(f"room:{n}", Member(f"c{n}", "u"), ttl=-1 if n < args.due else 60)
                    for n in range(start, min(start + args.together, args.channels))
                )
            )
        adding, redis_cpu = time.perf_counter() - adding, sum(map(cpu_seconds, pids)) - redis_cpu
        print(f"ladder from {os.path.dirname(ladder.__file__)}{' (Redis Cluster)' if args.cluster else ''}")
        print(
            f"{args.channels} channels with a member, {args.due} of them expired; adding them "
            f"({args.together} at a time) took {adding:.2f} s, redis-server {redis_cpu:.2f} s of CPU"
        )
        for name in ("first sweep", "second sweep"):
            figures = await timed_sweep(node, ports, pids)
            print(f"{name}: " + ", ".join(f"{key} {value:.1f}" for key, value in figures.items()))
    finally:
        await node.stop()


def main(args: argparse.Namespace) -> None:
    if args.cluster:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from tests.support.redis_cluster import RedisCluster  # noqa: PLC0415 - only here

        with RedisCluster() as cluster:
            servers = cluster.primaries()
            node = RedisClusterEngine(cluster.url, sweep_every=3600)
            pids = [server.proc.pid for server in servers if server.proc is not None]
            asyncio.run(measure(args, node, [server.port for server in servers], pids))
        return
    proc, port, folder = start_redis()
    try:
        node = RedisEngine(f"redis://127.0.0.1:{port}/0", sweep_every=3600)
        asyncio.run(measure(args, node, [port], [proc.pid]))
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=20000)
    parser.add_argument("--due", type=int, default=100)
    parser.add_argument("--together", type=int, default=500, help="members added at once")
    parser.add_argument("--cluster", action="store_true", help="a six-node Redis Cluster (as the tests start)")
    main(parser.parse_args())
