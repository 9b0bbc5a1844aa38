"""Polling rungs: ``GET /longpoll`` (held until frames arrive or ``poll_timeout``) and
``GET /poll`` (answered at once). Upstream frames go by ``POST /send``.

Each GET is a short-lived attachment starting at the ``ack`` it carries: a response lost
on the way is simply sent again by the next GET. ``open=1`` (or no ``sid``) asks for the
welcome first, which is how a client opens the rung. The body is a batch in the encoding
named by ``enc`` (``json``: newline-delimited; ``msgpack``: concatenated, no base64), gzip
compressed above ``gzip_min_size`` when the client accepts it.

A poll for a session another process holds is forwarded there (see :mod:`.cluster`): the
owner runs :func:`poll_once` and this process writes the answer.
"""

from __future__ import annotations

from typing import Any

from ..protocol.codec import Codec, codec_named
from ..protocol.errors import LadderError
from .cluster import Elsewhere
from .cutoff import ByeWait
from .gateway import Gateway
from .http import Receive, Request, Send, cors_headers, respond
from .link import Link, encode_batch, start_watch, stop_watch, watch_disconnect


async def poll_once(link: Link, *, hold: bool, codec: Codec, receive: Receive | None = None) -> bytes:
    """Serve one poll on an attached link: what is waiting now, or (``hold``) the first
    thing that arrives before the link is released. Detaches the link.

    With ``receive`` (the ASGI request's), a poll that has to wait watches for the client
    going away meanwhile; one answered at once starts no watch (a task less per poll).
    """
    watcher = None
    try:
        control, frames = link.take()
        if hold and not control and not frames and not link.att.closed:
            if receive is not None:
                watcher = start_watch(receive, link)
            while not control and not frames and not link.att.closed:
                await link.waker.wait()
                control, frames = link.take()
        ended = link.att.close_error
        if ended is not None and ended is link.state.sent_away and not control and not frames:
            # Sent away: the client resumes, as a WebSocket closed so would (a copy: the error
            # is shared by every transport the session ended). A poll ended otherwise (the
            # session moved) is answered empty, and the next one finds the session.
            raise LadderError.of(ended.body())
        return encode_batch(codec, control, frames)
    finally:
        link.close()
        if watcher is not None:
            await stop_watch(watcher)


def held_for(text: str | None) -> float | None:
    """A long poll's ``hold`` (ms, a whole number from 0) in seconds, or None when absent
    (the server's ``poll_timeout``; more than it is the same)."""
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()):
        raise LadderError("bad_frame", "query field 'hold' must be ms, a whole number from 0 (such as 10000)")
    return int(text) / 1000 if len(text) <= 12 else None  # (more than a day and a half: the server's)


def _opening(value: str | None) -> bool:
    """``open=1`` (the answer begins with the welcome) or no ``open``; any other value is
    refused (``open=0`` or ``open=`` read as absent gave no welcome, and no word of it)."""
    if value is not None and value != "1":
        raise LadderError("bad_request", f"query field 'open' must be 1, or left out: {value[:20]!r}")
    return value == "1"


async def serve_poll(gateway: Gateway, request: Request, receive: Receive, send: Send, *, hold: bool) -> None:
    transport = "longpoll" if hold else "poll"
    codec = codec_named(request.query.get("enc"))
    hello = request.hello()
    held = held_for(request.query.get("hold")) if hold else None
    greet = _opening(request.query.get("open")) or hello.sid is None
    auth = request.auth_request(hello.token, transport)
    try:
        link = await gateway.open(hello, auth, transport, streaming=False, greet=greet, hold=held)
    except Elsewhere as away:
        assert hello.sid is not None and hello.rt is not None
        body = await gateway.router.forward_poll(
            away.node,
            hello.sid,
            hello.rt,
            transport=transport,
            ack=hello.ack,
            greet=greet,
            encoding=codec.name,
            disconnected=_disconnect(receive),
            hold=held,
        )
    else:
        with ByeWait(link.att, link.waker, request.extensions):  # (its answer may be the last)
            body = await poll_once(link, hold=hold, codec=codec, receive=receive)
            await _answer(gateway, request, send, body, codec)
        return
    await _answer(gateway, request, send, body, codec)


async def _answer(gateway: Gateway, request: Request, send: Send, body: bytes, codec: Codec) -> None:
    settings = gateway.settings
    gzip_min = settings.gzip_min_size if request.accepts_gzip() else None
    await respond(
        send,
        200,
        body,
        content_type=codec.content_type.encode(),
        headers=cors_headers(settings.allowed_origins, request),
        gzip_min=gzip_min,
    )


async def serve_forwarded_poll(gateway: Gateway, message: dict[str, Any]) -> dict[str, Any]:
    """Serve a poll another node forwarded here (this node holds the session)."""
    router = gateway.router
    session = await router.route(message["sid"], message["rt"], stream=False, forwarded=True)
    transport = str(message["kind"])
    refused = gateway.settings.not_offered((transport,))
    if refused is not None:
        raise refused
    ack, greet = int(message["ack"]), bool(message["greet"])
    hold = message.get("hold")
    att = gateway.attach(
        session, transport, streaming=False, ack=ack, resumed=True, greet=greet,
        hold=float(hold) if isinstance(hold, int | float) else None,
    )
    link = gateway.link(session, att)
    with router.cluster.holding(message, link.gone):
        body = await poll_once(link, hold=transport == "longpoll", codec=codec_named(message["enc"]))
    return {"body": body}


async def _disconnect(receive: Receive) -> None:
    """Returns when the HTTP client has gone away."""
    while (await receive())["type"] != "http.disconnect":
        pass


__all__ = ["poll_once", "serve_forwarded_poll", "serve_poll", "watch_disconnect"]
