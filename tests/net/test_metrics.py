"""Prometheus metrics: rungs, messages, errors, rung changes with their reasons."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ladder import Client, LadderError
from ladder.client import TransportChanged
from tests.net.conftest import Network
from tests.support.metrics import metric
from tests.support.server import LadderServer


async def test_metrics_count_rungs_messages_errors_and_step_downs(
    net: Network, backend: LadderServer
) -> None:
    changes: asyncio.Queue[TransportChanged] = asyncio.Queue()
    client = Client(net.url, transports=["websocket", "sse"], probe_delay=60.0, probe_max_delay=60.0)
    client.on("transport", changes.put_nowait)
    async with client, Client(backend.url, transports=["longpoll"]) as admin:
        assert (await changes.get()).new == "websocket"
        sub = client.subscribe("feed:metrics")
        await sub.ready()
        await admin.call("publish", {"channel": "feed:metrics", "count": 5})
        for _ in range(5):
            await anext(sub)
        with pytest.raises(LadderError):
            await client.call("nope")
        net.set(cut_after=(0.05, 0.15))  # WebSocket connections die at once: step down to SSE
        assert (await asyncio.wait_for(changes.get(), 20)).new == "sse"
        net.set(cut_after=None)
        assert (await client.call("echo", 1))["data"] == 1
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{backend.url}/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric(text, "ladder_connections", transport="sse") == 1
    assert metric(text, "ladder_sessions") >= 2
    assert metric(text, "ladder_messages_out_total", transport="websocket") >= 5
    assert metric(text, "ladder_messages_in_total", transport="send") >= 1, "HTTP rungs send upstream by POST"
    assert metric(text, "ladder_connects_total", transport="websocket", outcome="accepted") >= 3
    assert metric(text, "ladder_errors_total", code="unknown_event") == 1
    step = {"from": "websocket", "to": "sse", "direction": "down", "reason": "cut"}
    assert metric(text, "ladder_rung_changes_total", **step) == 1, [
        line for line in text.splitlines() if "rung" in line
    ]
    assert metric(text, "ladder_engine_seconds_count") >= 5


async def test_a_poll_of_a_session_that_ended_is_not_a_refused_connect() -> None:
    """A client's outstanding poll answered ``unknown_session`` after its ``bye`` counted as a
    refused connect, and a connect success rate of 50 % after clients closed cleanly."""
    with LadderServer() as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            welcome = (await http.get("/poll", params={"v": 1})).json()
            sid, rt = welcome["sid"], welcome["rt"]
            posted = await http.post("/send", params={"sid": sid}, headers={"x-ladder-rt": rt}, content=b'{"t":"bye"}')
            assert posted.status_code == 204
            late = await http.get("/poll", params={"sid": sid, "ack": 0}, headers={"x-ladder-rt": rt})
            assert late.status_code in (404, 410)
            refused = await http.get("/poll", params={"sid": sid, "ack": 0, "open": 1}, headers={"x-ladder-rt": rt})
            assert refused.status_code in (404, 410)
            text = (await http.get("/metrics")).text
    assert metric(text, "ladder_connects_total", transport="poll", outcome="accepted") == 1
    assert metric(text, "ladder_connects_total", transport="poll", outcome="refused") == 1, "the open=1 one only"


async def test_rung_changes_count_every_transport_attached_on_another_rung() -> None:
    """ops.md: the server cannot tell which transport the client keeps, so a leg that attaches
    on another rung counts, kept or not (a probe of long polling, then short polling again)."""
    with LadderServer() as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            welcome = (await http.get("/poll", params={"v": 1})).json()
            auth = {"x-ladder-rt": welcome["rt"]}
            resume = {"v": 1, "open": 1, "sid": welcome["sid"], "ack": 0}
            up = await http.get("/longpoll", params={**resume, "why": "probe"}, headers=auth)
            assert up.status_code == 200 and up.json()["resumed"], up.text
            down = await http.get("/poll", params={**resume, "why": "cut"}, headers=auth)
            assert down.status_code == 200 and down.json()["resumed"], down.text
            text = (await http.get("/metrics")).text
    rungs = {"from": "poll", "to": "longpoll", "direction": "up", "reason": "probe"}
    assert metric(text, "ladder_rung_changes_total", **rungs) == 1, text
    rungs = {"from": "longpoll", "to": "poll", "direction": "down", "reason": "cut"}
    assert metric(text, "ladder_rung_changes_total", **rungs) == 1, text
