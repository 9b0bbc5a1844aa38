"""Engines for the contract suite: every test that takes ``make`` runs against the memory
engine and against the Redis engine on a real ``redis-server``."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import pytest

from ladder.engine.base import Engine, Member, Position, Publication
from ladder.engine.memory import MemoryEngine
from tests.support.redis import RedisServer

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

    def on_publication(self, pub: Publication) -> None:
        self.pubs.put_nowait(pub)

    def on_presence(self, channel: str, kind: str, member: Member) -> None:
        self.presence.put_nowait((channel, kind, member))

    def on_reset(self, channel: str, position: Position) -> None:
        self.resets.put_nowait((channel, position))

    def on_node_message(self, message: bytes) -> None:
        self.node.put_nowait(message)


class Make(Protocol):
    """Start an engine of the kind under test (with its sink); stopped after the test."""

    kind: str

    async def __call__(self, *, idle_ttl: float | None = None) -> tuple[Engine, Sink]: ...


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    """One redis-server for the module; each engine gets its own key prefix."""
    with RedisServer() as server:
        yield server


class _Maker:
    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self._request = request
        self._prefix = f"t{next(_prefixes)}"
        self.started: list[Engine] = []

    async def __call__(self, *, idle_ttl: float | None = None) -> tuple[Engine, Sink]:
        engine: Engine
        if self.kind == "memory":
            options: dict[str, Any] = {} if idle_ttl is None else {"idle_ttl": idle_ttl}
            engine = MemoryEngine(sweep_every=SWEEP_EVERY, **options)
        else:
            from ladder.engine.redis import RedisEngine  # noqa: PLC0415 - optional dependency

            server: RedisServer = self._request.getfixturevalue("shared_redis")
            options = {} if idle_ttl is None else {"meta_ttl": idle_ttl}
            engine = RedisEngine(server.url, prefix=self._prefix, sweep_every=SWEEP_EVERY, **options)
        sink = Sink()
        await engine.start(sink)
        self.started.append(engine)
        return engine, sink


@pytest.fixture(params=["memory", "redis"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    maker = _Maker(request.param, request)
    yield maker
    for engine in maker.started:
        await engine.stop()
