"""``ladder serve`` over three Redis servers, one of them stopped: the Python client of a
session whose records that server keeps makes a call, and keeps its WebSocket (both
drivers) and its deliveries from the other servers until the server is back and the call is
answered, once. Before, the call closed the WebSocket with 1011 and the client reconnected,
over and over, until the server was back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ladder import Client
from ladder.client import Connected, Disconnected, ServerError, Subscription
from ladder.engine.shards import Placement
from tests.engine.conftest import shards_url
from tests.support.redis import RedisServer, redis_servers
from tests.support.server import LadderServer
from tests.support.subscriptions import take

DRIVERS = {"native": (), "asgi": ("--asgi-ws",)}
CONFIG: dict[str, Any] = {"heartbeat": 2.0}


@pytest.fixture
def servers() -> Iterator[list[RedisServer]]:
    with redis_servers(3) as started:
        yield started


def placement(servers: list[RedisServer]) -> Placement[int]:
    """Session id or channel -> the index of the server holding it (as the node places them)."""
    return Placement([(f"127.0.0.1:{server.port}", n) for n, server in enumerate(servers)])


async def shards_healthy(server: LadderServer, count: int) -> None:
    """Wait until the node finds ``count`` of its Redis servers answering."""
    async with httpx.AsyncClient() as http, asyncio.timeout(15):
        while (await http.get(f"{server.url}/health")).json()["shards_healthy"] != count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # (the node's heartbeats notice; /health is where it says)


class Watched:
    """A client's connections, disconnections and errors, as they come."""

    def __init__(self, client: Client) -> None:
        self.connected: list[Connected] = []
        self.disconnected: list[Disconnected] = []
        self.errors: list[ServerError] = []
        self.gone = asyncio.Event()
        client.on("connected", self.connected.append)
        client.on("disconnected", self._disconnected)
        client.on("error", self.errors.append)

    def _disconnected(self, event: Disconnected) -> None:
        self.disconnected.append(event)
        self.gone.set()

    async def first_end(self) -> str:
        """Why the first connection ended (once it did)."""
        async with asyncio.timeout(10):
            await self.gone.wait()
        return self.disconnected[0].reason


async def held_call(
    servers: list[RedisServer],
    server: LadderServer,
    client: Client,
    stack: contextlib.AsyncExitStack,
    *,
    key: str,
    count: int,
) -> tuple[asyncio.Task[Any], Client, Subscription, str, int]:
    """The server keeping ``client``'s records stopped while it follows a channel of another
    server: a call of ``client`` (recording ``key``) is made, and ``count`` publications of
    that channel reach it (published by an admin client held elsewhere) while the call
    waits. Returns the call, the admin client, the subscription, its channel and the victim."""
    place = placement(servers)
    assert client.session_id is not None
    victim = place.of(client.session_id)
    feed = next(f"feed:{n}" for n in range(10_000) if place.of(f"feed:{n}") != victim)
    sub = client.subscribe(feed)
    await sub.ready()
    servers[victim].stop()
    await shards_healthy(server, 2)
    calling = asyncio.create_task(client.call("record", {"key": key, "value": "once"}, timeout=60))
    admin = await stack.enter_async_context(Client(server.url, transports=["websocket"]))
    assert admin.session_id is not None and place.of(admin.session_id) != victim
    await admin.call("publish", {"channel": feed, "count": count, "interval": 0.05})
    got = await take(sub, count, timeout=10)
    assert [pub.data["n"] for pub in got] == list(range(count)), "deliveries went on"
    assert not calling.done(), "the call waits for the server holding its session"
    return calling, admin, sub, feed, victim


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_call_waits_for_its_shard_while_deliveries_go_on(servers: list[RedisServer], driver: str) -> None:
    with LadderServer(CONFIG, engine=shards_url(servers), args=DRIVERS[driver]) as server:
        client = Client(server.url, transports=["websocket"])
        watched = Watched(client)
        async with client, contextlib.AsyncExitStack() as stack:
            calling, admin, sub, feed, victim = await held_call(servers, server, client, stack, key=driver, count=20)
            assert [e.reason for e in watched.disconnected] == [], "the WebSocket is kept"
            assert [e.code for e in watched.errors] == ["engine_unavailable"], "told once, not closed"

            servers[victim].start()
            async with asyncio.timeout(30):
                assert await calling is None  # (``record`` answers nothing)
            assert await admin.call("records", driver) == ["once"], "applied exactly once"
            await admin.call("publish", {"channel": feed, "count": 1, "start": 20})
            assert [pub.data["n"] for pub in await take(sub, 1, timeout=10)] == [20]
            assert len(watched.connected) == 1 and watched.disconnected == [], "no reconnection"
    print(f"\n{driver}: errors {[(e.code, e.reason) for e in watched.errors]}")


@pytest.mark.parametrize("rung", ["sse", "longpoll"])
async def test_on_an_http_rung_the_client_keeps_its_stream_while_its_posts_are_refused(
    servers: list[RedisServer], rung: str
) -> None:
    """ops.md: a ``POST send`` of a session whose records' server is down is answered 503
    at once, and the client keeps its stream. It gave the transport up after three retries
    (1.5 s), reconnecting over and over, its deliveries in bursts; now it writes the POST
    again, the pause growing, and its stream goes on."""
    with LadderServer(CONFIG, engine=shards_url(servers)) as server:
        client = Client(server.url, transports=[rung])
        watched = Watched(client)
        async with client, contextlib.AsyncExitStack() as stack:
            assert client.transport == rung
            calling, admin, _, _, victim = await held_call(servers, server, client, stack, key=rung, count=60)
            assert [e.reason for e in watched.disconnected] == [], "the stream is kept"

            servers[victim].start()
            async with asyncio.timeout(30):
                assert await calling is None  # (``record`` answers nothing)
            assert await admin.call("records", rung) == ["once"], "applied exactly once"
            assert len(watched.connected) == 1 and watched.disconnected == [], "no reconnection"


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_hold_past_its_limit_closes_with_1011_as_before(servers: list[RedisServer], driver: str) -> None:
    place = placement(servers)
    config = {**CONFIG, "limits": {"shard_hold": 1.0}}
    with LadderServer(config, engine=shards_url(servers), args=DRIVERS[driver]) as server:
        client = Client(server.url, transports=["websocket"])
        watched = Watched(client)
        async with client:
            assert client.session_id is not None
            victim = place.of(client.session_id)
            servers[victim].stop()
            await shards_healthy(server, 2)
            await client.emit("record", {"key": driver, "value": "late"})
            reason = await watched.first_end()
            assert f"(1011 engine_unavailable: shard 127.0.0.1:{servers[victim].port}" in reason, reason
            servers[victim].start()
            # Sent again after the client resumed, and applied before this call, sent after it.
            assert await client.call("records", driver, timeout=30) == ["late"]
        print(f"\n{driver}: {reason}")


async def test_the_whole_engine_down_still_closes(servers: list[RedisServer]) -> None:
    with LadderServer(CONFIG, engine=shards_url(servers)) as server:
        client = Client(server.url, transports=["websocket"])
        watched = Watched(client)
        async with client:
            for redis in servers:
                redis.stop()
            await shards_healthy(server, 0)
            await client.emit("record", {"key": "all", "value": "down"})
            reason = await watched.first_end()
            assert "(1011 engine_unavailable: this server cannot reach its engine" in reason, reason
