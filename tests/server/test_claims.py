"""Where a session that moved lives: the node holding it claims it again while it lives, and
the node that handed it on forgets where it went once the engine is sure to know (a real
redis-server; the TTLs are short, so that a record's expiry is what the test waits for)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from ladder import Ladder
from ladder.engine.redis import RedisEngine
from ladder.server.hub import internals
from ladder.server.sessions import Expiring
from tests.server.harness import moved
from tests.support.redis import RedisServer

TTL = 1.0
"""The session TTL: the engine's record of a hand-over lasts twice that."""


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def test_where_sessions_were_handed_is_forgotten_after_its_time() -> None:
    handed: Expiring[str] = Expiring(keep=10.0)
    handed.add("a", "n2", now=0.0)
    handed.add("b", "n3", now=1.0)
    handed.add("a", "n4", now=5.0)  # handed on again later: kept until its new time
    handed.sweep(11.5)
    assert handed.get("b") is None and "b" not in handed
    assert handed.get("a") == "n4" and len(handed) == 1
    handed.discard("a")
    assert handed.get("a") is None
    handed.sweep(100.0)
    assert len(handed) == 0


async def test_a_session_that_moved_outlives_its_hand_over_record_and_the_node_that_made_it(
    redis_server: RedisServer,
) -> None:
    """The engine's record of a hand-over expired after twice the TTL and was never renewed:
    once the node that made the session was gone too, a client landing on any other node was
    told ``unknown_session`` although its session was alive; and the node that made it kept
    where it handed it for its whole life (a leak: nearly every reconnect hands a session on)."""
    made_on, then_on, third = (
        Ladder(engine=RedisEngine(redis_server.url), session_ttl=TTL) for _ in range(3)
    )
    redis = Redis.from_url(redis_server.url)
    try:
        there = await moved(made_on, then_on, third)
        sid, token = there.sid, there.token
        assert internals(made_on).sessions.moved.get(sid) == internals(then_on).engine.node_id
        # Twice the TTL passes: the node that made the session forgets where it went ...
        async with asyncio.timeout(4 * TTL):
            while sid in internals(made_on).sessions.moved:  # noqa: ASYNC110 - its tick decides
                await asyncio.sleep(0.05)
        # ... and the engine knows still, since the node holding the session claimed it again.
        keys = [key async for key in redis.scan_iter(match=f"*moved*{sid}")]
        assert keys, "the record of the hand-over expired while the session lived"
        assert await redis.get(keys[0]) == internals(then_on).engine.node_id.encode()
        await made_on.stop()  # the node that made it is gone
        found = await internals(third).router.route(sid, token, stream=True)
        assert found.sid == sid and sid in internals(third).sessions
        assert sid not in internals(then_on).sessions
    finally:
        await redis.aclose()
        for hub in (made_on, then_on, third):
            await hub.stop()


async def test_sessions_that_moved_are_claimed_again_as_soon_as_redis_is_back_without_its_data(
    redis_server: RedisServer,
) -> None:
    """Redis restarted without persistence: until the node holding a session claimed it again
    (at its turn in a round of half the TTL, a minute by default), only the node that made it
    knew where it was."""
    made_on, then_on = (Ladder(engine=RedisEngine(redis_server.url)) for _ in range(2))
    redis = Redis.from_url(redis_server.url)
    try:
        sid = (await moved(made_on, then_on)).sid
        holder = internals(then_on).engine.node_id.encode()

        async def recorded() -> list[bytes]:
            return [await redis.get(key) async for key in redis.scan_iter(match=f"*moved*{sid}")]

        assert await recorded() == [holder]
        redis_server.restart()  # its data is gone
        engine = internals(then_on).engine
        async with asyncio.timeout(10):
            while engine.healthy:  # noqa: ASYNC110 - the engine's own tasks notice
                await asyncio.sleep(0.05)
            while not engine.healthy:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await redis.aclose()
        redis = Redis.from_url(redis_server.url)  # (its connections went with the restart)
        async with asyncio.timeout(5):  # (the round would come after a minute)
            while await recorded() != [holder]:  # noqa: ASYNC110 - the holder's tick decides
                await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
        for hub in (made_on, then_on):
            await hub.stop()
