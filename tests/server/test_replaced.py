"""A new session naming a lost one that still lives on another node (real Redis, two hubs):
the old one is brought over and ended before its record is read, so a late request of the
old page cannot apply a carried message on the old node as well."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ladder import Ladder, LadderError
from ladder.engine.redis import RedisEngine
from ladder.protocol.frames import Hello, Previous
from ladder.protocol.session import Phase
from ladder.server.auth import AuthRequest
from ladder.server.cluster import Elsewhere
from ladder.server.hub import internals
from tests.server.harness import Peer, Recorder, end_while_applying
from tests.support.redis import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def _hub(
    url: str, applied: list[Any], hold: Callable[[Any], bool] = lambda data: False
) -> tuple[Ladder, Recorder]:
    """A node on ``url`` whose ``do`` handler records into ``applied`` (shared by the nodes)."""
    hub = Ladder(engine=RedisEngine(url))
    return hub, Recorder(hub, applied=applied, hold=hold)


async def test_a_successor_on_another_node_ends_the_session_it_names(redis_server: RedisServer) -> None:
    applied: list[Any] = []
    (old_node, _), (new_node, _) = _hub(redis_server.url, applied), _hub(redis_server.url, applied)
    try:
        old = await Peer.open(old_node)
        await old.send({"t": "emit", "ev": "do", "d": "a"})
        sid, token = old.session.sid, old.session.state.token
        await new_node.start()
        request = AuthRequest(headers={}, cookies={}, token=None, client="test", transport="sse")
        hello = Hello(v=1, prev=Previous(sid, token, (2,)))
        session, _ = await internals(new_node).router.open(hello, request)
        assert internals(old_node).sessions.get(sid) is None, "moved off the old node"
        assert old.session.state.phase is Phase.CLOSED
        router = internals(old_node).router
        with pytest.raises(LadderError) as late:  # the old page's late request, on the old node
            try:
                await router.route(sid, token, stream=False)
            except Elsewhere as away:  # it handed the session over: forwarded there
                assert away.node == internals(new_node).engine.node_id
                await router.forward_send(away.node, sid, token, b'{"t":"ping"}', "application/json")
        assert late.value.code == "unknown_session"
        assert session.inherited is not None and session.inherited.record.done == 1
    finally:
        await old_node.stop()
        await new_node.stop()


async def test_a_successor_on_another_node_waits_for_the_message_the_ended_one_applies(
    redis_server: RedisServer,
) -> None:
    """A node shutting down ended the session while a handler ran; the successor, on another
    node, reads the record only once that message is recorded (before: the message was
    applied twice, once by each)."""
    applied: list[Any] = []
    (old_node, held), (new_node, _) = (
        _hub(redis_server.url, applied, hold=lambda data: True),
        _hub(redis_server.url, applied),
    )
    try:
        old = await Peer.open(old_node)
        sid, token = old.session.sid, old.session.state.token
        sending = await end_while_applying(old, {"t": "emit", "ev": "do", "d": "b"}, held.entered)
        await new_node.start()
        request = AuthRequest(headers={}, cookies={}, token=None, client="test", transport="sse")
        hello = Hello(v=1, prev=Previous(sid, token, (1,)))
        opening = asyncio.create_task(internals(new_node).router.open(hello, request))
        done, _ = await asyncio.wait({opening}, timeout=0.3)
        assert not done, "the successor waits for the message in progress"
        held.release.set()
        session, _ = await opening
        with contextlib.suppress(LadderError):
            await sending
        assert session.inherited is not None and session.inherited.record.done == 1, "it reads it applied"
        assert applied == ["b"]
    finally:
        held.release.set()
        await old_node.stop()
        await new_node.stop()
