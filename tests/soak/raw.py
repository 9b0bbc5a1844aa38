"""A minimal, fast protocol client for connect/disconnect cycles: HTTP/1.1 and WebSocket over
plain asyncio streams, no library in between (httpx and websockets cost the test three times the
CPU the server spends). It speaks just enough of the wire protocol (docs/protocol.md) to open a
session on any rung and end it with ``bye``, or abandon it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any

import orjson


class RawHttp:
    """One keep-alive HTTP/1.1 connection to ``127.0.0.1:port`` (requests one at a time)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.writer is None or self.reader is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self.reader, self.writer

    async def request(
        self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """Send one request; return the status and the body (``Content-Length`` responses only)."""
        reader, writer = await self._connect()
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        writer.write(
            f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await reader.readexactly(length) if length else b""

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def welcome_of(body: bytes) -> dict[str, Any]:
    """The first frame of a JSON batch, checked to be the welcome."""
    frame: dict[str, Any] = orjson.loads(body.split(b"\n", 1)[0])
    if frame.get("t") != "welcome":
        raise AssertionError(f"expected a welcome, got {frame}")
    return frame


async def bye_over_post(http: RawHttp, welcome: dict[str, Any]) -> None:
    status, body = await http.request(
        "POST", f"/send?sid={welcome['sid']}", b'{"t":"bye"}', {"X-Ladder-Rt": welcome["rt"]}
    )
    if status != 204:
        raise AssertionError(f"bye refused: {status} {body[:200]!r}")


async def poll_cycle(http: RawHttp, endpoint: str) -> None:
    """Open a session with a (long or short) poll, then end it with ``bye``."""
    status, body = await http.request("GET", f"/{endpoint}?v=1")
    if status != 200:
        raise AssertionError(f"{endpoint}: {status} {body[:200]!r}")
    await bye_over_post(http, welcome_of(body))


async def sse_cycle(port: int, http: RawHttp, *, bye: bool) -> None:
    """Open an SSE stream, read its welcome, then say ``bye`` (or just hang up: the session
    stays until it expires)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET /sse?v=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        data = b""
        while b'"welcome"' not in data or not data.endswith(b"\n\n"):
            chunk = await reader.read(65536)
            if not chunk:
                raise AssertionError(f"sse: stream ended before the welcome: {data[:300]!r}")
            data += chunk
            data = data.replace(b"\r\n", b"\n")  # chunked framing lines; events use \n
        line = next(part for part in data.split(b"\n") if part.startswith(b'data: {"t":"welcome"'))
        welcome = orjson.loads(line[6:])
        if bye:
            await bye_over_post(http, welcome)
    finally:
        await hang_up(reader, writer)


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close as a well-behaved client does: FIN, read what is left, then close. (Closing with
    unread data resets the connection instead, which uvicorn pins in memory for its keep-alive
    timeout: see docs/hostile.md.)"""
    try:
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(5):
            while await reader.read(65536):
                pass
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()


def _frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 §5.2)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return head + mask + masked


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(size)


async def websocket_cycle(port: int, *, bye: bool) -> None:
    """Upgrade, hello, welcome; then ``bye`` and wait for the server's close, or drop the TCP
    connection without a word (the session stays until it expires)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"websocket: upgrade refused: {head[:200]!r}")
        writer.write(_frame(0x1, b'{"t":"hello","v":1}'))
        opcode, payload = await _read_frame(reader)
        if opcode != 0x1 or b'"welcome"' not in payload:
            raise AssertionError(f"websocket: expected the welcome, got {opcode} {payload[:200]!r}")
        if bye:
            writer.write(_frame(0x1, b'{"t":"bye"}'))
            while opcode != 0x8:  # the server closes the socket once the session ended
                opcode, payload = await _read_frame(reader)
            writer.write(_frame(0x8, payload[:2]))
    finally:
        await hang_up(reader, writer)
