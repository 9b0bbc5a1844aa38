"""A stopped hub stays stopped: a request arriving during a graceful shutdown (on a kept-alive
connection, or a hello that waited on another node) is sent elsewhere, not served."""

from __future__ import annotations

import asyncio

import pytest

from ladder import LadderError
from ladder.protocol.frames import Call, Hello, Previous
from ladder.protocol.session import Phase
from ladder.server.auth import AuthRequest
from ladder.server.hub import internals
from ladder.server.moving import pack, restore
from tests.server.harness import Peer, Recorder, make_hub
from tests.support.waiting import until


def _request() -> AuthRequest:
    return AuthRequest(headers={}, cookies={}, token=None, client="test", transport="sse")


async def test_a_request_after_stop_is_refused_with_shutting_down_and_does_not_restart_the_hub() -> None:
    """Before, the request started the hub again (engine, ticker) and its session held the
    process open after SIGTERM until the test's 10 s grace ran out."""
    hub = make_hub()
    await hub.start()
    peer = await Peer.open(hub)
    await hub.stop()
    with pytest.raises(LadderError) as refused:
        await internals(hub).gateway.open(Hello(v=1), _request(), "sse", streaming=True)
    assert refused.value.code == "shutting_down"
    with pytest.raises(LadderError) as resumed:
        await internals(hub).gateway.route(peer.session.sid, peer.session.state.token, stream=True)
    assert resumed.value.code in ("shutting_down", "unknown_session")
    assert not internals(hub).sessions and internals(hub)._ticker is None, "not started again"


async def test_server_code_after_stop_is_refused_and_does_not_restart_the_hub() -> None:
    """Before, a task still publishing during a graceful shutdown started the engine and the
    clock again (the process then took 4 s more to exit, and ``/health`` said 200)."""
    hub = make_hub()
    await hub.start()
    await hub.stop()
    calls = [hub.publish("room", 1), hub.send("s", "e"), hub.send_user("u", "e"), hub.presence("room")]
    for call in [*calls, hub.history("room")]:
        with pytest.raises(LadderError) as refused:
            await call
        assert refused.value.code == "shutting_down"
    node = internals(hub)
    assert node._ticker is None and not node.started, "not started again"
    assert node.health()["ok"] is False, "a stopped node is not healthy: balancers look elsewhere"


async def test_tasks_still_running_when_the_hub_stops_are_cancelled() -> None:
    hub = make_hub()
    await hub.start()
    forever = asyncio.Event()
    internals(hub).tasks.spawn(forever.wait(), "straggler")
    await hub.stop()
    assert not internals(hub).tasks._tasks, "the straggler was cancelled, not left running"


async def test_a_post_whose_handler_never_returns_is_answered_shutting_down_when_the_hub_stops() -> None:
    """A POST's request task runs its messages' handlers; the hub's stop cancelled only its own
    tasks, and uvicorn waited on SIGTERM for that request for ever (a process that never
    exited behind a handler stuck on a lock, say). It is the hub's work now: cancelled with
    it, and answered ``shutting_down`` (no traceback from the ASGI server)."""
    hub = make_hub()
    stuck = asyncio.Event()

    @hub.on("stuck")
    async def never(ctx: object, data: object) -> None:
        stuck.set()
        await asyncio.Event().wait()

    await hub.start()
    peer = await Peer.open(hub)
    posting = asyncio.create_task(internals(hub).gateway.receive(peer.session, None, [Call(i=1, ev="stuck", d=None)]))
    async with asyncio.timeout(5):
        await stuck.wait()
        await hub.stop()
    with pytest.raises(LadderError) as answered:
        async with asyncio.timeout(5):  # (it waited for ever)
            await posting
    assert answered.value.code == "shutting_down"
    assert not internals(hub).tasks.borrowed


async def test_a_session_moving_in_while_stopping_is_told_to_go_elsewhere() -> None:
    old, new = make_hub(), make_hub()
    await old.start()
    await new.start()
    peer = await Peer.open(old)
    packed = pack(peer.session, internals(old).channels)
    await new.stop()  # the move was under way when the SIGTERM came
    session = await restore(packed, internals(new).settings, internals(new).sessions, internals(new).tasks)
    att = internals(new).gateway.attach(session, "sse", streaming=True, ack=0, resumed=True)
    control, _frames = session.state.take(att, internals(new).settings.clock())
    assert [(c.get("t"), c.get("code")) for c in control if c.get("t") == "bye"] == [("bye", "shutting_down")]
    await old.stop()


async def test_an_explicit_start_after_stop_serves_again() -> None:
    hub = make_hub()
    await hub.start()
    await hub.stop()
    await hub.start()
    link = await internals(hub).gateway.open(Hello(v=1), _request(), "sse", streaming=True)
    welcome = link.take()[0][0]
    assert welcome["t"] == "welcome" and not welcome["resumed"] and link.session.sid in internals(hub).sessions
    await hub.stop()


async def test_a_hello_that_waited_while_the_hub_stopped_is_told_shutting_down_not_session_closed() -> None:
    """A successor's hello waits for the lost session's message to finish; the hub stops
    meanwhile and ends the new session with ``shutting_down``. Before, attaching to it then
    said ``session_closed`` (its default reason, "session closed"), which a client hears as
    the session ended on purpose: it gave up (seen once in the chaos suite's rolling restart,
    an SSE client losing everything sent after). Now it hears why: go elsewhere, now."""
    hub = make_hub()
    recorder = Recorder(hub, hold=lambda data: data == "slow")
    peer = await Peer.open(hub)
    sending = asyncio.create_task(peer.send({"t": "emit", "ev": "do", "d": "slow"}))
    await recorder.entered.wait()
    prev = Previous(peer.session.sid, peer.session.state.token, ())
    gateway = internals(hub).gateway
    opening = asyncio.create_task(gateway.open(Hello(v=1, prev=prev), _request(), "sse", streaming=True))
    sessions = internals(hub).sessions
    # The successor is made; it ended the old session and waits for its message.
    def waiting() -> bool:
        return peer.session.state.phase is Phase.CLOSED and any(s is not peer.session for s in sessions)

    await until(waiting, "successor waiting")
    stopping = asyncio.create_task(hub.stop())
    await until(lambda: internals(hub).stopped, "stopping")
    recorder.release.set()
    with pytest.raises(LadderError) as refused:
        await opening
    assert refused.value.code == "shutting_down", refused.value
    await sending
    await stopping


async def test_lifespan_starts_the_hub_on_entry_and_stops_it_on_exit() -> None:
    """As a framework enters it, with its app (``Starlette(lifespan=hub.lifespan)``)."""
    hub = make_hub()
    async with hub.lifespan(object()):
        await internals(hub).gateway.open(Hello(v=1), _request(), "sse", streaming=True)
        assert internals(hub)._ticker is not None, "started on entry"
    assert internals(hub)._ticker is None, "stopped on exit"
