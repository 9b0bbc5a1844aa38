"""Attaching transports to sessions: what a refused attach leaves behind."""

from __future__ import annotations

import pytest

from ladder import LadderError
from ladder.server.hub import internals
from tests.server.harness import Peer, make_hub


async def test_an_attach_the_session_refuses_changes_no_rung() -> None:
    """A resume on long polling refused (the session ended, or was sent away) counted a rung
    change (``ladder_rung_changes_total``) and left the session named as on long polling."""
    hub = make_hub()
    await hub.start()
    try:
        peer = await Peer.open(hub)
        node = internals(hub)
        peer.session.state.send_away(LadderError("engine_unavailable", "gone"))
        with pytest.raises(LadderError) as refused:
            node.gateway.attach(peer.session, "longpoll", streaming=False, ack=0, resumed=True, greet=False)
        assert refused.value.code == "engine_unavailable"
        node.sessions.close(peer.session, LadderError("session_closed"))
        with pytest.raises(LadderError):
            node.gateway.attach(peer.session, "sse", streaming=True, ack=0, resumed=True)
        assert not node.counters.rung_changes and peer.session.transport == "websocket"
    finally:
        await hub.stop()
