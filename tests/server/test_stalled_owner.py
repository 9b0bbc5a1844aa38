"""A session's owner whose Redis link stalled and healed (bytes held, then delivered, no
reset): the requests to move the session it hears late must not lose the session (a real
redis-server, the owner's link through a relay that stalls)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from ladder import Ladder, LadderError
from ladder.engine.redis import RedisEngine
from ladder.server.hub import internals
from tests.engine.test_redis import StallRelay
from tests.server.harness import Peer
from tests.support.redis import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


async def test_a_session_handed_over_after_the_asking_node_gave_up_is_kept_there(
    redis_server: RedisServer,
) -> None:
    """The owner answered the held request on heal: it packed the session, forgot it and sent
    it to a node that had stopped waiting, which dropped it; the session was lost for good."""
    async with StallRelay(redis_server.port) as relay:
        owner = Ladder(engine=RedisEngine(f"redis://127.0.0.1:{relay.port}/0"))
        asker = Ladder(engine=RedisEngine(redis_server.url))
        try:
            peer = await Peer.open(owner)
            await asker.start()
            sid, token = peer.session.sid, peer.session.state.token
            relay.flowing.clear()
            # two streams of the client at once: the second waits for the first's move
            router = internals(asker).router
            first, second = await asyncio.gather(
                router.route(sid, token, stream=True),
                router.route(sid, token, stream=True),
                return_exceptions=True,
            )
            assert isinstance(first, LadderError) and isinstance(second, LadderError)
            # one asked the owner and gave up; the other waited for that move: both are told to
            # retry (not unknown_session: the session is not lost)
            assert first.code == second.code == "engine_unavailable"
            assert any("did not answer in time" in e.reason for e in (first, second)), (first, second)
            relay.flowing.set()  # the owner hears the request now, and answers it
            async with asyncio.timeout(10):
                while sid in internals(owner).sessions:  # noqa: ASYNC110 - the owner's own tasks decide
                    await asyncio.sleep(0.05)
            session = await router.route(sid, token, stream=True)
            assert session.sid == sid and internals(asker).sessions.get(sid) is session
            assert session.state.token == token
        finally:
            await owner.stop()
            await asker.stop()
