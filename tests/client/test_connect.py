"""Connecting fast: no HTTP client before an HTTP rung is due, no TLS set-up for http://."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx
import orjson
import pytest

from ladder import Client
from ladder.client.transports.base import Endpoint, Transport, default_tls
from ladder.protocol.codec import JSON
from tests.support.server import LadderServer


@pytest.fixture
def tls_contexts(monkeypatch: pytest.MonkeyPatch) -> list[ssl.SSLContext]:
    """Every ``ssl.SSLContext`` made from now on (httpx and websockets make theirs through it)."""
    made: list[ssl.SSLContext] = []

    class Counted(ssl.SSLContext):
        def __new__(cls, *args: Any, **kwargs: Any) -> Counted:
            context = super().__new__(cls, *args, **kwargs)
            made.append(context)
            return context

    monkeypatch.setattr(ssl, "SSLContext", Counted)
    return made


async def test_a_websocket_connect_builds_no_http_client(server: LadderServer) -> None:
    # The later rungs are due only if the WebSocket takes 10 s (a loaded machine stays below).
    rungs = ["websocket", "sse", "longpoll", "poll"]
    async with Client(server.url, transports=rungs, stagger=(0.0, 10.0, 10.0, 10.0)) as client:
        assert client.transport == "websocket"
        assert client._http is None, "the HTTP rungs were never due"
        assert (await client.call("echo", 1))["data"] == 1


@pytest.mark.parametrize("rung", ["websocket", "sse", "longpoll", "poll"])
async def test_plain_http_makes_no_tls_context(
    server: LadderServer, rung: str, tls_contexts: list[ssl.SSLContext]
) -> None:
    async with Client(server.url, transports=[rung]) as client:
        assert client.transport == rung
        await client.emit("record", {"key": f"plain-{rung}", "value": 1})
        assert await client.call("records", f"plain-{rung}") == [1]
    assert tls_contexts == [], "no CA bundle loaded for an http:// server"


def test_https_shares_one_default_context_per_process() -> None:
    first = Endpoint("https://a.example/ladder", JSON, {})
    second = Endpoint("https://b.example/ladder", JSON, {})
    assert first.tls() is second.tls() is default_tls()
    shared = default_tls()
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname
    assert Endpoint("http://a.example", JSON, {}).tls() is None
    private = ssl.create_default_context()
    assert Endpoint("https://a.example", JSON, {}, private).tls() is private


async def test_https_http_client_uses_the_shared_context() -> None:
    client = Client("https://127.0.0.1:9/ladder", transports=["sse"])
    try:
        http = client._http_client()
        assert http is client._http_client(), "built once"
        assert http._transport._pool._ssl_context is default_tls()  # type: ignore[attr-defined]
    finally:
        await client.close()


async def test_sse_outlives_many_heartbeats_without_a_single_pong(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server pings SSE every ``hb`` but never waits for pongs, and the client sends none
    (its own check of the stream is a ping per ``hb``)."""
    posts: list[bytes] = []
    pings = asyncio.Queue[None]()

    async def on_request(request: httpx.Request) -> None:
        if request.method == "POST":
            posts.append(request.content)

    handle = Client._handle

    def counting(self: Client, frame: dict[str, Any], conn: Transport) -> None:
        if frame.get("t") in ("ping", "pong"):  # (the server's, or the answer to the client's check)
            pings.put_nowait(None)
        handle(self, frame, conn)

    monkeypatch.setattr(Client, "_handle", counting)
    config = {"heartbeat": 0.2, "session_ttl": 30.0}  # a WebSocket would be dropped after 1.4 s silent
    with LadderServer(config) as server:
        async with httpx.AsyncClient(event_hooks={"request": [on_request]}) as http:
            client = Client(server.url, transports=["sse"], http_client=http, encoding="json")
            drops: list[object] = []
            client.on("disconnected", drops.append)
            async with client:
                proof = len(posts)  # the ping that proved the stream
                async with asyncio.timeout(15):
                    for _ in range(10):  # 10 heartbeats: 2 s, past any pong deadline
                        await pings.get()
                # No pong is POSTed; the stream's own check (§9.2) is a ping, once per hb.
                later = [orjson.loads(line)["t"] for body in posts[proof:] for line in body.splitlines()]
                assert set(later) <= {"ping", "ack"}, later
                assert 0 < later.count("ping") <= 11, later
                assert client.transport == "sse"
                assert drops == [], "the server did not drop the stream for want of pongs"
                assert (await client.call("echo", 1))["data"] == 1
