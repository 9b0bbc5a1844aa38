"""The server an engine reaches is asked what it is: one Redis listed under two names, a
cluster node behind ``redis://``, a plain Redis behind ``redis+cluster://``, each refused with
one line naming the fix (at start-up if it answers then, later with an ERROR line and the
node unhealthy); and a cluster engine whose seeds do not answer yet starts, as the others do.
Real ``redis-server`` processes on loopback."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from ladder import Ladder
from ladder.engine.base import Engine
from ladder.engine.redis import RedisEngine
from ladder.engine.rediscluster import RedisClusterEngine
from ladder.engine.shards import ShardedEngine
from ladder.errors import ConfigurationError
from tests.chaos.relay import FaultRelay
from tests.deploy.lb import make_tls
from tests.engine.conftest import Sink
from tests.support.redis import RedisServer, redis_servers
from tests.support.redis_cluster import ClusterNodeServer, RedisCluster
from tests.support.server import LadderServer, free_port


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
        # Both entries answer now, and the later one stays refused: the node never serves the duplicates.
        async with asyncio.timeout(10):
            while not all(shard._commands_ok for _, shard in engine.shards):  # noqa: ASYNC110 - the heartbeat's own flag
                await asyncio.sleep(0.05)
        assert not engine.healthy and not engine.healthy_for(f"{engine.node_id}.x")
        assert "are one Redis server" in str(engine.details()["shards"])
    finally:
        await engine.stop()
        redis.close()


async def _settled(engine: ShardedEngine, errors: Errors) -> None:
    """Both entries answered, and each has checked what its server is (and acted on it)."""
    async with asyncio.timeout(10):
        await errors.came.wait()
        while not all(shard._commands_ok and shard._listener.ok for _, shard in engine.shards):  # noqa: ASYNC110 - the engine's own flags
            await asyncio.sleep(0.05)


async def _heard_once(engine: ShardedEngine, sink: Sink, port: int, messages: list[bytes]) -> None:
    """Each of ``messages``, sent to the node through the engine and then published to its
    key on the server at ``port`` directly, reaches the node once."""
    key = f"ladder:n:{engine.node_id}"
    received: list[bytes] = []
    async with asyncio.timeout(10):
        for message in messages:
            assert await engine.send_node(engine.node_id, message)
            received.append(await sink.node.get())
        async with aioredis.Redis(port=port) as client:
            listeners = await client.publish(key, b"last")
        received.append(await sink.node.get())
    while not sink.node.empty():
        received.append(sink.node.get_nowait())
    assert (listeners, received) == (1, [*messages, b"last"]), (
        f"{listeners} listeners of this node on {port}: every message to it arrives {listeners} times"
    )


async def test_one_server_listed_twice_that_answers_later_delivers_each_message_to_the_node_once(
    errors: Errors,
) -> None:
    """Every shard's listener takes the node's own key: the entry refused as another's server
    leaves it (its listener unsubscribes), so a message to the node arrives once."""
    redis = RedisServer()  # its port is chosen; nothing listens there yet
    engine = ShardedEngine(f"redis://127.0.0.1:{redis.port},localhost:{redis.port}/0")
    sink = Sink()
    try:
        await engine.start(sink)
        redis.start()
        await _settled(engine, errors)
        await _heard_once(engine, sink, redis.port, [b"one", b"two"])
        refused = [name for name, shard in engine.shards if shard.refused]
        assert len(refused) == 1 and not engine.healthy, "the later entry refused, the node unhealthy"
    finally:
        await engine.stop()
        redis.close()


async def test_an_entry_refused_as_another_server_takes_the_node_messages_again_once_it_reaches_its_own(
    errors: Errors,
) -> None:
    """Behind a relay, the second entry first reaches the first entry's server (refused, it
    leaves the node's messages to the first), then another server: it is no longer refused,
    its listener takes the node's messages there, and the node is healthy again."""
    with redis_servers(2) as (first, second):
        relay = FaultRelay([first.port, second.port])
        relay.port = free_port()
        relay.take_out(1)  # to the first server, once it listens
        engine = ShardedEngine(f"redis://127.0.0.1:{first.port},127.0.0.1:{relay.port}/0")
        sink = Sink()
        try:
            await engine.start(sink)  # (the relay's entry does not answer yet)
            await relay.listen()
            await _settled(engine, errors)
            relayed = engine.shards[1][1]
            assert relayed.refused is not None and relayed.deferring
            await _heard_once(engine, sink, first.port, [b"one"])
            relay.take_out(0)
            relay.take_out(1, out=False)
            relay.reset_all()  # its connections come back to the second server
            async with asyncio.timeout(10):
                while not (engine.healthy and relayed._listener.ok and not relayed.deferring):  # noqa: ASYNC110 - the engine's own flags
                    await asyncio.sleep(0.05)
            await _heard_once(engine, sink, first.port, [b"two"])
            await _heard_once(engine, sink, second.port, [b"three"])
        finally:
            await engine.stop()
            await relay.stop()


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


async def test_new_sessions_refused_meanwhile_are_told_which_server_is_refused_and_the_fix() -> None:
    """A node whose server turned out to be the wrong kind refused new sessions with "this
    node cannot reach its engine": false (it reaches it), and naming neither the server nor
    the fix, which only the log said."""
    node = ClusterNodeServer()  # its port is chosen; nothing listens there yet
    with LadderServer(engine=f"redis://127.0.0.1:{node.port}/0") as server:
        try:
            node.start()
            async with httpx.AsyncClient() as http, asyncio.timeout(15):
                while "cluster node" not in str((await http.get(f"{server.url}/health")).json()):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # (the node's heartbeat asks the server what it is; /health says)
                refused = await http.get(f"{server.url}/poll", params={"v": "1"})
            assert refused.status_code == 503
            reason = refused.json()["reason"]
            assert reason.startswith(f"this node cannot use its engine: redis://127.0.0.1:{node.port}/0 is refused: "), reason
            assert "this Redis is a cluster node; use redis+cluster://" in reason, reason
        finally:
            node.close()


async def test_a_cluster_url_at_a_plain_redis_is_refused_at_start(redis: RedisServer) -> None:
    said = await refused_at_start(RedisClusterEngine(f"redis+cluster://127.0.0.1:{redis.port}"))
    print(f"\n{said}")
    assert said == (
        f"engine: 'redis+cluster://127.0.0.1:{redis.port}': this Redis (127.0.0.1:{redis.port}) is "
        f"not a cluster; use redis://127.0.0.1:{redis.port}/0 (or list several servers: "
        "redis://h1:6379,h2:6379/0)"
    )


async def test_a_database_the_server_does_not_have_is_refused_at_start(redis: RedisServer) -> None:
    """Every connection's SELECT was refused (``DB index is out of range``), which the node
    took for an outage that never ends: it started, answered /health 503 and logged
    "unhealthy" until someone read why."""
    said = await refused_at_start(RedisEngine(f"redis://127.0.0.1:{redis.port}/99"))
    print(f"\n{said}")
    assert said.startswith(f"engine: 'redis://127.0.0.1:{redis.port}/99': this Redis has no database 99; ")
    assert "raise databases in its redis.conf" in said


async def test_credentials_the_server_refuses_are_refused_at_start_naming_the_url_s_form(redis: RedisServer) -> None:
    """A wrong password, or none for a server that asks one, was taken for an outage that
    never ends: the node started, answered /health 503 and logged redis-py's words ("HELLO
    must be called with the client already authenticated...") with no fix."""
    admin = aioredis.Redis.from_url(redis.url)
    await admin.config_set("requirepass", "sekret")
    await admin.aclose()
    for url in (f"redis://127.0.0.1:{redis.port}/0", f"redis://:wrong@127.0.0.1:{redis.port}/0"):
        said = await refused_at_start(RedisEngine(url))
        print(f"\n{said}")
        assert "this Redis refused the URL's credentials" in said and "redis://:PASSWORD@host:port/0" in said
        assert "wrong" not in said, "the password is not written out"
    engine = RedisEngine(f"redis://:sekret@127.0.0.1:{redis.port}/0")
    await engine.start(Sink())
    await engine.stop()


async def test_a_url_at_a_server_that_does_not_speak_redis_is_refused_at_start() -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        said = await refused_at_start(RedisEngine(f"redis://127.0.0.1:{port}/0"))
    finally:
        server.close()
        await server.wait_closed()
    print(f"\n{said}")
    assert "does not speak Redis" in said and "check the URL's host and port" in said


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
    setting that cannot work is one line, not a traceback, and not twice (the failure's
    message is what an ASGI server logs again: uvicorn did, as ``ERROR: engine: ...``)."""
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
    assert sent == [{"type": "lifespan.startup.failed", "message": ""}]
    (record,) = [r for r in caplog.records if r.name == "ladder"]
    said = record.getMessage()
    assert said.startswith("startup failed: engine: ") and record.exc_info is None
    assert "this Redis (127.0.0.1:" in said and "is not a cluster" in said


class TlsRedis(RedisServer):
    """A redis-server that speaks only TLS, on its port (a throwaway CA's certificate)."""

    def __init__(self) -> None:
        super().__init__()
        self.tls = make_tls()

    def extra_args(self) -> list[str]:
        return [
            "--tls-port", str(self.port), "--port", "0",
            "--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
            "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no",
        ]  # fmt: skip

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.tls.dir, ignore_errors=True)


async def test_a_url_whose_scheme_the_server_does_not_speak_is_refused_at_start_naming_the_other(
    redis: RedisServer,
) -> None:
    """``rediss://`` at a plain Redis timed out connecting and ``redis://`` at a TLS port was
    reset: both were taken for an outage that never ends (the node started, /health 503,
    redis-py's words and no fix). The right scheme works, TLS included."""
    said = await refused_at_start(RedisEngine(f"rediss://127.0.0.1:{redis.port}/0"))
    print(f"\n{said}")
    assert f"this Redis does not speak TLS (it answered a plain PING); use redis://127.0.0.1:{redis.port}/0" in said
    with TlsRedis() as tls:
        said = await refused_at_start(RedisEngine(f"redis://:sekret@127.0.0.1:{tls.port}/0"))
        print(said)
        assert f"this server speaks TLS (it completed a TLS handshake); use rediss://:***@127.0.0.1:{tls.port}/0" in said
        assert "ssl_ca_certs=" in said and "sekret" not in said
        said = await refused_at_start(RedisClusterEngine(f"redis+cluster://127.0.0.1:{tls.port}"))
        assert f"use rediss+cluster://127.0.0.1:{tls.port}" in said, said
        engine = RedisEngine(f"rediss://127.0.0.1:{tls.port}/0?ssl_ca_certs={tls.tls.ca}")
        await engine.start(Sink())
        try:
            assert engine.healthy
        finally:
            await engine.stop()
    nobody = free_port()  # (down: an outage, not refused)
    engine = RedisEngine(f"rediss://127.0.0.1:{nobody}/0")
    await engine.start(Sink())
    assert not engine.healthy and engine.refused is None
    await engine.stop()
