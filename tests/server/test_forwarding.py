"""A poll forwarded to the node holding its session, and given up by its client: the node
holding it is told to stop, also when the request followed the session from node to node
(a real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from ladder import Ladder
from ladder.engine.redis import RedisEngine
from ladder.protocol.codec import JSON
from ladder.protocol.frames import Hello, Previous
from ladder.server.auth import AuthRequest
from ladder.server.hub import internals
from tests.server.harness import Peer, lose_hand_over_records, moved
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
        there = await moved(made_on, holder, asker, attach=False)
        sid, token = there.sid, there.token
        # The engine's record of that hand-over is lost: the asker asks the node that made
        # the session, which says it moved on, and the asker follows it to the holder.
        await lose_hand_over_records(redis, sid)
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


async def test_a_push_follows_where_the_node_that_made_the_session_handed_it(
    redis_server: RedisServer,
) -> None:
    """With the engine's record of a hand-over lost (Redis lost its data, before the holder
    claimed the session again), ``hub.send`` on the node that made the session answered
    False and dropped the event, although that node knew where the session went."""
    made_on, holder = (Ladder(engine=RedisEngine(redis_server.url)) for _ in range(2))
    redis = Redis.from_url(redis_server.url)
    try:
        there = await moved(made_on, holder)
        sid, session, att = there.sid, there.session, there.att
        assert att is not None
        await lose_hand_over_records(redis, sid)
        assert await made_on.send(sid, "note", {"n": 1})
        async with asyncio.timeout(5):
            while True:
                _, frames = session.state.take(att, internals(holder).settings.clock())
                pushed = [frame.decode(JSON, seq) for seq, frame in frames]
                if any(frame["t"] == "push" for frame in pushed):
                    break
                await asyncio.sleep(0.02)
        assert next(f for f in pushed if f["t"] == "push")["d"] == {"n": 1}
    finally:
        await redis.aclose()
        for hub in (made_on, holder):
            await hub.stop()


async def test_a_push_through_records_that_point_round_in_a_circle_stops(redis_server: RedisServer) -> None:
    first, second = (Ladder(engine=RedisEngine(redis_server.url)) for _ in range(2))
    try:
        await first.start()
        await second.start()
        one, two = internals(first), internals(second)
        sid = f"{two.engine.node_id}.gone"  # made on the second node, held by nobody
        now = one.settings.clock()
        one.sessions.moved.add(sid, two.engine.node_id, now)  # stale: each says the other has it
        two.sessions.moved.add(sid, one.engine.node_id, now)
        served: list[str] = []
        done = asyncio.Event()
        for name, cluster in (("first", one.cluster), ("second", two.cluster)):
            serve = cluster._answerers["push"]

            async def counted(message: dict[str, Any], _serve: Any = serve, _name: str = name) -> Any:
                served.append(_name)
                try:
                    return await _serve(message)
                finally:
                    done.set()

            cluster._answerers["push"] = counted
        assert await first.send(sid, "note")  # told the second node, which the engine names
        async with asyncio.timeout(5):
            await done.wait()
        await asyncio.sleep(0.3)  # (time for a push that went on: none must come)
        # the second node: the engine names itself, and it handed the session to the node
        # the push came from; so it stops there
        assert served == ["second"]
    finally:
        await first.stop()
        await second.stop()


async def test_hub_disconnect_ends_a_session_held_by_another_node(redis_server: RedisServer) -> None:
    """It answered False and left the client connected: only the node holding a session
    could end it, unlike ``hub.send`` beside it."""
    made_on, holder = (Ladder(engine=RedisEngine(redis_server.url)) for _ in range(2))
    try:
        there = await moved(made_on, holder)
        sid, session, att = there.sid, there.session, there.att
        assert att is not None
        assert await made_on.disconnect(sid, "banned")
        async with asyncio.timeout(5):
            while sid in internals(holder).sessions:  # noqa: ASYNC110 - the holder ends it
                await asyncio.sleep(0.02)
        control, _ = session.state.take(att, internals(holder).settings.clock())
        byes = [frame for frame in control if frame["t"] == "bye"]
        assert byes and byes[0]["code"] == "session_closed" and byes[0]["reason"] == "banned", control
    finally:
        for hub in (made_on, holder):
            await hub.stop()


async def test_a_session_replaced_from_another_node_hears_bye_session_closed(redis_server: RedisServer) -> None:
    """A page reloads while its old session is alive on another node: the new session's hello
    names it, and its transports there hear ``bye session_closed`` (protocol §3.1). It was
    moved to the new node and closed there, where no transport heard it: the old client saw
    ``session_moved``, resumed, found it gone and went on as a second session."""
    made_on, holder = (Ladder(engine=RedisEngine(redis_server.url)) for _ in range(2))
    try:
        there = await moved(made_on, holder)
        sid, session, att = there.sid, there.session, there.att
        assert att is not None
        request = AuthRequest(headers={}, cookies={}, token=None, client="test", transport="websocket")
        hello = Hello(v=1, prev=Previous(sid=sid, rt=there.token, ids=()))
        successor, resumed = await internals(made_on).router.open(hello, request)
        assert not resumed and successor.sid != sid
        control, _ = session.state.take(att, internals(holder).settings.clock())
        byes = [frame for frame in control if frame["t"] == "bye"]
        assert byes and byes[0]["code"] == "session_closed", control
        assert "replaced by a new session" in byes[0]["reason"]
        assert sid not in internals(made_on).sessions  # ended where it lived, not brought here
    finally:
        for hub in (made_on, holder):
            await hub.stop()


async def test_hub_disconnect_user_ends_the_user_s_sessions_on_every_node(redis_server: RedisServer) -> None:
    """At sign-out (a live session is not authenticated again: logging out of Django left
    the user's realtime session serving them), every session of the user ends, on every
    node; another user's stays."""
    hubs = [Ladder(engine=RedisEngine(redis_server.url), authenticate=lambda request: request.token) for _ in range(2)]
    first, second = hubs
    try:
        ada_here, ada_there, bob = (
            await Peer.open(first, token="ada"), await Peer.open(second, token="ada"), await Peer.open(second, token="bob")
        )
        assert await first.disconnect_user("ada", "signed out") == 2
        for peer in (ada_here, ada_there):
            async with asyncio.timeout(5):
                while peer.session.sid in internals(peer.hub).sessions:  # noqa: ASYNC110 - its node ends it
                    await asyncio.sleep(0.02)
            byes = [frame for frame in peer.read() if frame["t"] == "bye"]
            assert byes and (byes[0]["code"], byes[0]["reason"]) == ("session_closed", "signed out")
        assert bob.session.sid in internals(second).sessions and not bob.att.closed
        assert await second.disconnect_user("ada") == 0, "none left"
        with pytest.raises(TypeError, match="user must be the str"):
            await first.disconnect_user(None)  # type: ignore[arg-type]
    finally:
        for hub in hubs:
            await hub.stop()


async def test_a_forwarded_long_poll_keeps_the_hold_its_client_asked_for(redis_server: RedisServer) -> None:
    """protocol §3.5 ``hold``: a long poll landing on another node than its session's is served
    there; the bound its client asked for must go with it (else held the 25 s a proxy cuts)."""
    made_on, holder, asker = (Ladder(engine=RedisEngine(redis_server.url)) for _ in range(3))
    try:
        there = await moved(made_on, holder, asker, attach=False)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(10):  # (the poll timeout is 25 s)
            body = await internals(asker).router.forward_poll(
                internals(holder).engine.node_id,
                there.sid,
                there.token,
                transport="longpoll",
                ack=0,
                greet=False,
                encoding="json",
                disconnected=loop.create_future(),
                hold=0.3,
            )
        assert loop.time() - started < 5.0, "released at its hold, not at poll_timeout"
        assert b'"pub"' not in body, "released empty"
    finally:
        for hub in (made_on, holder, asker):
            await hub.stop()
