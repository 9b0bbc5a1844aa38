"""The hub in-process: channels, recovery, presence, pushes, handlers, limits."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ladder import ChannelOptions, Context, Identity, Ladder, LadderError, Limits
from ladder.engine import Member, Position
from ladder.protocol.sids import label
from ladder.server.hub import internals
from tests.server.harness import Clock, Peer, make_hub


@pytest.fixture
async def hub() -> AsyncIterator[Ladder]:
    hub = make_hub(
        channels={
            "chat:*": ChannelOptions(presence=True, client_publish=True, history_size=5, history_ttl=60),
            "quiet:*": ChannelOptions(history_size=0),
        },
        authenticate=lambda req: Identity(user=req.token, info={"nick": req.token}) if req.token else None,
        limits=Limits(max_subscriptions=3),
    )
    yield hub
    await hub.stop()


def pubs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["o"] for f in frames if f["t"] == "pub"]


async def test_subscribe_publish_and_recover(hub: Ladder) -> None:
    alice = await Peer.open(hub, "alice")
    reply = await alice.request({"t": "sub", "ch": "chat:1"})
    assert reply["d"]["rec"] is True and reply["d"]["off"] == 0
    epoch = reply["d"]["ep"]
    for n in range(3):
        await hub.publish("chat:1", {"n": n})
    assert pubs(alice.read()) == [1, 2, 3]

    # A new session resubscribing from offset 1 gets 2 and 3, before anything newer.
    bob = await Peer.open(hub, "bob")
    (sub_id,) = await bob.send({"t": "sub", "ch": "chat:1", "ep": epoch, "off": 1})
    await hub.publish("chat:1", {"n": 3})
    frames = bob.read()
    reply = next(f for f in frames if f.get("re") == sub_id)
    assert reply["d"] == {"ch": "chat:1", "ep": epoch, "off": 3, "rec": True, "n": 2}
    assert pubs(frames) == [2, 3, 4]
    assert frames.index(reply) < frames.index(next(f for f in frames if f["t"] == "pub"))


async def test_recovery_impossible_is_said_plainly(hub: Ladder) -> None:
    alice = await Peer.open(hub, "alice")
    for n in range(8):  # history keeps 5
        await hub.publish("chat:2", n)
    epoch = (await hub.engine.position("chat:2")).epoch
    gone = await alice.request({"t": "sub", "ch": "chat:2", "ep": epoch, "off": 1})
    assert gone["d"]["rec"] is False and gone["d"]["off"] == 8 and gone["d"]["n"] == 0
    other = await Peer.open(hub, "carol")
    wrong_epoch = await other.request({"t": "sub", "ch": "chat:2", "ep": "nope", "off": 7})
    assert wrong_epoch["d"]["rec"] is False and wrong_epoch["d"]["ep"] == epoch
    ok = await (await Peer.open(hub, "dave")).request({"t": "sub", "ch": "chat:2", "ep": epoch, "off": 3})
    assert ok["d"]["rec"] is True and ok["d"]["n"] == 5


async def test_history_ttl_and_recent() -> None:
    clock = Clock()
    hub = make_hub(clock, default_channel=ChannelOptions(history_size=10, history_ttl=30))
    try:
        for n in range(4):
            await hub.publish("news", n)
            clock.now += 10
        kept = await hub.history("news")
        assert [p.data for p in kept] == [2, 3], "published 40 s and 30 s ago: past the 30 s TTL"
        peer = await Peer.open(hub)
        (sub_id,) = await peer.send({"t": "sub", "ch": "news", "recent": 2})
        frames = peer.read()
        assert next(f for f in frames if f.get("re") == sub_id)["d"]["n"] == 2
        assert pubs(frames) == [3, 4]
    finally:
        await hub.stop()


@pytest.fixture
async def twelve_big() -> AsyncIterator[tuple[Ladder, Position]]:
    """A hub whose sessions may leave 2 KiB unacknowledged, and channel ``big``'s position
    before its 12 publications of 300 B."""
    hub = make_hub(default_channel=ChannelOptions(history_size=50), limits=Limits(max_queue_bytes=2048))
    try:
        first = await hub.publish("big", "x" * 300)
        for _ in range(11):
            await hub.publish("big", "x" * 300)
        yield hub, Position(first.epoch, 0)
    finally:
        await hub.stop()


async def test_a_recovery_past_the_queue_bytes_is_not_made_and_the_session_lives(
    twelve_big: tuple[Ladder, Position],
) -> None:
    """The bytes bound too: 12 publications of 300 B after a subscribe's reply ended a
    session allowed 2 KiB unacknowledged (``slow_consumer``) before it read its reply."""
    hub, first = twelve_big
    peer = await Peer.open(hub)
    (sub_id,) = await peer.send({"t": "sub", "ch": "big", "ep": first.epoch, "off": 0})
    frames = peer.read()
    reply = next(f for f in frames if f.get("re") == sub_id)
    assert (reply["d"]["rec"], reply["d"]["n"], reply["d"]["off"]) == (False, 0, 12)
    assert pubs(frames) == [] and peer.session.state.close_error is None
    await peer.request({"t": "unsub", "ch": "big"})
    (sub_id,) = await peer.send({"t": "sub", "ch": "big", "ep": first.epoch, "off": 9})
    frames = peer.read()
    beyond_half = next(f for f in frames if f.get("re") == sub_id)
    assert beyond_half["d"]["rec"] is False, "3 of 300 B and the reply: more than half of 2 KiB"
    await peer.request({"t": "unsub", "ch": "big"})
    (sub_id,) = await peer.send({"t": "sub", "ch": "big", "ep": first.epoch, "off": 10})
    frames = peer.read()
    within = next(f for f in frames if f.get("re") == sub_id)
    assert (within["d"]["rec"], within["d"]["n"]) == (True, 2)
    assert pubs(frames) == [11, 12]
    assert peer.session.state.close_error is None


async def test_a_history_answer_past_the_queue_bytes_is_cut_to_what_fits(twelve_big: tuple[Ladder, Position]) -> None:
    """One frame larger than what is left of ``lim.qbytes``, behind a frame not yet
    acknowledged, ended the session as a slow consumer."""
    hub, first = twelve_big
    peer = await Peer.open(hub)
    await peer.request({"t": "sub", "ch": "other"})
    await hub.publish("other", 1)
    assert pubs(peer.read(ack=False)) == [1], "left unacknowledged"
    (alone_id, newest_id, since_id) = await peer.send(  # (each answer left waiting too)
        {"t": "history", "ch": "big", "limit": 2},
        {"t": "history", "ch": "big", "limit": 12},
        {"t": "history", "ch": "big", "limit": 12, "ep": first.epoch, "off": 0},
    )
    answers = {f["re"]: f["d"] for f in peer.read(ack=False) if f.get("re") is not None}
    newest = answers[newest_id]
    assert newest["complete"] is True and 1 <= len(newest["pubs"]) < 12
    assert [p["o"] for p in newest["pubs"]] == list(range(13 - len(newest["pubs"]), 13)), "the newest"
    assert (answers[since_id]["complete"], answers[since_id]["pubs"]) == (False, [])
    assert [p["o"] for p in answers[alone_id]["pubs"]] == [11, 12]
    assert peer.session.state.close_error is None


async def test_history_answers_asked_together_each_fit_and_the_session_lives(twelve_big: tuple[Ladder, Position]) -> None:
    """Two answers of 12 publications (3.9 KB) asked in one message: the first was kept
    whole (nothing waited), the second, behind a frame over ``lim.qbytes``, ended the
    session, neither was sent, and a client asking them again in its new session was ended
    the same way, about four times a second."""
    hub, _ = twelve_big
    peer = await Peer.open(hub)
    first_id, second_id = await peer.send({"t": "history", "ch": "big", "limit": 12}, {"t": "history", "ch": "big", "limit": 12})
    answers = {f["re"]: f["d"] for f in peer.read(ack=False) if f.get("re") is not None}
    first, second = ([p["o"] for p in answers[n]["pubs"]] for n in (first_id, second_id))
    assert 1 <= len(second) < len(first) < 12, (first, second)
    assert first == list(range(13 - len(first), 13)) and second == list(range(13 - len(second), 13))
    assert peer.session.state.close_error is None


async def test_recent_leaves_room_for_what_is_published_before_the_first_ack() -> None:
    """``recent`` took all the session may leave unacknowledged (queue - 1 and the reply):
    the next publication, before the client's first ack, ended it as a slow consumer."""
    hub = make_hub(default_channel=ChannelOptions(history_size=50), limits=Limits(max_queue=20))
    try:
        for n in range(30):
            await hub.publish("feed", n)
        peer = await Peer.open(hub)
        (sub_id,) = await peer.send({"t": "sub", "ch": "feed", "recent": 30})
        for n in range(30, 38):
            await hub.publish("feed", n)
        frames = peer.read(ack=False)
        sent = next(f for f in frames if f.get("re") == sub_id)["d"]["n"]
        assert sent == 9, "the newest that fit in half the queue, with the reply"
        assert pubs(frames) == list(range(30 - sent + 1, 39))
        assert peer.session.state.close_error is None
    finally:
        await hub.stop()


async def test_presence_with_identity_join_and_leave(hub: Ladder) -> None:
    alice = await Peer.open(hub, "alice")
    await alice.request({"t": "sub", "ch": "chat:p"})
    bob = await Peer.open(hub, "bob")
    await bob.request({"t": "sub", "ch": "chat:p"})
    joins = [f for f in alice.read() if f["t"] == "join"]
    assert [j["m"]["u"] for j in joins] == ["bob"] and joins[0]["m"]["info"] == {"nick": "bob"}
    members = await alice.request({"t": "presence", "ch": "chat:p"})
    assert sorted(m["u"] for m in members["d"]) == ["alice", "bob"]
    await bob.send({"t": "bye"})
    await internals(hub).sessions.forget(bob.session)
    assert [f["m"]["u"] for f in alice.read() if f["t"] == "leave"] == ["bob"]
    refused = await alice.request({"t": "presence", "ch": "quiet:x"})
    assert refused["t"] == "err" and refused["code"] == "presence_disabled"


async def test_pushes_to_a_session_and_to_a_user(hub: Ladder) -> None:
    a1 = await Peer.open(hub, "alice")
    a2 = await Peer.open(hub, "alice")
    bob = await Peer.open(hub, "bob")
    assert await hub.send(a1.session.sid, "hello", 1)
    assert await hub.send_user("alice", "all", 2) == 2
    assert [(f["ev"], f["d"]) for f in a1.read() if f["t"] == "push"] == [("hello", 1), ("all", 2)]
    assert [f["ev"] for f in a2.read() if f["t"] == "push"] == ["all"]
    assert [f for f in bob.read() if f["t"] == "push"] == []
    assert not await hub.send("nope", "x")


async def test_handlers_replies_and_errors(hub: Ladder) -> None:
    @hub.on("add")
    async def add(ctx: Context, data: Any) -> Any:
        return {"sum": data[0] + data[1], "user": ctx.user}

    @hub.on("sync")
    def sync(ctx: Context, data: Any) -> Any:
        return "plain functions work too"

    @hub.on("refuse")
    async def refuse(ctx: Context, data: Any) -> None:
        raise LadderError("room_full", "no space", retry_after=2.5)

    @hub.on("crash")
    async def crash(ctx: Context, data: Any) -> None:
        raise ZeroDivisionError

    @hub.on("weird")
    async def weird(ctx: Context, data: Any) -> Any:
        return object()

    peer = await Peer.open(hub, "alice")
    assert (await peer.request({"t": "call", "ev": "add", "d": [2, 3]}))["d"] == {"sum": 5, "user": "alice"}
    assert (await peer.request({"t": "call", "ev": "sync"}))["d"] == "plain functions work too"
    refused = await peer.request({"t": "call", "ev": "refuse"})
    assert (refused["code"], refused["reason"], refused["retry_after"]) == ("room_full", "no space", 2.5)
    assert (await peer.request({"t": "call", "ev": "crash"}))["code"] == "handler_error"
    assert (await peer.request({"t": "call", "ev": "weird"}))["code"] == "handler_error"
    assert (await peer.request({"t": "call", "ev": "missing"}))["code"] == "unknown_event"
    (emit_id,) = await peer.send({"t": "emit", "ev": "crash"})
    assert [f["re"] for f in peer.read() if f["t"] == "err"] == [emit_id]


async def test_a_result_that_cannot_be_encoded_is_refused_saying_what_and_where(hub: Ladder) -> None:
    """Protocol §2: a call's result nested more than 254 deep (or holding what no encoding
    carries) is ``handler_error`` with the reason naming it and where it sits, as a
    publication's refusal does (it said only "the result could not be encoded")."""
    deep: Any = 1
    for _ in range(300):
        deep = [deep]

    @hub.on("deep")
    def deep_result(ctx: Context, data: Any) -> Any:
        return {"tree": deep}

    @hub.on("when")
    async def when(ctx: Context, data: Any) -> Any:
        return {"at": [1, object()]}

    peer = await Peer.open(hub, "alice")
    refused = await peer.request({"t": "call", "ev": "deep"})
    assert refused["code"] == "handler_error"
    assert refused["reason"].startswith(
        "the result could not be encoded: cannot send lists and dicts nested more than 254 deep at ['tree'][0]"
    ), refused["reason"]
    refused = await peer.request({"t": "call", "ev": "when"})
    assert refused["code"] == "handler_error"
    assert refused["reason"].startswith("the result could not be encoded: cannot send an object at ['at'][1]")
    assert (await peer.request({"t": "call", "ev": "deep"}))["code"] == "handler_error"  # (the session goes on)


async def test_a_result_nested_254_deep_is_answered(hub: Ladder) -> None:
    """Protocol §2 carries 254 levels; a reply frame around such a result is 255, past what
    orjson writes: it was ``handler_error`` ("the result could not be encoded") whatever the
    client's encoding, and the same data in a client's JSON message wedged its session."""
    deep: Any = "core"
    for _ in range(254):
        deep = [deep]

    @hub.on("echo")
    def echo(ctx: Context, data: Any) -> Any:
        return data

    peer = await Peer.open(hub, "alice")
    answered = await peer.request({"t": "call", "ev": "echo", "d": deep})
    assert answered["t"] == "reply" and answered["d"] == deep


async def test_data_sent_that_cannot_be_encoded_raises_a_type_error_saying_what_and_where(hub: Ladder) -> None:
    """Protocol §2: data the application pushes that cannot be encoded is a ``TypeError``
    from ``send``, naming it and where it sits."""
    peer = await Peer.open(hub, "alice")
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    with pytest.raises(TypeError, match=r"^cannot send lists and dicts nested more than 254 deep at "):
        await hub.send(peer.session.sid, "note", {"tree": deep})
    with pytest.raises(TypeError, match=r"^cannot send an object at "):
        await hub.send(peer.session.sid, "note", {"at": object()})


async def test_a_session_id_or_a_user_that_is_not_a_str_is_a_type_error(hub: Ladder) -> None:
    """``send`` and ``disconnect`` returned False on the memory engine and raised an
    AttributeError on Redis for a session id that is not a str; ``send_user`` returned 0 for a
    user that is not one, where ``disconnect_user`` raised TypeError."""
    with pytest.raises(TypeError, match=r"^session_id must be a session's id, the str ctx.session_id is, not int"):
        await hub.send(123, "note")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"not NoneType"):
        await hub.disconnect(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^user must be the str the authenticate hook returned, not int"):
        await hub.send_user(123, "note")  # type: ignore[arg-type]
    assert await hub.send("no-such-session", "note") is False  # (unknown: False, as documented)


async def test_a_handler_s_context_names_the_sender_and_its_message(hub: Ladder) -> None:
    seen: list[Context] = []

    @hub.on("who")
    def who(ctx: Context, data: Any) -> Any:
        seen.append(ctx)
        return [ctx.event, ctx.user, ctx.message_key]

    peer = await Peer.open(hub, "alice")
    await peer.request({"t": "call", "ev": "who"})
    reply = await peer.request({"t": "call", "ev": "who"})
    sid = peer.session.sid
    assert reply["d"] == ["who", "alice", f"{sid}:2"]
    first, _ = seen
    assert (first.hub, first.session_id, first.client_id) == (hub, sid, peer.session.client_id)
    assert first.identity is peer.session.identity and first.message_key == f"{sid}:1"
    assert f"message_key='{sid}:1'" in repr(first) and "event='who'" in repr(first)
    # What an app's own tests construct, by position as before.
    made = Context(hub, "s", "c", Identity(user="bob"), "ev", "s:7")
    assert (made.user, made.message_key, made.event) == ("bob", "s:7", "ev")
    assert Context(hub, "s", "c", Identity(user=None), "ev").message_key is None


async def test_client_publish_needs_permission(hub: Ladder) -> None:
    peer = await Peer.open(hub, "alice")
    assert (await peer.request({"t": "pub", "ch": "quiet:1", "d": 1}))["code"] == "forbidden"
    ok = await peer.request({"t": "pub", "ch": "chat:1", "d": 1})
    assert ok["t"] == "reply" and ok["d"]["off"] == 1


async def test_subscription_limit_and_unsubscribe(hub: Ladder) -> None:
    peer = await Peer.open(hub, "alice")
    for n in range(3):
        assert (await peer.request({"t": "sub", "ch": f"quiet:{n}"}))["t"] == "reply"
    assert (await peer.request({"t": "sub", "ch": "quiet:9"}))["code"] == "too_many_subscriptions"
    assert (await peer.request({"t": "sub", "ch": "quiet:0"}))["d"]["rec"] is True, (
        "subscribing twice is fine"
    )
    assert (await peer.request({"t": "unsub", "ch": "quiet:0"}))["t"] == "reply"
    assert (await peer.request({"t": "unsub", "ch": "quiet:0"}))["code"] == "not_subscribed"
    assert (await peer.request({"t": "sub", "ch": "quiet:9"}))["t"] == "reply"


async def test_authentication_refusal(hub: Ladder) -> None:
    with pytest.raises(LadderError) as refused:
        await Peer.open(hub, None)
    assert refused.value.code == "unauthorized"
    # An authenticate hook may read a cookie instead of a token: the fix names both (it said
    # "no token: give the client one" to a client of a hub that signs in by cookie).
    assert "no token and no cookie" in refused.value.reason and "Client(url, token=...)" in refused.value.reason
    assert "sign in first if the app authenticates by cookie" in refused.value.reason


async def test_slow_consumer_is_dropped_with_a_reason() -> None:
    hub = make_hub(limits=Limits(max_queue=10))
    try:
        slow = await Peer.open(hub)
        fast = await Peer.open(hub)
        await slow.request({"t": "sub", "ch": "firehose"})
        await fast.request({"t": "sub", "ch": "firehose"})
        for n in range(11):
            await hub.publish("firehose", n)
            fast.read()
        control, _ = slow.session.state.take(slow.att, internals(hub).settings.clock())
        assert control[-1] == {
            "t": "bye",
            "code": "slow_consumer",
            "reason": "client fell too far behind; session dropped",
        }
        await internals(hub).tick(internals(hub).settings.clock())
        assert slow.session.sid not in internals(hub).sessions and fast.session.sid in internals(hub).sessions
    finally:
        await hub.stop()


async def test_a_slow_consumer_drop_is_counted_and_logged_as_a_refusal(caplog: pytest.LogCaptureFixture) -> None:
    """It was logged only as ``session … closed`` and counted nowhere (a flood's drop is a
    refusal: one line ``refused on …``, counted in ``ladder_errors_total``)."""
    hub = make_hub(limits=Limits(max_queue=10))
    try:
        slow = await Peer.open(hub)
        await slow.request({"t": "sub", "ch": "firehose"})
        with caplog.at_level(logging.INFO, "ladder"):
            for n in range(15):
                await hub.publish("firehose", n)
        assert internals(hub).counters.errors["slow_consumer"] == 1
        refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused on")]
        assert refused == [
            f"refused on websocket ({label(slow.session.sid)}): slow_consumer: "
            "client fell too far behind; session dropped"
        ]
    finally:
        await hub.stop()


async def test_log_lines_tell_the_sessions_of_one_node_apart(caplog: pytest.LogCaptureFixture) -> None:
    """Session ids made by a shared engine begin with the node's id (``42a6db00.``): lines
    naming a session by its first 8 characters named every session of a node alike."""
    hub = make_hub(limits=Limits(max_queue=10))
    hub.engine.session_prefix = lambda: "42a6db00."  # type: ignore[method-assign]
    try:
        slow, other = await Peer.open(hub), await Peer.open(hub)
        assert slow.session.sid.startswith("42a6db00.") and other.session.sid.startswith("42a6db00.")
        await slow.request({"t": "sub", "ch": "firehose"})
        with caplog.at_level(logging.INFO, "ladder"):
            for n in range(15):
                await hub.publish("firehose", n)
        (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused on")]
        named = "42a6db00." + slow.session.sid.split(".", 1)[1][:8]
        assert line.startswith(f"refused on websocket ({named}): slow_consumer"), line
        assert label(other.session.sid) not in line
    finally:
        await hub.stop()


async def test_resume_needs_the_token_and_a_live_session(hub: Ladder) -> None:
    peer = await Peer.open(hub, "alice")
    with pytest.raises(LadderError) as wrong:
        await internals(hub).router.route(peer.session.sid, "not-the-token", stream=False)
    assert wrong.value.code == "bad_resume_token"
    with pytest.raises(LadderError) as unknown:
        await internals(hub).router.route("no-such-session", "x", stream=False)
    assert unknown.value.code == "unknown_session"
    assert await internals(hub).router.route(peer.session.sid, peer.session.state.token, stream=False) is peer.session


async def test_credentials_that_expired_already_are_refused_with_token_expired() -> None:
    """A session was opened with them, welcomed, and could apply a message before the clock
    ended it; on the polling rungs the client then heard ``unknown_session``, never why."""
    hub = make_hub(authenticate=lambda req: Identity(user="u", expires=time.time() - 10))
    try:
        with pytest.raises(LadderError) as refused:
            await Peer.open(hub, "any")
        assert refused.value.code == "token_expired"
        assert len(internals(hub).sessions) == 0
    finally:
        await hub.stop()


async def test_a_refusal_names_what_the_client_sent_a_token_or_a_cookie() -> None:
    """A cookie session refused was told to check "the token the client sends"."""
    from ladder.server.auth import AuthRequest, run_authenticate  # noqa: PLC0415

    def request(token: str | None, cookies: dict[str, str]) -> AuthRequest:
        return AuthRequest(headers={}, cookies=cookies, token=token, client=None, transport="websocket")

    for sent, named in ((request("t", {}), "the token"), (request(None, {"sessionid": "x"}), "the cookie or headers")):
        with pytest.raises(LadderError) as refused:
            await run_authenticate(lambda req: None, sent)
        assert refused.value.code == "unauthorized"
        assert refused.value.reason == f"the authenticate hook refused these credentials: check {named} the client sends"


async def test_subscribing_again_answers_with_the_same_fields(hub: Ladder) -> None:
    peer = await Peer.open(hub, "alice")
    first = await peer.request({"t": "sub", "ch": "chat:again"})
    again = await peer.request({"t": "sub", "ch": "chat:again"})
    assert set(first["d"]) == set(again["d"]) == {"ch", "ep", "off", "rec", "n"}
    assert again["d"]["n"] == 0


async def test_data_no_encoding_can_carry_raises_type_error_from_every_server_api() -> None:
    """hub.publish raised TypeError; hub.send answered False for an unknown session and
    ``bad_frame`` (the client's fault, by its name) for a known one, and send_user
    ``bad_frame`` even with no session of that user."""
    import datetime  # noqa: PLC0415

    hub = make_hub()
    try:
        peer = await Peer.open(hub)
        when = datetime.datetime.now()
        for sending in (
            hub.publish("room", when),
            hub.send(peer.session.sid, "note", when),
            hub.send("unknown", "note", when),
            hub.send_user("nobody", "note", when),
        ):
            with pytest.raises(TypeError, match=r"datetime"):
                await sending
    finally:
        await hub.stop()


async def test_server_code_cannot_publish_where_no_client_can_subscribe() -> None:
    """An empty, over-long or unprintable channel name was published (and kept, in Redis)
    where no client could ever subscribe: the publication reached nobody, without a word."""
    hub = make_hub()
    try:
        for channel in ("", "x" * 256, "room:a\nb", "room:\u200b"):
            with pytest.raises(ValueError, match="not a channel name a client can use"):
                await hub.publish(channel, 1)
        assert (await hub.publish("room:" + "x" * 250, 1)).offset == 1
    finally:
        await hub.stop()


@pytest.mark.parametrize("code", ["slow_consumer", "disconnect"])
async def test_a_request_after_the_server_ended_a_session_hears_why(code: str) -> None:
    """A polling client is rarely there for the ``bye``: its next request heard
    ``unknown_session``, not why its session ended."""
    hub = make_hub()
    try:
        peer = await Peer.open(hub)
        sid, token = peer.session.sid, peer.session.state.token
        sessions = internals(hub).sessions
        if code == "disconnect":
            assert await hub.disconnect(sid, "banned")
        else:
            sessions.close(peer.session, LadderError(code, "why"))
        await sessions.forget(peer.session)
        router = internals(hub).router
        with pytest.raises(LadderError) as told:
            await router.route(sid, token, stream=False)
        assert told.value.code == ("session_closed" if code == "disconnect" else code)
        with pytest.raises(LadderError) as stranger:  # not without its resume token
            await router.route(sid, "not-its-token", stream=False)
        assert stranger.value.code == "unknown_session"
        sessions.ended.sweep(internals(hub).settings.clock() + internals(hub).settings.session_limits.ttl)
        with pytest.raises(LadderError) as later:  # for the session TTL, then forgotten
            await router.route(sid, token, stream=False)
        assert later.value.code == "unknown_session"
    finally:
        await hub.stop()


async def test_a_session_ended_for_expired_credentials_is_unknown_afterwards() -> None:
    """Not remembered: a client resumes after ``token_expired`` (with a fresh token), and would
    be refused again for as long as the end was remembered; ``unknown_session`` makes it
    start a new session at once, where the new credentials are checked."""
    hub = make_hub()
    try:
        peer = await Peer.open(hub)
        sessions = internals(hub).sessions
        sessions.close(peer.session, LadderError("token_expired"))
        await sessions.forget(peer.session)
        with pytest.raises(LadderError) as told:
            await internals(hub).router.route(peer.session.sid, peer.session.state.token, stream=False)
        assert told.value.code == "unknown_session"
    finally:
        await hub.stop()


async def test_jwt_leeway_holds_the_credentials_that_long_past_exp() -> None:
    """JWT(leeway=30) let a token 5 s past ``exp`` through its check, and the session was then
    refused as expired already (its Identity said ``exp``)."""
    import jwt as pyjwt  # noqa: PLC0415

    from ladder import JWT  # noqa: PLC0415
    from ladder.server.auth import AuthRequest, run_authenticate  # noqa: PLC0415

    secret = "s3cret-for-tests-only-0123456789abcdef"
    late = pyjwt.encode({"sub": "ada", "exp": int(time.time()) - 5}, secret, algorithm="HS256")
    request = AuthRequest(headers={}, cookies={}, token=late, client=None, transport="websocket")
    identity = await run_authenticate(JWT(secret, leeway=30), request)
    assert identity.user == "ada" and identity.expires is not None and identity.expires > time.time() + 20
    with pytest.raises(LadderError) as refused:
        await run_authenticate(JWT(secret), request)
    assert refused.value.code == "token_expired"


async def test_health_s_channels_are_those_with_subscribers_here_as_the_metric_says() -> None:
    """On the memory engine, /health's ``channels`` was the engine's count of the channels it
    keeps (an hour after their last use), not ``ladder_channels``: 2 with nobody subscribed."""
    hub = Ladder()
    await hub.start()
    peer = await Peer.open(hub)
    await peer.request({"t": "sub", "ch": "room:h"})
    node = internals(hub)
    assert node.health()["channels"] == 1 == len(node.channels)
    await peer.request({"t": "unsub", "ch": "room:h"})
    assert node.health()["channels"] == 0 == len(node.channels)
    assert 'ladder_channels 0.0' in node.metrics.render().decode()
    assert node.health()["kept"] == 1, "the engine still keeps its history and position"
    await hub.stop()


async def test_a_handler_error_whose_details_cannot_be_encoded_is_handler_error_naming_them(hub: Ladder) -> None:
    """A handler's ``LadderError`` with ``details`` no encoding carries (a ``datetime``)
    reached its caller as "the handler was interrupted", and on a WebSocket closed it with
    1011 ``internal`` and a traceback: it is ``handler_error`` saying what and where."""

    @hub.on("full")
    async def full(ctx: Context, data: Any) -> Any:
        raise LadderError("room_full", "the room is full", details={"until": [datetime.datetime(2030, 1, 1)]})

    peer = await Peer.open(hub, "alice")
    refused = await peer.request({"t": "call", "ev": "full"})
    assert refused["code"] == "handler_error"
    assert refused["reason"].startswith("the handler's error 'room_full' could not be encoded: cannot send a datetime"), refused
    assert "['until'][0]" in refused["reason"], refused["reason"]
    (emit_id,) = await peer.send({"t": "emit", "ev": "full"})
    assert [f["code"] for f in peer.read() if f["t"] == "err" and f.get("re") == emit_id] == ["handler_error"]
    assert (await peer.request({"t": "call", "ev": "full"}))["code"] == "handler_error"  # (the session goes on)


async def test_a_session_never_hears_its_own_join_or_leave_whatever_the_engine_s_timing(hub: Ladder) -> None:
    """protocol §5: ``join``/``leave`` tell a subscriber about someone else. The memory
    engine announces a member as its ``sub`` is applied (the subscription not confirmed yet:
    no own join), Redis once its pub/sub message comes back (confirmed by then: an own join,
    one frame), so an app counting members from them counted itself on one engine only."""
    alice = await Peer.open(hub, "alice")
    await alice.request({"t": "sub", "ch": "chat:own"})
    alice.read()
    channels = internals(hub).channels
    me = Member(alice.session.client_id, "alice", {"nick": "alice"})
    channels.on_presence("chat:own", "join", me)  # (as Redis's echo of its own join comes)
    channels.on_presence("chat:own", "join", Member("someone-else", "bob", None))
    channels.on_presence("chat:own", "leave", me)
    heard = [(f["t"], f["m"]["u"]) for f in alice.read() if f["t"] in ("join", "leave")]
    assert heard == [("join", "bob")], heard


async def test_a_handler_raising_generator_exit_or_a_bad_ladder_error_is_answered_handler_error(
    hub: Ladder, caplog: pytest.LogCaptureFixture
) -> None:
    """``GeneratorExit`` (not an ``Exception``) went past the handler's failure path: the call
    was never answered and the loop logged "Task exception was never retrieved". A
    ``LadderError`` the constructor refuses (``retry_after=-5``) is the handler's bug, logged
    with what to fix."""

    @hub.on("gen")
    async def gen(ctx: Context, data: Any) -> Any:
        raise GeneratorExit

    @hub.on("plain_gen")
    def plain_gen(ctx: Context, data: Any) -> Any:
        raise GeneratorExit

    @hub.on("negative")
    async def negative(ctx: Context, data: Any) -> Any:
        raise LadderError("busy", retry_after=-5)

    peer = await Peer.open(hub, "alice")
    for event in ("gen", "plain_gen", "negative"):
        refused = await asyncio.wait_for(peer.request({"t": "call", "ev": event}), 5)
        assert refused["code"] == "handler_error", refused
    (emit_id,) = await peer.send({"t": "emit", "ev": "gen"})
    assert [f["re"] for f in peer.read() if f["t"] == "err"] == [emit_id]
    assert (await peer.request({"t": "call", "ev": "add_nothing"}))["code"] == "unknown_event"  # (goes on)
    assert "retry_after must be seconds, 0 or more" in caplog.text
    assert "never retrieved" not in caplog.text
