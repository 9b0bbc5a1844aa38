"""The Redis engines' keys: no two channels share one, and a key holding another type of
value is reported as such (``internal``, logged with the key), not as an outage."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from ladder.engine.base import ChannelOptions, Member
from ladder.engine.redis import RedisEngine
from ladder.engine.redis.link import RedisLink
from ladder.engine.redis.presence import RedisPresence
from ladder.engine.rediscluster.link import ClusterLink
from ladder.protocol.codec import Payload
from ladder.protocol.errors import LadderError
from tests.engine.conftest import Sink
from tests.support.redis import RedisServer

OPTIONS = ChannelOptions(history_size=10, history_ttl=600)

NAMES = ["x", "x:t", "x:t:t", "t", ":t", "x:", "", "m:x", "p:x", "pm:x", "{x}", "{x}:t", "x}:t", "#x", "#x:t"]
"""Channel names that collided, or could under a layout with a suffix or a tag."""


def _channel_keys(link: RedisLink, channel: str) -> list[str]:
    """Every key the engine keeps for ``channel``: position, history, pub/sub, presence."""
    presence = RedisPresence(link, sweep_every=5.0)
    return [link.k("m", channel), link.k("s", channel), link.k("c", channel), *presence._keys(channel)[:2]]


@pytest.mark.parametrize("cluster", [False, True], ids=["redis", "redis-cluster"])
def test_no_two_channels_share_a_key(cluster: bool) -> None:
    """Channel ``x:t``'s presence hash was channel ``x``'s presence sorted set: whichever
    was used first made every presence call of the other fail with ``WRONGTYPE``."""
    options = {
        "prefix": "ladder",
        "node_id": "n1",
        "connect_timeout": 1.0,
        "command_timeout": 1.0,
        "max_connections": 1,
        "pool_timeout": 1.0,
    }
    link = ClusterLink("redis+cluster://127.0.0.1:7000", **options) if cluster else RedisLink("redis://x", **options)
    owner: dict[str, str] = {}
    for channel in NAMES:
        for key in _channel_keys(link, channel):
            assert owner.setdefault(key, channel) == channel, f"{key!r}: of {owner[key]!r} and {channel!r}"
    assert len(owner) == 5 * len(NAMES)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


_prefixes = itertools.count()


@pytest.fixture
async def engine(redis_server: RedisServer) -> AsyncIterator[RedisEngine]:
    node = RedisEngine(redis_server.url, prefix=f"k{next(_prefixes)}")
    await node.start(Sink())
    yield node
    await node.stop()


@pytest.mark.parametrize("order", [("lobby:t", "lobby"), ("lobby", "lobby:t")], ids=["suffixed-first", "plain-first"])
async def test_presence_of_a_channel_and_its_suffixed_name_are_apart(
    engine: RedisEngine, order: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ladder")
    first, second = order
    for n, channel in enumerate(order):
        await engine.presence_add(channel, Member(f"c{n}", channel), ttl=30)
        await engine.publish(channel, Payload.of(n), OPTIONS)
    assert [m.user for m in await engine.presence(first)] == [first]
    assert [m.user for m in await engine.presence(second)] == [second]
    await engine.presence_remove(first, Member("c0", first))
    assert await engine.presence(first) == []
    assert [m.user for m in await engine.presence(second)] == [second]
    for n, channel in enumerate(order):
        history = await engine.history(channel, since=None, limit=10, options=OPTIONS)
        assert [(p.offset, p.data) for p in history.publications] == [(1, n)]
    assert not caplog.records, [r.getMessage() for r in caplog.records]


async def test_a_key_holding_another_type_is_internal_logged_with_the_key_not_an_outage(
    redis_server: RedisServer, engine: RedisEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis's ``WRONGTYPE`` was answered ``engine_unavailable`` ("retry") with the script's
    SHA and line in the client's reason; no retry helps, and those are the log's."""
    caplog.set_level(logging.WARNING, logger="ladder")
    client = aioredis.from_url(redis_server.url)
    try:
        await client.set(f"{engine.prefix}:pe:broken", "a string")
    finally:
        await client.aclose()
    with pytest.raises(LadderError) as refused:
        await engine.presence_add("broken", Member("c1", "u"), ttl=30)
    assert refused.value.code == "internal"
    assert "WRONGTYPE" not in refused.value.reason and "script" not in refused.value.reason
    assert "server log" in refused.value.reason
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"{engine.prefix}:pe:broken" in record.getMessage() and "WRONGTYPE" in record.getMessage()
    assert [m.user for m in await engine.presence("fine")] == [], "other channels go on"


@pytest.mark.parametrize("first", ["publish", "history"])
async def test_a_channel_starting_its_epoch_keeps_another_programs_value_under_its_stream_key(
    redis_server: RedisServer, engine: RedisEngine, caplog: pytest.LogCaptureFixture, first: str
) -> None:
    """A channel with no position deleted whatever its stream key held when it started an
    epoch (meant for the history of a lost position): another program's string was replaced
    by a stream, with no error and nothing logged. It is kept, and answered ``internal``."""
    caplog.set_level(logging.WARNING, logger="ladder")
    key = f"{engine.prefix}:s:foreign"
    client = aioredis.from_url(redis_server.url)
    try:
        await client.set(key, "another program's value")
        with pytest.raises(LadderError) as refused:
            if first == "publish":
                await engine.publish("foreign", Payload.of(1), OPTIONS)
            else:
                await engine.history("foreign", since=None, limit=10, options=OPTIONS)
        assert refused.value.code == "internal" and "server log" in refused.value.reason
        assert await client.get(key) == b"another program's value"
        assert await client.exists(f"{engine.prefix}:m:foreign") == 0, "nothing written"
    finally:
        await client.aclose()
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert key in record.getMessage() and "WRONGTYPE" in record.getMessage()
    published = await engine.publish("fine", Payload.of(2), OPTIONS)
    assert published.offset == 1, "other channels go on"
