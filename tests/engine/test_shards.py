"""Several independent Redis servers as one engine: placement, routing across shards, and a
shard down costing only its share. Real ``redis-server`` processes on loopback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
import redis as redis_py

from ladder import Publisher
from ladder.engine import create_engine
from ladder.engine.base import ChannelOptions, Publication
from ladder.engine.shards import Placement, ShardedEngine
from ladder.engine.shards.engine import split_url
from ladder.errors import ConfigurationError
from ladder.protocol.codec import Payload
from ladder.protocol.errors import LadderError
from tests.engine.conftest import Sink, shards_url
from tests.support.redis import RedisServer, redis_servers

OPTIONS = ChannelOptions(history_size=100, history_ttl=600)


# -- placement (pure) ----------------------------------------------------------------------


def test_adding_a_shard_moves_only_the_share_it_takes() -> None:
    keys = [f"room:{n}" for n in range(20_000)]
    three = Placement([(name, name) for name in ("a:1", "b:2", "c:3")])
    four = Placement([(name, name) for name in ("d:4", "c:3", "a:1", "b:2")])  # order does not matter
    before = {key: three.of(key) for key in keys}
    after = {key: four.of(key) for key in keys}
    moved = [key for key in keys if before[key] != after[key]]
    assert all(after[key] == "d:4" for key in moved), "keys move only to the new shard"
    share = len(moved) / len(keys)
    print(f"\nadding a 4th shard moved {share:.1%} of {len(keys)} keys")
    assert 0.22 < share < 0.28, "about a quarter moves"
    spread = Counter(before.values())
    assert all(6_000 < count < 7_400 for count in spread.values()), spread


def test_ranked_puts_the_holder_first_and_lists_every_shard() -> None:
    placement = Placement([(name, name) for name in ("a:1", "b:2", "c:3")])
    for key in ("x", "y", "node-1"):
        ranked = placement.ranked(key)
        assert ranked[0] == placement.of(key) == placement.name_of(key) and sorted(ranked) == [
            "a:1",
            "b:2",
            "c:3",
        ]
    with pytest.raises(ValueError, match="differ"):
        Placement([("a", 1), ("a", 2)])


def test_a_url_listing_servers_builds_a_sharded_engine() -> None:
    assert split_url("redis://:pw@h1:1,h2:2/3?client_name=n") == [
        ("h1:1", "redis://:pw@h1:1/3?client_name=n"),
        ("h2:2", "redis://:pw@h2:2/3?client_name=n"),
    ]
    engine = create_engine("redis://127.0.0.1:1,127.0.0.1:2/0")
    assert isinstance(engine, ShardedEngine) and len(engine.shards) == 2
    for bad in ("redis://h1:1,/0", "redis://h1:1,h1:1/0"):
        with pytest.raises(ConfigurationError):
            ShardedEngine(bad)


def test_a_list_that_names_one_server_twice_or_writes_a_server_apart_is_refused() -> None:
    """Each was taken: two shards on one server (every message to a node arriving twice), or
    refused as "the database '...' is not a number", or a unix URL naming a socket file with
    a comma in it."""
    for url, problem in [
        ("redis://127.0.0.1,127.0.0.1:6379/0", "it lists a server twice ('127.0.0.1' and '127.0.0.1:6379' are one"),
        ("redis://Redis-A:6379,redis-a/0", "it lists a server twice ('Redis-A:6379' and 'redis-a' are one"),
        ("rediss://[::1],[::1]:6379/0", "it lists a server twice"),
        ("redis://h:1,h:1/0", "it lists a server twice: list each server once"),
        (
            "redis://127.0.0.1:22050,rediss://127.0.0.1:22051/0",
            "'rediss://127.0.0.1:22051/0' gives a server of the list a scheme of its own: one scheme "
            "and one database for the whole list: redis://h1:p1,h2:p2/0",
        ),
        (
            "redis://h:1/0,h:2/0",
            "'/0,h:2/0' gives a server of the list a database of its own: one scheme and one "
            "database for the whole list",
        ),
        ("unix:///tmp/a.sock,/tmp/b.sock", "it lists several socket files, which are not supported"),
        (
            "redis://127.0.0.1:17201,/0",
            "the list has an empty entry (a comma with no server on one side): drop that comma",
        ),
        ("redis://a:1,,b:2/0", "the list has an empty entry"),
    ]:
        with pytest.raises(ConfigurationError) as caught:
            create_engine(url)
        assert str(caught.value).startswith(f"engine: {url!r} is not a Redis URL: {problem}"), caught.value
    for url in ("redis://h:1,h:2/0", "redis://127.0.0.1:6379,localhost:6379/0", "redis://h,h:6380/0"):
        assert isinstance(create_engine(url), ShardedEngine), "told apart when they answer, if at all"
    with pytest.raises(ConfigurationError, match="lists a server twice"):
        ShardedEngine("redis://h,h:6379/0")  # (built directly too)


# -- three real servers --------------------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[list[RedisServer]]:
    with redis_servers(3) as started:
        yield started


@pytest.fixture
async def nodes(servers: list[RedisServer]) -> AsyncIterator[list[tuple[ShardedEngine, Sink]]]:
    """Two nodes (engines with their sinks) sharing the three servers."""
    made: list[tuple[ShardedEngine, Sink]] = []
    names = Placement([(f"127.0.0.1:{server.port}", n) for n, server in enumerate(servers)])
    # node-b's messages travel through the first server while it is up (it is the one stopped)
    node_b = next(f"node-b{n}" for n in range(1000) if names.of(f"node-b{n}") == 0)
    try:
        for name in ("node-a", node_b):
            engine, sink = ShardedEngine(shards_url(servers), node_id=name, sweep_every=0.2), Sink()
            await engine.start(sink)
            assert engine.healthy
            made.append((engine, sink))
        yield made
    finally:
        for engine, _ in made:
            await engine.stop()


def channel_on(engine: ShardedEngine, shard: int, stem: str = "room", avoid: int | None = None) -> str:
    """A channel name the placement puts on shard number ``shard``."""
    target = engine.shards[shard][1]
    return next(f"{stem}:{n}" for n in range(10_000) if engine.placement.of(f"{stem}:{n}") is target)


async def test_a_thousand_channels_land_on_every_shard(
    servers: list[RedisServer], nodes: list[tuple[ShardedEngine, Sink]]
) -> None:
    engine = nodes[0][0]
    for n in range(1000):
        await engine.publish(f"spread:{n}", Payload.of(n), OPTIONS)
    held = []
    for server in servers:
        client = redis_py.Redis(port=server.port)
        held.append(sum(1 for _ in client.scan_iter(match="ladder:m:spread:*", count=1000)))
        client.close()
    print(f"\n1000 channels over three servers: {held}")
    assert sum(held) == 1000, "each channel lives on exactly one server"
    assert all(280 < count < 390 for count in held), held


async def test_a_session_recorded_on_one_shard_is_found_on_a_node_reached_through_another(
    nodes: list[tuple[ShardedEngine, Sink]],
) -> None:
    (a, _), (b, sink_b) = nodes
    messenger_of_b = a.placement.ranked(b.node_id)[0]
    sid = next(f"node-a.{n}" for n in range(1000) if a.placement.of(f"node-a.{n}") is not messenger_of_b)
    await b.claim_session(sid, ttl=30)  # handed over from a to b
    assert await a.locate_session(sid) == b.node_id
    await a.send_node(b.node_id, b"hello b")
    assert await asyncio.wait_for(sink_b.node.get(), 5) == b"hello b"
    assert await a.broadcast(b"all") == 1 and await asyncio.wait_for(sink_b.node.get(), 5) == b"all"
    await b.release_session(sid)
    assert await a.locate_session(sid) == "node-a"


async def test_a_message_goes_through_the_next_shard_where_its_node_is_not_subscribed_yet(
    nodes: list[tuple[ShardedEngine, Sink]],
) -> None:
    """A Redis server back from a restart is healthy for the sender before the receiver's
    listener (reconnecting with backoff) subscribed there again: a message published there
    reaches nobody. Before, it was lost, and a question carried by it waited out its timeout."""
    (a, _), (b, sink_b) = nodes
    first = b.placement.ranked(b.node_id)[0]
    key = first._link.node_key(b.node_id)
    assert first._listener.pubsub is not None
    await first._listener.pubsub.unsubscribe(key)  # as if b had not subscribed there again yet
    async with asyncio.timeout(5):
        while await first._link.subscribers(key):  # noqa: ASYNC110 - Redis applies it soon
            await asyncio.sleep(0.01)
    assert first.healthy, "the sender cannot tell"
    assert await a.send_node(b.node_id, b"through the next shard")
    assert await asyncio.wait_for(sink_b.node.get(), 5) == b"through the next shard"
    assert sink_b.node.empty(), "once"
    assert await a.node_alive(b.node_id)
    for _, shard in b.shards:
        listener = shard._listener
        assert listener.pubsub is not None
        await listener.pubsub.unsubscribe(shard._link.node_key(b.node_id))
    async with asyncio.timeout(5):
        while any([await s._link.subscribers(s._link.node_key(b.node_id)) for _, s in b.shards]):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert not await a.send_node(b.node_id, b"nobody hears it"), "said, so nobody waits for an answer"


async def collect(sink: Sink, channel: str, count: int, timeout: float = 10.0) -> list[Publication]:
    got: list[Publication] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            pub = await sink.pubs.get()
            if pub.channel == channel:
                got.append(pub)
    return got


async def test_a_server_down_costs_only_its_share_and_rejoins_by_itself(
    servers: list[RedisServer], nodes: list[tuple[ShardedEngine, Sink]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ladder.redis")
    (a, _), (b, sink_b) = nodes
    down, up = channel_on(a, 0), channel_on(a, 1)
    await b.listen(down)
    await b.listen(up)
    await a.publish(down, Payload.of("before"), OPTIONS)
    gone_sid = next(f"node-a.{n}" for n in range(1000) if a.placement.of(f"node-a.{n}") is a.shards[0][1])
    kept_sid = next(f"node-a.{n}" for n in range(1000) if a.placement.of(f"node-a.{n}") is a.shards[1][1])
    assert a.healthy_for(gone_sid) and a.healthy_for(kept_sid)
    assert [p.data for p in await collect(sink_b, down, 1)] == ["before"]

    servers[0].stop()
    async with asyncio.timeout(5):  # answers awaited through that server may be lost: told at once
        await sink_b.route_lost.wait()
    refused = 0
    gaps: list[float] = []
    last = time.monotonic()
    for n in range(200):
        with pytest.raises(LadderError) as error:
            await a.publish(down, Payload.of(n), OPTIONS)
        assert error.value.code == "engine_unavailable"
        refused += 1
        await a.publish(up, Payload.of(n), OPTIONS)
        (pub,) = await collect(sink_b, up, 1, timeout=1.0)  # never stalls a second
        now = time.monotonic()
        gaps.append(now - last)
        last = now
        assert pub.data == n and pub.offset == n + 1, "the other shard's channel loses and doubles nothing"
    print(
        f"\none server down: {refused} publishes refused on its channel; 200/200 delivered on another, "
        f"longest gap {max(gaps) * 1000:.0f} ms"
    )
    async with asyncio.timeout(5):
        while a.healthy_for(gone_sid):  # noqa: ASYNC110 - the shard's own heartbeat notices
            await asyncio.sleep(0.05)
    assert a.healthy and b.healthy, "the node still serves the other shards"
    assert not a.healthy_for(gone_sid) and a.healthy_for(kept_sid)
    warned = [r.message for r in caplog.records if "unhealthy" in r.message]
    assert warned and all("the node stays healthy while another shard answers" in w for w in warned), warned
    assert not any("/health answers 503" in w for w in warned), "(it said so of a node that stayed healthy)"
    await a.send_node(b.node_id, b"through another shard")  # its own messenger is down
    assert await asyncio.wait_for(sink_b.node.get(), 5) == b"through another shard"
    assert await a.node_alive(b.node_id)
    details = a.details()
    assert details["shards_healthy"] == 2
    assert [s["healthy"] for s in details["shards"]] == [False, True, True]
    assert sink_b.routes_lost == 1, "told once when the link broke, not at every reconnection attempt"

    servers[0].start()  # same port, empty: the channel's stream is lost and said so
    async with asyncio.timeout(15):
        channel, position = await sink_b.resets.get()
    assert channel == down and position.offset == 0
    async with asyncio.timeout(15):
        while not a.healthy_for(gone_sid):  # noqa: ASYNC110 - the shard reconnects on its own
            await asyncio.sleep(0.05)
    pub = await a.publish(down, Payload.of("after"), OPTIONS)
    assert pub.offset == 1
    assert [p.data for p in await collect(sink_b, down, 1)] == ["after"]


async def test_a_publisher_is_not_counted_or_reached_by_a_broadcast(
    servers: list[RedisServer], nodes: list[tuple[ShardedEngine, Sink]]
) -> None:
    """A publisher answers no node: listening for broadcasts, it made every ``send_user``
    wait out its timeout for an answer that never came."""
    (a, _), (_, sink_b) = nodes
    async with Publisher(shards_url(servers)) as publisher:
        await publisher.start()
        assert await a.broadcast(b"all") == 1, "node-b only"
        assert await asyncio.wait_for(sink_b.node.get(), 5) == b"all"
        assert await publisher.engine.broadcast(b"asked") == 2, "both nodes (it does not hear itself)"
