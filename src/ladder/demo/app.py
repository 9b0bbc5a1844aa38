"""The demo chat's server: a short example of the server API.

Rooms are channels ``room:<name>`` with history (so joining shows recent messages) and
presence (so the member list is live); typing indicators go through ``typing:<name>``
channels that keep no history. The nickname a browser sends as its token becomes the
session's identity. The hub is at ``/ladder``; a WebSocket anywhere else is refused as the
hub refuses an unknown endpoint (404 ``not_found``, saying where the hub is).

:class:`~ladder.demo.netpanel.NetworkPanel` (demo plumbing, not API) makes the page's network
panel real for the browser that uses it, so a person can watch the client step down the
ladder and climb back. Run it with ``ladder demo`` (or ``ladder serve ladder.demo.app:app``).
"""

from __future__ import annotations

import re
import time
from importlib import resources
from typing import Any

from .. import ChannelOptions, Context, Identity, Ladder, LadderError
from ..server.auth import AuthRequest
from ..server.http import Request
from ..server.websocket import refuse_upgrade
from .netpanel import NetworkPanel

NICK = re.compile(r"^[\w .\-]{1,24}$")
"""Letters and digits of any script, ``_``, spaces, ``.`` and ``-`` (the page checks the same)."""
ROOM = re.compile(r"^[a-z0-9\-]{1,32}$")


def nickname(request: AuthRequest) -> Identity:
    """The demo trusts the nickname a client presents (a real app verifies a token)."""
    nick = (request.token or "").strip()
    if not NICK.match(nick):
        raise LadderError("unauthorized", "pick a nickname of 1 to 24 letters, digits, spaces, _ . or -")
    return Identity(user=nick, info={"nick": nick})


def create_hub() -> Ladder:
    hub = Ladder(
        authenticate=nickname,
        channels={
            "room:*": ChannelOptions(history_size=200, history_ttl=24 * 3600, presence=True),
            "typing:*": ChannelOptions(history_size=0),
        },
    )

    def room_of(data: Any) -> str:
        room = data.get("room") if isinstance(data, dict) else None
        if not isinstance(room, str) or not ROOM.match(room):
            raise LadderError("bad_request", "room names are 1 to 32 of a-z, 0-9 and -")
        return room

    @hub.on("chat.send")
    async def send(ctx: Context, data: Any) -> dict[str, Any]:
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str) or not 0 < len(text.strip()) <= 2000:
            raise LadderError("bad_request", "a message is 1 to 2000 characters")
        message = {"nick": ctx.user, "text": text.strip(), "ts": time.time()}
        sent_as = data.get("id")
        if isinstance(sent_as, str) and 0 < len(sent_as) <= 64:
            message["id"] = sent_as  # (the page shows it as sent once the room has this id)
        pub = await hub.publish(f"room:{room_of(data)}", message)
        return {"epoch": pub.epoch, "offset": pub.offset}

    @hub.on("chat.typing")
    async def typing(ctx: Context, data: Any) -> None:
        await hub.publish(f"typing:{room_of(data)}", {"nick": ctx.user})

    return hub


def _elsewhere(request: Request) -> LadderError:
    """What a WebSocket to another path than the hub's is told: where the hub is."""
    scheme = "https" if request.scheme in ("wss", "https") else "http"
    hub = f"{scheme}://{request.headers.get('host', 'localhost:8000')}/ladder"
    return LadderError("not_found", f"no such endpoint: the demo's Ladder hub is at {hub} (the client's URL)")


def _asset(name: str) -> bytes:
    return resources.files("ladder.demo").joinpath("static", name).read_bytes()


_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".css": b"text/css",
    ".js": b"text/javascript",
    ".png": b"image/png",
    ".svg": b"image/svg+xml",
}


class DemoApp:
    """The hub at ``/ladder`` and the chat page at ``/``: the smallest possible ASGI router."""

    def __init__(self, hub: Ladder) -> None:
        self.hub = hub

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path: str = scope.get("path", "/")
        if scope["type"] == "lifespan" or path == "/ladder" or path.startswith("/ladder/"):
            if scope["type"] != "lifespan":
                scope = {**scope, "root_path": scope.get("root_path", "") + "/ladder"}
            await self.hub(scope, receive, send)
            return
        if scope["type"] == "websocket":
            request = Request(scope)
            await refuse_upgrade(request, send, _elsewhere(request))
            return
        if scope["type"] != "http":
            return
        name = "index.html" if path == "/" else path.removeprefix("/static/")
        suffix = name[name.rfind(".") :] if "." in name else ""
        try:
            if "/" in name or suffix not in _TYPES:
                raise FileNotFoundError(name)
            body, status, kind = _asset(name), 200, _TYPES[suffix]
        except FileNotFoundError:
            body, status, kind = b"not found", 404, b"text/plain"
        headers = [(b"content-type", kind), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_app() -> NetworkPanel:
    return NetworkPanel(DemoApp(create_hub()))


app = create_app()
"""For ``ladder serve ladder.demo.app:app`` (what ``ladder demo`` runs)."""
