"""Polling rungs: ``GET /longpoll`` (held until frames arrive or ``poll_timeout``) and
``GET /poll`` (answered at once). Upstream frames go by ``POST /send``.

Each GET is a short-lived attachment starting at the ``ack`` it carries: a response lost
on the way is simply sent again by the next GET. ``open=1`` (or no ``sid``) asks for the
welcome first, which is how a client opens the rung. The body is a batch in the encoding
named by ``enc`` (``json``: newline-delimited; ``msgpack``: concatenated, no base64), gzip
compressed above ``gzip_min_size`` when the client accepts it.
"""

from __future__ import annotations

from ..protocol.codec import codec_named
from .driver import Link, encode_batch, start_watch, stop_watch
from .http import Receive, Request, Send, cors_headers, respond
from .hub import Ladder


async def serve_poll(hub: Ladder, request: Request, receive: Receive, send: Send, *, hold: bool) -> None:
    kind = "longpoll" if hold else "poll"
    codec = codec_named(request.query.get("enc"))
    hello = request.hello()
    greet = hello.sid is None or request.query.get("open") == "1"
    link = await Link.open(
        hub, hello, request.auth_request(hello.token, kind), kind, streaming=False, greet=greet
    )
    try:
        control, frames = link.take()
        if hold and not control and not frames:
            watcher = start_watch(receive, link)
            try:
                while not control and not frames and not link.att.closed:
                    await link.waker.wait()
                    control, frames = link.take()
            finally:
                await stop_watch(watcher)
        body = encode_batch(codec, control, frames)
    finally:
        link.close()
    gzip_min = hub.gzip_min_size if request.accepts_gzip() else None
    await respond(
        send,
        200,
        body,
        content_type=codec.content_type.encode(),
        headers=cors_headers(hub.allowed_origins, request),
        gzip_min=gzip_min,
    )
