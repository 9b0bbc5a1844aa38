"""The watchdog: a silent transport is dropped, but one whose watchdog fired late (the
process was frozen) is asked first, with a ping, and kept when the pong comes back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ladder.client import Disconnected
from ladder.client.transports.base import Transport
from tests.client.fakes import FakeClient, FakeServer, FakeTransport

HEARTBEAT = 200
"""ms; the watchdog's limit on a WebSocket is then 1.5 * 200 + 1000 = 1.3 s."""


def _server() -> FakeServer:
    server = FakeServer()
    welcome_for = server.welcome_for

    def quick(hello: dict[str, Any]) -> dict[str, Any]:
        return {**welcome_for(hello), "hb": HEARTBEAT}

    server.welcome_for = quick  # type: ignore[method-assign]
    return server


async def _connected(server: FakeServer) -> tuple[FakeClient, asyncio.Queue[Disconnected]]:
    client = FakeClient(server, transports=["websocket"], verify_timeout=0.2, backoff_base=30.0, backoff_max=30.0)
    lost: asyncio.Queue[Disconnected] = asyncio.Queue()
    client.on("disconnected", lost.put_nowait)
    await client.connect(timeout=5)
    return client, lost


def _freeze(seconds: float) -> None:
    """The whole process stops (a suspended laptop, a blocked loop): no timer runs."""
    time.sleep(seconds)


async def test_a_silent_transport_is_dropped_without_a_check_when_the_watchdog_is_on_time() -> None:
    server = _server()
    client, lost = await _connected(server)
    event = await asyncio.wait_for(lost.get(), 5)
    assert "nothing received for 1.3 s (heartbeat timeout)" in event.reason, event.reason
    assert server.ups("ping") == [], "on time, silence is enough"
    await client.close()


async def test_a_late_watchdog_pings_and_keeps_the_transport_when_the_pong_comes() -> None:
    server = _server()
    client, lost = await _connected(server)
    _freeze(3.5)  # the watchdog (due 1.3 s) fires ~2 s late
    ping = next(frame for frame in await server.next_write() if frame["t"] == "ping")
    assert isinstance(ping.get("n"), int), ping
    server.push({"t": "pong", "n": ping["n"]})
    await asyncio.sleep(0.6)  # past the check's deadline (twice verify_timeout): nothing may happen
    assert lost.empty(), lost.get_nowait()
    assert client.state == "connected" and len(server.opened) == 1
    await client.close()


async def test_a_late_watchdog_drops_the_transport_when_the_pong_does_not_come() -> None:
    server = _server()
    client, lost = await _connected(server)
    _freeze(3.5)
    assert any(frame["t"] == "ping" for frame in await server.next_write())
    event = await asyncio.wait_for(lost.get(), 5)
    assert "no answer to a check within 0.4 s" in event.reason, event.reason
    await client.close()


async def test_a_dropped_transport_is_told_and_replaced_without_waiting_for_its_close() -> None:
    """Closing a silent WebSocket waits for a close handshake that never comes (up to the
    library's close timeout, 1 s): the app hears ``disconnected`` and the client reconnects
    meanwhile (it waited, and every message sent meanwhile failed on the closing socket)."""
    server = _server()
    release = asyncio.Event()
    closing: list[FakeTransport] = []

    reopened = asyncio.Event()

    class SlowClose(FakeTransport):
        async def open(self, hello: dict[str, Any], verify_timeout: float) -> dict[str, Any]:
            welcome = await super().open(hello, verify_timeout)
            if len(server.opened) == 2:
                reopened.set()
            return welcome

        async def close(self) -> None:
            closing.append(self)
            await release.wait()
            await super().close()

    class Client(FakeClient):
        def _make(self, rung: str) -> Transport:
            return SlowClose(self.server, rung, self.endpoint, self._applied)

    client = Client(server, transports=["websocket"], verify_timeout=0.2)
    lost: asyncio.Queue[Disconnected] = asyncio.Queue()
    client.on("disconnected", lost.put_nowait)
    await client.connect(timeout=5)
    event = await asyncio.wait_for(lost.get(), 5)  # the watchdog: nothing heard for 1.3 s
    assert "heartbeat timeout" in event.reason and closing and not release.is_set()
    await asyncio.wait_for(reopened.wait(), 5)
    assert server.hellos[1][1].get("sid") == "s1" and not release.is_set(), "resumed while the old one closes"
    release.set()
    await client.close()
