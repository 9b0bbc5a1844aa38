"""The Python client's reconnect decisions at the edges, against the in-memory fake server:
a server shutting down, one refusing node among good ones, the backoff schedule."""

from __future__ import annotations

import asyncio
import random

from ladder.client import Connected
from tests.client.fakes import FakeClient, FakeServer


def test_reconnect_delay_forgives_and_stays_low() -> None:
    from ladder.client.backoff import reconnect_delay  # noqa: PLC0415

    rng = random.Random(7)
    after_a_cut = [reconnect_delay(0, 0.5, 5.0, rng=rng) for _ in range(200)]
    assert all(0 <= d < 0.5 for d in after_a_cut), "a connection that worked: a short pause"
    assert reconnect_delay(1, 0.5, 5.0) == reconnect_delay(2, 0.5, 5.0) == 0.0, "two retries at once"
    third = [reconnect_delay(3, 0.5, 5.0, rng=rng) for _ in range(200)]
    assert all(0 <= d < 1.0 for d in third) and max(third) > 0.5
    late = [reconnect_delay(n, 0.5, 5.0, rng=rng) for n in range(10, 40)]
    assert all(d < 5.0 for d in late) and max(late) > 2.5, "capped at backoff_max"


async def test_shutting_down_resumes_the_session_elsewhere_at_once() -> None:
    server = FakeServer()
    # A backoff this long would show: the reconnect must not wait for it.
    client = FakeClient(server, transports=["websocket"], backoff_base=30.0, backoff_max=30.0)
    connected: asyncio.Queue[Connected] = asyncio.Queue()
    client.on("connected", connected.put_nowait)
    await client.connect(timeout=5)
    await connected.get()
    session = client.session_id
    server.push({"t": "bye", "code": "shutting_down", "reason": "server going away"})
    told = asyncio.get_running_loop().time()
    again = await asyncio.wait_for(connected.get(), 5)
    assert again.resumed
    at, hello = server.hellos[1]
    assert at - told < 1.0, "no backoff before going elsewhere"
    assert hello.get("sid") == session, "the session is resumed, not given up"
    await client.connect(timeout=5)
    assert client.session_id == session and client.state == "connected"
    await client.close()


async def test_one_refusing_node_among_good_ones_costs_no_backoff() -> None:
    """Cut after cut, each reconnect meeting a refusing node twice: the client never waits
    more than the short pause after a connection ended (before: the delay grew to 20 s)."""
    server = FakeServer()
    client = FakeClient(
        server, transports=["websocket"], backoff_base=0.2, backoff_max=20.0, stable_after=10.0
    )
    connected: asyncio.Queue[Connected] = asyncio.Queue()
    client.on("connected", connected.put_nowait)
    await client.connect(timeout=5)
    await connected.get()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(8):
        server.refuse_opens = 2  # the next two opens land on the bad node
        server.current.interrupt("cut by the test")
        assert (await asyncio.wait_for(connected.get(), 5)).resumed
    assert len(server.hellos) == 1 + 8 * 3
    took = loop.time() - started
    assert took < 8 * 0.2 + 1.0, f"8 cuts with 16 refusals took {took:.1f} s"
    assert client.session_id == "s1", "every reconnect resumed the same session"
    await client.close()
