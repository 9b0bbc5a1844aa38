"""The server an engine reaches is asked what it is: one Redis listed under two names, a
cluster node behind ``redis://``, a plain Redis behind ``redis+cluster://``, each refused with
one line naming the fix (at start-up if it answers then, later with an ERROR line and the
node unhealthy); and a cluster engine whose seeds do not answer yet starts, as the others do.
Real ``redis-server`` processes on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from ladder import Ladder
from ladder.engine.base import Engine
from ladder.engine.redis import RedisEngine
from ladder.engine.rediscluster import RedisClusterEngine
from ladder.engine.shards import ShardedEngine
from ladder.errors import ConfigurationError
from tests.engine.conftest import Sink
from tests.support.redis import RedisServer
from tests.support.redis_cluster import ClusterNodeServer, RedisCluster


class Errors(logging.Handler):
    """ERROR records of the ``ladder.redis`` logger, with an event set by the first."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.came = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.came.set()


@pytest.fixture
def errors() -> Iterator[Errors]:
    handler, logger = Errors(), logging.getLogger("ladder.redis")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


async def refused_at_start(engine: Engine) -> str:
    with pytest.raises(ConfigurationError) as caught:
        await engine.start(Sink())
    await engine.stop()  # (nothing left running: stopping again is harmless)
    return str(caught.value)


async def test_one_server_listed_under_two_names_is_refused_at_start(redis: RedisServer) -> None:
    engine = ShardedEngine(f"redis://127.0.0.1:{redis.port},localhost:{redis.port}/0")
    said = await refused_at_start(engine)
    print(f"\n{said}")
    assert said.startswith("engine: ") and "list each server once" in said
    assert f"'127.0.0.1:{redis.port}' and 'localhost:{redis.port}'" in said
    assert not any(shard.healthy for _, shard in engine.shards), "every shard was stopped"


async def test_one_server_listed_twice_that_answers_later_keeps_the_node_unhealthy(errors: Errors) -> None:
    redis = RedisServer()  # its port is chosen; nothing listens there yet
    engine = ShardedEngine(f"redis://127.0.0.1:{redis.port},localhost:{redis.port}/0")
    try:
        await engine.start(Sink())
        assert not engine.healthy
        redis.start()
        async with asyncio.timeout(10):
            await errors.came.wait()
        said = errors.records[0].getMessage()
        print(f"\n{said}")
        assert "are one Redis server" in said and "list each server once" in said
        assert f"127.0.0.1:{redis.port}" in said and f"localhost:{redis.port}" in said
        # Both shards answer now, and stay refused: the node never serves the duplicates.
        async with asyncio.timeout(10):
            while not all(shard._commands_ok for _, shard in engine.shards):  # noqa: ASYNC110 - the heartbeat's own flag
                await asyncio.sleep(0.05)
        assert not engine.healthy and not engine.healthy_for(f"{engine.node_id}.x")
        assert "are one Redis server" in str(engine.details()["shards"])
    finally:
        await engine.stop()
        redis.close()


async def test_a_plain_url_at_a_cluster_node_is_refused_at_start() -> None:
    with ClusterNodeServer() as node:  # cluster mode on, in no cluster: it says cluster_enabled:1
        said = await refused_at_start(RedisEngine(node.url))
    print(f"\n{said}")
    assert said == (
        f"engine: 'redis://127.0.0.1:{node.port}/0': this Redis is a cluster node; "
        f"use redis+cluster://127.0.0.1:{node.port}"
    )


async def test_a_plain_url_at_a_cluster_node_that_answers_later_keeps_the_node_unhealthy(
    errors: Errors,
) -> None:
    node = ClusterNodeServer()
    engine = RedisEngine(node.url)
    try:
        await engine.start(Sink())
        assert not engine.healthy
        node.start()
        async with asyncio.timeout(10):
            await errors.came.wait()
        said = errors.records[0].getMessage()
        print(f"\n{said}")
        assert "this Redis is a cluster node; use redis+cluster://" in said
        assert not engine.healthy and engine.details()["error"].startswith("this Redis is a cluster node")
    finally:
        await engine.stop()
        node.close()


async def test_a_cluster_url_at_a_plain_redis_is_refused_at_start(redis: RedisServer) -> None:
    said = await refused_at_start(RedisClusterEngine(f"redis+cluster://127.0.0.1:{redis.port}"))
    print(f"\n{said}")
    assert said == (
        f"engine: 'redis+cluster://127.0.0.1:{redis.port}': this Redis (127.0.0.1:{redis.port}) is "
        f"not a cluster; use redis://127.0.0.1:{redis.port}/0 (or list several servers: "
        "redis://h1:6379,h2:6379/0)"
    )


async def test_a_cluster_engine_starts_before_its_cluster_answers_and_joins_it_then(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = RedisCluster()  # its ports are chosen; nothing listens there yet
    engine = RedisClusterEngine(cluster.url)
    try:
        with caplog.at_level(logging.WARNING, logger="ladder"):
            await engine.start(Sink())  # (it raised RedisClusterUnreachableError)
            assert not engine.healthy and engine.details()["error"]
            await asyncio.sleep(0.5)  # a few heartbeats and listener rounds: what they log
        assert not [r for r in caplog.records if r.exc_info], "no traceback while it waits"
        await asyncio.to_thread(cluster.start)
        async with asyncio.timeout(20):
            while not engine.healthy:  # noqa: ASYNC110 - set by the engine's own heartbeat
                await asyncio.sleep(0.05)
    finally:
        await engine.stop()
        cluster.close()


async def test_the_server_says_in_one_line_why_it_cannot_start(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``ladder serve`` (any ASGI server) reports a failed start-up from the lifespan: a
    setting that cannot work is one line, not a traceback."""
    hub = Ladder(engine=f"redis+cluster://127.0.0.1:{redis.port}")
    inbox = [{"type": "lifespan.startup"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with caplog.at_level(logging.ERROR, logger="ladder"):
        await hub({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    await hub.stop()
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "this Redis (127.0.0.1:" in sent[0]["message"] and "is not a cluster" in sent[0]["message"]
    (record,) = [r for r in caplog.records if r.name == "ladder"]
    assert record.getMessage() == f"startup failed: {sent[0]['message']}" and record.exc_info is None
