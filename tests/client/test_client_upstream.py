"""The client's upstream over a fake server: failed writes, pongs and acks (no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ladder.client import client as client_module
from ladder.client.events import Disconnected, Event, Push
from tests.client.fakes import FakeClient, FakeServer


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "SEND_RETRY_DELAYS", (0.01, 0.01, 0.01))


async def connected(server: FakeServer, rung: str, **options: Any) -> FakeClient:
    client = FakeClient(server, transports=[rung], backoff_base=0.01, backoff_max=0.02, **options)
    await client.connect(timeout=5)
    return client


async def next_event(events: AsyncIterator[Event], kind: type[Event]) -> Event:
    async with asyncio.timeout(5):
        async for event in events:
            if isinstance(event, kind):
                return event
    raise AssertionError("the client closed")


# -- a failed upstream write is written again ----------------------------------------------------


@pytest.mark.parametrize("rung", ["sse", "longpoll", "poll"])
async def test_a_failed_post_is_written_again_on_the_same_transport(server: FakeServer, rung: str) -> None:
    client = await connected(server, rung)
    try:
        server.failures = [FakeServer.refusal()]
        await client.emit("a", 1)
        await client.emit("b", 2)
        await client.flush(timeout=5)
        assert [f["ev"] for f in server.applied] == ["a", "b"]
        emits = [f["i"] for f in server.ups("emit")]
        assert emits[0] == 1 and emits.count(1) == 2, "the lost write was written again"
        assert len(server.opened) == 1, "one failure does not cost the transport"
    finally:
        await client.close()


@pytest.mark.usefixtures("quick_retries")
async def test_a_post_that_keeps_failing_gives_up_the_transport_and_resends_after_reconnecting(
    server: FakeServer,
) -> None:
    client = await connected(server, "sse")
    events = client.events()
    try:
        attempts = len(client_module.SEND_RETRY_DELAYS) + 1
        server.failures = [FakeServer.refusal()] * attempts
        await client.emit("a", 1)
        lost = await next_event(events, Disconnected)
        assert isinstance(lost, Disconnected) and f"after {attempts} attempts" in lost.reason
        await client.flush(timeout=5)
        assert [f["ev"] for f in server.applied] == ["a"]
        assert len(server.opened) == 2 and server.current.welcome["resumed"], "same session, new transport"
        assert len(server.ups("emit")) == attempts + 1
    finally:
        await client.close()


async def test_a_post_refused_for_a_lost_session_starts_a_new_session_at_once(server: FakeServer) -> None:
    client = await connected(server, "sse")
    try:
        server.failures = [FakeServer.refusal("unknown_session")]
        await client.emit("a", 1)
        await client.flush(timeout=5)
        assert len(server.ups("emit")) == 2, "no retry on the transport of a session that is gone"
        assert "sid" not in server.current.hello, "the next hello opened a new session"
        assert [f["ev"] for f in server.applied] == ["a"]
    finally:
        await client.close()


async def test_a_failed_websocket_write_gives_up_the_socket_at_once(server: FakeServer) -> None:
    client = await connected(server, "websocket")
    try:
        server.failures = [FakeServer.refusal()]
        await client.emit("a", 1)
        await client.flush(timeout=5)
        assert len(server.opened) == 2 and len(server.ups("emit")) == 2
        assert [f["ev"] for f in server.applied] == ["a"]
    finally:
        await client.close()


# -- pongs ---------------------------------------------------------------------------------------


async def test_websocket_pings_are_answered_with_a_pong_carrying_the_pending_ack(server: FakeServer) -> None:
    client = await connected(server, "websocket", ack_interval=60.0)
    try:
        server.push({"t": "push", "ev": "x"}, {"t": "ping"})
        assert await server.next_write() == [{"t": "pong"}, {"t": "ack", "s": 1}]
        assert client._ack_timer is None, "the ack went with the pong: no timer left"
    finally:
        await client.close()


async def test_sse_pings_get_no_pong(server: FakeServer) -> None:
    client = await connected(server, "sse", ack_interval=60.0)
    events = client.events()
    try:
        server.push({"t": "ping"}, {"t": "push", "ev": "x"})
        await next_event(events, Push)  # the ping came first in the same batch
        await client.emit("after", None)
        await client.flush(timeout=5)
        assert server.ups("pong") == []
        assert [f["t"] for _, frames in server.writes for f in frames] == ["ack", "emit"]
    finally:
        await client.close()


# -- acks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rung", ["websocket", "sse"])
async def test_a_slow_trickle_is_acknowledged_once_per_interval(server: FakeServer, rung: str) -> None:
    interval = 0.2
    client = await connected(server, rung, ack_interval=interval)
    loop = asyncio.get_running_loop()
    try:
        for n in range(3):  # three separate batches, well within one interval
            server.push({"t": "push", "ev": str(n)})
        started = loop.time()
        assert await server.next_write() == [{"t": "ack", "s": 3}], "one ack for the three frames"
        assert loop.time() - started >= interval * 0.9, "sent by the timer, not per frame"
        server.push({"t": "push", "ev": "later"})
        assert await server.next_write() == [{"t": "ack", "s": 4}]
        assert len(server.ups("ack")) == 2
    finally:
        await client.close()


@pytest.mark.parametrize("rung", ["websocket", "sse"])
async def test_a_steady_stream_is_acknowledged_once_it_goes_quiet_not_every_interval(
    server: FakeServer, rung: str
) -> None:
    """Ten frames a second for 2.5 s, with a 1 s interval: no ack while they keep coming
    (the timer waits out the quiet spell), then one for all of them a second after the last."""
    client = await connected(server, rung, ack_interval=1.0, ack_every=64)
    events = client.events()
    loop = asyncio.get_running_loop()
    try:
        last = 0.0
        for n in range(25):
            server.push({"t": "push", "ev": str(n)})
            await next_event(events, Push)
            last = loop.time()  # (not the pace's sleep less 0.1: under load a sleep runs long)
            await asyncio.sleep(0.1)  # (the stimulus's pace, not a wait for something)
        assert server.ups("ack") == [], "nothing while the stream flows"
        assert await server.next_write() == [{"t": "ack", "s": 25}]
        assert loop.time() - last >= 0.9, "once quiet for the interval"
        assert len(server.ups("ack")) == 1
    finally:
        await client.close()


async def test_acks_go_at_once_after_about_ack_every_frames(server: FakeServer) -> None:
    """The count is drawn from [ack_every/2, ack_every]: 15 frames of ack_every=32 wait, 32 do not."""
    client = await connected(server, "sse", ack_interval=60.0, ack_every=32)
    try:
        server.push(*({"t": "push", "ev": str(n)} for n in range(15)))
        server.push(*({"t": "push", "ev": str(n)} for n in range(17)))
        assert await server.next_write() == [{"t": "ack", "s": 32}], "not at 15, not after 60 s"
    finally:
        await client.close()


@pytest.mark.parametrize("rung", ["websocket", "sse"])
async def test_acks_come_before_half_the_servers_queue_fills(server: FakeServer, rung: str) -> None:
    """A server keeping 8 frames (``lim.queue``) gets an ack every 4; one keeping 100 kB
    (``lim.qbytes``) an ack once 50 kB arrived, however few frames that is."""
    server.lim = {"queue": 8, "qbytes": 100_000}
    client = await connected(server, rung, ack_interval=60.0)
    events = client.events()


    async def acks(count: int) -> list[int]:
        async with asyncio.timeout(5):
            while len(server.ups("ack")) < count:
                server.wrote.clear()
                await server.wrote.wait()
        return [ack["s"] for ack in server.ups("ack")]

    try:
        for n in range(8):
            server.push({"t": "push", "ev": str(n)})
            await next_event(events, Push)
        assert await acks(2) == [4, 8]
        server.push({"t": "push", "ev": "big", "d": "x" * 30_000})
        await next_event(events, Push)
        server.push({"t": "push", "ev": "big", "d": "x" * 30_000})
        assert await acks(3) == [4, 8, 10], "two frames, 60 kB: at once"
    finally:
        await client.close()


async def test_an_ack_rides_with_messages_that_go_up_anyway(server: FakeServer) -> None:
    client = await connected(server, "sse", ack_interval=60.0)
    events = client.events()
    try:
        server.push({"t": "push", "ev": "x"})
        await next_event(events, Push)
        await client.emit("a", None)  # (returns once queued: the write follows)
        assert [f["t"] for f in await server.next_write()] == ["ack", "emit"]
        assert client._ack_timer is None
    finally:
        await client.close()


@pytest.mark.parametrize("rung", ["longpoll", "poll"])
async def test_polls_send_no_ack_frames(server: FakeServer, rung: str) -> None:
    client = await connected(server, rung, ack_interval=0.01, ack_every=1)
    events = client.events()
    try:
        server.push({"t": "push", "ev": "x"})
        await next_event(events, Push)
        assert client._ack_timer is None, "each GET carries the ack"
        await client.emit("a", None)
        await client.flush(timeout=5)
        assert server.ups("ack") == []
    finally:
        await client.close()


async def test_flush_sends_a_pending_ack_now(server: FakeServer) -> None:
    client = await connected(server, "sse", ack_interval=60.0)
    events = client.events()
    try:
        server.push({"t": "push", "ev": "x"})
        await next_event(events, Push)
        await client.flush(timeout=5)
        assert await server.next_write() == [{"t": "ack", "s": 1}]
    finally:
        await client.close()


@pytest.mark.parametrize("rung", ["websocket", "sse"])
async def test_close_sends_the_final_ack_with_the_bye(server: FakeServer, rung: str) -> None:
    client = await connected(server, rung, ack_interval=60.0)
    events = client.events()
    server.push({"t": "push", "ev": "x"})
    await next_event(events, Push)
    await client.close()
    assert server.writes[-1][1] == [{"t": "ack", "s": 1}, {"t": "bye"}]
    assert client._ack_timer is None


async def test_a_post_refused_for_the_address_request_rate_waits_its_retry_after(server: FakeServer) -> None:
    """protocol §9.8: a ``POST send`` refused ``429 rate_limited`` (the address's request rate)
    was written again after 100 ms, then 400 ms, whatever its ``retry_after``: each try used
    the rate up again (one message per POST every 200 ms, calls timed out)."""
    from ladder.client.transports.base import TransportClosed  # noqa: PLC0415
    from ladder.protocol.errors import LadderError  # noqa: PLC0415

    client = await connected(server, "sse")
    try:
        refused = LadderError("rate_limited", "too many requests from 127.0.0.1", retry_after=0.8)
        server.failures = [TransportClosed("sse: refused (rate_limited)", refused) for _ in range(2)]
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.emit("a", 1)
        await client.flush(timeout=10)
        assert loop.time() - started >= 1.5, "two waits of retry_after (0.8 s), not 0.1 + 0.4 s"
        assert [f["ev"] for f in server.applied] == ["a"] and len(server.ups("emit")) == 3
        assert len(server.opened) == 1, "the transport is kept"
    finally:
        await client.close()
