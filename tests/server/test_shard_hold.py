"""A WebSocket session whose records' Redis server is down, on a node that reaches the
others: its emits and calls wait for that server instead of closing the connection (which
made the client reconnect over and over until the server was back, each time interrupting
what the healthy servers delivered). Real ``redis-server`` processes on loopback; the
node's tick is driven by hand on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from ladder import Context, Ladder, LadderError, Limits
from ladder.engine.redis import RedisEngine
from ladder.engine.shards import ShardedEngine
from ladder.protocol.codec import JSON
from ladder.protocol.frames import decode_client_frames
from ladder.server.hub import internals
from tests.engine.conftest import shards_url
from tests.server.harness import Clock, Peer, engine_of, peer_on, started_hubs
from tests.support.redis import RedisServer, redis_servers

MakeHub = Callable[..., Awaitable[Ladder]]


@pytest.fixture
def servers() -> Iterator[list[RedisServer]]:
    with redis_servers(3) as started:
        yield started


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_hub(servers: list[RedisServer], clock: Clock) -> AsyncIterator[MakeHub]:
    async with started_hubs() as start:

        async def make(**limits: Any) -> Ladder:
            return await start(Ladder(engine=ShardedEngine(shards_url(servers)), clock=clock, limits=Limits(**limits)))

        yield make


class Applied:
    """A ``do`` handler that records what it applies, in order, and answers it."""

    def __init__(self, hub: Ladder) -> None:
        self.values: list[Any] = []

        @hub.on("do")
        async def do(ctx: Context, data: Any) -> Any:
            self.values.append(data)
            return {"did": data}


async def down(shard: RedisEngine, server: RedisServer) -> None:
    server.stop()
    async with asyncio.timeout(10):
        while shard.healthy:  # noqa: ASYNC110 - the shard's own heartbeat notices
            await asyncio.sleep(0.05)


async def up(shard: RedisEngine, server: RedisServer) -> None:
    server.start()  # (empty: its records start again)
    async with asyncio.timeout(10):
        while not shard.healthy:  # noqa: ASYNC110 - the shard's own heartbeat notices
            await asyncio.sleep(0.05)


async def written(peer: Peer, what: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """What the server writes for ``peer`` until a frame ``what`` is true of (its writer is
    woken as a driver's is)."""
    woken = asyncio.Event()
    peer.att.wake_with(woken.set)
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while not any(what(frame) for frame in out):
            woken.clear()
            out += peer.read()
            if not any(what(frame) for frame in out):
                await woken.wait()
    return out


def channel_on(engine: ShardedEngine, shard: RedisEngine) -> str:
    return next(f"room:{n}" for n in range(10_000) if engine.placement.of(f"room:{n}") is shard)


async def test_messages_wait_for_the_shard_and_deliveries_go_on(
    make_hub: MakeHub, servers: list[RedisServer], clock: Clock
) -> None:
    """Before: the first emit closed the WebSocket with 1011 (``att.closed``), and so did
    every later connection's first message until the shard was back."""
    hub = await make_hub()
    engine, node = engine_of(hub), internals(hub)
    applied = Applied(hub)
    (_, held_shard), (_, other) = engine.shards[0], engine.shards[1]
    peer = await peer_on(hub, held_shard)
    room = channel_on(engine, other)
    assert (await peer.request({"t": "sub", "ch": room}))["t"] == "reply"
    await down(held_shard, servers[0])

    await peer.send({"t": "call", "ev": "do", "d": "a"}, {"t": "emit", "ev": "do", "d": "b"})
    await peer.send({"t": "sub", "ch": "room:later"}, {"t": "ping", "n": 7})
    out = peer.read()
    assert not peer.att.closed, "the WebSocket is kept"
    assert applied.values == [], "not applied: the shard cannot record them"
    told = [frame for frame in out if frame["t"] == "err"]
    assert len(told) == 1 and "re" not in told[0] and "s" not in told[0], out
    assert told[0]["code"] == "engine_unavailable" and "wait" in told[0]["reason"]
    assert engine.record_server(peer.session.sid) in told[0]["reason"]
    assert {"t": "pong", "n": 7} in out and not any(frame["t"] == "ack" for frame in out)

    await hub.publish(room, {"n": 1})  # a healthy shard's channel
    out = await written(peer, lambda frame: frame["t"] == "pub")
    assert [frame["d"] for frame in out if frame["t"] == "pub"] == [{"n": 1}]
    await node.tick(clock.now)
    assert not peer.att.closed and applied.values == [], "still waiting, within the limit"

    await up(held_shard, servers[0])
    await node.tick(clock.now)
    out = await written(peer, lambda frame: frame == {"t": "ack", "i": 4})
    assert applied.values == ["a", "b"], "each once, in order"
    assert [frame for frame in out if frame.get("re") == 2] == [{"t": "reply", "re": 2, "d": {"did": "a"}, "s": 3}]
    assert {"t": "ack", "i": 4} in out and not peer.att.closed
    assert not node.inbound.holds.since, "the hold is over"


async def test_a_hold_past_its_limit_closes_as_before(
    make_hub: MakeHub, servers: list[RedisServer], clock: Clock
) -> None:
    hub = await make_hub(shard_hold=5.0)
    engine, node = engine_of(hub), internals(hub)
    applied = Applied(hub)
    held_shard = engine.shards[0][1]
    peer = await peer_on(hub, held_shard)
    await down(held_shard, servers[0])
    await peer.send({"t": "emit", "ev": "do", "d": "a"})
    clock.now += 4.9
    await node.tick(clock.now)
    assert not peer.att.closed
    clock.now += 0.1
    await node.tick(clock.now)
    error = peer.att.close_error
    assert peer.att.closed and error is not None and error.code == "engine_unavailable"
    assert error.ws_close == 1011 and engine.record_server(peer.session.sid) in error.reason
    state = peer.session.state
    assert state.phase.value != "closed", "the session is kept"
    assert state.inbox.accepted == state.inbox.done == 0, "given back: the client sends it again"
    await up(held_shard, servers[0])
    await node.tick(clock.now)
    assert applied.values == [] and not node.inbound.holds.since


async def test_no_hold_with_shard_hold_0_and_none_on_http(make_hub: MakeHub, servers: list[RedisServer]) -> None:
    """``shard_hold=0``: the WebSocket is closed at the first message, naming the shard; a
    ``POST send`` is answered 503 whatever the setting."""
    hub = await make_hub(shard_hold=0)
    engine = engine_of(hub)
    applied = Applied(hub)
    held_shard = engine.shards[0][1]
    peer, posting = await peer_on(hub, held_shard), await peer_on(hub, held_shard)
    await down(held_shard, servers[0])
    await peer.send({"t": "emit", "ev": "do", "d": "a"})
    error = peer.att.close_error
    assert peer.att.closed and error is not None and error.code == "engine_unavailable"
    assert engine.placement.name_of(peer.session.sid) in error.close_reason
    assert "cannot reach its engine" not in error.reason

    frames = decode_client_frames(JSON, JSON.encode({"t": "emit", "ev": "do", "d": "b", "i": 1}))
    with pytest.raises(LadderError) as refused:
        await internals(hub).inbound.receive(posting.session, None, frames)  # an upstream POST
    assert refused.value.code == "engine_unavailable" and refused.value.http_status == 503
    assert applied.values == [] and not posting.att.closed


async def test_a_hold_ends_as_before_when_the_whole_engine_goes(
    make_hub: MakeHub, servers: list[RedisServer], clock: Clock
) -> None:
    hub = await make_hub()
    engine, node = engine_of(hub), internals(hub)
    applied = Applied(hub)
    peer = await peer_on(hub, engine.shards[0][1])
    await down(engine.shards[0][1], servers[0])
    await peer.send({"t": "emit", "ev": "do", "d": "a"})
    assert not peer.att.closed
    for number in (1, 2):
        await down(engine.shards[number][1], servers[number])
    assert not engine.healthy
    await node.tick(clock.now)
    error = peer.att.close_error
    assert peer.att.closed and error is not None and "cannot reach its engine" in error.reason
    assert applied.values == []


async def test_a_hold_is_bounded_by_the_inbox_window(make_hub: MakeHub, servers: list[RedisServer]) -> None:
    hub = await make_hub(inbox_window=4)
    engine = engine_of(hub)
    applied = Applied(hub)
    peer = await peer_on(hub, engine.shards[0][1])
    await down(engine.shards[0][1], servers[0])
    await peer.send(*({"t": "emit", "ev": "do", "d": n} for n in range(4)))
    assert not peer.att.closed
    await peer.send({"t": "sub", "ch": "room:x"})
    assert peer.att.closed and peer.att.close_error is not None
    assert peer.att.close_error.code == "engine_unavailable"
    state = peer.session.state
    assert state.inbox.accepted == 0 and peer.session.ready is None, "all given back"
    assert applied.values == []


async def test_nothing_waiting_is_applied_once_the_session_ended(
    make_hub: MakeHub, servers: list[RedisServer], clock: Clock
) -> None:
    hub = await make_hub()
    engine, node = engine_of(hub), internals(hub)
    applied = Applied(hub)
    held_shard = engine.shards[0][1]
    peer = await peer_on(hub, held_shard)
    await down(held_shard, servers[0])
    await peer.send({"t": "emit", "ev": "do", "d": "a"})
    await peer.send({"t": "bye"})
    await up(held_shard, servers[0])
    await node.tick(clock.now)
    assert applied.values == [] and not node.inbound.holds.since
