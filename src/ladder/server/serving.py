"""What ``ladder serve`` adds to uvicorn at the edges of HTTP and WebSocket.

* :class:`HeaderTimeoutHttp`: a connection must finish sending a request's headers within
  ``header_timeout`` seconds of its first byte (or of being opened), else it is closed;
  uvicorn alone waits forever for a slow (or silent) client.
* :class:`AsgiWebSocket`: uvicorn's WebSocket implementation for ``--asgi-ws`` and for the
  app's own sockets, with the RFC 6455 details of :mod:`.rfc6455` (JSON refusals, 426 with
  the supported version, a deadline for a begun message, 1007 without a traceback).
* :class:`GracefulServer`: on SIGTERM, the hub ends every session with a ``bye``
  (``shutting_down``) *before* uvicorn waits for connections to end; uvicorn would
  otherwise wait for open SSE streams and long polls, and run the lifespan shutdown (which
  is where a mounted hub hears of it) only after they ended by themselves.

What can be served at all is :mod:`.servable`'s.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, ClassVar, Final

import httptools
import uvicorn

from ..protocol.errors import LadderError
from .cutoff import CUT_OFF, PendingCut
from .http import error_body
from .hub import Ladder, gateway_of
from .rfc6455 import NOT_UTF8, FrameClock, HandshakeProtocol, valid_utf8
from .uvicorn_needs import QUIET_PARSE, lacking, require
from .workers import tell_ready

require()  # one line naming the uvicorn to install, not an ImportError below or an AttributeError later

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: E402
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol  # noqa: E402


class _HeadersTooLarge(Exception):
    """Raised in a parser callback to stop the parser (see ``HeaderTimeoutHttp._count``)."""


class _NotServed(Exception):
    """Raised in a parser callback to stop the parser at a request of an HTTP version
    other than 1.1 or 1.0 (the parser reads ``HTTP/2.0`` and ``HTTP/0.9`` request lines)."""


_SERVED: Final = ("1.1", "1.0")


class HeaderTimeoutHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's headers, a bound on
    their size (uvicorn reads any number of them: 6 connections streaming headers took a
    server to 2 GB), and the JSON error body of protocol §8 for a request it cannot parse,
    refused as Ladder refuses (uvicorn logs a WARNING for each, without an address, and
    counts nothing)."""

    header_timeout: ClassVar[float] = 10.0
    max_header_size: ClassVar[int] = 65536
    """Bytes of request line and headers a request may have (``--max-header-size``)."""
    hub: ClassVar[Ladder | None] = None
    """The hub served, whose refusals these are (logged and counted; None: an app without one)."""
    quiet_parse: ClassVar[bool] = not lacking(QUIET_PARSE)
    """uvicorn has the private methods :meth:`_feed` calls (else its own ``data_received``
    is used, which adds its WARNING line: see :mod:`.uvicorn_needs`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._parsed_bytes = 0
        self._cut = PendingCut(self.loop)
        self._heading = True
        """The current request's headers are not complete yet (its bytes are counted)."""
        self._oversize = False
        self._unserved: str | None = None
        """The HTTP version of a request line refused as not served."""

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        """Headers that completed within one read are counted as the parser hands them over
        (those that do not, by :meth:`data_received`)."""
        self._parsed_bytes += size
        if self._parsed_bytes > self.max_header_size:
            self._oversize = True
            raise _HeadersTooLarge  # the parser stops; uvicorn answers by send_400_response

    def data_received(self, data: bytes) -> None:
        # Counted as they arrive, not per header: the parser hands a header over only once
        # it ended, and buffers it meanwhile (one endless header: the memory of a server).
        heading = self._heading
        if heading:
            self._header_bytes += len(data)
        self._feed(data)
        if self._heading and self._header_bytes > self.max_header_size and not self.transport.is_closing():
            self._oversize = True
            self.send_400_response("")

    def _feed(self, data: bytes) -> None:
        """uvicorn's ``data_received``, less its WARNING for a request it cannot parse."""
        if not self.quiet_parse:
            super().data_received(data)
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.send_400_response("")
        except httptools.HttpParserUpgrade as upgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
                self._hand_on(data, upgrade)
            else:
                self._unsupported_upgrade_warning()

    def _hand_on(self, data: bytes, upgrade: httptools.HttpParserUpgrade) -> None:
        """Give the WebSocket protocol what came after the upgrade request in the same read:
        frames a client sent before the 101 (it should wait for it, but one that does not
        loses nothing). uvicorn drops them, so such a client's hello was never answered, and
        its connection was closed 10 s later for want of one."""
        end = upgrade.args[0] if upgrade.args and isinstance(upgrade.args[0], int) else len(data)
        rest = data[end:]
        protocol = self.transport.get_protocol()
        if not rest or protocol is self or self.transport.is_closing():
            return  # (nothing came with it, or no WebSocket protocol took the connection)
        if isinstance(protocol, asyncio.Protocol):
            protocol.data_received(rest)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse, with Ladder's JSON error body; a
        refusal like any other (one INFO line with the peer's address, and counted)."""
        if self.transport.is_closing():
            return
        if self._oversize:
            status = b"431 Request Header Fields Too Large"
            reason = (
                f"the request line and headers are over {self.max_header_size} bytes "
                "(ladder serve --max-header-size)"
            )
        elif self._unserved is not None:
            status, reason = b"400 Bad Request", f"HTTP/{self._unserved} is not served: send HTTP/1.1"
        else:
            status, reason = b"400 Bad Request", "not a valid HTTP/1.1 request"
        error = LadderError("bad_request", reason)
        body = error_body(error)
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self.transport.close()
        who = "%s:%d" % self.client if self.client else None  # noqa: UP031 - (host, port)
        if self.hub is not None:
            gateway_of(self.hub).refused("http", error, client=who)
        else:
            logging.getLogger("ladder").info("refused on http (%s): %s", who or "-", error)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._cut.cancel()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._parsed_bytes = 14  # " HTTP/1.1\r\n" after the target, a space before it, the blank line
        super().on_message_begin()
        self.scope["extensions"] = {CUT_OFF: {"cut_off_after": self._cut_off_after}}
        self._arm()

    def _cut_off_after(self, delay: float) -> None:
        """A session ended: a client that has not read its response to the end ``delay``
        seconds later is cut off (see :mod:`.cutoff`; not once the connection is lost)."""
        self._cut.after(self.transport, delay)

    def on_headers_complete(self) -> None:
        self._count(len(self.parser.get_method()))  # (the rest of the line is counted)
        self._disarm()
        self._heading = False
        version = self.parser.get_http_version()
        if version not in _SERVED:
            self._unserved = version
            raise _NotServed  # the parser stops; answered by send_400_response
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._heading = True  # the next request's bytes are its headers
        self._header_bytes = self._parsed_bytes = 0
        super().on_message_complete()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm()  # a request is being answered: the next one's deadline starts after it
            return
        if not self.transport.is_closing():
            self.transport.close()


class AsgiWebSocket(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with Ladder's RFC 6455 edges."""

    frame_timeout: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        old = self.conn
        self.conn = HandshakeProtocol(
            extensions=old.available_extensions, max_size=self.config.ws_max_size, logger=old.logger
        )
        self._clock = FrameClock()
        self._frame_timer: asyncio.TimerHandle | None = None
        self._upgraded = False
        self._cut = PendingCut(self.loop)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # (none for a refused upgrade; read when the app runs)
        if scope is not None:
            scope["extensions"][CUT_OFF] = {"cut_off_after": self._cut_off_after}

    def _cut_off_after(self, delay: float) -> None:
        """As :meth:`HeaderTimeoutHttp._cut_off_after`, for the ASGI WebSocket driver."""
        self._cut.after(self.transport, delay)

    def data_received(self, data: bytes) -> None:
        if not self._upgraded:  # uvicorn hands over the upgrade request alone, first
            self._upgraded = True
            super().data_received(data)
            return
        self._clock.feed(data)
        super().data_received(data)
        if self.close_sent or self.transport.is_closing():
            self._stop_timer()
        elif self._clock.in_frame or self.frames:
            if self._frame_timer is None:
                self._frame_timer = self.loop.call_later(self.frame_timeout, self._stalled)
        else:
            self._stop_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self._cut.cancel()
        super().connection_lost(exc)

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            if not valid_utf8(data):
                self.frames = []
                self._fail(*NOT_UTF8)
                return
        super().send_receive_event_to_app()

    def _stop_timer(self) -> None:
        if self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None

    def _stalled(self) -> None:
        self._frame_timer = None
        if self.read_paused:  # uvicorn stopped reading until the app takes a message: our delay
            self._frame_timer = self.loop.call_later(self.frame_timeout, self._stalled)
            return
        error = LadderError("heartbeat_timeout", f"message not complete within {self.frame_timeout:g} s")
        self._fail(error.ws_close, error.close_reason)

    def _fail(self, code: int, reason: str) -> None:
        """Close with ``code``: tell the app the socket is gone; the client has a second to
        complete the closing handshake."""
        if self.close_sent or self.transport.is_closing():
            return
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:  # read the client's answer to the close
            self.read_paused = False
            self.transport.resume_reading()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.loop.call_later(1.0, self.transport.close)


def hand_over(native: Any, data: bytes) -> asyncio.Protocol:
    """A socket the native driver accepted that is not Ladder's endpoint: served from its
    first bytes by :class:`AsgiWebSocket`. uvicorn sets the native protocol on the transport
    after the accepting call returns, so that one stays and passes everything on to this one."""
    native.server_state.connections.discard(native)
    other = AsgiWebSocket(native.config, native.server_state, native.app_state, _loop=native.loop)
    other.connection_made(native.transport)
    other.data_received(data)
    return other


class GracefulServer(uvicorn.Server):
    """uvicorn's server that tells the hub first when a graceful shutdown begins."""

    def __init__(self, config: uvicorn.Config, hub: Ladder | None, *, announce: bool = False) -> None:
        super().__init__(config)
        self.hub = hub
        self.announce = announce
        """Say where it listens on a socket bound beforehand (uvicorn says so only for its own)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            tell_ready()  # (a worker of --workers N: its parent hears it serves)
        if self.announce and sockets and self.started:
            host, port = sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            said = "Uvicorn running on http://%s:%d (Press CTRL+C to quit)"
            logging.getLogger("uvicorn.error").info(said, shown, port)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connections while the sessions are told to go
        if self.hub is not None:
            await self.hub.stop()
        await super().shutdown(sockets)
