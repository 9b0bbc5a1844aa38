"""A node that cannot reach its engine applies no client message: it could not record it,
and a successor session (started when other nodes could not reach this one either) would
apply it again. Seen in the chaos suite: 9 messages applied twice after a Redis link refused
connections for 5 s."""

from __future__ import annotations

import asyncio

import pytest

from ladder import LadderError
from ladder.protocol.codec import JSON
from ladder.protocol.frames import decode_client_frames
from ladder.server.hub import internals
from tests.server.harness import Peer, Recorder, make_hub


async def test_messages_are_not_applied_while_the_engine_is_unreachable() -> None:
    hub = make_hub()
    applied = Recorder(hub).applied
    await hub.start()
    try:
        peer = await Peer.open(hub)
        hub.engine.healthy = False
        await peer.send({"t": "emit", "ev": "do", "d": "a"})
        assert applied == [], "not applied: it could not be recorded"
        assert peer.att.closed and peer.att.close_error is not None
        assert peer.att.close_error.code == "engine_unavailable", "the WebSocket is ended; the session is not"
        frames, _ = decode_client_frames(JSON, JSON.encode({"t": "emit", "ev": "do", "d": "a", "i": 1}))
        with pytest.raises(LadderError) as refused:
            await internals(hub).inbound.receive(peer.session, None, frames)  # an upstream POST
        assert refused.value.code == "engine_unavailable" and applied == []

        hub.engine.healthy = True
        again = internals(hub).gateway.attach(peer.session, "websocket", streaming=True, ack=0, resumed=True)
        resumed = Peer(hub, peer.session, again)
        await internals(hub).inbound.receive(peer.session, again, frames)  # the client sends it again
        assert applied == ["a"]
        assert {"t": "ack", "i": 1} in resumed.read()
    finally:
        await hub.stop()


async def test_messages_queued_when_the_engine_goes_away_are_not_applied_but_sent_again() -> None:
    """Accepted while the engine answered, applied after it stopped: they were applied without
    a record, and again by the successor session (4 doubles in the chaos suite)."""
    hub = make_hub()
    recorder = Recorder(hub, hold=lambda data: data == "a")  # the engine goes away meanwhile
    applied, release = recorder.applied, recorder.release
    await hub.start()
    try:
        peer = await Peer.open(hub)
        sending = asyncio.create_task(
            peer.send(*({"t": "emit", "ev": "do", "d": d} for d in ("a", "b", "c")))
        )
        await recorder.entered.wait()  # "a" is being applied, "b" and "c" wait behind it
        hub.engine.healthy = False
        release.set()
        await sending
        assert applied == ["a"], "b and c were not applied"
        assert peer.session.state.inbox.accepted == 1 and peer.att.closed

        hub.engine.healthy = True
        again = Peer(
            hub, peer.session, internals(hub).gateway.attach(peer.session, "websocket", streaming=True, ack=0, resumed=True)
        )
        again.next_id = 2
        await again.send({"t": "emit", "ev": "do", "d": "b"}, {"t": "emit", "ev": "do", "d": "c"})
        assert applied == ["a", "b", "c"], "each once, in order"
        assert {"t": "ack", "i": 3} in again.read()
    finally:
        await hub.stop()


async def test_a_message_in_its_handler_when_the_engine_goes_away_is_not_taken_again() -> None:
    """Another batch arriving meanwhile gave back everything not yet done, the message in its
    handler included: sent again, it was applied twice."""
    hub = make_hub()
    recorder = Recorder(hub, hold=lambda data: data == "a")
    applied, release = recorder.applied, recorder.release
    await hub.start()
    try:
        peer = await Peer.open(hub)
        first = asyncio.create_task(peer.send({"t": "emit", "ev": "do", "d": "a"}))
        await recorder.entered.wait()  # "a" is in its handler
        hub.engine.healthy = False
        await peer.send({"t": "emit", "ev": "do", "d": "b"})  # refused: not taken
        release.set()
        await first
        hub.engine.healthy = True
        again = Peer(
            hub, peer.session, internals(hub).gateway.attach(peer.session, "websocket", streaming=True, ack=0, resumed=True)
        )
        again.next_id = 1  # the client resends everything not acknowledged
        await again.send({"t": "emit", "ev": "do", "d": "a"}, {"t": "emit", "ev": "do", "d": "b"})
        assert applied == ["a", "b"], "each once"
    finally:
        await hub.stop()
