"""A session moving in while the engine fails: it must still end up claimed and following
its channels (in-process hubs on the memory engine, the engine made to fail on demand)."""

from __future__ import annotations

import asyncio
from typing import Any

from ladder import Ladder, LadderError
from ladder.server.hub import internals
from ladder.server.moving import pack, restore
from ladder.server.session import Session
from tests.server.harness import Peer, make_hub


async def test_a_session_moved_in_while_the_engine_fails_still_gets_its_publications() -> None:
    """The engine failed during the move (Redis restarting): the moved-in subscription stayed
    pending for good and every later publication was lost without a word."""
    old, new = make_hub(), make_hub()
    await old.start()
    await new.start()
    try:
        peer = await Peer.open(old)
        reply = await peer.request({"t": "sub", "ch": "room"})
        assert reply["t"] == "reply"
        packed = pack(peer.session, internals(old).channels)
        history = new.engine.history
        failures = 2

        async def failing(*args: Any, **kwargs: Any) -> Any:
            nonlocal failures
            if failures:
                failures -= 1
                raise LadderError("engine_unavailable", "Redis is restarting (test)")
            return await history(*args, **kwargs)

        new.engine.history = failing  # type: ignore[method-assign]
        session = await restore(packed, internals(new).settings, internals(new).sessions, internals(new).tasks)
        att = internals(new).gateway.attach(session, "websocket", streaming=True, ack=0, resumed=True)
        moved = Peer(new, session, att)
        async with asyncio.timeout(5):
            while session.subs["room"].pending is not None:  # noqa: ASYNC110 - retried with backoff
                await asyncio.sleep(0.02)
        await new.publish("room", "after the move")
        pubs = [f for f in moved.read() if f.get("t") == "pub"]
        assert [p["d"] for p in pubs] == ["after the move"]
    finally:
        await old.stop()
        await new.stop()


async def arriving_unsettled(
    hub: Ladder, packed: dict[str, Any]
) -> tuple[asyncio.Future[Session], Session, asyncio.Event]:
    """Start moving ``packed`` into ``hub`` with its engine answering the claim late (a stalled
    link): returns the move (still settling in), the session (already in the table), and the
    event that lets the claim through."""
    claim, claiming, claimed = hub.engine.claim_session, asyncio.Event(), asyncio.Event()

    async def slow_claim(*args: Any, **kwargs: Any) -> Any:
        claiming.set()
        await claimed.wait()
        return await claim(*args, **kwargs)

    hub.engine.claim_session = slow_claim  # type: ignore[method-assign]
    parts = internals(hub)
    arriving = asyncio.ensure_future(restore(packed, parts.settings, parts.sessions, parts.tasks))
    await claiming.wait()
    session = parts.sessions.get(packed["state"]["sid"])
    assert session is not None
    return arriving, session, claimed


async def test_a_session_moving_on_before_it_settled_in_takes_its_subscriptions_along() -> None:
    """A session handed over late was asked to move on while it was still being claimed: it
    was packed with no subscriptions (they were still to follow), so the next node never
    followed its channels and every later publication was lost without a word; and the node
    it left went on to follow them for nobody."""
    old, mid, new = make_hub(), make_hub(), make_hub()
    for hub in (old, mid, new):
        await hub.start()
    try:
        peer = await Peer.open(old)
        assert (await peer.request({"t": "sub", "ch": "room"}))["t"] == "reply"
        await old.publish("room", "before the move")
        packed = pack(peer.session, internals(old).channels)
        [[_, epoch, offset, _]] = packed["subs"]
        arriving, session, claimed = await arriving_unsettled(mid, packed)
        # the client's next stream lands elsewhere: the session moves on, unsettled
        answer = await internals(mid).router._serve_migrate(
            {"sid": session.sid, "rt": session.state.token, "from": "elsewhere"}
        )
        assert answer["state"]["subs"] == [["room", epoch, offset, False]]
        claimed.set()
        await arriving
        assert len(internals(mid).channels) == 0, "the node it left follows the channel for nobody"
        moved = await restore(answer["state"], internals(new).settings, internals(new).sessions, internals(new).tasks)
        att = internals(new).gateway.attach(moved, "websocket", streaming=True, ack=0, resumed=True)
        assert moved.subs["room"].pending is None
        await new.publish("room", "after the move")
        pubs = [f["d"] for f in Peer(new, moved, att).read() if f.get("t") == "pub"]
        assert pubs[-1] == "after the move"
    finally:
        for hub in (old, mid, new):
            await hub.stop()


async def test_unsubscribing_before_the_session_settled_in_is_kept() -> None:
    """The client unsubscribes while its moved session still waits to follow the channel here:
    it is unsubscribed (not told ``not_subscribed``), and the settling-in does not bring the
    subscription back."""
    old, new = make_hub(), make_hub()
    for hub in (old, new):
        await hub.start()
    try:
        peer = await Peer.open(old)
        assert (await peer.request({"t": "sub", "ch": "room"}))["t"] == "reply"
        packed = pack(peer.session, internals(old).channels)
        arriving, session, claimed = await arriving_unsettled(new, packed)
        att = internals(new).gateway.attach(session, "websocket", streaming=True, ack=0, resumed=True)
        moved = Peer(new, session, att)
        moved.next_id = peer.next_id
        assert (await moved.request({"t": "unsub", "ch": "room"}))["t"] == "reply"
        claimed.set()
        await arriving
        assert "room" not in session.subs and not session.unsettled
        assert len(internals(new).channels) == 0
    finally:
        for hub in (old, new):
            await hub.stop()
