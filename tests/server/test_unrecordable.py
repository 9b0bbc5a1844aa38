"""A node that cannot reach its engine applies no client message: it could not record it,
and a successor session (started when other nodes could not reach this one either) would
apply it again. Seen in the chaos suite: 9 messages applied twice after a Redis link refused
connections for 5 s."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from ladder import LadderError
from ladder.protocol.codec import JSON
from ladder.protocol.frames import decode_client_frames
from ladder.protocol.session import Phase
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
        frames = decode_client_frames(JSON, JSON.encode({"t": "emit", "ev": "do", "d": "a", "i": 1}))
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


@pytest.mark.parametrize("rung", ["poll", "longpoll"])
async def test_messages_given_back_between_two_polls_are_written_again(rung: str) -> None:
    """Messages a ``POST send`` left queued behind one in its handler (answered 204), given
    back when the engine went away before they were applied: no transport was attached to be
    ended (a poll is attached only while it is answered), so the client never heard that it
    must write them again, and every later message waited behind them, unapplied (the chaos
    suite's redis-restart-none, poll rung: 100 messages). Its next poll is refused now, and
    the client, resuming, writes them again."""
    hub = make_hub()
    recorder = Recorder(hub, hold=lambda data: data == "a")
    await hub.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub), base_url="http://hub") as http:

            async def poll(**query: Any) -> httpx.Response:
                return await http.get(f"/{rung}", params={"v": 1, **query}, headers=headers)

            async def post(*frames: dict[str, Any]) -> httpx.Response:
                body = b"\n".join(orjson.dumps(frame) for frame in frames)
                return await http.post(
                    "/send", params={"sid": sid}, content=body, headers={**headers, "content-type": "application/json"}
                )

            headers: dict[str, str] = {}
            welcome = orjson.loads((await poll(open=1)).content.split(b"\n")[0])
            sid, headers["x-ladder-rt"] = welcome["sid"], welcome["rt"]
            first = asyncio.create_task(post({"t": "emit", "ev": "do", "d": "a", "i": 1}))
            await recorder.entered.wait()
            queued = await post({"t": "emit", "ev": "do", "d": "b", "i": 2}, {"t": "emit", "ev": "do", "d": "c", "i": 3})
            assert queued.status_code == 204, "accepted, queued behind a"
            hub.engine.healthy = False
            recorder.release.set()
            answered = await first
            assert recorder.applied == ["a"], "b and c were given back, not applied"
            assert answered.status_code == 503, "a applied; what its drain queued given back"
            hub.engine.healthy = True

            later = await post({"t": "emit", "ev": "do", "d": "d", "i": 4})
            refused = await poll(sid=sid, ack=0)
            assert recorder.applied == ["a"]
            assert later.status_code == 503 and refused.status_code == 503, (later, refused.content)
            said = orjson.loads(refused.content)
            assert said["code"] == "engine_unavailable" and "resume it (a hello with its sid)" in said["reason"]
            assert (await poll(sid=sid, ack=0)).status_code == 503, "until the client resumes"

            resumed = orjson.loads((await poll(open=1, sid=sid, ack=0)).content.split(b"\n")[0])
            assert resumed["t"] == "welcome" and resumed["resumed"] and resumed["ack"] == 1
            again = await post(*({"t": "emit", "ev": "do", "d": d, "i": i} for i, d in enumerate("bcd", 2)))
            assert again.status_code == 204 and recorder.applied == ["a", "b", "c", "d"]
            assert (await poll(sid=sid, ack=0)).status_code == 200
    finally:
        await hub.stop()


async def test_a_session_sent_away_still_hears_its_clients_bye() -> None:
    """Refused every POST until it resumed, a client closing then could not end its session:
    it stayed (in presence too) until its TTL ran out."""
    hub = make_hub()
    await hub.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub), base_url="http://hub") as http:
            welcome = orjson.loads((await http.get("/poll", params={"v": 1})).content.split(b"\n")[0])
            sid, headers = welcome["sid"], {"x-ladder-rt": welcome["rt"], "content-type": "application/json"}
            session = internals(hub).sessions.get(sid)
            assert session is not None
            session.state.send_away(LadderError("engine_unavailable", "gone"))
            emitted = await http.post("/send", params={"sid": sid}, content=b'{"t":"emit","ev":"x","i":1}', headers=headers)
            assert emitted.status_code == 503
            left = await http.post("/send", params={"sid": sid}, content=b'{"t":"bye"}', headers=headers)
            assert left.status_code == 204 and session.state.phase is Phase.CLOSED
    finally:
        await hub.stop()
