"""Demo plumbing: the network panel that blocks rungs for real, per browser.

Not part of Ladder's API: it exists so a person can watch the client step down the ladder
and climb back. See :class:`NetworkPanel`.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from ..server.auth import parse_cookies

if TYPE_CHECKING:
    from .app import DemoApp

BLOCKS = ("websocket", "sse", "buffered", "offline")
_TRANSPORT_ENDPOINTS = {"ws", "sse", "longpoll", "poll", "send"}


def _affected(endpoint: str, blocks: set[str]) -> bool:
    """Whether ``blocks`` cut (and refuse, except buffering) a connection to ``endpoint``."""
    if "offline" in blocks:
        return True
    if endpoint == "ws":
        return "websocket" in blocks
    return endpoint == "sse" and bool(blocks & {"sse", "buffered"})


class NetworkPanel:
    """ASGI middleware that makes the page's network panel real, per browser.

    The page gives its browser an id (cookie ``ladder-net``) and POSTs ``{"block": [...]}`` to
    ``/net``. Requests to the hub's transports carrying that cookie then meet a hostile network:

    * ``websocket``: the upgrade is refused (HTTP 403), as by a proxy that does not speak it;
    * ``sse``: ``GET sse`` is refused (HTTP 503);
    * ``buffered``: SSE streams pass their first write (padding and welcome), then the bytes are
      held back, as by a buffering proxy: the client's ping/pong proof (protocol §3.4) fails;
    * ``offline``: every transport request is refused.

    Switching a block on cuts the live connections it affects (their disconnect is reported to
    the hub, which ends them). Switching it off changes nothing until the client tries again.
    """

    def __init__(self, app: DemoApp) -> None:
        self.app = app
        self.hub = app.hub  # `ladder demo --engine` looks for it
        self.blocks: dict[str, set[str]] = {}
        self.live: dict[str, set[tuple[str, asyncio.Event]]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        cookies = parse_cookies(dict(scope.get("headers", ())).get(b"cookie", b"").decode("latin-1"))
        browser = cookies.get("ladder-net")
        path: str = scope.get("path", "")
        if path == "/net" and scope["type"] == "http":
            await self._control(browser, scope, receive, send)
            return
        endpoint = path.rsplit("/", 1)[-1]
        blocks = self.blocks.get(browser or "", set())
        if not browser or not path.startswith("/ladder/") or endpoint not in _TRANSPORT_ENDPOINTS:
            await self.app(scope, receive, send)
        elif _affected(endpoint, blocks - {"buffered"}):
            await self._refuse(scope, send)
        else:
            await self._guard(browser, endpoint, scope, receive, send)

    async def _control(self, browser: str | None, scope: Any, receive: Any, send: Any) -> None:
        """``GET /net``: this browser's blocks; ``POST /net {"block": [...]}``: set them."""
        if browser is None:
            await _respond(send, 400, {"error": "no ladder-net cookie"})
            return
        if scope["method"] == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            wanted = set(json.loads(body or b"{}").get("block", [])) & set(BLOCKS)
            self.blocks[browser] = wanted
            for endpoint, cut in self.live.get(browser, set()):
                if _affected(endpoint, wanted):
                    cut.set()
        await _respond(send, 200, {"block": sorted(self.blocks.get(browser, set()))})

    async def _refuse(self, scope: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
        else:
            await _respond(send, 503, {"error": "blocked by the demo's network panel"})

    async def _guard(self, browser: str, endpoint: str, scope: Any, receive: Any, send: Any) -> None:
        """Run the request; cut it when a block affecting it is switched on."""
        cut = asyncio.Event()
        entry = (endpoint, cut)
        self.live.setdefault(browser, set()).add(entry)
        if endpoint == "sse" and "buffered" in self.blocks.get(browser, set()):
            send = _buffering(send)
        try:
            await self.app(scope, _until(cut, receive, scope["type"]), send)
        finally:
            self.live[browser].discard(entry)


def _until(cut: asyncio.Event, receive: Any, kind: str) -> Any:
    """``receive``, except that it reports a disconnect once ``cut`` is set."""

    async def guarded() -> Any:
        if not cut.is_set():
            message = asyncio.ensure_future(receive())
            stop = asyncio.ensure_future(cut.wait())
            try:
                done, _ = await asyncio.wait({message, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                # Also when the request is cancelled (the server stopping): a task left
                # pending here would be destroyed with the loop, and logged as such.
                stop.cancel()
                if not message.done():
                    message.cancel()
            if message in done:
                return message.result()
        if kind == "websocket":
            return {"type": "websocket.disconnect", "code": 1006}
        return {"type": "http.disconnect"}

    return guarded


def _buffering(send: Any) -> Any:
    """A ``send`` that passes the start of a response, then holds the body back (up to 1 MiB)."""
    held: list[bytes] = []
    writes = 0

    async def buffered(message: Any) -> None:
        nonlocal writes
        if message["type"] != "http.response.body":
            await send(message)
            return
        writes += 1
        if writes == 1:
            await send(message)
            return
        held.append(message.get("body", b""))
        if not message.get("more_body") or sum(map(len, held)) >= 1 << 20:
            await send({**message, "body": b"".join(held)})
            held.clear()

    return buffered


async def _respond(send: Any, status: int, body: dict[str, Any]) -> None:
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
