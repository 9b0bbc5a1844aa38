"""The SSE transport's parsing and stream proof, fed bytes directly (no network)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from ladder.client.transports import sse as sse_module
from ladder.client.transports.base import Endpoint, Frame, TransportClosed
from ladder.client.transports.sse import SSETransport
from ladder.protocol.codec import JSON


class FakeSSE(SSETransport):
    """An SSE transport whose stream is given bytes and whose upstream goes nowhere."""

    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__(Endpoint("http://x", JSON, {}), lambda: 0, httpx.AsyncClient())
        self.sent: list[Frame] = []

        async def stream() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        self._chunks = stream()
        self.sid, self.token = "s", "t"

    async def send(self, frames: list[Frame]) -> None:
        self.sent.extend(frames)


def event(frame: str, seq: int | None = None) -> bytes:
    return (f"id: {seq}\n" if seq else "").encode() + b"data: " + frame.encode() + b"\n\n"


async def test_frames_read_together_with_the_pong_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse_module.secrets, "randbelow", lambda n: 7)
    body = (
        event('{"s":1,"t":"push","ev":"a"}', 1)
        + event('{"t":"pong","n":7}')
        + event('{"s":2,"t":"push","ev":"b"}', 2)
    )
    transport = FakeSSE([body, event('{"s":3,"t":"push","ev":"c"}', 3)])
    await transport._verify(1.0)
    assert transport.sent == [{"t": "ping", "n": 7}]
    assert [f["s"] for f in await transport.recv()] == [1, 2], "nothing after the pong is lost"
    assert [f["s"] for f in await transport.recv()] == [3]


async def test_padding_and_events_split_anywhere_are_reassembled() -> None:
    stream = (
        b":"
        + b" " * 64
        + b"\n\nretry: 1000\n\n"
        + event('{"t":"welcome","sid":"s","rt":"t"}')
        + event('{"s":1,"t":"push","ev":"a","d":"x\\ny"}', 1)
    )
    for size in (1, 2, 3, 7, 64):
        transport = FakeSSE([stream[i : i + size] for i in range(0, len(stream), size)])
        frames = [f for _ in range(2) for f in await transport.recv()]
        assert [f["t"] for f in frames] == ["welcome", "push"] and frames[1]["d"] == "x\ny", size


async def test_a_stream_without_a_pong_is_declared_buffered() -> None:
    transport = FakeSSE([])

    async def held_back() -> AsyncIterator[bytes]:
        yield event('{"s":1,"t":"push"}', 1)
        await asyncio.Event().wait()  # a proxy holding everything else back
        yield b""

    transport._chunks = held_back()
    with pytest.raises(TransportClosed) as failed:
        await transport._verify(0.2)
    assert "stream buffered" in failed.value.reason


async def test_a_busy_stream_without_a_pong_fails_at_the_bound_not_the_timeout() -> None:
    """The pong's deadline is counted from the POST's answer once: other traffic arriving
    meanwhile does not restart it (the browser's check is the same)."""
    transport = FakeSSE([])

    async def busy() -> AsyncIterator[bytes]:
        for seq in range(1, 1000):
            yield event(f'{{"s":{seq},"t":"push"}}', seq)
            await asyncio.sleep(0.05)  # a feed the proxy lets through, the pong it never does

    transport._chunks = busy()
    with pytest.raises(TransportClosed) as failed:
        await transport._verify(30.0)
    assert "its pong came over 1 s and 4 round trips after its ping was answered" in failed.value.reason
