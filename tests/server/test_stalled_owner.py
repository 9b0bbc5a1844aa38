"""A session's owner whose Redis link stalled and healed (bytes held, then delivered, no
reset): the requests to move the session it hears late must not lose the session (a real
redis-server, the owner's link through a relay that stalls)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from ladder import Ladder, LadderError
from ladder.engine.redis import RedisEngine
from ladder.server.hub import internals
from tests.engine.test_redis import StallRelay
from tests.server.harness import Peer, lose_hand_over_records
from tests.support.redis import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def lose_the_next_hand_over(hub: Ladder) -> list[bytes]:
    """Make ``hub`` miss the next session handed to it (its link broke on the way); the
    list gets the message it missed."""
    channels = internals(hub).channels
    hear = channels.node_message
    dropped: list[bytes] = []

    def lossy(message: bytes) -> None:
        if b"state" in message and not dropped:
            dropped.append(message)
            return
        hear(message)

    channels.node_message = lossy
    return dropped


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


async def test_a_hand_over_lost_on_the_way_ends_in_unknown_session_not_endless_retries(
    redis_server: RedisServer,
) -> None:
    """The owner handed the session over, but its answer never reached the asking node (that
    node's link broke in between): the owner kept saying "moved to you", the asking node
    answered "being handed here, retry", and the client retried until the session expired."""
    owner = Ladder(engine=RedisEngine(redis_server.url))
    asker = Ladder(engine=RedisEngine(redis_server.url))
    try:
        peer = await Peer.open(owner)
        await asker.start()
        sid, token = peer.session.sid, peer.session.state.token
        dropped = lose_the_next_hand_over(asker)
        router = internals(asker).router
        with pytest.raises(LadderError) as first:
            await router.route(sid, token, stream=True)
        assert first.value.code == "engine_unavailable" and dropped, first.value
        assert sid not in internals(owner).sessions  # the owner handed it over and forgot it
        with pytest.raises(LadderError) as second:
            await router.route(sid, token, stream=True)
        assert second.value.code == "unknown_session", second.value
        assert "lost moving between nodes" in second.value.reason
    finally:
        await owner.stop()
        await asker.stop()


@pytest.mark.parametrize("request_kind", ["stream", "post"])
async def test_a_hand_over_lost_between_nodes_that_each_handed_it_on_ends_in_unknown_session(
    redis_server: RedisServer, request_kind: str
) -> None:
    """The session went B -> A, then A handed it back to B and the answer was lost: each node
    remembers handing it to the other, nobody holds it. B asked A (the engine's record says
    A), A said "moved to B", and B, knowing it had handed the session on, answered "being
    handed here, retry" forever: the client never heard that its session was lost (a stream
moves the session; an upstream POST is forwarded to its owner)."""
    first = Ladder(engine=RedisEngine(redis_server.url))  # B: makes the session
    second = Ladder(engine=RedisEngine(redis_server.url))  # A
    try:
        peer = await Peer.open(first)
        await second.start()
        sid, token = peer.session.sid, peer.session.state.token
        await internals(second).router.route(sid, token, stream=True)  # B -> A
        assert sid in internals(second).sessions and internals(first).sessions.moved.get(sid)
        dropped = lose_the_next_hand_over(first)  # A -> B
        router = internals(first).router
        with pytest.raises(LadderError) as moving:
            await router.route(sid, token, stream=True)
        assert moving.value.code == "engine_unavailable" and dropped, moving.value
        assert sid not in internals(second).sessions and sid not in internals(first).sessions
        codes = []
        engine = internals(first).engine
        for _ in range(3):  # the client's next attempts
            with pytest.raises(LadderError) as again:
                if request_kind == "stream":
                    await router.route(sid, token, stream=True)
                else:
                    owner = await engine.locate_session(sid)
                    assert owner is not None and owner != engine.node_id
                    await router.forward_send(owner, sid, token, b'{"t":"ping"}', "application/json")
            codes.append(again.value.code)
            if again.value.code == "unknown_session":
                assert "lost moving between nodes" in again.value.reason
                break
        assert codes[-1] == "unknown_session", codes
    finally:
        await first.stop()
        await second.stop()


async def test_a_session_is_found_through_the_nodes_that_handed_it_on_once_the_engines_record_is_gone(
    redis_server: RedisServer,
) -> None:
    """The engine's record of a hand-over is kept twice the session TTL and lost with Redis's
    data; a session living on after that is found through the node that made it, which
    remembers where it handed it. Landing on that node itself, the client was told
    ``unknown_session`` (its session alive elsewhere), and lost it for nothing."""
    made_on, then_on, third = (Ladder(engine=RedisEngine(redis_server.url)) for _ in range(3))
    redis = Redis.from_url(redis_server.url)
    try:
        peer = await Peer.open(made_on)
        await then_on.start()
        await third.start()
        sid, token = peer.session.sid, peer.session.state.token

        async def gone() -> None:  # the engine's record: expired, or lost with Redis's data
            await lose_hand_over_records(redis, sid)

        await internals(then_on).router.route(sid, token, stream=True)
        await gone()
        session = await internals(third).router.route(sid, token, stream=True)
        assert session.sid == sid and sid in internals(third).sessions
        await gone()
        # The node that made it is asked itself: it handed it to then_on, which handed it on.
        session = await internals(made_on).router.route(sid, token, stream=True)
        assert session.sid == sid and sid in internals(made_on).sessions
        assert sid not in internals(third).sessions and sid not in internals(then_on).sessions
    finally:
        await redis.aclose()
        for hub in (made_on, then_on, third):
            await hub.stop()
