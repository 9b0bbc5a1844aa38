"""One poll on an attached link: what it answers when the session ends its transports."""

from __future__ import annotations

import asyncio

import pytest

from ladder import LadderError
from ladder.protocol.codec import JSON
from ladder.server.hub import internals
from ladder.server.polling import poll_once
from tests.server.harness import Peer, make_hub


@pytest.mark.parametrize("ended_by", ["sent_away", "moved"])
async def test_a_held_long_poll_ended_by_its_session(ended_by: str) -> None:
    """Released by ``send_away`` (messages given back when the engine went away), a held long
    poll was answered an empty batch: its client polled again and never heard that it must
    resume and write them again. It is refused now. One whose session moved to another
    process (a probe's stream landed there) is still answered empty: the next poll finds the
    session (refused, the client would resume after a pause rather than poll again at once)."""
    hub = make_hub()
    await hub.start()
    try:
        peer = await Peer.open(hub)
        gateway = internals(hub).gateway
        att = gateway.attach(peer.session, "longpoll", streaming=False, ack=0, resumed=True, greet=False)
        holding = asyncio.create_task(poll_once(gateway.link(peer.session, att), hold=True, codec=JSON))
        await asyncio.sleep(0)  # (the poll waits: nothing to say)
        assert not holding.done()
        if ended_by == "moved":
            peer.session.state.close(LadderError("session_moved"), bye=False)
            assert JSON.decode(await asyncio.wait_for(holding, 5)) == []
            return
        peer.session.state.send_away(LadderError("engine_unavailable", "gone"))
        with pytest.raises(LadderError) as refused:
            await asyncio.wait_for(holding, 5)
        assert (refused.value.code, refused.value.reason) == ("engine_unavailable", "gone")
    finally:
        await hub.stop()
