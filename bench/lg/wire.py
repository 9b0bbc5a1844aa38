"""Minimal, fast client-side wire primitives for the load generator (asyncio + uvloop).

The load generator runs thousands of connections on one core, so it cannot afford a
general-purpose client library per connection (``websockets`` or ``httpx`` cost tens of
microseconds per message in Python). These two protocols do only what the benchmarks need:

* :class:`WSConn`: RFC 6455 client. The handshake, then frames parsed straight out of the
  received bytes. Client frames are masked with the all-zero key (legal: the key is the
  client's choice; it only matters against cache poisoning by browsers), so sending
  costs no XOR. Answers protocol pings; reassembles fragmented messages.
* :class:`HTTPConn`: one keep-alive HTTP/1.1 connection, one request at a time, the
  response parsed by ``httptools`` (chunked bodies included); optionally streaming the
  body to a callback (Server-Sent Events).

Both abort with SO_LINGER 0 (an RST, no TIME_WAIT), so 10k connections opened and closed
per run do not exhaust the ephemeral ports.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

import httptools

HOST = "127.0.0.1"
_LINGER0 = struct.pack("ii", 1, 0)


def _linger0(transport: asyncio.BaseTransport | None) -> None:
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)


class ConnClosed(Exception):
    pass


def _ws_header(opcode: int, n: int) -> bytes:
    if n < 126:
        return bytes((0x80 | opcode, 0x80 | n)) + b"\0\0\0\0"
    if n < 65536:
        return bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big") + b"\0\0\0\0"
    return bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big") + b"\0\0\0\0"


class WSConn(asyncio.Protocol):
    """A WebSocket client connection. ``on_message(opcode, payload)`` gets every message
    (1 = text, 2 = binary; payload as bytes); ``on_close()`` runs once when it ends."""

    def __init__(
        self,
        path: str,
        port: int,
        on_message: Callable[[int, bytes], None],
        on_close: Callable[[], None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.path = path
        self.port = port
        self.on_message = on_message
        self.on_close = on_close
        self.headers = headers or {}
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self._handshaking = True
        self._buf = b""
        self._frag_op = 0
        self._frag: list[bytes] = []

    @classmethod
    async def connect(
        cls,
        path: str,
        port: int,
        on_message: Callable[[int, bytes], None],
        on_close: Callable[[], None] | None = None,
        headers: dict[str, str] | None = None,
        host: str = HOST,
    ) -> WSConn:
        proto = cls(path, port, on_message, on_close, headers)
        await proto.start(host)
        return proto

    async def start(self, host: str = HOST) -> None:
        """Connect and complete the handshake (messages may arrive before this returns)."""
        await asyncio.get_running_loop().create_connection(lambda: self, host, self.port)
        await self.opened

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"{extra}\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        if self._handshaking:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._buf = data
                return
            status = data[: data.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                if not self.opened.done():
                    self.opened.set_exception(ConnClosed(f"upgrade refused: {status.decode(errors='replace')}"))
                self.abort()
                return
            self._handshaking = False
            if not self.opened.done():
                self.opened.set_result(None)
            data = data[end + 4 :]
        n = len(data)
        i = 0
        on_message = self.on_message
        while i + 2 <= n:
            b0 = data[i]
            length = data[i + 1] & 0x7F
            j = i + 2
            if length == 126:
                if j + 2 > n:
                    break
                length = (data[j] << 8) | data[j + 1]
                j += 2
            elif length == 127:
                if j + 8 > n:
                    break
                length = int.from_bytes(data[j : j + 8], "big")
                j += 8
            if j + length > n:
                break
            payload = data[j : j + length]
            i = j + length
            opcode = b0 & 0x0F
            if opcode in (1, 2):
                if b0 & 0x80:
                    on_message(opcode, payload)
                else:
                    self._frag_op, self._frag = opcode, [payload]
            elif opcode == 0:
                self._frag.append(payload)
                if b0 & 0x80:
                    whole, self._frag = b"".join(self._frag), []
                    on_message(self._frag_op, whole)
            elif opcode == 9:
                self._send(10, payload)
            elif opcode == 8:
                self.abort()
                return
        if i < n:
            self._buf = data[i:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(ConnClosed(f"connection lost during the handshake: {exc!r}"))
        if self.on_close is not None:
            callback, self.on_close = self.on_close, None
            callback()

    # -- sending ----------------------------------------------------------------------

    def _send(self, opcode: int, payload: bytes) -> None:
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            return
        transport.write(_ws_header(opcode, len(payload)) + payload)

    def send_text(self, payload: bytes) -> None:
        self._send(1, payload)

    def send_binary(self, payload: bytes) -> None:
        self._send(2, payload)

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            _linger0(self.transport)
            self.transport.abort()
        self.closed = True


class HTTPResponse:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class HTTPConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 client connection; requests are made one at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser: Any = None
        self._future: asyncio.Future[HTTPResponse] | None = None
        self._headers_done: asyncio.Future[HTTPResponse] | None = None
        self._status = 0
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._stream: Callable[[bytes], None] | None = None
        self._lock = asyncio.Lock()
        self.on_close: Callable[[], None] | None = None

    @classmethod
    async def connect(cls, port: int, host: str = HOST) -> HTTPConn:
        loop = asyncio.get_running_loop()
        proto = cls(port)
        await loop.create_connection(lambda: proto, host, port)
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnClosed(f"bad HTTP response: {exc}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnClosed(f"connection lost: {exc!r}"))
        if self.on_close is not None:
            callback, self.on_close = self.on_close, None
            callback()

    def _fail(self, exc: Exception) -> None:
        for future in (self._headers_done, self._future):
            if future is not None and not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: nobody may be waiting any more

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        self._status = self._parser.get_status_code()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        future = self._headers_done
        if future is not None and not future.done():
            future.set_result(HTTPResponse(self._status, self._headers, b""))

    def on_body(self, body: bytes) -> None:
        if self._stream is not None:
            self._stream(body)
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        response = HTTPResponse(self._status, self._headers, b"".join(self._body))
        future = self._future
        self._future = None
        if future is not None and not future.done():
            future.set_result(response)

    def _start(self, method: str, path: str, headers: dict[str, str] | None, body: bytes) -> None:
        if self.closed or self.transport is None:
            raise ConnClosed("connection closed")
        self._parser = httptools.HttpResponseParser(self)
        self._status = 0
        self._headers = {}
        self._body = []
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n{extra}"
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        self.transport.write(head.encode() + b"\r\n" + body)

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> HTTPResponse:
        async with self._lock:
            self._stream = None
            self._future = asyncio.get_running_loop().create_future()
            self._start(method, path, headers, body)
            return await self._future

    async def stream(
        self, path: str, on_body: Callable[[bytes], None], headers: dict[str, str] | None = None
    ) -> HTTPResponse:
        """Start a streamed GET; returns once the headers are in. The body goes to ``on_body``."""
        self._stream = on_body
        loop = asyncio.get_running_loop()
        self._headers_done = loop.create_future()
        self._future = loop.create_future()
        self._start("GET", path, headers, b"")
        return await self._headers_done

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            _linger0(self.transport)
            self.transport.abort()
        self.closed = True
