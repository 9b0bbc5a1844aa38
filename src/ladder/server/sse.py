"""Server-Sent Events rung: a long response streaming frames down; POST ``/send`` goes up.

Each sequenced frame is one event whose ``id:`` is its session sequence number, so a
browser's automatic reconnect sends ``Last-Event-ID`` and resumes exactly there. Control
frames (welcome, ping, ack) are events without an ``id:``. The response opens with a
comment of padding (``sse_padding`` bytes) that pushes the first events through proxies
that hold back small responses, and says ``X-Accel-Buffering: no`` to nginx.

Heartbeats are ``ping`` events rather than comments: ``EventSource`` hides comments from
scripts, and the browser client needs to see traffic to tell a live stream from a stuck one.
SSE is text, so frames are JSON (bytes travel as ``{"$b": base64}``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from ..protocol.codec import JSON
from ..protocol.outframes import OutFrame
from .cutoff import ByeWait
from .gateway import Gateway
from .http import Receive, Request, Send, cors_headers
from .link import start_watch, stop_watch


def _events(control: Sequence[dict[str, object]], frames: Sequence[tuple[int, OutFrame]]) -> bytes:
    parts = [b"data: %b\n\n" % JSON.encode(body) for body in control]
    parts.extend(b"id: %d\ndata: %b\n\n" % (seq, frame.encode(JSON, seq)) for seq, frame in frames)
    return b"".join(parts)


async def serve_sse(gateway: Gateway, request: Request, receive: Receive, send: Send) -> None:
    hello = request.hello(ack_header="last-event-id")
    link = await gateway.open(hello, request.auth_request(hello.token, "sse"), "sse", streaming=True)
    settings = gateway.settings
    watcher = start_watch(receive, link)
    try:
        with ByeWait(link.att, link.waker, request.extensions):  # (a client that reads nothing is cut off)
            headers = [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache, no-store, no-transform"),
                (b"x-accel-buffering", b"no"),
                *cors_headers(settings.allowed_origins, request),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            prelude = (
                b":" + b" " * settings.sse_padding + b"\n\nretry: 1000\n\n"
                if settings.sse_padding
                else b"retry: 1000\n\n"
            )
            first = True
            while True:
                control, frames = link.take()
                if control or frames or first:
                    chunk = _events(control, frames)
                    if first:
                        chunk, first = prelude + chunk, False
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    continue
                if link.att.closed:
                    break
                await link.waker.wait()
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        link.close()
        await stop_watch(watcher)
