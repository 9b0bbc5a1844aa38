"""S9: saturated fan-out through ``ladder serve --workers N`` (issue 13, "every core").

The S2 saturated case (one channel, ``s9_subs`` WebSocket subscribers, 100 B msgpack, a
publisher keeping 16 publications in flight) against three servers, each a fresh set of
processes:

* 1 worker, memory engine (plain ``ladder serve``, what S2 measures);
* 1 worker, Redis engine (``ladder serve --workers 1``, every publication through Redis);
* 2 workers, Redis engine (``ladder serve --workers 2``): the subscribers connect through
  the one port and the kernel spreads them over both workers; the publisher lands on one
  of them, and every publication reaches the other worker through Redis.

Unlike every other scenario, the server processes (workers and redis-server) are **not**
pinned to core 0: ``--workers 2`` is about using both cores, so all of them may run on
either core, in every configuration alike. The load generator stays pinned to core 1, so
with two workers it shares that core with them: ``lg_util`` and the cores' busy shares say
how much of the machine was left.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from lg import servers
from lg.clients import BaseClient, Stats, make_client, now
from lg.measure import close_all, open_clients, settle
from scenarios import _saturate

CONFIGS = (
    (1, "memory", 1, "handler"), (1, "redis", 1, "handler"), (2, "redis", 1, "handler"),
    (1, "memory", 16, "handler"), (1, "redis", 16, "handler"), (2, "redis", 16, "handler"),
    (1, "memory", 1, "client"), (1, "redis", 1, "client"),
)
"""(workers, engine, publisher connections, who publishes): one publisher, as S2 has, then
sixteen taking turns (what many users publishing look like: their publications reach Redis
together); "handler": each publication an ``emit`` whose handler calls ``hub.publish``, as
server code publishes; "client": the publisher's own ``pub`` frames on an ``open:*``
channel (``client_publish``), which the hub applies together when several wait."""


def parse_configs(text: str) -> tuple[tuple[int, str, int, str], ...]:
    """``--s9-configs``: ``WORKERS:ENGINE:PUBLISHERS:WHO``, comma-separated."""
    configs = []
    for item in text.split(","):
        parts = item.strip().split(":")
        if len(parts) != 4 or parts[1] not in ("memory", "redis") or parts[3] not in ("handler", "client"):
            raise ValueError(f"{item!r} is not WORKERS:memory|redis:PUBLISHERS:handler|client")
        workers, engine, publishers, who = int(parts[0]), parts[1], int(parts[2]), parts[3]
        if engine == "memory" and workers != 1:
            raise ValueError(f"{item!r}: the memory engine runs one worker")
        configs.append((workers, engine, publishers, who))
    return tuple(configs)


class Tree:
    """A ``ladder serve`` parent, its workers and redis-server, measured as one server."""

    def __init__(self, kind: str, port: int, proc: subprocess.Popen[bytes], redis: servers.Server | None) -> None:
        self.kind = kind
        self.port = port
        self.proc = proc
        self.redis = redis

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                children = [int(p) for p in f.read().split()]
        except OSError:
            children = []
        return [self.pid, *children]

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):  # a worker that just exited
                total += servers.cpu_seconds(pid)
        if self.redis is not None:
            total += self.redis.cpu()
        return total

    def stop(self) -> None:
        servers.stop(self.proc)
        if self.redis is not None:
            self.redis.stop()


def start(workers: int, engine: str, logdir: Path) -> Tree:
    redis = servers.start_redis(logdir, core="0,1") if engine == "redis" else None  # type: ignore[arg-type]
    port = servers.free_port()
    cmd = [str(servers.PROJECT_PY), "-m", "ladder.cli", "serve", "ladder_app:hub", "--port", str(port),
           "--log-level", "warning"]
    if engine == "redis":
        cmd += ["--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BENCH_REDIS_URL")}
    if redis is not None:
        env["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{redis.port}/0"
    # The compiled build, as every other scenario's "Ladder" (and what the wheels ship).
    env.update(BENCH_LADDER=json.dumps({}), PYTHONUNBUFFERED="1", PYTHONPATH=str(servers.compiled()))
    log = logdir / f"ladder-workers{workers}-{engine}-{port}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(["taskset", "-c", "0,1", *cmd], cwd=servers.BENCH, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    servers.register(proc)
    servers._wait_listening("ladder", proc, port, log, 30.0)
    return Tree(f"ladder-workers{workers}-{engine}", port, proc, redis)


async def s9(cfg: Any, workers: int, engine: str, publishers: int = 1, who: str = "handler") -> dict[str, Any]:
    tree = start(workers, engine, cfg.logdir)
    stats = Stats()
    owned: list[BaseClient] = []
    try:
        pubs = [make_client("ladder", "websocket", tree.port, Stats()) for _ in range(publishers)]
        owned.extend(pubs)
        for pub in pubs:
            await pub.connect()

        def make(i: int) -> BaseClient:
            return make_client("ladder", "websocket", tree.port, stats, sample=i % 50 == 0)

        # At most 50 subscriptions at once (the Redis engine's command limit, as in S7).
        channel = "open:bench" if who == "client" else "bench"
        clients, failed = await open_clients(make, cfg.s9_subs, channel=lambda i: channel, owned=owned,
                                             concurrency=50)
        await settle(1.0)
        busy0, cpu0, lg0, t0 = sum(servers.core_busy().values()), tree.cpu(), servers.self_cpu(), now()
        result = await _saturate(tree, pubs, stats, len(clients), 100, channel,  # type: ignore[arg-type]
                                 cfg.s9_warmup, cfg.s9_window, 16, direct=who == "client")
        seconds = now() - t0
        busy = (sum(servers.core_busy().values()) - busy0) / seconds
        # The servers run on both cores here: what else ran is the machine's busy time minus
        # theirs and the load generator's (S2's per-core split does not apply).
        result["other_on_machine"] = max(0.0, busy - (tree.cpu() - cpu0) / seconds
                                         - (servers.self_cpu() - lg0) / seconds)
        result.update(workers=workers, engine=engine, publishers=publishers, who=who, subs=len(clients),
                      connect_failures=failed,
                      processes=len(tree.pids()) + (1 if tree.redis is not None else 0))
        return result
    finally:
        tree.stop()
        close_all(owned)


def summary(rec: dict[str, Any]) -> str:
    return (f"workers={rec['workers']} {rec['engine']} publishers={rec.get('publishers', 1)} "
            f"by {rec.get('who', 'handler')}: "
            f"{rec['per_s']:.0f} deliveries/s, "
            f"{rec['cpu_us_per_delivery'] or 0:.1f} CPU-µs each, server CPU {rec['server_util']:.2f} cores, "
            f"load generator {rec['lg_util']:.2f}, other processes {rec['other_on_machine']:.2f} cores")
