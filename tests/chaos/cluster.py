"""The chaos suite's cluster: Redis, three ``ladder serve`` nodes, their Redis links, a balancer.

::

    clients ──> balancer (FaultRelay, round-robin over the nodes)
                  ├─> node 0 ──> redis link 0 (FaultRelay) ──┐
                  ├─> node 1 ──> redis link 1 ───────────────┼─> redis-server
                  └─> node 2 ──> redis link 2 ───────────────┘

Every process is started on a free loopback port and stopped by pid (:meth:`ChaosCluster.close`
runs in a ``finally``). Blocking steps (starting a process, waiting for it to exit) run in a
thread so the clients on the test's event loop keep running meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import redis as redis_py

from ladder import Client
from tests.chaos.relay import Relay
from tests.deploy.lb import loopback_limits
from tests.support.redis import RedisServer
from tests.support.server import LadderServer

NODE_CONFIG: dict[str, Any] = {
    "heartbeat": 2.0,
    "session_ttl": 60.0,
    "poll_timeout": 5.0,
    "limits": loopback_limits(),
}
"""Quick heartbeats so dead streams are noticed within seconds; every client is on 127.0.0.1."""
HEALTH_EVERY = 0.5
"""Seconds between two health checks of a node by the balancer (ops.md: take a node out while
``/health`` answers 503); two failures in a row take it out, two successes put it back."""
GRACE = 10.0
"""Seconds a node may take to exit after SIGTERM before it is killed (and that is reported)."""


class ChaosCluster:
    def __init__(self, workdir: Path) -> None:
        self._previous_env: str | None = None
        self.dir = workdir
        self.record = workdir / "applied.log"
        self.redis = RedisServer()
        self.links: list[Relay] = []
        self.nodes: list[LadderServer] = []
        self.balancer: Relay | None = None
        self.node_ids: dict[str, int] = {}
        """Node id (as in /health) -> index, for the process running there now."""
        self.killed: set[int] = set()
        """Process ids of the nodes SIGKILLed so far."""

    # -- life ------------------------------------------------------------------------------

    def start(self) -> ChaosCluster:
        self.redis.start()
        self.links = [Relay([self.redis.port], f"redis-link-{i}") for i in range(3)]
        # Read by tests.chaos.app in each node (LadderServer passes the environment on).
        self._previous_env = os.environ.get("LADDER_CHAOS_RECORD")
        os.environ["LADDER_CHAOS_RECORD"] = str(self.record)
        self.nodes = [
            LadderServer(
                NODE_CONFIG,
                app="tests.chaos.app:hub",
                engine=f"redis://127.0.0.1:{link.port}/0",
                log=self.dir / f"node{i}.log",
            )
            for i, link in enumerate(self.links)
        ]
        for node in self.nodes:
            node.start()
        self.balancer = Relay([node.port for node in self.nodes], "balancer")
        return self

    def close(self) -> None:
        errors: list[BaseException] = []
        for step in [
            *(node.stop for node in self.nodes),
            *(link.stop for link in self.links),
            *([self.balancer.stop] if self.balancer else []),
            self.redis.close,
        ]:
            try:
                step()
            except Exception as exc:  # stop everything else before reporting
                errors.append(exc)
        if self._previous_env is None:
            os.environ.pop("LADDER_CHAOS_RECORD", None)
        else:
            os.environ["LADDER_CHAOS_RECORD"] = self._previous_env
        if errors:
            raise errors[0]

    @property
    def url(self) -> str:
        assert self.balancer is not None
        return self.balancer.url

    @property
    def lb(self) -> Relay:
        assert self.balancer is not None
        return self.balancer

    # -- nodes -----------------------------------------------------------------------------

    def alive(self, index: int) -> bool:
        proc = self.nodes[index].proc
        return proc is not None and proc.poll() is None

    async def start_node(self, index: int) -> None:
        await asyncio.to_thread(self.nodes[index].start)

    async def kill(self, index: int) -> None:
        self._forget(index)
        proc = self.nodes[index].proc
        if proc is not None and proc.poll() is None:
            self.killed.add(proc.pid)
        await asyncio.to_thread(self.nodes[index].kill)

    async def terminate(self, index: int) -> float | None:
        """SIGTERM; seconds until the node exited, or None if it had not after GRACE (then killed)."""
        proc = self.nodes[index].proc
        assert proc is not None
        self._forget(index)
        started = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, GRACE)
        except Exception:
            await self.kill(index)
            return None
        return time.perf_counter() - started

    async def health(self, index: int) -> dict[str, Any] | None:
        """The node's /health (None when it does not answer 200)."""
        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                response = await http.get(f"{self.nodes[index].url}/health")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        health: dict[str, Any] = response.json()
        self._known(str(health["node"]), index)
        return health

    def _forget(self, index: int) -> None:
        for gone in [n for n, i in self.node_ids.items() if i == index]:
            del self.node_ids[gone]

    def _known(self, node_id: str, index: int) -> None:
        """``node_id`` runs at ``index`` now: an earlier process's id there is forgotten."""
        for stale in [n for n, i in self.node_ids.items() if i == index and n != node_id]:
            del self.node_ids[stale]
        self.node_ids[node_id] = index

    async def wait_healthy(self, index: int, timeout: float) -> float | None:
        """Seconds until the node answered /health 200 (None if not within ``timeout``)."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            health = await self.health(index)
            if health is not None:
                return time.perf_counter() - started
            await asyncio.sleep(0.1)  # polling another process's state: no event crosses over
        return None

    async def health_checks(self) -> None:
        """The balancer's health checks, until cancelled (run as a task during a scenario)."""
        streak = [0] * len(self.nodes)  # > 0: successes in a row, < 0: failures in a row
        while True:
            results = await asyncio.gather(*(self.health(i) for i in range(len(self.nodes))))
            for index, health in enumerate(results):
                ok = health is not None
                streak[index] = max(1, streak[index] + 1) if ok else min(-1, streak[index] - 1)
                if abs(streak[index]) == 2:
                    self.lb.health(index, ok)
            await asyncio.sleep(HEALTH_EVERY)  # the check interval

    async def owner(self, client: Client) -> int | None:
        """Index of the node holding ``client``'s session now.

        Read from Redis first (``ladder:moved:<sid>`` after a hand-over, else the node that
        created it, named in the session id), which needs no message through the faults; else
        asked with a call (a call is applied by the session's owner).
        """
        sid = client.session_id
        if sid:
            with contextlib.suppress(Exception):
                node_id = await asyncio.to_thread(self._located, sid)
                if node_id in self.node_ids:
                    return self.node_ids[node_id]
        return await self._owner_by_call(client)

    async def locate(self, client: Client) -> str | None:
        """The id of the node Redis says holds ``client``'s session (for failure messages)."""
        sid = client.session_id
        if not sid:
            return None
        with contextlib.suppress(Exception):
            return await asyncio.to_thread(self._located, sid)
        return None

    def _located(self, sid: str) -> str:
        client = redis_py.Redis(port=self.redis.port, socket_timeout=1.0)
        try:
            moved = client.get(f"ladder:moved:{sid}")
        finally:
            client.close()
        return moved.decode() if isinstance(moved, bytes) else sid.split(".", 1)[0]

    async def _owner_by_call(self, client: Client) -> int | None:
        for attempt in range(3):
            if client.state == "closed":
                return None
            if attempt:
                await asyncio.sleep(0.5)  # a refused call (rate limit, reconnect): ask again later
            try:
                node_id = await client.call("node", timeout=2)
            except Exception:
                continue
            if node_id not in self.node_ids:
                for index in range(len(self.nodes)):
                    await self.wait_healthy(index, 2.0)
            if node_id in self.node_ids:
                return self.node_ids[node_id]
        return None

    # -- Redis -----------------------------------------------------------------------------

    async def set_persistence(self, mode: str) -> None:
        """Restart Redis empty with persistence ``none``, ``aof`` or ``rdb`` (saved at shutdown)."""
        await asyncio.to_thread(self.redis.stop)
        shutil.rmtree(self.redis.dir, ignore_errors=True)  # no data from an earlier scenario
        self.redis.dir.mkdir()
        self.redis.persistent = mode == "aof"
        await asyncio.to_thread(self.redis.start)
        if mode == "rdb":
            client = redis_py.Redis(port=self.redis.port)
            try:
                client.config_set("save", "3600 1")
            finally:
                client.close()

    # -- back to normal --------------------------------------------------------------------

    async def heal(self, timeout: float = 10.0) -> list[str]:
        """Every fault off, every node running and healthy; what was wrong, if anything.

        A node still unhealthy ``timeout`` seconds after its faults were healed is restarted
        (and that is reported), so that one scenario's damage does not fail the next ones.
        """
        self.lb.heal()
        for link in self.links:
            link.heal()
        if self.redis.proc is None or self.redis.proc.poll() is not None:
            await asyncio.to_thread(self.redis.start)
        for index in range(len(self.nodes)):
            if not self.alive(index):
                await self.start_node(index)
        problems = []
        for index in range(len(self.nodes)):
            if await self.wait_healthy(index, timeout) is None:
                problems.append(f"node {index} not healthy {timeout:g} s after every fault was healed")
                await self.kill(index)
                await self.start_node(index)
                if await self.wait_healthy(index, timeout) is None:
                    problems.append(f"node {index} not healthy after a restart either")
            self.lb.health(index, True)
        return problems
