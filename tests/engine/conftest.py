"""Engines for the contract suite: every test that takes ``make`` runs against the memory
engine, the Redis engine on a real ``redis-server``, the sharded engine over three, and the
cluster engine on a real six-node Redis Cluster."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import pytest

from ladder.engine.base import Engine, Member, Position, Publication
from ladder.engine.memory import MemoryEngine
from tests.support.redis import RedisServer, redis_servers
from tests.support.redis_cluster import RedisCluster

SWEEP_EVERY = 0.2
"""The engines' presence sweep interval in these tests (seconds)."""

_prefixes = itertools.count()


class Sink:
    """Records what an engine delivers, as queues a test can await."""

    def __init__(self) -> None:
        self.pubs: asyncio.Queue[Publication] = asyncio.Queue()
        self.presence: asyncio.Queue[tuple[str, str, Member]] = asyncio.Queue()
        self.resets: asyncio.Queue[tuple[str, Position]] = asyncio.Queue()
        self.node: asyncio.Queue[bytes] = asyncio.Queue()
        self.log: list[Publication | tuple[str, Position]] = []
        """Publications and reset positions, in the order they were handed on."""
        self.routes_lost = 0
        self.route_lost = asyncio.Event()

    def on_publication(self, pub: Publication) -> None:
        self.log.append(pub)
        self.pubs.put_nowait(pub)

    def on_presence(self, channel: str, kind: str, member: Member) -> None:
        self.presence.put_nowait((channel, kind, member))

    def on_reset(self, channel: str, position: Position) -> None:
        self.log.append((channel, position))
        self.resets.put_nowait((channel, position))

    def on_node_message(self, message: bytes) -> None:
        self.node.put_nowait(message)

    def on_route_lost(self) -> None:
        self.routes_lost += 1
        self.route_lost.set()


class Make(Protocol):
    """Start an engine of the kind under test (with its sink); stopped after the test."""

    kind: str

    async def __call__(self, *, idle_ttl: float | None = None) -> tuple[Engine, Sink]: ...


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    """One redis-server for the module; each engine gets its own key prefix."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def three_redis() -> Iterator[list[RedisServer]]:
    """Three independent redis-servers for the module (the sharded engine's shards)."""
    with redis_servers(3) as servers:
        yield servers


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    """A six-node Redis Cluster (three primaries with a replica each) for the module."""
    with RedisCluster() as cluster:
        yield cluster


def shards_url(servers: list[RedisServer]) -> str:
    """``redis://127.0.0.1:p1,127.0.0.1:p2,.../0``: one engine over every server."""
    return "redis://" + ",".join(f"127.0.0.1:{server.port}" for server in servers) + "/0"


class _Maker:
    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self._request = request
        self._prefix = f"t{next(_prefixes)}"
        self.started: list[Engine] = []

    async def __call__(self, *, idle_ttl: float | None = None) -> tuple[Engine, Sink]:
        """(A Redis engine's timeouts here leave room for a machine shared with a whole test
        run, where a first answer can take over 1 s (CI saw it once for a publication), and a
        node that could not ask its seeds in time at start writes its trace a heartbeat later,
        which the trace test reads at once. No test of the contract is about slow answers.)"""
        engine: Engine
        slow = {"connect_timeout": 2.0, "command_timeout": 5.0}
        if self.kind == "memory":
            options: dict[str, Any] = {} if idle_ttl is None else {"idle_ttl": idle_ttl}
            engine = MemoryEngine(sweep_every=SWEEP_EVERY, **options)
        elif self.kind == "redis-cluster":
            from ladder.engine.rediscluster import RedisClusterEngine  # noqa: PLC0415

            cluster: RedisCluster = self._request.getfixturevalue("redis_cluster")
            options = {} if idle_ttl is None else {"meta_ttl": idle_ttl}
            engine = RedisClusterEngine(
                cluster.url, prefix=self._prefix, sweep_every=SWEEP_EVERY, **slow, **options
            )
        elif self.kind == "redis-shards":
            from ladder.engine.shards import ShardedEngine  # noqa: PLC0415 - optional dependency

            servers: list[RedisServer] = self._request.getfixturevalue("three_redis")
            options = {} if idle_ttl is None else {"meta_ttl": idle_ttl}
            engine = ShardedEngine(
                shards_url(servers), prefix=self._prefix, sweep_every=SWEEP_EVERY, **slow, **options
            )
        else:
            from ladder.engine.redis import RedisEngine  # noqa: PLC0415 - optional dependency

            server: RedisServer = self._request.getfixturevalue("shared_redis")
            options = {} if idle_ttl is None else {"meta_ttl": idle_ttl}
            engine = RedisEngine(server.url, prefix=self._prefix, sweep_every=SWEEP_EVERY, **slow, **options)
        sink = Sink()
        await engine.start(sink)
        self.started.append(engine)
        return engine, sink


@pytest.fixture(params=["memory", "redis", "redis-shards", "redis-cluster"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    maker = _Maker(request.param, request)
    yield maker
    for engine in maker.started:
        await engine.stop()
