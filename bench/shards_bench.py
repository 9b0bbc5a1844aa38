"""Saturated cross-node deliveries with the Redis engine over 1, 2 and 3 Redis servers.

Two processes, two nodes of one deployment: a publisher node publishes 100 B msgpack
payloads to 60 channels as fast as it can (``--inflight`` publications in flight), and a
listener node listening to all 60 counts the publications it receives (every one crossed
from the other node through Redis). Run for 1 shard (``redis://a/0``), 2 shards
(``redis://a,b/0``) and 3 shards (``redis://a,b,c/0``), fresh redis-servers each time.

Prints deliveries/s at the listener, the ratio to one shard, and each redis-server's CPU
share: on a small machine the Python nodes saturate first, so the Redis CPU per shard
shows the headroom the spreading buys (each shard carries 1/N of the work).

    .venv/bin/python bench/shards_bench.py [--seconds 8] [--inflight 64]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

CHANNELS = [f"bench:{n}" for n in range(60)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_redis() -> tuple[subprocess.Popen[bytes], int, str]:
    port, folder = free_port(), tempfile.mkdtemp(prefix="ladder-bench-redis-")
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            folder,
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port, folder
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Counter:
    def __init__(self) -> None:
        self.count = 0

    def on_publication(self, pub: Any) -> None:
        self.count += 1

    def on_presence(self, *args: Any) -> None: ...

    def on_reset(self, *args: Any) -> None: ...

    def on_node_message(self, message: bytes) -> None: ...

    def on_route_lost(self) -> None: ...


async def listen(url: str, seconds: float, ready: Any, result: Any) -> None:
    from ladder.engine import create_engine  # noqa: PLC0415

    engine, sink = create_engine(url), _Counter()
    await engine.start(sink)
    for channel in CHANNELS:
        await engine.listen(channel)
    ready.set()
    await asyncio.sleep(1.0)  # warm-up
    start, began = sink.count, time.monotonic()
    await asyncio.sleep(seconds)
    result.value = (sink.count - start) / (time.monotonic() - began)
    await engine.stop()


async def publish(url: str, seconds: float, inflight: int) -> None:
    from ladder.engine import create_engine  # noqa: PLC0415
    from ladder.engine.base import ChannelOptions  # noqa: PLC0415
    from ladder.protocol.codec import Payload  # noqa: PLC0415

    engine, options = create_engine(url), ChannelOptions(history_size=100)
    await engine.start(_Counter())
    payload = Payload.of({"text": "x" * 80})
    deadline = time.monotonic() + seconds + 1.5

    async def worker(n: int) -> None:
        while time.monotonic() < deadline:
            await engine.publish(CHANNELS[n % len(CHANNELS)], payload, options)
            n += inflight

    await asyncio.gather(*(worker(n) for n in range(inflight)))
    await engine.stop()


def run_listener(url: str, seconds: float, ready: Any, result: Any) -> None:
    asyncio.run(listen(url, seconds, ready, result))


def run_publisher(url: str, seconds: float, inflight: int) -> None:
    asyncio.run(publish(url, seconds, inflight))


def measure(shards: int, seconds: float, inflight: int) -> tuple[float, list[float]]:
    servers = [start_redis() for _ in range(shards)]
    try:
        url = "redis://" + ",".join(f"127.0.0.1:{port}" for _, port, _ in servers) + "/0"
        context = multiprocessing.get_context("spawn")
        ready, result = context.Event(), context.Value("d", 0.0)
        listener = context.Process(target=run_listener, args=(url, seconds, ready, result))
        listener.start()
        ready.wait(30)
        before = [cpu_seconds(proc.pid) for proc, _, _ in servers]
        began = time.monotonic()
        publisher = context.Process(target=run_publisher, args=(url, seconds, inflight))
        publisher.start()
        listener.join(seconds + 30)
        elapsed = time.monotonic() - began
        publisher.join(30)
        busy = [
            (cpu_seconds(proc.pid) - b) / elapsed for (proc, _, _), b in zip(servers, before, strict=True)
        ]
        return float(result.value), busy
    finally:
        for proc, _, folder in servers:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--inflight", type=int, default=64)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; 60 channels, 100 B payloads, {args.inflight} publications in flight")
    first = None
    for shards in (1, 2, 3):
        rate, busy = measure(shards, args.seconds, args.inflight)
        first = first or rate
        shares = ", ".join(f"{b:.0%}" for b in busy)
        print(
            f"{shards} shard(s): {rate:9.0f} deliveries/s  ({rate / first:.2f}x)  redis-server CPU: {shares}"
        )


if __name__ == "__main__":
    main()
