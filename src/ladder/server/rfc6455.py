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

import asyncio
import contextlib
import struct
from collections.abc import Iterable
from typing import Any, Final

from websockets.exceptions import InvalidHeader
from websockets.frames import Frame, Opcode
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response
from websockets.protocol import Protocol, Side, State
from websockets.server import ServerProtocol

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - built without its C extension
    from websockets.utils import apply_mask

from ..protocol.errors import LadderError
from .http import Request, error_body, origin_refusal
from .proxies import proxy_trusted

INVALID_UTF8 = 1007
"""Close code for a text message that is not UTF-8 (RFC 6455 §7.4.1)."""

_REFUSED_BY_CODE = {1009: "frame_too_large", 1002: "bad_frame", 1007: "bad_frame"}
"""The Ladder refusal a close for the client's frames stands for."""

NOT_UTF8: Final = (INVALID_UTF8, "bad_frame: invalid UTF-8 in a text message")
"""The close of a text message that is not UTF-8, its reason in Ladder's words (both drivers)."""

_CLOSE_NOT_UTF8: Final = "invalid UTF-8 in a close reason"
"""The websockets protocol decodes only close reasons (the drivers check text messages
themselves): its 1007 says where the decoder stopped, and nothing of what it read."""


def ladder_reason(code: int, reason: str) -> str:
    """The reason of a close for the client's frames as Ladder writes it (``<code>:
    <reason>``, protocol §8): a message over the limit said the library's words alone, so a
    client reading the code from the reason found none."""
    refusal = _REFUSED_BY_CODE.get(code)
    return reason if refusal is None else LadderError(refusal, reason).close_reason


class _OpenProtocol(Protocol):
    """An open connection's protocol (the frames after the upgrade), closing in Ladder's words."""

    def fail(self, code: int, reason: str = "") -> None:
        super().fail(code, ladder_reason(code, _CLOSE_NOT_UTF8 if code == INVALID_UTF8 else reason))

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

    refused: LadderError | None = None
    """Why :meth:`answer` refused the upgrade (None: it did not)."""

    def answer(self, handshake: WsRequest, request: Request, origins: tuple[str, ...] | None) -> Response:
        """The answer to the upgrade request: 101, or a refusal (its Origin, its headers)."""
        self.refused = origin_refusal(origins, request)
        if self.refused is None:
            return self.accept(handshake)
        return refusal(self, 403, self.refused)

    def fail(self, code: int, reason: str = "") -> None:
        super().fail(code, ladder_reason(code, _CLOSE_NOT_UTF8 if code == INVALID_UTF8 else reason))

    def accept(self, request: WsRequest) -> Response:
        response = super().accept(request)
        if response.status_code == 101:
            return response
        exc = self.handshake_exc
        if isinstance(exc, InvalidHeader) and exc.name == "Sec-WebSocket-Version" and exc.value:
            error = self.refused = LadderError(
                "bad_request", f"Sec-WebSocket-Version {exc.value} is not supported (13 is)"
            )
            refused = refusal(self, 426, error)
            refused.headers["Sec-WebSocket-Version"] = "13"
            return refused
        code = _STATUS_CODES.get(response.status_code, "bad_request")
        reason = "not a valid WebSocket upgrade" + (f": {exc}" if exc is not None else "")
        self.refused = LadderError(code, reason)
        refused = refusal(self, response.status_code, self.refused)
        for name in ("Upgrade", "Allow"):
            if name in response.headers:
                refused.headers[name] = response.headers[name]
        return refused


def upgrade_request(handshake: WsRequest, transport: Any, trust_forwarded: bool, config: Any) -> Request:
    """The upgrade request as Ladder's HTTP layer sees requests (an ASGI-like scope); its
    ``X-Forwarded-*`` are read with ``trust_forwarded`` (the hub's setting), or when uvicorn's
    ``config`` trusts the peer for the app it serves (:mod:`.proxies`)."""
    peer = transport.get_extra_info("peername")
    path, _, query = handshake.path.partition("?")
    scope = {
        "type": "websocket",
        "path": path,
        "query_string": query.encode("latin-1"),
        "headers": [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in handshake.headers.raw_items()
        ],
        "client": peer,
        "scheme": "wss" if transport.get_extra_info("sslcontext") else "ws",
    }
    trusted = trust_forwarded or proxy_trusted(config, peer[0] if peer else None)
    return Request(scope, trust_forwarded=trusted)


def send_out(transport: asyncio.Transport, pending: Iterable[bytes]) -> None:
    """Write what a sans-I/O protocol has to send (an empty chunk: half-close the socket)."""
    for data in pending:
        if data:
            if not transport.is_closing():
                transport.write(data)
        else:
            with contextlib.suppress(OSError, RuntimeError):
                transport.write_eof()


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


class FrameReader(FrameClock):
    """An open connection's client frames, as whole messages ``(payload, is_text)``.

    Whole small frames are read straight from the bytes (:func:`whole_frames`). Anything
    else (a control frame, a fragment, a frame cut across reads) goes through a
    ``websockets`` frame-level protocol, made when such a frame comes and let go once
    everything is read and written and no frame or message is unfinished: an idle
    connection holds none (a protocol is a fifth of an idle connection's objects — a
    parser generator, buffers, a UUID — and every full collection walks them). No
    extension is offered, so a fresh protocol at a frame boundary reads as the old one would.
    """

    __slots__ = ("fragment_text", "fragments", "max_size", "ws")

    def __init__(self, max_size: int | None, handshake: ServerProtocol) -> None:
        super().__init__()  # where frames begin and end (one object for both)
        self.max_size = max_size
        self.fragments: list[bytes] | None = None
        """The parts of a fragmented message so far."""
        self.fragment_text = True
        # A client that sent frames before the 101: keep what the handshake's protocol read.
        early = bool(handshake.reader.buffer or handshake.events) or handshake.state is not State.OPEN
        self.ws: Protocol | None = handshake if early else None

    @property
    def in_message(self) -> bool:
        """A frame or a fragmented message has begun and is not complete yet."""
        return self.in_frame or self.fragments is not None

    def protocol(self) -> Protocol:
        if self.ws is None:
            self.ws = _OpenProtocol(Side.SERVER, state=State.OPEN, max_size=self.max_size)
        return self.ws

    def read(self, data: bytes) -> list[tuple[bytes, bool]]:
        ws, messages = self.ws, []
        # (frames the handshake's protocol read with the upgrade come first: not idle then)
        idle = ws is None or (ws.state is State.OPEN and not ws.reader.buffer and not ws.events)
        if idle and not self.in_message:
            frames, used = whole_frames(data, self.max_size)
            messages = [(payload, opcode == 0x1) for opcode, payload in frames]
            if used == len(data):
                return messages
            data = data[used:]
        ws = self.protocol()
        ws.receive_data(data)
        self.feed(data)
        messages += self._messages(ws)
        return messages

    def eof(self) -> list[tuple[bytes, bool]]:
        ws = self.protocol()
        ws.receive_eof()
        return self._messages(ws)

    def early(self, events: list[Any]) -> list[tuple[bytes, bool]]:
        """Messages in the frames the handshake's protocol read with the upgrade request
        (a client should wait for the 101, but one that does not loses nothing)."""
        return self._frames(events)

    def _messages(self, ws: Protocol) -> list[tuple[bytes, bool]]:
        return self._frames(ws.events_received())

    def _frames(self, events: list[Any]) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
        for frame in events:
            if not isinstance(frame, Frame):
                continue
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if frame.fin:
                    out.append((bytes(frame.data), opcode is Opcode.TEXT))
                else:
                    self.fragments, self.fragment_text = [bytes(frame.data)], opcode is Opcode.TEXT
            elif opcode is Opcode.CONT and self.fragments is not None:
                self.fragments.append(bytes(frame.data))
                if frame.fin:
                    data, self.fragments = b"".join(self.fragments), None
                    out.append((data, self.fragment_text))
        return out

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (the close frame is in :meth:`to_send`)."""
        with contextlib.suppress(Exception):  # already closing, or the connection failed
            self.protocol().send_close(code, reason)

    def to_send(self) -> list[bytes]:
        """Bytes to write (pongs, a close frame; ``b""``: half-close). Lets the protocol go
        when nothing is left in it."""
        ws = self.ws
        if ws is None:
            return []
        out = ws.data_to_send()
        if ws.state is State.OPEN and not ws.reader.buffer and not ws.events and not self.in_message:
            self.ws = None
        return out

    def close_expected(self) -> bool:
        return self.ws is not None and self.ws.close_expected()

    def failure(self) -> LadderError | None:
        """Why the protocol closed the connection for the client's frames (a frame over
        ``max_size``, a malformed frame); None if it did not, or for invalid UTF-8 (1007),
        closed quietly as everywhere."""
        ws = self.ws
        if ws is None or ws.parser_exc is None or ws.close_sent is None:
            return None
        close = ws.close_sent
        if close.code == INVALID_UTF8:
            return None
        said = LadderError.of_close(close.reason)  # (``fail`` wrote Ladder's reason)
        return said or LadderError(_REFUSED_BY_CODE.get(close.code, "bad_frame"), close.reason)


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
