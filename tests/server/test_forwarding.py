"""A poll forwarded to the node holding its session, and given up by its client: the node
holding it is told to stop, also when the request followed the session from node to node
(a real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from ladder import Ladder
from ladder.engine.redis import RedisEngine
from ladder.server.hub import internals
from tests.server.harness import Peer
from tests.support.redis import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


async def test_a_forwarded_poll_that_followed_its_session_is_cancelled_where_it_is_held(
    redis_server: RedisServer,
) -> None:
    """The cancel went to the first node asked, with the first request's id: the node that
    held the poll kept it, and the session's transport with it, for the whole poll timeout."""
    made_on, holder, asker = (Ladder(engine=RedisEngine(redis_server.url)) for _ in range(3))
    redis = Redis.from_url(redis_server.url)
    try:
        peer = await Peer.open(made_on)
        await holder.start()
        await asker.start()
        sid, token = peer.session.sid, peer.session.state.token
        await internals(holder).router.route(sid, token, stream=True)
        # The engine's record of that hand-over is lost: the asker asks the node that made
        # the session, which says it moved on, and the asker follows it to the holder.
        await redis.delete(*[key async for key in redis.scan_iter(match=f"*moved*{sid}")])
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        polling = asyncio.create_task(
            internals(asker).router.forward_poll(
                internals(made_on).engine.node_id,
                sid,
                token,
                transport="longpoll",
                ack=0,
                greet=False,
                encoding="json",
                disconnected=gone,
            )
        )
        serving = internals(holder).cluster._serving
        async with asyncio.timeout(5):
            while not serving:  # noqa: ASYNC110 - the holder's own tasks take the request
                await asyncio.sleep(0.02)
        gone.set_result(None)  # the HTTP client went away
        with pytest.raises(ConnectionResetError):
            await polling
        async with asyncio.timeout(3):  # (the poll timeout is 25 s)
            while serving:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        await redis.aclose()
        for hub in (made_on, holder, asker):
            await hub.stop()
