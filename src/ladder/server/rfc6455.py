"""RFC 6455 details both WebSocket drivers under ``ladder serve`` share.

* Refused upgrades answer with the JSON error body of protocol §8 (not the ``websockets``
  library's plain text), and an unsupported ``Sec-WebSocket-Version`` with ``426`` and
  ``Sec-WebSocket-Version: 13`` (RFC 6455 §4.2.2).
* A message that has begun must arrive whole within ``Limits.frame_timeout``: a frame
  header announcing a payload that never comes must not hold a connection until the
  heartbeat notices. :class:`FrameClock` follows frame boundaries in the raw byte stream
  (header sizes as RFC 6455 §5.2 defines them) to know whether a message is in progress.
* A text message that is not UTF-8 closes the connection with 1007 (§8.1), quietly.
* :func:`whole_frames` reads the common case (whole, masked, unfragmented text and binary
  frames) straight from the bytes received, so a small message does not go through the
  ``websockets`` library's general parser (a generator per frame).
"""

from __future__ import annotations

import struct
from typing import Any

from websockets.exceptions import InvalidHeader
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response
from websockets.protocol import Protocol, Side, State
from websockets.server import ServerProtocol

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - built without its C extension
    from websockets.utils import apply_mask

from ..protocol.errors import LadderError
from .http import Request, error_body

INVALID_UTF8 = 1007
"""Close code for a text message that is not UTF-8 (RFC 6455 §7.4.1)."""

_STATUS_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


def refusal(protocol: ServerProtocol, status: int, error: LadderError) -> Response:
    """An HTTP answer to an upgrade request, with the JSON error body of protocol §8."""
    response = protocol.reject(status, "")
    body = error_body(error)
    del response.headers["Content-Type"]
    del response.headers["Content-Length"]
    response.headers["Content-Type"] = "application/json"
    response.headers["Content-Length"] = str(len(body))
    response.body = body
    return response


class HandshakeProtocol(ServerProtocol):
    """``websockets``' server protocol whose refused handshakes are Ladder's JSON errors."""

    def accept(self, request: WsRequest) -> Response:
        response = super().accept(request)
        if response.status_code == 101:
            return response
        exc = self.handshake_exc
        if isinstance(exc, InvalidHeader) and exc.name == "Sec-WebSocket-Version" and exc.value:
            error = LadderError("bad_request", f"Sec-WebSocket-Version {exc.value} is not supported (13 is)")
            refused = refusal(self, 426, error)
            refused.headers["Sec-WebSocket-Version"] = "13"
            return refused
        code = _STATUS_CODES.get(response.status_code, "bad_request")
        reason = "not a valid WebSocket upgrade" + (f": {exc}" if exc is not None else "")
        refused = refusal(self, response.status_code, LadderError(code, reason))
        for name in ("Upgrade", "Allow"):
            if name in response.headers:
                refused.headers[name] = response.headers[name]
        return refused


def after_handshake(ws: ServerProtocol, max_size: int) -> Protocol:
    """The protocol to read an accepted connection's frames with: a frame-level one when
    nothing past the handshake arrived yet. ``websockets``' server protocol keeps the
    upgrade request and its headers alive (its parser's frame) for the connection's life:
    about a tenth of an idle connection's objects, which every full collection walks."""
    if ws.reader.buffer or ws.events or ws.state is not State.OPEN:
        return ws  # a client that sent frames before the 101: keep what was read
    frames = Protocol(Side.SERVER, state=State.OPEN, max_size=max_size)
    frames.extensions, frames.subprotocol = ws.extensions, ws.subprotocol  # (none offered today)
    return frames


def upgrade_request(handshake: WsRequest, transport: Any, trust_forwarded: bool) -> Request:
    """The upgrade request as Ladder's HTTP layer sees requests (an ASGI-like scope)."""
    path, _, query = handshake.path.partition("?")
    scope = {
        "type": "websocket",
        "path": path,
        "query_string": query.encode("latin-1"),
        "headers": [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in handshake.headers.raw_items()
        ],
        "client": transport.get_extra_info("peername"),
        "scheme": "wss" if transport.get_extra_info("sslcontext") else "ws",
    }
    return Request(scope, trust_forwarded=trust_forwarded)


def valid_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class FrameClock:
    """Where the client's frames begin and end in the raw byte stream.

    :attr:`in_frame` is true from a frame's first byte until its last payload byte; a
    driver adds its own knowledge of unfinished fragmented messages.
    """

    __slots__ = ("head", "left")

    def __init__(self) -> None:
        self.head = bytearray()
        """Bytes of a frame header read so far (at most 14)."""
        self.left = 0
        """Payload bytes of the current frame still to come."""

    @property
    def in_frame(self) -> bool:
        return bool(self.head) or self.left > 0

    def feed(self, data: bytes) -> None:
        pos, size = 0, len(data)
        while pos < size:
            if self.left:
                step = min(self.left, size - pos)
                self.left -= step
                pos += step
                continue
            take = min(14 - len(self.head), size - pos)
            self.head += data[pos : pos + take]
            pos += take
            parsed = _header(self.head)
            if parsed is None:
                continue
            header_size, length = parsed
            pos -= len(self.head) - header_size  # what was read past the header is payload
            self.head.clear()
            self.left = length


def _header(head: bytearray) -> tuple[int, int] | None:
    """(header size, payload length) once ``head`` holds a whole frame header."""
    if len(head) < 2:
        return None
    short = head[1] & 0x7F
    extra = 2 if short == 126 else 8 if short == 127 else 0
    size = 2 + extra + (4 if head[1] & 0x80 else 0)
    if len(head) < size:
        return None
    length = short if not extra else int.from_bytes(head[2 : 2 + extra], "big")
    return size, length


def at_boundary(ws: Protocol, clock: FrameClock) -> bool:
    """Whether ``ws`` waits for a new frame with nothing of it read (where
    :func:`whole_frames` may read instead); the driver adds "outside a fragmented message"."""
    return ws.state is State.OPEN and not ws.reader.buffer and not clock.in_frame


def whole_frames(data: bytes, max_size: int | None) -> tuple[list[tuple[int, bytes]], int]:
    """The complete frames at the start of ``data`` that need nothing but unmasking: final
    (FIN, no RSV bits), text or binary, masked, at most 65,535 bytes and ``max_size``.

    Returns their (opcode, payload) and how many bytes they took; parsing stops at the
    first frame that is anything else (or incomplete), which the general parser then reads
    from there. Call it only at a frame boundary, outside a fragmented message.
    """
    frames: list[tuple[int, bytes]] = []
    pos, size = 0, len(data)
    while size - pos >= 6:
        first, second = data[pos], data[pos + 1]
        if first not in {0x81, 0x82} or not second & 0x80:
            break
        length = second & 0x7F
        if length < 126:
            head = pos + 2
        elif length == 126 and size - pos >= 8:
            length = (data[pos + 2] << 8) | data[pos + 3]
            head = pos + 4
        else:
            break
        end = head + 4 + length
        if end > size or (max_size is not None and length > max_size):
            break
        frames.append((first & 0x0F, apply_mask(data[head + 4 : end], data[head : head + 4])))
        pos = end
    return frames, pos


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, unfragmented server frame."""
    size = len(payload)
    if size < 126:
        return b"%c%c%b" % (0x80 | opcode, size, payload)
    if size < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, size) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, size) + payload
