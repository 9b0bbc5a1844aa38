"""Each rung, end to end against a real server: connect, subscribe, publish, RPC, drop, resume."""

from __future__ import annotations

import asyncio

import pytest

from ladder import Client, LadderError
from ladder.client import Connected, Publication
from tests.support.server import LadderServer

RUNGS = ["websocket", "sse", "longpoll", "poll"]


async def collect(sub: object, count: int, timeout: float = 20.0) -> list[Publication]:
    out: list[Publication] = []
    async with asyncio.timeout(timeout):
        async for pub in sub:  # type: ignore[attr-defined]
            out.append(pub)
            if len(out) == count:
                return out
    return out


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@pytest.mark.parametrize("rung", RUNGS)
async def test_round_trip_drop_and_resume(server: LadderServer, rung: str, encoding: str) -> None:
    await round_trip_drop_and_resume(server, rung, encoding)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_websocket_through_asgi(encoding: str) -> None:
    """The same over the ASGI WebSocket path (what a framework mounting the hub uses)."""
    with LadderServer({"heartbeat": 1.0, "session_ttl": 30.0}, args=("--asgi-ws",)) as server:
        await round_trip_drop_and_resume(server, "websocket", encoding)


async def round_trip_drop_and_resume(server: LadderServer, rung: str, encoding: str) -> None:
    connected: list[Connected] = []
    async with Client(server.url, transports=[rung], encoding=encoding) as client:
        client.on("connected", connected.append)
        assert client.transport == rung
        sub = client.subscribe("feed:a")
        result = await sub.ready()
        assert result.recovered and result.offset == 0

        echoed = await client.call("echo", {"x": [1, 2, b"\x00\xff"]})
        assert echoed["data"] == {"x": [1, 2, b"\x00\xff"]}

        await client.call("publish", {"channel": "feed:a", "count": 50})
        first = await collect(sub, 50)
        session = client.session_id

        # Drop the transport while the server keeps publishing: the session resumes.
        await client.call(
            "publish", {"channel": "feed:a", "count": 200, "start": 50, "interval": 0.002, "background": True}
        )
        assert client._conn is not None
        client._conn.interrupt("test: connection dropped")
        rest = await collect(sub, 200)

        offsets = [p.offset for p in first + rest]
        assert offsets == list(range(1, 251)), "every publication once, in order"
        assert [p.data["n"] for p in first + rest] == list(range(250))
        assert client.session_id == session, "the same session was resumed"
        assert any(event.resumed for event in connected), "a resume was reported"

        with pytest.raises(LadderError) as refused:
            await client.call("fail", "ladder")
        assert refused.value.code == "room_full"
        assert (refused.value.retry_after, refused.value.details) == (2.5, {"seats": 0}), "every wire field"
        with pytest.raises(LadderError) as crashed:
            await client.call("fail", "python")
        assert crashed.value.code == "handler_error"
