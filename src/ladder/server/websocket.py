"""WebSocket rung: frames both ways on one socket.

The first client message must be a ``hello``; its message type fixes the encoding of
everything the server writes (text: JSON, binary: msgpack). The handler's own coroutine
reads, and a task applies what it read, in order; one writer task per connection drains
the session to the socket. Heartbeats are ``ping`` frames the client answers with
``pong`` (visible to browser code, unlike protocol-level pings); a client silent for two
heartbeats is dropped, however long one of its own messages takes to apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Final

from ..protocol.codec import JSON, MSGPACK, Codec
from ..protocol.errors import LadderError
from ..protocol.frames import Ack, ClientFrame, Hello, Publish, Refused, decode_client_frames
from ..protocol.session import Phase
from .control import AT_ONCE
from .cutoff import ByeWait
from .gateway import Gateway
from .http import Headers, Message, Receive, Request, Send, error_body, origin_refusal
from .link import Link, encode_batch

log = logging.getLogger("ladder")


def _payload(message: Message) -> tuple[bytes | str, Codec]:
    data = message.get("bytes")
    if data is not None:
        return data, MSGPACK
    return message.get("text") or "", JSON


async def _close(send: Send, error: LadderError | None) -> None:
    """Close with the error's code and ``code: reason`` (1000 when the session ended well); a
    socket already gone is not news (the reader notices too)."""
    code, reason = (1000, "") if error is None else (error.ws_close, error.close_reason)
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": code, "reason": reason})


async def refuse_upgrade(request: Request, send: Send, error: LadderError, headers: Headers = ()) -> None:
    """Refuse a WebSocket upgrade with the error's HTTP status and JSON body (protocol §8).

    Needs the ASGI ``websocket.http.response`` extension (uvicorn has it); without it the
    server answers its own 403 with no body.
    """
    if "websocket.http.response" not in request.extensions:
        await _close(send, error)
        return
    body = error_body(error)
    with contextlib.suppress(Exception):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": error.http_status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})


async def open_link(
    gateway: Gateway,
    request: Request,
    data: bytes | str,
    codec: Codec,
    wake: Callable[[], None] | None = None,
) -> tuple[Link, list[ClientFrame]]:
    """Open or resume the session the first message's hello names (both WebSocket drivers).

    Returns the link and the frames that followed the hello in the same message (those that
    could not be read are refused once the session is open, as in any later message: an
    unknown frame beside the hello closed the connection); raises :class:`LadderError` when
    the hello is refused.
    """
    frames = decode_client_frames(codec, data, gateway.settings.limits.max_frame_size)
    if frames and isinstance(frames[0], Refused):
        raise frames[0].error  # (the hello's own refusal)
    if not frames or not isinstance(frames[0], Hello):
        raise LadderError("bad_request", "the first frame must be a hello")
    hello = frames[0]
    gateway.admit(request.address)
    auth = request.auth_request(hello.token, "websocket")
    try:
        link = await gateway.open(hello, auth, "websocket", streaming=True, wake=wake)
    except LadderError:
        raise
    except Exception:  # a bug (an authenticate hook's, say): logged, and refused as HTTP's 500 is
        log.exception("opening a websocket session failed")
        raise LadderError("internal") from None
    return link, frames[1:]


def decode_message(
    gateway: Gateway, link: Link, data: bytes | str, codec: Codec
) -> tuple[list[ClientFrame], LadderError | None]:
    """Decode a later client message (both WebSocket drivers): its frames, those refused among
    them in their places (:class:`Refused`: answered with ``err`` frames when offered, a
    message that would not decode as one), or the error that must end the connection."""
    limit = gateway.settings.limits.max_frame_size
    try:
        if len(data) > limit:
            raise LadderError("frame_too_large", f"message of {len(data)} bytes exceeds {limit}")
        return decode_client_frames(codec, data, limit), None
    except LadderError as exc:
        if exc.fatal:
            gateway.refused("websocket", exc, session=link.session)
            return [], exc
        return [Refused(exc.with_traceback(None))], None


async def apply_message(
    gateway: Gateway,
    link: Link,
    data: bytes | str,
    codec: Codec,
    queued: deque[tuple[bytes, Codec] | list[ClientFrame]] | None = None,
) -> LadderError | None:
    """Apply a later client message (both WebSocket drivers): bad frames are answered with
    ``err`` frames; returns the error that must end the connection, if any (``queued``: see
    :func:`apply_frames`)."""
    frames, fatal = decode_message(gateway, link, data, codec)
    if fatal is not None:
        return fatal
    await apply_frames(gateway, link, frames, queued)
    return None


async def apply_frames(
    gateway: Gateway,
    link: Link,
    frames: list[ClientFrame],
    queued: deque[tuple[bytes, Codec] | list[ClientFrame]] | deque[list[ClientFrame]] | None = None,
) -> None:
    """Apply a client message's frames.

    ``queued``: messages the driver read meanwhile, in order, raw or decoded. Those right
    behind this one that hold only publications (and acks) are taken and offered with it,
    so the session sees the whole run of publications waiting, not one message at a time:
    they then go to the engine together (``together.py``). Any other message is left for
    its turn (a batch's rules, such as a refusal for the rate ending it, stay per message
    for everything but publications, which the client sends again either way)."""
    limit = gateway.settings.limits.max_frame_size
    while queued:
        head = queued[0]
        more = head if isinstance(head, list) else _decoded(head[1], head[0], limit)
        if more is None or not all(type(frame) in _TOGETHER for frame in more):
            break
        queued.popleft()
        frames = frames + more if frames else more
    if frames:
        await gateway.receive(link.session, link.att, frames)


def to_queue(gateway: Gateway, link: Link, frames: list[ClientFrame], busy: bool) -> list[ClientFrame]:
    """What of a message waits for the connection's applying task (both drivers): while it
    is ``busy``, all but the acks, pings and pongs (:func:`arrived_meanwhile`); otherwise
    nothing if the message waits for nothing (applied now, with no task), else all of it."""
    if busy:
        return arrived_meanwhile(gateway, link, frames)
    if frames and gateway.receive_now(link.session, link.att, frames):
        return []
    return frames


def arrived_meanwhile(gateway: Gateway, link: Link, frames: list[ClientFrame]) -> list[ClientFrame]:
    """A message that arrived while an earlier one of its connection is being applied,
    perhaps in a handler that takes minutes (both WebSocket drivers): the client is heard
    (its connection is not silent, whatever the handler takes) and its acks, pings and pongs
    are applied now (a liveness check's pong is not held behind the handler). Returns the
    rest, which waits for its turn."""
    link.att.heard(gateway.settings.clock())
    now = [frame for frame in frames if type(frame) in AT_ONCE]
    if not now:
        return frames
    gateway.receive_now(link.session, link.att, now)
    if link.session.state.phase is Phase.CLOSED:
        return []  # (a bye: nothing of the session waits any more)
    return [frame for frame in frames if type(frame) not in AT_ONCE]


_TOGETHER: Final = frozenset({Publish, Ack})
"""What a message may hold to be offered with the one before it (see :func:`apply_message`)."""


def _decoded(codec: Codec, data: bytes, limit: int) -> list[ClientFrame] | None:
    """``decode_client_frames`` without raising: None for a message it refuses whole."""
    if len(data) > limit:
        return None
    try:
        return decode_client_frames(codec, data, limit)
    except LadderError:
        return None


async def serve_websocket(gateway: Gateway, request: Request, receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    settings = gateway.settings
    error = origin_refusal(settings.allowed_origins, request)
    if error is not None:
        gateway.refused("websocket", error, client=request.who, origin=request.origin, own=request.own_origin)
        await refuse_upgrade(request, send, error)
        return
    error = settings.not_offered(("websocket",))
    if error is not None:
        gateway.refused("websocket", error, client=request.who)
        await refuse_upgrade(request, send, error)
        return
    try:
        await send({"type": "websocket.accept"})
    except OSError:  # (ASGI's word for a client that left: a browser gave up a slow upgrade)
        log.debug("websocket from %s went away before its upgrade was accepted", request.who)
        return
    try:
        async with asyncio.timeout(settings.limits.hello_timeout):
            message = await receive()
    except TimeoutError:
        error = LadderError("bad_request", "no hello frame in time")
        gateway.refused("websocket", error, client=request.who)
        await _close(send, error)
        return
    if message["type"] != "websocket.receive":
        return
    data, codec = _payload(message)
    try:
        link, rest = await open_link(gateway, request, data, codec)
    except LadderError as exc:
        gateway.refused("websocket", exc, client=request.who)
        with contextlib.suppress(Exception):  # say why in a frame: close reasons are easy to lose
            body = codec.encode({"t": "err", **exc.body()})
            await send(
                {"type": "websocket.send", **({"bytes": body} if codec.binary else {"text": body.decode()})}
            )
        await _close(send, exc)
        return
    bye = ByeWait(link.att, link.waker, request.extensions)  # (a client that reads nothing is cut off)
    writer = asyncio.get_running_loop().create_task(_write(link, send, codec), name="ladder-ws-writer")
    try:
        with bye:
            await _read(gateway, link, receive, rest)
    finally:
        link.close()
        link.gone()
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            await asyncio.wait_for(writer, timeout=1.0)


async def _read(gateway: Gateway, link: Link, receive: Receive, first: list[ClientFrame]) -> None:
    """Read the client's messages (``first``: what came with the hello) while a task applies
    them in order, so that what arrives while one is in a handler is still read
    (:func:`arrived_meanwhile`); past ``max_post_size`` bytes queued, reading waits."""
    queue: deque[list[ClientFrame]] = deque()
    applier: asyncio.Task[None] | None = None
    queued, limit = 0, gateway.settings.limits.max_post_size
    frames, size = first, 0
    while True:
        busy = applier is not None and not applier.done()
        frames = to_queue(gateway, link, frames, busy)
        if frames:
            queue.append(frames)
            queued = queued + size if busy else size
            if not busy:
                applying = _apply(gateway, link, queue)
                applier = asyncio.get_running_loop().create_task(applying, name="ladder-ws-apply")
                gateway.inbound.tasks.borrow(applier)
        if applier is not None and queued > limit:
            await asyncio.wait((applier,))  # (it ends once all is applied)
        if link.att.closed:
            return
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        data, codec = _payload(message)
        frames, fatal = decode_message(gateway, link, data, codec)
        if fatal is not None:
            link.gone(fatal)
            return
        size = len(data)


async def _apply(gateway: Gateway, link: Link, queue: deque[list[ClientFrame]]) -> None:
    """Apply queued messages in order; exists only while there are some."""
    try:
        while queue:
            await apply_frames(gateway, link, queue.popleft(), queue)
    except Exception:
        log.exception("websocket: applying a message failed")
        link.gone(LadderError("internal"))


async def _write(link: Link, send: Send, codec: Codec) -> None:
    key = "bytes" if codec.binary else "text"
    try:
        while True:
            control, frames = link.take()
            if control or frames:
                batch = encode_batch(codec, control, frames)
                await send({"type": "websocket.send", key: batch if codec.binary else batch.decode()})
                if not link.more(frames) and not link.att.closed:
                    await link.waker.wait()  # that was all: sleep (at once back if woken meanwhile)
                continue
            if link.att.closed:
                error = link.att.close_error
                await _close(send, link.state.close_error if error is None else error)
                return
            await link.waker.wait()
    except Exception as exc:  # the socket went away under us; the reader notices too
        log.debug("websocket writer stopped: %r", exc)
