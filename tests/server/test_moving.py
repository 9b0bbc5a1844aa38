"""A session moving in while the engine fails: it must still end up claimed and following
its channels (in-process hubs on the memory engine, the engine made to fail on demand)."""

from __future__ import annotations

import asyncio
from typing import Any

from ladder import LadderError
from ladder.server.hub import internals
from ladder.server.moving import pack, restore
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
