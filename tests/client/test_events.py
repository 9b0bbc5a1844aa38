"""The Python client reports the same eleven events as the browser client: ``probe`` (a
better rung tried) and ``state`` (the connection state changed) included."""

from __future__ import annotations

import asyncio

from ladder.client import ProbeResult, StateChanged
from tests.client.fakes import FakeClient, FakeServer


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
