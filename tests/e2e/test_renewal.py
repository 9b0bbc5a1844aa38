"""``ladder serve`` over two Redis servers: a Python client's session is lost (its node killed,
the records of its session gone) while the Redis server holding its channel is down. The
client renews the subscription in its new session, is refused ``engine_unavailable``, and
sends it again until that server is back: what is published then reaches the subscription
without the app doing anything. Before, the refused renewal ended the subscription for good,
silently: no event, no publication ever again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis import Redis as SyncRedis

from ladder import Client
from ladder.client import Resubscribed, ServerError, SessionLost
from ladder.engine.shards import Placement
from tests.e2e.test_shard_hold import shards_healthy
from tests.engine.conftest import shards_url
from tests.support.redis import RedisServer, redis_servers
from tests.support.server import LadderServer
from tests.support.subscriptions import take

CONFIG = {"heartbeat": 2.0}


@pytest.fixture
def servers() -> Iterator[list[RedisServer]]:
    """Two Redis servers keeping their data across a restart (a channel's history survives)."""
    with redis_servers(2, persistent=True) as started:
        yield started


async def test_a_subscription_renewed_while_its_redis_server_is_down_comes_back_with_it(
    servers: list[RedisServer],
) -> None:
    place = Placement([(f"127.0.0.1:{server.port}", n) for n, server in enumerate(servers)])
    node = LadderServer(CONFIG, engine=shards_url(servers)).start()
    again: LadderServer | None = None
    try:
        client = Client(node.url, transports=["websocket"], backoff_max=1.0)
        lost: asyncio.Queue[SessionLost] = asyncio.Queue()
        told: asyncio.Queue[ServerError] = asyncio.Queue()
        resubscribed: list[Resubscribed] = []
        client.on("session_lost", lost.put_nowait)
        client.on("error", told.put_nowait)
        client.on("resubscribed", resubscribed.append)
        async with client:
            assert client.session_id is not None
            records = servers[place.of(client.session_id)]
            held = 1 - place.of(client.session_id)  # the other server holds the channel
            channel = next(f"feed:{n}" for n in range(10_000) if place.of(f"feed:{n}") == held)
            sub = client.subscribe(channel)
            await sub.ready()

            node.kill()  # the node serving the session dies...
            with SyncRedis(port=records.port) as redis:
                redis.flushall()  # ...and the records of its session are gone: it is lost
            servers[held].stop()  # while the channel's Redis server is down
            again = LadderServer(CONFIG, engine=shards_url(servers), port=node.port).start()

            assert "unknown_session" in (await asyncio.wait_for(lost.get(), 30)).reason
            refused = await asyncio.wait_for(told.get(), 30)
            assert refused.code == "engine_unavailable"
            assert f"renewing the subscription to '{channel}' in a new session was refused" in refused.reason
            assert "it is sent again" in refused.reason
            assert sub.active

            servers[held].start()
            await shards_healthy(again, 2)
            async with Client(again.url, transports=["websocket"]) as admin:
                await admin.call("publish", {"channel": channel, "count": 3})
            got = await take(sub, 3, timeout=30)
            assert [pub.data["n"] for pub in got] == [0, 1, 2]
            assert [(pub.offset, pub.epoch) for pub in got] == [(1, sub.epoch), (2, sub.epoch), (3, sub.epoch)]
            assert resubscribed == [Resubscribed(channel, True)]
            assert told.empty(), "told once, not once per retry"
    finally:
        node.stop()
        if again is not None:
            again.stop()
