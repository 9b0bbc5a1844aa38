"""A client's burst of publications through ``ladder serve`` (native WebSocket driver), on
the memory engine and on a real Redis: every one answered in order with consecutive
offsets, every subscriber receives them in order, and on Redis they travel together
(server/together.py) rather than one round trip after another."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets

from tests.support.redis import RedisServer
from tests.support.server import LadderServer

BURST = 40


@pytest.fixture(params=["memory", "redis"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LadderServer]:
    if request.param == "memory":
        with LadderServer(log=tmp_path / "serve.log") as server:
            yield server
        return
    with RedisServer() as redis, LadderServer(engine=redis.url, log=tmp_path / "serve.log") as server:
        yield server


async def _hello(server: LadderServer) -> Any:
    ws = await websockets.connect(server.url.replace("http", "ws") + "/ws")
    await ws.send('{"t":"hello","v":1}')
    assert orjson.loads(await ws.recv())["t"] == "welcome"
    return ws


async def _frames(ws: Any, kind: str, count: int) -> tuple[list[dict[str, Any]], int]:
    """The next ``count`` frames of ``kind``, and how many WebSocket messages brought them."""
    got: list[dict[str, Any]] = []
    messages = 0
    while len(got) < count:
        batch = [orjson.loads(line) for line in (await ws.recv()).split("\n")]
        kept = [f for f in batch if f["t"] == kind]
        messages += bool(kept)
        got += kept
    return got, messages


async def test_a_burst_of_client_publications_is_answered_and_delivered_in_order(
    server: LadderServer, request: pytest.FixtureRequest
) -> None:
    subscriber = await _hello(server)
    publisher = await _hello(server)
    try:
        await subscriber.send('{"t":"sub","i":1,"ch":"open:burst"}')
        (subscribed,), _ = await _frames(subscriber, "reply", 1)
        assert subscribed["re"] == 1
        for n in range(BURST):  # each its own WebSocket message, sent without waiting
            await publisher.send(orjson.dumps({"t": "pub", "i": n + 1, "ch": "open:burst", "d": n}).decode())
        replies, _ = await _frames(publisher, "reply", BURST)
        assert [r["re"] for r in replies] == list(range(1, BURST + 1)), "answered in order"
        offsets = [r["d"]["off"] for r in replies]
        assert offsets == list(range(offsets[0], offsets[0] + BURST)), "offsets in the order sent"
        pubs, messages = await _frames(subscriber, "pub", BURST)
        assert [(p["o"], p["d"]) for p in pubs] == [(o, n) for n, o in enumerate(offsets)]
        if request.node.callspec.params["server"] == "redis":
            # Applied one at a time, each publication would wait for Redis's answer and for
            # its record before the next went out, and reach the subscriber alone.
            assert messages <= BURST // 2, f"{messages} messages for {BURST} publications"
    finally:
        await subscriber.close()
        await publisher.close()
