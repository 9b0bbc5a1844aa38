"""RFC 6455 details both WebSocket drivers under ``ladder serve`` share.

* Refused upgrades answer with the JSON error body of protocol §8 (not the ``websockets``
  library's plain text), and an unsupported ``Sec-WebSocket-Version`` with ``426`` and
  ``Sec-WebSocket-Version: 13`` (RFC 6455 §4.2.2).
* A message that has begun must arrive whole within ``Limits.frame_timeout``: a frame
  header announcing a payload that never comes must not hold a connection until the
  heartbeat notices. :class:`FrameClock` follows frame boundaries in the raw byte stream
  (header sizes as RFC 6455 §5.2 defines them) to know whether a message is in progress.
* A text message that is not UTF-8 closes the connection with 1007 (§8.1), quietly.
"""

from __future__ import annotations

from websockets.exceptions import InvalidHeader
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response
from websockets.server import ServerProtocol

from ..protocol.errors import LadderError
from .http import error_body

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
