"""Publications made while one is on its way go to Redis as one pipeline (a real redis-server)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from ladder.engine.base import Publication
from ladder.engine.redis import RedisEngine
from ladder.protocol.codec import Payload
from ladder.protocol.errors import LadderError
from tests.engine.test_redis import OPTIONS, Sink, StallRelay, next_pub
from tests.support.redis import RedisServer, count_pipelines


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every pipeline sent (a call alone, with none on its way, sends none)."""
    return count_pipelines(monkeypatch)


@contextlib.asynccontextmanager
async def stalling_engine(redis_server: RedisServer) -> AsyncIterator[tuple[RedisEngine, StallRelay]]:
    """An engine reaching Redis through a relay the test can stall (0.3 s command timeout)."""
    async with StallRelay(redis_server.port) as relay:
        node = RedisEngine(f"redis://127.0.0.1:{relay.port}/0", command_timeout=0.3)
        await node.start(Sink())
        try:
            yield node, relay
        finally:
            await node.stop()


@pytest.fixture
async def engine(redis_server: RedisServer) -> AsyncIterator[tuple[RedisEngine, Sink]]:
    engine, sink = RedisEngine(redis_server.url), Sink()
    await engine.start(sink)
    yield engine, sink
    await engine.stop()


async def publish_together(engine: RedisEngine, channel: str, values: range) -> list[Any]:
    """Publish ``values`` from as many tasks started at once (many sessions publishing)."""
    calls = [engine.publish(channel, Payload.of(v), OPTIONS) for v in values]
    return await asyncio.gather(*calls, return_exceptions=True)


async def test_publications_made_together_go_out_as_one_pipeline_in_call_order(
    engine: tuple[RedisEngine, Sink], batches: list[int]
) -> None:
    node, sink = engine
    await node.listen("many")
    first = await node.publish("many", Payload.of(-1), OPTIONS)
    assert batches == [], "a lone publication goes out at once, as a plain command"
    pubs = await publish_together(node, "many", range(50))
    assert all(isinstance(p, Publication) for p in pubs)
    assert [(p.offset, p.data) for p in pubs] == [(first.offset + 1 + v, v) for v in range(50)]
    assert batches == [49], "the first went out at once, the other 49 behind it as one pipeline"
    delivered = [(await next_pub(sink)).data for _ in range(51)]
    assert delivered == [-1, *range(50)], "every node receives them once, in order"


async def test_publish_many_sends_one_pipeline_in_order_even_behind_one_on_its_way(
    engine: tuple[RedisEngine, Sink], batches: list[int]
) -> None:
    node, sink = engine
    await node.listen("burst")
    assert node.publish_many is not None
    pubs = await node.publish_many([("burst", Payload.of(v), OPTIONS) for v in range(20)])
    assert [(p.offset, p.data) for p in pubs if isinstance(p, Publication)] == [(v + 1, v) for v in range(20)]
    assert batches == [20], "one pipeline, although nothing was on its way"
    # The lone publication starts first (gather runs them in order) and is on its way when
    # the batch comes: the batch waits for it and then goes out whole.
    lone, more = await asyncio.gather(
        node.publish("burst", Payload.of(20), OPTIONS),
        node.publish_many([("burst", Payload.of(v), OPTIONS) for v in range(21, 31)]),
    )
    assert lone.offset == 21
    assert [p.offset for p in more if isinstance(p, Publication)] == list(range(22, 32))
    assert batches == [20, 10]
    delivered = [(await next_pub(sink)).data for _ in range(31)]
    assert delivered == list(range(31)), "every node receives them once, in order"


async def test_a_lost_script_cache_runs_each_publication_once(
    redis_server: RedisServer,
    engine: tuple[RedisEngine, Sink],
    batches: list[int],
) -> None:
    node, _ = engine
    await node.publish("cache", Payload.of(-1), OPTIONS)
    admin = aioredis.Redis(port=redis_server.port)
    try:
        await admin.script_flush()  # as after a restart of Redis: every command answers NOSCRIPT
    finally:
        await admin.aclose()
    pubs = await publish_together(node, "cache", range(20))
    assert [p.data for p in pubs] == list(range(20)) and batches == [19]
    history = await node.history("cache", since=None, limit=100, options=OPTIONS)
    assert [p.data for p in history.publications] == [-1, *range(20)], "each stored once, in order"


async def test_a_stalled_pipeline_fails_each_publication_once_and_the_next_go_out(
    redis_server: RedisServer,
    batches: list[int],
) -> None:
    async with stalling_engine(redis_server) as (node, relay):
        await node.publish("stall", Payload.of(-1), OPTIONS)
        relay.flowing.clear()
        async with asyncio.timeout(5):  # a timeout for the call on its way, one for the pipeline
            outcomes = await publish_together(node, "stall", range(10))
        assert all(isinstance(o, LadderError) and o.code == "engine_unavailable" for o in outcomes), (
            outcomes
        )
        assert batches == [9]
        relay.flowing.set()
        after = await node.publish("stall", Payload.of(10), OPTIONS)
        history = await node.history("stall", since=None, limit=100, options=OPTIONS)
        stored = [p.data for p in history.publications]
        assert stored[0] == -1 and stored[-1] == 10 and after.offset == len(stored)
        assert len(stored) == len(set(stored)), "a publication whose outcome was unknown is not sent again"


async def test_a_stalled_publish_many_returns_each_failure_and_sends_nothing_again(
    redis_server: RedisServer,
    batches: list[int],
) -> None:
    async with stalling_engine(redis_server) as (node, relay):
        assert node.publish_many is not None
        relay.flowing.clear()
        async with asyncio.timeout(5):
            outcomes = await node.publish_many([("stall", Payload.of(v), OPTIONS) for v in range(5)])
        assert [getattr(o, "code", o) for o in outcomes] == ["engine_unavailable"] * 5
        assert batches == [5]
        relay.flowing.set()
        after = await node.publish_many([("stall", Payload.of(v), OPTIONS) for v in range(5, 7)])
        assert all(isinstance(p, Publication) for p in after)
        history = await node.history("stall", since=None, limit=100, options=OPTIONS)
        stored = [p.data for p in history.publications]
        assert stored[-2:] == [5, 6] and len(stored) == len(set(stored))


async def test_a_caller_that_gives_up_leaves_no_failure_unread(
    redis_server: RedisServer,
    batches: list[int],
) -> None:
    """A batch whose caller stopped waiting still goes out (it may be stored), but its
    outcomes are nobody's: none is left behind as an exception never retrieved."""
    unread: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unread.append(str(context.get("message"))))
    try:
        async with stalling_engine(redis_server) as (node, relay):
            assert node.publish_many is not None
            relay.flowing.clear()
            first = asyncio.ensure_future(node.publish("gone", Payload.of(0), OPTIONS))  # on its way
            items = [("gone", Payload.of(v), OPTIONS) for v in range(1, 4)]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(node.publish_many(items), 0.05)  # queued behind it, given up
            with pytest.raises(LadderError):
                await first  # (the stall: command_timeout)
            with pytest.raises(LadderError):  # sent once the given-up batch failed in turn
                await node.publish("gone", Payload.of(4), OPTIONS)
            assert batches == [3, 1], "the given-up batch went out, then the last one behind it"
        gc.collect()
        assert unread == []
    finally:
        loop.set_exception_handler(None)
