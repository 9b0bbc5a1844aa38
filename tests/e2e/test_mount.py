"""The hub mounted at a sub-path of a Starlette app works on every rung, through ASGI or with
the native WebSocket driver told where the hub's endpoint is; the app's own routes (HTTP and
WebSocket) keep working."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import websockets

from ladder import Client
from tests.support.server import LadderServer

MODES = {"asgi": (), "native": ("--native-ws-path", "/api/realtime/ws")}


@pytest.fixture(scope="module", params=sorted(MODES))
def mounted(request: pytest.FixtureRequest) -> Iterator[LadderServer]:
    with LadderServer(
        {"heartbeat": 1.0}, app="tests.support.mounted:app", args=MODES[request.param]
    ) as server:
        yield server


@pytest.mark.parametrize("rung", ["websocket", "sse", "longpoll", "poll"])
async def test_every_rung_under_a_mount_path(mounted: LadderServer, rung: str) -> None:
    async with Client(f"{mounted.url}/api/realtime", transports=[rung]) as client:
        sub = client.subscribe("feed:mounted")
        await sub.ready()
        await client.call("publish", {"channel": "feed:mounted", "count": 1})
        assert (await anext(sub)).channel == "feed:mounted"
        assert client.transport == rung


async def test_the_app_around_it_is_untouched(mounted: LadderServer) -> None:
    async with httpx.AsyncClient(base_url=mounted.url) as http:
        assert (await http.get("/")).text == "the app's own page"
        health = await http.get("/api/realtime/health")
        assert health.status_code == 200 and health.json()["ok"] is True
        assert (await http.get("/api/realtime/nope")).json()["code"] == "not_found"
    async with websockets.connect(mounted.url.replace("http", "ws") + "/echo") as ws:
        await ws.send("hi")
        assert await ws.recv() == "echo: hi"
