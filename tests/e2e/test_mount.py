"""The hub mounted at a sub-path of a Starlette app works on every rung, through ASGI or with
the native WebSocket driver told where the hub's endpoint is; the app's own routes (HTTP and
WebSocket) keep working."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.sync.client import connect as ws_connect

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


async def _open_as_the_page(url: str, origin: str) -> tuple[int, str]:
    """A page at ``origin`` behind a TLS proxy on this host: (SSE status, the WebSocket's
    first frame or its refusal's body)."""
    behind = {"origin": origin, "x-forwarded-proto": "https"}
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("GET", f"{url}/sse", params={"v": 1}, headers=behind) as sse,
    ):
        status = sse.status_code
        body = (await sse.aread()).decode() if status != 200 else ""
    try:
        async with websockets.connect(
            url.replace("http", "ws", 1) + "/ws", origin=origin, additional_headers={"x-forwarded-proto": "https"}  # type: ignore[arg-type]
        ) as ws:
            await ws.send('{"t":"hello","v":1}')
            first = str(await ws.recv())
    except websockets.InvalidStatus as refused:
        first = f"{refused.response.status_code} {refused.response.body.decode()}"
    return status, first or body


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_behind_a_tls_proxy_every_rung_takes_the_pages_own_origin(mode: str) -> None:
    """uvicorn trusts X-Forwarded-Proto from loopback (FORWARDED_ALLOW_IPS) for the app; the
    native driver, which takes the socket before uvicorn's middleware, trusts the same peers."""
    same_origin = {"allowed_origins": None}
    with LadderServer(same_origin, app="tests.support.mounted:app", args=MODES[mode]) as mounted:
        url = f"{mounted.url}/api/realtime"
        status, first = await _open_as_the_page(url, f"https://127.0.0.1:{mounted.port}")
    assert status == 200
    assert '"t":"welcome"' in first, first


async def test_a_hub_served_alone_names_the_setting_when_a_proxy_says_https() -> None:
    """A hub served alone trusts forwarded headers only with Limits(trust_forwarded_for=True):
    the page's own origin behind a TLS proxy is refused, with the fix in the reason."""
    with LadderServer({"allowed_origins": None}) as alone:
        status, first = await _open_as_the_page(alone.url, f"https://127.0.0.1:{alone.port}")
    assert status == 403
    assert first.startswith("403 ") and "trust_forwarded_for=True" in first, first
    trusting = {"allowed_origins": None, "limits": {"trust_forwarded_for": True}}
    with LadderServer(trusting) as server:
        status, first = await _open_as_the_page(server.url, f"https://127.0.0.1:{server.port}")
    assert status == 200 and '"t":"welcome"' in first, first


def test_a_native_path_where_the_app_does_not_mount_the_hub_is_told_of_once(tmp_path: Path) -> None:
    """An app whose routes cannot be read (a plain ASGI callable, as Django's) given
    ``--native-ws-path /ws`` for a hub it serves at ``/rt``: its WebSockets went through ASGI,
    at their cost, without a word."""
    log = tmp_path / "server.log"
    with LadderServer(app="tests.support.mounted_plain:app", args=("--native-ws-path", "/ws"), log=log) as server:
        for _ in range(2):
            with ws_connect(server.url.replace("http", "ws", 1) + "/rt/ws") as ws:
                ws.send('{"t":"hello","v":1}')
                assert '"t":"welcome"' in str(ws.recv(timeout=5))
    said = [line for line in log.read_text().splitlines() if "through ASGI" in line]
    assert len(said) == 1, said
    assert "reached the hub at /rt/ws through ASGI" in said[0] and "pass --native-ws-path /rt/ws" in said[0], said


def test_middleware_the_native_driver_passes_by_is_named_at_start(tmp_path: Path) -> None:
    """``--native-ws-path`` serves the hub's WebSockets before the app's middleware: one that
    authenticates or checks the Host let them through unseen, and nothing said so."""
    log = tmp_path / "server.log"
    with LadderServer(app="tests.support.mounted_mw:app", args=("--native-ws-path", "/rt/ws"), log=log):
        pass
    said = [line for line in log.read_text().splitlines() if "served before the app's middleware" in line]
    assert len(said) == 1 and "(TrustedHostMiddleware)" in said[0] and "--asgi-ws" in said[0], said
    none = tmp_path / "none.log"
    with LadderServer(app="tests.support.mounted:app", args=("--native-ws-path", "/api/realtime/ws"), log=none):
        pass
    assert "served before the app's middleware" not in none.read_text()
