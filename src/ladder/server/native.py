"""The native WebSocket driver: Ladder's ``ws`` endpoint without ASGI, for ``ladder serve``.

A uvicorn WebSocket protocol class (handed the socket after the HTTP upgrade) that moves frames
between the socket and the session (every rung's sans-I/O core) without ASGI's tasks and awaits per message:

* a fan-out writes each subscriber's connection as it reaches it (once per loop turn),
  other wake-ups wait for the loop's :class:`Flusher`, and what a client's own message
  brings it (a reply, an ack) is written as the reading of that message ends;
* after the handshake (``websockets``' sans-I/O ``ServerProtocol``), a :class:`FrameReader`
  reads client frames: whole small ones from the bytes, the rest by a frame-level protocol
  that exists only while it has something to do;
* what waits for nothing is applied at once (acks, pings, pongs, also while a message is in
  a handler; on the memory engine, plain handlers' calls and emits), other messages by a
  task that runs only while some wait (``max_post_size`` bytes). Any other path (an app's
  own WebSockets) is handed to uvicorn's standard implementation.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, ClassVar, cast

from websockets.http11 import Request as WsRequest

from ..protocol.codec import JSON, MSGPACK, Codec
from ..protocol.errors import LadderError
from ..protocol.frames import ClientFrame
from .direct import direct_fd, write
from .flusher import flush_guarded, flusher_of
from .gateway import Gateway
from .http import Request
from .hub import Ladder, gateway_of
from .link import Link, encode_batch
from .reading import BACKLOG, ENDING, ReadGate
from .rfc6455 import (
    NOT_UTF8,
    FrameReader,
    HandshakeProtocol,
    send_out,
    upgrade_request,
    valid_utf8,
    ws_frame,
)
from .websocket import apply_frames, apply_message, decode_message, open_link, to_queue

log = logging.getLogger("ladder")


class NativeWebSocket(asyncio.Protocol):
    """A uvicorn WebSocket protocol serving ``hub`` at ``path`` (set by ``ladder serve``)."""

    hub: ClassVar[Ladder | None] = None
    path: ClassVar[str] = "/ws"

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # (First what a publication reads: the compiled class lays fields out in this order.)
        self.scheduled = False
        self.reading = False  # (in data_received, applying the client's messages)
        self.woken = False  # (woken while reading: written when the reading ends)
        self.paused = False
        self.closing = False
        self.written_turn = -1  # (the flusher's turn in which a fan-out last wrote it at once)
        self.fd = -1  # (written to directly once open, see direct.py)
        loop = _loop or asyncio.get_event_loop()
        self.flusher = flusher_of(loop)
        self.link: Link | None = None
        self.transport: asyncio.Transport | None = None
        self.codec: Codec = JSON
        self.loop = loop
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.ws: HandshakeProtocol | None = None  # (the upgrade's protocol, until it is done)
        self.reader: FrameReader | None = None  # (the client's frames, once the socket is open)
        self.gate: ReadGate | None = None  # (why it is not read, once the socket is open)
        self.gateway: Gateway | None = None
        self.request: Request | None = None
        self.inbox: deque[tuple[bytes, Codec] | list[ClientFrame]] | None = None
        """Messages waiting for the applying task, raw or decoded (only while there are some:
        an idle connection holds no deque)."""
        self.queued = 0  # (bytes queued since the applying task began; at most max_queued)
        self.max_queued = self.hub.limits.max_post_size if self.hub is not None else 0
        self.applier: asyncio.Task[None] | None = None
        self.hello_timer: asyncio.TimerHandle | None = None
        self.handed: asyncio.Protocol | None = None  # (uvicorn's, for a path not Ladder's)

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.server_state.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.handed is not None:
            self.handed.data_received(data)
            return
        reader = self.reader
        if reader is None:
            if self.ws is None:
                self._handshake(data)
            return  # (a refused upgrade: nothing more is read)
        self.reading = True
        try:
            self._messages(reader, reader.read(data))
        finally:
            self.reading = False
            if self.woken:  # (a reply, an ack: written now, in this turn, not by the flusher)
                self.woken = False
                flush_guarded(self)
        gate = self.gate
        if gate is not None:
            gate.read(len(data), reader.in_message and not self.closing)

    def eof_received(self) -> bool | None:
        if self.handed is not None:
            return self.handed.eof_received()
        if self.reader is not None:
            self._messages(self.reader, self.reader.eof())
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handed is not None:
            self.handed.connection_lost(exc)
            return
        self.server_state.connections.discard(self)
        self._stop_timers()
        self.inbox = None  # not offered to the session yet: the client sends them again
        if self.link is not None:
            self.link.close()

    def pause_writing(self) -> None:
        if self.handed is not None:
            self.handed.pause_writing()
        self.paused = True

    def resume_writing(self) -> None:
        if self.handed is not None:
            self.handed.resume_writing()
            return
        self.paused = False
        self()  # (woken: see __call__)

    def shutdown(self) -> None:
        """uvicorn is stopping: say so and close."""
        if self.handed is not None:
            return  # uvicorn tells the protocol it handed over to (in its connections)
        self._close(LadderError("shutting_down"))

    # -- opening ---------------------------------------------------------------------------

    def _handshake(self, data: bytes) -> None:
        hub = self.hub
        target = data.split(b" ", 2)[1] if data.count(b" ") >= 2 else b""
        if hub is None or target.split(b"?", 1)[0].decode("latin-1") != self.path:
            from .serving import hand_over  # noqa: PLC0415 - uvicorn only when serving

            self.handed = hand_over(self, data)  # not Ladder's endpoint: uvicorn's serves it
            return
        gateway = self.gateway = gateway_of(hub)
        ws = self.ws = HandshakeProtocol(max_size=hub.limits.max_frame_size)
        ws.receive_data(data)
        events = ws.events_received()
        if not events or not isinstance(events[0], WsRequest):
            self._write_out()
            self._abort()
            return
        assert self.transport is not None
        trust = hub.limits.trust_forwarded_for
        request = self.request = upgrade_request(events[0], self.transport, trust, self.config)
        ws.send_response(ws.answer(events[0], request, hub.allowed_origins))
        self._write_out()
        if ws.refused is not None:
            own = request.own_origin
            gateway.refused("websocket", ws.refused, client=request.who, origin=request.origin, own=own)
            return
        reader = self.reader = FrameReader(hub.limits.max_frame_size, ws)
        self.gate = ReadGate(self.transport, self.loop, hub.limits.frame_timeout, self._stalled)
        self.ws = None
        # Every write goes to the socket at once (uvloop would hold a turn's writes until the turn
        # ends); what the socket does not take pauses the writer; the bounded outbox holds the rest.
        self.transport.set_write_buffer_limits(high=0)
        self.fd = direct_fd(self.transport)
        self.hello_timer = self.loop.call_later(hub.limits.hello_timeout, self._no_hello)
        if len(events) > 1:  # frames that came with the upgrade: read before anything after them
            self._messages(reader, reader.early(events[1:]))

    def _no_hello(self) -> None:
        if self.link is None:
            self._refuse(LadderError("bad_request", "no hello frame in time"))

    def _stalled(self) -> None:
        assert self.hub is not None
        limit = self.hub.limits.frame_timeout
        self._refuse(LadderError("heartbeat_timeout", f"message not complete within {limit:g} s"))

    # -- reading ---------------------------------------------------------------------------

    def _messages(self, reader: FrameReader, messages: list[tuple[bytes, bool]]) -> None:
        for data, text in messages:
            self._message(data, JSON if text else MSGPACK)
            if self.closing:
                break
        if not self.closing and (failure := reader.failure()) is not None:
            self._refuse(failure)  # (the protocol's close frame is already written)
        self._write_out()
        if reader.close_expected() and self.transport is not None:
            self.transport.close()

    def _message(self, data: bytes, codec: Codec) -> None:
        if self.closing:
            return  # nothing more is applied from a connection being closed
        if codec is JSON and not valid_utf8(data):
            self._close_with(*NOT_UTF8)
            return
        link = self.link
        if link is None:
            self._queue((data, codec), len(data))
        else:
            try:  # what waits for nothing is applied now, with no task (Inbound.receive_now)
                if self._apply_now(link, data, codec):
                    return
            except Exception:
                log.exception("native websocket: applying a message failed")
                self._close(LadderError("internal"))
                return
        if self.applier is None:
            self.applier = self.loop.create_task(self._apply(), name="ladder-native-apply")
            assert self.gateway is not None  # (the handshake's: the hub's until it ends, see borrow)
            self.gateway.inbound.tasks.borrow(self.applier)

    def _apply_now(self, link: Link, data: bytes, codec: Codec) -> bool:
        """Decode a message; apply it if nothing in it waits, else queue its frames (while
        another is being applied: all but acks, pings and pongs, see ``arrived_meanwhile``)."""
        gateway = self.gateway
        assert gateway is not None
        frames, fatal = decode_message(gateway, link, data, codec)
        if fatal is not None:
            self._close(fatal)
            return True
        frames = to_queue(gateway, link, frames, self.applier is not None)
        if not frames:
            return True
        self._queue(frames, len(data))
        return False

    def _queue(self, item: tuple[bytes, Codec] | list[ClientFrame], size: int) -> None:
        if self.inbox is None:
            self.inbox = deque()
        self.inbox.append(item)
        self.queued += size  # past what one POST may hold, TCP holds the client back (not read
        if self.queued > self.max_queued and self.gate is not None:  # until all is applied)
            self.gate.hold(BACKLOG)

    async def _apply(self) -> None:
        """Apply queued client messages in order; exists only while there are some."""
        try:
            while self.inbox:
                item = self.inbox.popleft()
                if not self.inbox:
                    self.inbox = None
                gateway, link = self.gateway, self.link
                assert gateway is not None  # (set by the handshake)
                if isinstance(item, list):  # decoded already (see _apply_now)
                    assert link is not None
                    await apply_frames(gateway, link, item, self.inbox)
                elif link is None:
                    await self._open(*item)
                elif (fatal := await apply_message(gateway, link, *item, self.inbox)) is not None:
                    self._close(fatal)  # (apply_message takes what queued behind it too)
        except Exception:
            log.exception("native websocket: applying a message failed")
            self._close(LadderError("internal"))
        finally:
            self.applier = None
            if not self.inbox:  # (apply_message took the rest)
                self.inbox = None
            self.queued = 0
            if self.gate is not None:
                self.gate.release(BACKLOG)

    async def _open(self, data: bytes, codec: Codec) -> None:
        gateway, request = self.gateway, self.request
        assert gateway is not None and request is not None
        if self.hello_timer is not None:
            self.hello_timer.cancel()
            self.hello_timer = None  # a cancelled handle still holds its callback and context
        try:
            self.codec = codec
            self.link, rest = await open_link(gateway, request, data, codec, wake=self)
        except LadderError as exc:  # (said in a frame too: close reasons are easy to lose)
            if self.transport is not None and not self.transport.is_closing():
                err = codec.encode({"t": "err", **exc.body()})
                self.transport.write(ws_frame(0x2 if codec.binary else 0x1, err))
            self._refuse(exc)
            return
        self.request = None  # (read only to open the session)
        if rest:
            await gateway.receive(self.link.session, self.link.att, rest)

    # -- writing ---------------------------------------------------------------------------

    def __call__(self) -> None:
        """Wake the writer: the connection is its attachment's ``wake`` (not a bound method,
        which would be one more object for a publication to reach per subscriber)."""
        if self.scheduled:
            return
        if self.reading:  # by its client's message: written as the reading ends (data_received)
            self.woken = True
            return
        flusher = self.flusher
        if flusher.fanning and self.written_turn != flusher.turn:
            # A publication's subscribers are written as the fan-out reaches them (the
            # transport sends at once, see _handshake), the first time in a loop turn; any
            # later publication in the same turn waits for the flusher, batched.
            self.written_turn = flusher.write_now(self)
            return
        self.scheduled = True
        flusher.add(self)

    def flush(self) -> None:
        """Write everything the session has for this socket, then close if it ended."""
        self.scheduled = False
        link = self.link
        transport = self.transport
        if link is None or self.closing or transport is None or transport.is_closing():
            return
        codec = self.codec
        opcode = 0x2 if codec.binary else 0x1
        fd = self.fd
        while not self.paused:
            control, frames = link.take()
            if control or frames:
                data = ws_frame(opcode, encode_batch(codec, control, frames))
                if write(fd, transport, data) and transport.is_closing():  # (a failed write closed it)
                    break
            if not link.more(frames):
                break
        att = link.att
        if att.closed:
            if not self.paused:
                self._close(att.close_error or link.state.close_error)
            elif self.gate is not None:  # (a slow consumer, a flood)
                self.gate.end()

    def _write_out(self) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.reader is not None:
            send_out(transport, self.reader.to_send())
        elif self.ws is not None:
            send_out(transport, self.ws.data_to_send())

    def _refuse(self, error: LadderError) -> None:
        """Close for what the client did (logged and counted as every refusal)."""
        assert self.gateway is not None
        link, request = self.link, self.request
        client = request.who if request is not None else None
        self.gateway.refused("websocket", error, session=link.session if link else None, client=client)
        self._close(error)

    def _close(self, error: LadderError | None) -> None:
        """Send a close frame with the error's code; the client completes the handshake."""
        code, reason = (1000, "") if error is None else (error.ws_close, error.close_reason)
        self._close_with(code, reason)

    def _close_with(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self.inbox = None  # nothing more is applied from a connection being closed
        self._stop_timers()
        if self.gate is not None:
            self.gate.release(ENDING)  # (its answer to the close is read)
        if self.reader is not None:
            self.reader.close(code, reason)  # (at most 123 bytes: LadderError.close_reason)
            self._write_out()
        if self.link is not None:
            self.link.close()
        if self.transport is not None:
            later = self._abort if self.gate is None else self.gate.unanswered
            self.loop.call_later(1.0, later)  # if the client never answers the close

    def _stop_timers(self) -> None:
        if self.hello_timer is not None:
            self.hello_timer.cancel()
        if self.gate is not None:
            self.gate.untime()

    def _abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()
