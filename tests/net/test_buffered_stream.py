"""An event stream a proxy starts buffering mid-session is abandoned; a healthy one is not.

A proxy's buffer that fills, then flushes, keeps a busy stream alive enough for the silence
watchdog while it delivers everything seconds late. The client keeps proving the stream (a
POSTed ping whose pong must come back within max(1 s, 4 round trips) of the POST's answer,
every heartbeat: protocol §9.2) and steps down when two of its last three checks are late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from ladder import Client
from ladder.client import Subscription, TransportChanged
from tests.net.conftest import Network
from tests.support.server import LadderServer

HB = 5.0
"""The backend's heartbeat (tests/net/conftest.py): a stream is checked this often."""
RATE = 0.05
"""Seconds between publications (20 a second)."""
PAD = 400
"""Bytes of padding per publication: 64 KiB fill in about 7 s, within the 8.5 s silence limit."""


@pytest.fixture
async def feed(backend: LadderServer) -> AsyncIterator[str]:
    async with Client(backend.url, transports=["websocket"]) as admin:
        await admin.call(
            "publish",
            {"channel": "feed:b", "count": 100_000, "interval": RATE, "pad": PAD, "background": True},
        )
        yield "feed:b"


class Received(list[int]):
    """Offsets as they arrive; :meth:`reach` waits for a count."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters: list[tuple[int, asyncio.Event]] = []

    async def collect(self, sub: Subscription) -> None:
        async for pub in sub:
            self.append(pub.offset)
            for count, event in self._waiters:
                if len(self) >= count:
                    event.set()

    async def reach(self, count: int) -> None:
        event = asyncio.Event()
        self._waiters.append((count, event))
        if len(self) >= count:
            event.set()
        await event.wait()


@pytest.mark.parametrize(
    "hold",
    [
        65536,  # flushed about every 7 s
        # Flushed about every 3 s by the steady feed: the check made at once after a late pong
        # left the buffer with the late one, in time, and the stream passed every check
        # (two late in a row were needed) while each publication came up to 3 s late.
        28672,
    ],
)
async def test_a_stream_buffered_mid_session_is_abandoned_with_nothing_lost(
    net: Network, feed: str, hold: int
) -> None:
    net.set(refuse={"ws"})
    changes: asyncio.Queue[TransportChanged] = asyncio.Queue()
    client = Client(net.url, probe_delay=5.0)
    client.on("transport", changes.put_nowait)
    received = Received()
    async with client:
        assert client.transport == "sse"
        session = client.session_id
        await changes.get()
        sub = client.subscribe(feed)
        consumer = asyncio.create_task(received.collect(sub))
        try:
            async with asyncio.timeout(10):
                await received.reach(40)  # the feed flows on SSE first
            held = time.perf_counter()
            net.set(hold={"sse": hold})
            async with asyncio.timeout(50):
                change = await changes.get()
            took = time.perf_counter() - held
            print(f"\nbuffered mid-stream; {change.old} -> {change.new} after {took:.1f} s: {change.reason}")
            assert (change.old, change.new) == ("sse", "longpoll")
            assert "sse: stream buffered" in change.reason
            assert client.session_id == session, "the same session, on the rung below"
            # One check per heartbeat, two late pongs of three checks: the first check comes within
            # HB (plus a check of about 1 s each); a late first check and a fresh draw cost
            # one more heartbeat at most (a buffer's fill state is what a pong waits for).
            # A buffer flushed every few seconds makes a check late at some points of its cycle
            # only: checks a heartbeat apart from their pings fall at different points.
            assert took < (4 * HB + 5 if hold == 65536 else 8 * HB)
            switched = len(received)
            async with asyncio.timeout(20):
                await received.reach(switched + 60)  # and it flows on long polling
            assert client.transport == "longpoll"
        finally:
            consumer.cancel()
    assert received == list(range(received[0], received[0] + len(received))), "nothing lost, nothing doubled"


async def test_a_healthy_stream_under_the_same_feed_is_kept(net: Network, feed: str) -> None:
    net.set(refuse={"ws"})
    changes: list[TransportChanged] = []
    client = Client(net.url)
    client.on("transport", changes.append)
    received = Received()
    async with client:
        assert client.transport == "sse"
        sub = client.subscribe(feed)
        consumer = asyncio.create_task(received.collect(sub))
        try:
            await asyncio.sleep(30)  # the span observed: six checks at the 5 s heartbeat
        finally:
            consumer.cancel()
        assert client.transport == "sse"
    print(f"\n30 s on SSE under the feed: {len(received)} publications, transport changes {changes}")
    assert [change.new for change in changes] == ["sse"], "no check took a healthy stream for a buffered one"
    assert len(received) > 400
