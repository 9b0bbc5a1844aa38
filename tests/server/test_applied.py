"""The record of what a session applied, and a successor session that honours it.

In-process hub on the memory engine: a session is closed while its client has not seen
the acknowledgements of messages it applied (as a node's death or a slow-consumer drop
leaves it); the client starts a new session naming the lost one and resends them.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgpack
import pytest

from ladder import Context, Ladder, LadderError, Limits
from ladder.engine.base import AppliedRecord
from ladder.engine.memory import MemoryEngine
from ladder.engine.redis import RedisEngine
from ladder.protocol.codec import JSON, MSGPACK
from ladder.protocol.frames import Hello, Previous, Refused, decode_client_frames
from ladder.protocol.session import Phase
from ladder.server.applied import Answers, Inherited
from ladder.server.auth import AuthRequest
from ladder.server.hub import internals
from tests.server.harness import Clock, Peer, Recorder, end_while_applying, make_hub
from tests.support.redis import RedisServer

CARRIED = [
    {"t": "call", "ev": "do", "d": "a", "i": 1},
    {"t": "emit", "ev": "do", "d": "b", "i": 2},
    {"t": "call", "ev": "do", "d": "c", "i": 3},
]
"""What a client carries to its new session: a call and an emit the lost session may have
applied, and a call it never sent there, renumbered 1, 2, 3."""


def _request() -> AuthRequest:
    return AuthRequest(headers={}, cookies={}, token=None, client="test", transport="websocket")


async def _successor(hub: Any, prev: Previous) -> Peer:
    await hub.start()
    session, _ = await internals(hub).router.open(Hello(v=1, prev=prev), _request())
    att = internals(hub).gateway.attach(session, "websocket", streaming=True, ack=0, resumed=False)
    peer = Peer(hub, session, att)
    assert peer.read()[0]["t"] == "welcome"
    return peer


async def _send(peer: Peer, frames: list[dict[str, Any]]) -> None:
    parsed = decode_client_frames(JSON, JSON.join(JSON.encode(f) for f in frames))
    assert not any(isinstance(frame, Refused) for frame in parsed)
    await internals(peer.hub).inbound.receive(peer.session, peer.att, parsed)


async def test_a_successor_answers_what_the_lost_session_applied_and_applies_the_rest() -> None:
    hub = make_hub()
    applied: list[tuple[Any, str | None]] = []

    @hub.on("do")
    async def do(ctx: Context, data: Any) -> Any:
        applied.append((data, ctx.message_key))
        return {"did": data}

    await hub.start()
    try:
        lost = await Peer.open(hub)
        sid, token = lost.session.sid, lost.session.state.token
        # 1 and 2 applied; the client never saw their answers or acknowledgements.
        await lost.send({"t": "call", "ev": "do", "d": "a"}, {"t": "emit", "ev": "do", "d": "b"})
        internals(hub).sessions.close(lost.session, LadderError("slow_consumer"))
        # The client carries 1, 2 and a message 3 never sent before, renumbered 1, 2, 3.
        peer = await _successor(hub, Previous(sid, token, (1, 2, 3)))
        await _send(peer, CARRIED)
        out = peer.read(ack=False)  # (nor does the client see these answers)
        assert [d for d, _ in applied] == ["a", "b", "c"], (
            "what the lost session applied is not applied again"
        )
        replies = [(f["re"], f["d"]) for f in out if f.get("t") == "reply"]
        assert replies == [(1, {"did": "a"}), (3, {"did": "c"})], "the kept answer, to the new id"
        assert {"t": "ack", "i": 3} in out
        assert applied[0][1] == f"{sid}:1" and applied[2][1] == f"{sid}:3", "keys name the first session"

        # The successor dies too: its own successor still knows message 3's key and answer.
        second_sid, second_token = peer.session.sid, peer.session.state.token
        internals(hub).sessions.close(peer.session, LadderError("slow_consumer"))
        third = await _successor(hub, Previous(second_sid, second_token, (3,)))
        await _send(third, [{"t": "call", "ev": "do", "d": "c", "i": 1}])
        assert [d for d, _ in applied] == ["a", "b", "c"]
        assert [(f["re"], f["d"]) for f in third.read() if f.get("t") == "reply"] == [(1, {"did": "c"})]
        assert third.session.message_key(1) == f"{sid}:3"
    finally:
        await hub.stop()


async def test_a_session_id_without_its_resume_token_reads_nothing() -> None:
    hub = make_hub()
    applied = Recorder(hub).applied
    await hub.start()
    try:
        victim = await Peer.open(hub)
        await victim.send({"t": "call", "ev": "do", "d": "secret"})
        sid = victim.session.sid
        assert await hub.engine.applied_record(sid, "guessed") is None
        intruder = await _successor(hub, Previous(sid, "guessed", (1,)))
        await _send(intruder, [{"t": "call", "ev": "do", "d": "mine", "i": 1}])
        replies = [f["d"] for f in intruder.read() if f.get("t") == "reply"]
        assert replies == ["mine"], "no answer of someone else's, nothing of theirs skipped"
        assert applied == ["secret", "mine"]
    finally:
        await hub.stop()


async def test_an_acknowledged_answer_is_dropped_from_the_record() -> None:
    hub = make_hub(records_per_message=True)
    Recorder(hub)
    await hub.start()
    try:
        peer = await Peer.open(hub)
        await peer.send({"t": "call", "ev": "do", "d": 1})
        peer.read()  # delivered and acknowledged (the harness acks what it reads)
        await peer.send({"t": "call", "ev": "do", "d": 2})
        record = await hub.engine.applied_record(peer.session.sid, peer.session.state.token)
        assert record is not None and record.done == 2
        assert sorted(record.replies) == [2], "the answer the client acknowledged is forgotten"
    finally:
        await hub.stop()


async def test_records_kept_in_this_process_are_written_when_the_session_ends() -> None:
    """On the memory engine nothing can read a record before its session ends (a successor
    ends the session it names first), so none is written per message: a live session has
    none, and its end writes what it applied and the answers the client has not seen."""
    hub = make_hub()
    Recorder(hub)
    await hub.start()
    try:
        peer = await Peer.open(hub)
        sid, token = peer.session.sid, peer.session.state.token
        await peer.send({"t": "call", "ev": "do", "d": 1})
        peer.read()  # delivered and acknowledged
        await peer.send({"t": "call", "ev": "do", "d": 2}, {"t": "emit", "ev": "do", "d": 3})
        assert await hub.engine.applied_record(sid, token) is None, "nothing written per message"
        internals(hub).sessions.close(peer.session, LadderError("slow_consumer"))
        record = await hub.engine.applied_record(sid, token)
        assert record is not None and (record.done, record.since) == (3, 1)
        assert sorted(record.replies) == [2], "only the answer the client has not acknowledged"
        assert msgpack.unpackb(record.replies[2]) == {"t": "reply", "d": 2}

        other = await Peer.open(hub)
        await other.request({"t": "sub", "ch": "news"})
        await other.send({"t": "call", "ev": "do", "d": 4})
        other.read()  # acknowledged after its last message (the answer is still listed)
        await hub.publish("news", "unread")  # what follows it in the outbox is no answer
        internals(hub).sessions.close(other.session, LadderError("slow_consumer"))
        record = await hub.engine.applied_record(other.session.sid, other.session.state.token)
        assert record is not None and (record.done, record.replies) == (2, {})
    finally:
        await hub.stop()


async def test_a_session_that_expires_is_recorded_as_it_expires() -> None:
    clock = Clock()
    hub = make_hub(clock, session_ttl=5.0)
    applied = Recorder(hub).applied
    await hub.start()
    try:
        lost = await Peer.open(hub)
        sid, token = lost.session.sid, lost.session.state.token
        await lost.send({"t": "call", "ev": "do", "d": "a"})  # its answer never reaches the client
        lost.session.state.detach(lost.att, clock.now)
        clock.now += 5.1
        await internals(hub).tick(clock.now)
        assert sid not in internals(hub).sessions
        peer = await _successor(hub, Previous(sid, token, (1,)))
        await _send(peer, [{"t": "call", "ev": "do", "d": "a", "i": 1}])
        assert applied == ["a"], "not applied again"
        assert [(f["re"], f["d"]) for f in peer.read() if f.get("t") == "reply"] == [(1, "a")]
    finally:
        await hub.stop()


async def test_an_answer_that_overflows_the_outbox_is_kept_for_the_successor() -> None:
    """The answer itself is what the outbox had no room for: the session ends
    (``slow_consumer``) before the answer is queued, and the record still keeps it."""
    hub = make_hub(limits=Limits(max_queue=4))
    applied = Recorder(hub).applied
    await hub.start()
    try:
        lost = await Peer.open(hub)
        sid, token = lost.session.sid, lost.session.state.token
        await lost.request({"t": "sub", "ch": "news"})
        for n in range(4):
            await hub.publish("news", n)  # unread: the outbox is full
        with contextlib.suppress(LadderError):
            await lost.send({"t": "call", "ev": "do", "d": "a"})
        assert lost.session.state.phase is Phase.CLOSED, "its answer did not fit"
        peer = await _successor(hub, Previous(sid, token, (2,)))
        await _send(peer, [{"t": "call", "ev": "do", "d": "a", "i": 1}])
        assert applied == ["a"], "not applied again"
        assert [(f["re"], f["d"]) for f in peer.read() if f.get("t") == "reply"] == [(1, "a")]
    finally:
        await hub.stop()


async def test_an_engine_that_records_at_once_without_a_plain_call_records_in_the_drain() -> None:
    """``records_at_once`` without ``record_applied_now``: a plain handler's call is left to
    the drain's coroutine, which records it. Before, the driver's plain path took it and
    then found no plain call to record with (an assertion failed, nothing was answered)."""
    clock = Clock()
    engine = MemoryEngine(clock=clock)
    engine.record_applied_now = engine.record_session_now = None
    hub = Ladder(engine=engine, clock=clock)

    @hub.on("add")
    def add(ctx: Context, data: int) -> int:
        return data + 1

    await hub.start()
    try:
        peer = await Peer.open(hub)
        parsed = decode_client_frames(JSON, JSON.encode({"t": "call", "ev": "add", "d": 1, "i": 1}))
        inbound = internals(hub).inbound
        assert not inbound.receive_now(peer.session, peer.att, parsed), "left to the coroutine"
        await inbound.receive(peer.session, peer.att, parsed)
        assert [(f["re"], f["d"]) for f in peer.read() if f.get("t") == "reply"] == [(1, 2)]
        record = await hub.engine.applied_record(peer.session.sid, peer.session.state.token)
        assert record is not None and record.done == 1
    finally:
        await hub.stop()


async def test_a_driver_cancelled_inside_a_handler_leaves_the_queue_in_order() -> None:
    hub = make_hub()
    recorder = Recorder(hub, hold=lambda data: data == "stuck")
    applied = recorder.applied
    await hub.start()
    try:
        peer = await Peer.open(hub)
        driver = asyncio.create_task(peer.send({"t": "call", "ev": "do", "d": "stuck"}))
        await recorder.entered.wait()
        driver.cancel()  # the connection's task goes away mid-handler
        await peer.send({"t": "call", "ev": "do", "d": "next"})  # arrives at once, must wait its turn
        assert await peer.session.settle(5.0), "the hub finished the queue by itself"
        out = peer.read()
        assert {"t": "ack", "i": 2} in out
        answers = [(f["t"], f["re"], f.get("code")) for f in out if f.get("re")]
        assert answers == [("err", 1, "handler_error"), ("reply", 2, None)], "each answered once, in order"
        assert applied == ["next"] and peer.session.state.inbox.done == 2
    finally:
        await hub.stop()


async def test_an_answer_lost_with_the_record_is_an_error_not_silence() -> None:
    """The engine lost the session's record (Redis restarted without persistence) and the
    session recorded again after it: the record said call 1 was applied but kept no answer,
    as if it had been delivered, so a successor acknowledged it with no answer and the
    client's call waited forever. (Records written per message, as on Redis: the memory
    engine writes a session's record when it ends, and cannot lose it before.)"""
    hub = make_hub(records_per_message=True)
    applied: list[Any] = []

    @hub.on("do")
    async def do(ctx: Context, data: Any) -> Any:
        applied.append(data)
        return {"did": data}

    await hub.start()
    try:
        lost = await Peer.open(hub)
        sid, token = lost.session.sid, lost.session.state.token
        await lost.send({"t": "call", "ev": "do", "d": "a"}, {"t": "emit", "ev": "do", "d": "b"})
        records = internals(hub).engine.applied  # type: ignore[attr-defined]
        records._records.pop(sid), records._replies.pop(sid)  # the loss
        await lost.send({"t": "call", "ev": "do", "d": "c", "i": 3})
        internals(hub).sessions.close(lost.session, LadderError("slow_consumer"))
        peer = await _successor(hub, Previous(sid, token, (1, 2, 3)))
        await _send(peer, CARRIED)
        out = peer.read()
        assert applied == ["a", "b", "c"], "nothing applied twice"
        answers = [(f["t"], f["re"], f.get("code")) for f in out if f.get("re")]
        assert answers == [("err", 1, "session_closed"), ("reply", 3, None)], answers
        assert {"t": "ack", "i": 3} in out
    finally:
        await hub.stop()


def test_what_a_successor_inherited_moves_with_it_to_another_node() -> None:
    answer = msgpack.packb({"t": "reply", "d": {"ok": 1}})
    inherited = Inherited("n.lost", (2, 4, 5), AppliedRecord(4, {4: answer}, ["n.first:9"], since=3))
    moved = Inherited.unpack(msgpack.unpackb(msgpack.packb(inherited.pack()), raw=False))
    assert moved.record.since == 3
    for number, answered in [(1, False), (1, True), (2, True), (3, True), (4, True)]:
        applied, reply = moved.applied(number, answered=answered)
        expected_applied, expected = inherited.applied(number, answered=answered)
        assert applied == expected_applied
        assert (reply and reply.decode(MSGPACK)) == (expected and expected.decode(MSGPACK))
    assert [moved.key(n) for n in (1, 2, 3)] == ["n.lost:2", "n.lost:4", "n.lost:5"]
    assert moved.applied(2)[1] is not None and moved.applied(3) == (False, None)
    lost_answer = moved.applied(1, answered=True)[1]  # applied (id 2) before the record began (3)
    assert lost_answer is not None and lost_answer.decode(MSGPACK)["code"] == "session_closed"
    assert moved.applied(1) == (True, None)  # an emit: there was no answer to lose

    answers = Answers(limit=3)
    answers.kept(1, 10)
    answers.kept(2, 12)
    again = Answers(limit=3)
    again.unpack(msgpack.unpackb(msgpack.packb(answers.pack())))
    assert again.delivered(11) == [1] and again.delivered(12) == [2]


async def test_a_successor_ends_the_session_it_names_when_that_one_is_still_alive() -> None:
    """A page reloaded with a message it had not seen acknowledged: the new page's session
    names the old one, which the server had not ended yet, and the old page's request
    carrying that message is still on the way. Before, it arrived after the new hello and was
    applied by the old session as well as by the new one."""
    hub = make_hub()
    applied = Recorder(hub).applied
    await hub.start()
    try:
        old = await Peer.open(hub)
        sid, token = old.session.sid, old.session.state.token
        await old.send({"t": "emit", "ev": "do", "d": "a"})  # 1: applied and acknowledged
        peer = await _successor(hub, Previous(sid, token, (2,)))  # 2 is carried
        assert old.session.state.phase is Phase.CLOSED, "the named session was ended"
        with contextlib.suppress(LadderError):
            await old.send({"t": "emit", "ev": "do", "d": "b"})  # the old page's late request
        await _send(peer, [{"t": "emit", "ev": "do", "d": "b", "i": 1}])
        assert applied == ["a", "b"], "the carried message applied once"
        assert [f["t"] for f in peer.read()] == ["ack"]
    finally:
        await hub.stop()


async def test_a_successor_with_a_wrong_token_ends_nothing() -> None:
    hub = make_hub()
    await hub.start()
    try:
        victim = await Peer.open(hub)
        await _successor(hub, Previous(victim.session.sid, "guessed", (1,)))
        assert victim.session.state.phase is not Phase.CLOSED, "someone else's session lives on"
    finally:
        await hub.stop()


async def test_a_successor_waits_for_the_message_its_ended_predecessor_is_still_applying() -> None:
    """A server shutting down ends its sessions while a handler runs; the client's new
    session names the old one and carries that message. Before, the old session was
    forgotten at once and the successor read the record before the handler finished and
    recorded it: the message was applied twice."""
    hub = make_hub()
    recorder = Recorder(hub, hold=lambda data: True)
    await hub.start()
    try:
        old = await Peer.open(hub)
        sid, token = old.session.sid, old.session.state.token
        sending = await end_while_applying(old, {"t": "emit", "ev": "do", "d": "b"}, recorder.entered)
        sessions = internals(hub).sessions
        assert sid not in sessions
        opening = asyncio.create_task(_successor(hub, Previous(sid, token, (1,))))
        done, _ = await asyncio.wait({opening}, timeout=0.2)
        assert not done, "the successor waits for the message in progress"
        recorder.release.set()
        peer = await opening
        with contextlib.suppress(LadderError):
            await sending
        await _send(peer, [{"t": "emit", "ev": "do", "d": "b", "i": 1}])
        assert recorder.applied == ["b"], "the carried message applied once"
        assert [f["t"] for f in peer.read()] == ["ack"]
        assert sid not in sessions.settling, "forgotten once settled"
    finally:
        await hub.stop()


def _as(user: str) -> AuthRequest:
    return AuthRequest(headers={}, cookies={}, token=user, client="test", transport="websocket")


async def _successor_of(hub: Ladder, prev: Previous, user: str) -> Peer:
    session, _ = await internals(hub).router.open(Hello(v=1, token=user, prev=prev), _as(user))
    att = internals(hub).gateway.attach(session, "websocket", streaming=True, ack=0, resumed=False)
    peer = Peer(hub, session, att)
    assert peer.read()[0]["t"] == "welcome"
    return peer


async def _carried_as(hubs: tuple[Ladder, ...], user: str) -> tuple[list[Any], list[dict[str, Any]]]:
    """Alice's page queues a call and an emit offline, then reloads signed in as ``user``,
    whose new session (on the last hub) carries them over naming alice's session."""
    applied: list[Any] = []
    for hub in hubs:
        hub.on("do")(lambda ctx, data: applied.append((ctx.user, data)))
        await hub.start()
    alice = await Peer.open(hubs[0], token="alice")
    prev = Previous(alice.session.sid, alice.session.state.token, (1, 2))
    successor = await _successor_of(hubs[-1], prev, user)
    await _send(successor, [{"t": "call", "ev": "do", "d": "a", "i": 1}, {"t": "emit", "ev": "do", "d": "b", "i": 2}])
    answers = [frame for frame in successor.read() if "re" in frame]
    return applied, answers


async def test_messages_carried_from_another_users_session_are_refused_not_applied_as_the_new_user() -> None:
    """A browser whose page changed user (signed out by navigating away, signed in as bob)
    carried alice's unsent messages into bob's session, and they were applied as bob's."""
    outcomes = {}
    for user in ("bob", "alice"):  # (alice: her own page, applied; a hub each, with its handler)
        hub = Ladder(engine=MemoryEngine(), authenticate=lambda request: request.token)
        try:
            outcomes[user] = await _carried_as((hub,), user)
        finally:
            await hub.stop()
    applied, answers = outcomes["bob"]
    assert applied == [], "nothing alice wrote is applied as bob's"
    assert [(a["t"], a["re"], a["code"]) for a in answers] == [("err", 1, "forbidden"), ("err", 2, "forbidden")]
    assert "another user" in answers[0]["reason"]
    applied, answers = outcomes["alice"]
    assert applied == [("alice", "a"), ("alice", "b")] and [a["t"] for a in answers] == ["reply"]


@pytest.mark.parametrize(("said", "applied_as"), [("alice", []), ("", []), ("bob", ["bob"]), (None, ["bob"])])
async def test_a_forgotten_session_of_another_user_is_told_apart_by_the_user_its_client_says(
    said: str | None, applied_as: list[str]
) -> None:
    """The lost session is long gone (expired, or its server restarted): the server cannot tell
    whose the carried messages were, and applied alice's as bob's. Her client says whose
    session it was (``pu``; ``""`` anonymous): any user but bob's refuses them. A hello that
    says nothing leaves the server with what it knows: nothing, so they are applied."""
    hub = Ladder(engine=MemoryEngine(), authenticate=lambda request: request.token)
    applied: list[Any] = []
    hub.on("do")(lambda ctx, data: applied.append(ctx.user))
    await hub.start()
    try:
        successor = await _successor_of(hub, Previous("forgotten", "rt", (1,), said), "bob")
        await _send(successor, [{"t": "emit", "ev": "do", "d": "a", "i": 1}])
        answers = [frame for frame in successor.read() if "re" in frame]
        assert applied == applied_as
        refused = [(a["t"], a["re"], a["code"]) for a in answers]
        assert refused == ([] if applied_as else [("err", 1, "forbidden")])
    finally:
        await hub.stop()


async def test_another_users_session_on_another_node_is_told_apart_too(redis_server: RedisServer) -> None:
    hubs = tuple(Ladder(engine=RedisEngine(redis_server.url), authenticate=lambda r: r.token) for _ in range(2))
    try:
        applied, answers = await _carried_as(hubs, "bob")  # (alice's session lives on the other node)
        assert applied == [] and [(a["re"], a["code"]) for a in answers] == [(1, "forbidden"), (2, "forbidden")]
    finally:
        for hub in hubs:
            await hub.stop()
