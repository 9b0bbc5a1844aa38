"""The Python client reports the same eleven events as the browser client: ``probe`` (a
better rung tried) and ``state`` (the connection state changed) included."""

from __future__ import annotations

import asyncio
import random

import pytest

from ladder.client import ProbeResult, Publication, Push, ServerError, StateChanged
from ladder.protocol.peer import Frame
from tests.client.fakes import FakeClient, FakeServer, FakeTransport


async def test_probes_and_state_changes_are_reported() -> None:
    server = FakeServer()
    server.refuse_opens = 1  # the WebSocket is refused: the client starts on SSE
    client = FakeClient(server, transports=["websocket", "sse"], probe_delay=0.05)
    probes: asyncio.Queue[ProbeResult] = asyncio.Queue()
    states: list[StateChanged] = []
    client.on("probe", probes.put_nowait)
    client.on("state", states.append)
    await client.connect(timeout=5)
    assert client.transport == "sse"
    server.refuse_opens = 1  # the first probe fails too
    failed = await asyncio.wait_for(probes.get(), 5)
    assert (failed.rung, failed.ok) == ("websocket", False)
    assert "refused" in failed.reason, failed.reason
    worked = await asyncio.wait_for(probes.get(), 5)
    assert (worked.rung, worked.ok) == ("websocket", True), worked
    await client.close()
    assert [s.state for s in states] == ["connected", "closed"], states
    assert states[-1].reason == "the client was closed"  # (the browser client's words)


async def test_a_lost_transport_reports_disconnected_with_its_reason() -> None:
    server = FakeServer()
    client = FakeClient(server, transports=["websocket"], backoff_base=0.05)
    states: asyncio.Queue[StateChanged] = asyncio.Queue()
    client.on("state", states.put_nowait)
    await client.connect(timeout=5)
    assert (await states.get()).state == "connected", "the first connecting is not reported"
    await server.current.close()
    lost = await asyncio.wait_for(states.get(), 5)
    assert lost.state == "disconnected" and "websocket: closed" in lost.reason, lost
    again = await asyncio.wait_for(states.get(), 5)
    assert again.state == "connecting", "reconnecting is"
    await client.close()


async def test_a_failed_race_reports_disconnected_until_the_next_one() -> None:
    """Between two races the client is ``disconnected`` (waiting), with how many failed, as
    the browser client reports it; the next race is ``connecting`` again."""
    server = FakeServer()
    client = FakeClient(server, transports=["websocket"], backoff_base=0.05)
    states: asyncio.Queue[StateChanged] = asyncio.Queue()
    client.on("state", states.put_nowait)
    await client.connect(timeout=5)
    assert (await states.get()).state == "connected"
    server.refuse_opens = 2  # the next two races fail; the third is welcomed
    await server.current.close()
    seen = []
    while not seen or seen[-1].state != "connected":
        seen.append(await asyncio.wait_for(states.get(), 5))
    assert [s.state for s in seen] == ["disconnected", "connecting"] * 3 + ["connected"], seen
    assert "websocket: closed" in seen[0].reason, seen[0]
    assert seen[2].reason.startswith("1 attempt failed: "), seen[2]
    assert seen[4].reason.startswith("2 attempts failed: "), seen[4]
    await client.close()


async def test_before_the_first_welcome_only_the_first_connecting_is_not_reported() -> None:
    server = FakeServer()
    server.refuse_opens = 1
    client = FakeClient(server, transports=["websocket"], backoff_base=0.05)
    states: list[StateChanged] = []
    client.on("state", states.append)
    await client.connect(timeout=5)
    assert [s.state for s in states] == ["disconnected", "connecting", "connected"], states
    assert states[0].reason.startswith("1 attempt failed: "), states[0]
    await client.close()


async def test_a_publication_callback_that_raises_is_logged_and_an_async_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``on_publication`` is the app's code, like ``client.on``'s callbacks: what it raises
    is logged (it used to end the connection loop, closing the client), and an ``async
    def`` one is awaited (it used to be dropped, never run)."""
    server = FakeServer()
    client = FakeClient(server, transports=["websocket"])
    await client.connect(timeout=5)
    heard: asyncio.Queue[object] = asyncio.Queue()

    def broken(pub: Publication) -> None:
        raise ValueError(f"a bug in the app's callback for {pub.data!r}")

    async def later(pub: Publication) -> None:
        await asyncio.sleep(0)
        heard.put_nowait(pub.data)
        raise RuntimeError("an async bug")

    client.subscribe("room", on_publication=broken).listen(later)
    await client.flush(timeout=5)
    server.push({"t": "pub", "ch": "room", "o": 1, "d": "first"}, {"t": "pub", "ch": "room", "o": 2, "d": "second"})
    assert await asyncio.wait_for(heard.get(), 5) == "first"
    assert await asyncio.wait_for(heard.get(), 5) == "second"
    assert client.state == "connected"
    await client.emit("still", "working")
    await client.flush(timeout=5)
    assert server.applied[-1]["d"] == "working"
    failures = [r for r in caplog.records if r.message.startswith("callback for publication on room failed")]
    assert len(failures) == 4, [r.message for r in caplog.records]
    await client.close()


async def test_a_subscription_ends_quietly_when_the_app_closes_even_if_the_bye_is_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server answers a client's ``bye`` by ending the session (``session_closed``); when
    the pump read that answer while ``close()`` waited, the client gave up with it, and
    ``async for`` over a subscription raised ``session_closed`` instead of ending."""
    server = FakeServer()
    send = FakeTransport.send

    async def answering(self: FakeTransport, frames: list[Frame]) -> None:
        await send(self, frames)
        if any(frame.get("t") == "bye" for frame in frames):
            self.down.put_nowait([{"t": "bye", "code": "session_closed", "reason": "closed"}])
            await asyncio.sleep(0.05)  # (the pump reads the answer meanwhile)

    monkeypatch.setattr(FakeTransport, "send", answering)
    client = FakeClient(server, transports=["websocket"])
    await client.connect(timeout=5)
    sub = client.subscribe("room")
    await client.flush(timeout=5)
    server.push({"t": "reply", "re": 1, "d": {"ch": "room", "ep": "E", "off": 0, "rec": True, "n": 0}})
    await sub.ready()
    await client.close()
    assert [pub async for pub in sub] == [], "the iteration ends, raising nothing"


async def test_waiting_on_a_subscription_of_a_client_never_connected_names_the_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``sub.ready()`` and ``async for`` before ``connect()`` waited without a word."""
    client = FakeClient(FakeServer(), transports=["websocket"])
    sub = client.subscribe("room")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sub.ready(), 0.05)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(sub), 0.05)
    said = [r.message for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and "call `await client.connect()`" in said[0], said
    await client.connect(timeout=5)
    await client.close()


async def test_a_reconnect_on_the_same_rung_goes_on_with_the_probe_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy cutting the connection on a lower rung does not make the client probe the
    rungs above sooner: the probe that was due keeps its time (protocol §9.3)."""
    monkeypatch.setattr(random, "random", lambda: 0.0)  # every draw at the bottom of its range
    server = FakeServer()
    server.refuse_opens = 1  # the WebSocket is refused: the client stands on SSE
    client = FakeClient(server, transports=["websocket", "sse"], probe_delay=0.4, probe_max_delay=10)
    probes: asyncio.Queue[ProbeResult] = asyncio.Queue()
    client.on("probe", probes.put_nowait)
    await client.connect(timeout=5)
    assert client.transport == "sse"
    server.refuse_opens = 2  # probes after 0.2 s and 0.4 s fail; the next is due 0.8 s later
    for _ in range(2):
        assert not (await asyncio.wait_for(probes.get(), 5)).ok
    second = [at for at, hello in server.hellos if hello.get("why") == "probe"][-1]
    await server.current.close()  # the SSE stream is cut: the client reconnects on SSE
    worked = await asyncio.wait_for(probes.get(), 5)
    assert worked.ok, worked
    times = [(at, hello.get("why")) for at, hello in server.hellos if at > second]
    assert [why for _, why in times] == ["lost", "probe"], times  # (the reconnect, then the probe)
    (back, _), (third, _) = times
    assert third - second >= 0.79, f"the third probe came {third - second:.2f} s after the second"
    assert third - back > 0.5, f"the schedule started again: a probe {third - back:.2f} s after reconnecting"
    await client.close()


async def test_off_and_a_listeners_stop_end_their_callbacks_and_no_other() -> None:
    """The browser client's ``off`` and ``listen``'s remover, in the Python client: there was
    no way to stop an event callback or a publication listener short of closing."""
    server = FakeServer()
    client = FakeClient(server, transports=["websocket"])
    pushes: list[object] = []
    kept: asyncio.Queue[object] = asyncio.Queue()

    def record(push: Push) -> None:
        pushes.append(push.data)

    client.on("push", record)
    client.on("push", lambda push: kept.put_nowait(push.data))
    with pytest.raises(ValueError, match="unknown event 'pushes'"):
        client.off("pushes", pushes.append)
    assert client.off("push", pushes.append) is False  # (not the one registered)
    await client.connect(timeout=5)
    heard: list[object] = []
    sub = client.subscribe("room", on_publication=lambda pub: heard.append(("first", pub.data)))
    stop = sub.listen(lambda pub: heard.append(("second", pub.data)))
    await client.flush(timeout=5)
    server.push({"t": "push", "ev": "hi", "d": 1}, {"t": "pub", "ch": "room", "o": 1, "d": "a"})
    assert await asyncio.wait_for(kept.get(), 5) == 1
    assert pushes == [1] and heard == [("first", "a"), ("second", "a")]

    assert client.off("push", record) is True
    stop()
    stop()  # (twice: nothing more to stop)
    server.push({"t": "push", "ev": "hi", "d": 2}, {"t": "pub", "ch": "room", "o": 2, "d": "b"})
    assert await asyncio.wait_for(kept.get(), 5) == 2
    assert pushes == [1] and heard == [("first", "a"), ("second", "a"), ("first", "b")]
    await client.close()


async def test_a_failed_emit_is_told_with_the_details_and_wait_its_handler_gave() -> None:
    """The ``error`` event of a failed emit held only ``code`` and ``reason``: a handler's
    ``LadderError(..., details=..., retry_after=...)`` reached the caller of a ``call`` whole,
    but an emitter never heard the details or how long to wait."""
    server = FakeServer()
    client = FakeClient(server, transports=["websocket"])
    told: asyncio.Queue[ServerError] = asyncio.Queue()
    client.on("error", told.put_nowait)
    await client.connect(timeout=5)
    await client.emit("join", "room:full")
    await client.flush(timeout=5)
    (emitted,) = server.ups("emit")
    server.seq += 1
    server.current.down.put_nowait(
        [{"t": "err", "re": emitted["i"], "s": server.seq, "code": "room_full", "reason": "no seat", "retry_after": 2.5, "details": {"seats": 0}}]
    )
    error = await asyncio.wait_for(told.get(), 5)
    assert error == ServerError("room_full", "no seat", {"seats": 0}, 2.5)
    assert (error.details, error.retry_after) == ({"seats": 0}, 2.5)
    server.push({"t": "err", "code": "forbidden", "reason": "r", "retry_after": -5})  # (a wait that is none)
    assert await asyncio.wait_for(told.get(), 5) == ServerError("forbidden", "r")
    await client.close()


async def test_a_bye_or_err_with_an_empty_code_is_read_as_the_default_code_not_raised() -> None:
    """Reading a server's ``bye`` built its LadderError from the frame's code as given: once
    ``LadderError("")`` was refused (a ValueError), a bye with ``"code": ""`` would have
    raised inside the reader rather than end the session."""
    server = FakeServer()
    client = FakeClient(server, transports=["websocket"])
    told: asyncio.Queue[ServerError] = asyncio.Queue()
    lost: asyncio.Queue[StateChanged] = asyncio.Queue()
    client.on("error", told.put_nowait)
    client.on("state", lost.put_nowait)
    await client.connect(timeout=5)
    server.push({"t": "err", "code": "", "reason": "r"})
    assert (await asyncio.wait_for(told.get(), 5)).code == "internal"
    server.push({"t": "bye", "code": "", "reason": "ended"})
    while (closed := await asyncio.wait_for(lost.get(), 5)).state != "closed":
        pass
    assert closed.reason == "session_closed: ended", "as a bye session_closed ends it"
    await client.close()


async def test_a_callback_registered_twice_is_called_once_as_in_the_browser_client() -> None:
    """It was called twice per event (the browser client's listeners are a set: once)."""
    server = FakeServer()
    client = FakeClient(server, transports=["websocket"])
    heard: asyncio.Queue[object] = asyncio.Queue()
    calls: list[object] = []

    def record(push: Push) -> None:
        calls.append(push.data)

    client.on("push", record)
    client.on("push", record)
    client.on("push", lambda push: heard.put_nowait(push.data))
    await client.connect(timeout=5)
    server.push({"t": "push", "ev": "hi", "d": 1})
    assert await asyncio.wait_for(heard.get(), 5) == 1
    assert calls == [1]
    assert client.off("push", record) is True and client.off("push", record) is False
    await client.close()
