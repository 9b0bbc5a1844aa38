"""A node on several Redis servers (shards) while one of them is down: what it costs the
sessions the node makes then, and those whose records that server holds. Real
``redis-server`` processes on loopback."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest

from ladder import Ladder, Limits
from ladder.engine.shards import ShardedEngine
from ladder.server.hub import internals
from tests.engine.conftest import shards_url
from tests.server.harness import Peer, Recorder, peer_on
from tests.support.redis import RedisServer, redis_servers


@pytest.fixture
def servers() -> Iterator[list[RedisServer]]:
    with redis_servers(3) as started:
        yield started


@pytest.fixture
async def hub(servers: list[RedisServer]) -> AsyncIterator[Ladder]:
    made = Ladder(engine=ShardedEngine(shards_url(servers)))
    await made.start()
    try:
        yield made
    finally:
        await made.stop()


async def stopped(engine: ShardedEngine, servers: list[RedisServer], number: int) -> str:
    """Stop server ``number`` and wait until the engine finds it down; its name."""
    name, shard = engine.shards[number]
    servers[number].stop()
    async with asyncio.timeout(10):
        while shard.healthy:  # noqa: ASYNC110 - the shard's own heartbeat notices
            await asyncio.sleep(0.05)
    assert engine.healthy, "the node still serves the other shards"
    return name


async def test_new_sessions_are_placed_on_a_shard_that_is_up(hub: Ladder, servers: list[RedisServer]) -> None:
    """Before, their records went to the server that was down as often as to the others
    (newsess: 2, 2 and 4 of 8 sessions), and such a session was cut at its first message."""
    engine = hub.engine
    assert isinstance(engine, ShardedEngine)
    down = await stopped(engine, servers, 0)
    peers = [await Peer.open(hub) for _ in range(30)]
    placed = Counter(engine.placement.name_of(peer.session.sid) for peer in peers)
    print(f"\n30 sessions made with {down} down: {dict(placed)}")
    assert down not in placed, placed
    assert len(placed) == 2, "spread over the shards that are up"
    applied = Recorder(hub).applied
    for n, peer in enumerate(peers):
        await peer.send({"t": "emit", "ev": "do", "d": n})
        assert not peer.att.closed
    assert applied == list(range(30))


async def test_a_session_whose_shard_is_down_is_told_which_shard(servers: list[RedisServer]) -> None:
    """Its refusal said "this server cannot reach its engine", of a node that reached two
    servers of three and stayed healthy. (``shard_hold=0``: refused at once, not held; the
    hold is ``test_shard_hold.py``'s.)"""
    hub = Ladder(engine=ShardedEngine(shards_url(servers)), limits=Limits(shard_hold=0))
    await hub.start()
    try:
        await told_which_shard(hub, servers)
    finally:
        await hub.stop()


async def told_which_shard(hub: Ladder, servers: list[RedisServer]) -> None:
    engine = hub.engine
    assert isinstance(engine, ShardedEngine)
    applied = Recorder(hub).applied
    held = await peer_on(hub, engine.shards[0][1])
    down = await stopped(engine, servers, 0)
    await held.send({"t": "emit", "ev": "do", "d": "a"})
    assert applied == [], "not applied: it could not be recorded"
    error = held.att.close_error
    assert held.att.closed and error is not None and error.code == "engine_unavailable"
    print(f"\nclose reason: {error.close_reason!r}")
    assert down in error.close_reason and "cannot reach its engine" not in error.reason


async def test_a_node_whose_lease_server_is_down_applies_the_messages_of_sessions_on_the_others(
    servers: list[RedisServer],
) -> None:
    """The server keeping a node's lease (its own by rendezvous) down past the lease: the
    node cannot confirm its lease, and nobody can declare it dead there either. Its messages
    waited for the lease to be confirmed, so sessions whose records live on the servers that
    are up stopped too (a call got no answer until that server was back); they go on, as
    before leases, and only the sessions of the server that is down wait."""
    hub = Ladder(engine=ShardedEngine(shards_url(servers)), node_lease=0.5)
    await hub.start()
    try:
        engine = hub.engine
        assert isinstance(engine, ShardedEngine)
        keeper = engine.routing.keeper(engine.node_id)  # type: ignore[attr-defined]
        number = next(n for n, (_, shard) in enumerate(engine.shards) if shard is keeper)
        peer = await Peer.open(hub)
        while engine.placement.of(peer.session.sid) is keeper:  # (records on a server that stays up)
            peer = await Peer.open(hub)
        applied = Recorder(hub).applied
        assert (await peer.request({"t": "call", "ev": "do", "d": 1}))["t"] == "reply"
        await stopped(engine, servers, number)
        lease = internals(hub).lease
        async with asyncio.timeout(5):  # until the lease its server last confirmed lapsed
            while time.monotonic() < lease._held_at + lease.seconds:  # noqa: ASYNC110 - time passing
                await asyncio.sleep(0.05)
        async with asyncio.timeout(5):
            reply = await peer.request({"t": "call", "ev": "do", "d": 2})
        assert reply["t"] == "reply", reply
        assert applied == [1, 2]
    finally:
        await hub.stop()
