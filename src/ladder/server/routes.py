"""The ASGI entry point: routes a request under the hub's mount path to its transport.

Endpoints (relative to wherever the hub is mounted):

======================  ==================================================
``GET  ws`` (upgrade)   WebSocket rung
``GET  sse``            Server-Sent Events rung
``GET  longpoll``       long-polling rung (held up to ``poll_timeout``)
``GET  poll``           short-polling rung (answers at once)
``POST send``           upstream frames for the HTTP rungs
``GET  client.js``      the browser client (its modules ``<name>.js`` and ``client.d.ts`` beside it)
``GET  health``         liveness for load balancers (503 while the engine is unreachable)
``GET  metrics``        Prometheus metrics
======================  ==================================================

Nothing raised below this point reaches the ASGI server: refusals become their documented
error response, bugs a logged 500 with a JSON body.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import math
from importlib import resources
from typing import Any

import orjson

from ..errors import ConfigurationError
from ..protocol.errors import LadderError
from .http import (
    BodyNotRead,
    Message,
    Receive,
    Request,
    Scope,
    Send,
    cors_headers,
    drop_body,
    error_body,
    origin_allowed,
    origin_refusal,
    respond,
)
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .node import Node
from .polling import serve_poll
from .sse import serve_sse
from .upstream import serve_send
from .websocket import refuse_upgrade, serve_websocket

log = logging.getLogger("ladder")

# The browser client: client.js is its entry point and imports the other modules beside it.
_STATIC = {
    **{
        shipped.name: b"text/javascript; charset=utf-8"
        for shipped in resources.files("ladder.static").iterdir()
        if shipped.name.endswith(".js")
    },
    "client.d.ts": b"application/typescript; charset=utf-8",
}


async def handle(node: Node, scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    trust = node.settings.limits.trust_forwarded_for
    if kind == "http":
        await _http(node, Request(scope, trust_forwarded=trust), receive, send)
    elif kind == "websocket":
        request = Request(scope, trust_forwarded=trust)
        try:
            if request.endpoint != "ws":
                await refuse_upgrade(request, send, LadderError("not_found", "no such endpoint"))
                return
            if node.native_ws_path is not None:
                _not_native(node, scope.get("root_path", "") + request.path)
            await serve_websocket(node.gateway, request, receive, send)
        except OSError as exc:  # (a send to a client that left: not the server's failure)
            log.debug("websocket from %s: the client went away (%r)", request.who, exc)
        except Exception:
            log.exception("websocket handler failed")
    elif kind == "lifespan":
        await _lifespan(node, receive, send)


def _not_native(node: Node, path: str) -> None:
    """A WebSocket of the hub that ``ladder serve``'s native driver did not take: its path is
    not the one the driver was given (``--native-ws-path``, checked against the app's routes
    where it has some, not in every framework). Served all the same, through ASGI, at its
    cost; said once, with the fix."""
    native, node.native_ws_path = node.native_ws_path, None
    log.warning(
        "a WebSocket reached the hub at %s through ASGI: ladder serve's native driver serves %s "
        "(--native-ws-path); pass --native-ws-path %s to serve it natively",
        path,
        native,
        path.rstrip("/"),
    )


async def _lifespan(node: Node, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await node.start()
            except ConfigurationError as exc:  # (a setting that cannot work: one line says why)
                log.error("startup failed: %s", exc)
                await send({"type": "lifespan.startup.failed", "message": ""})  # (said: not twice)
                return
            except Exception as exc:
                log.exception("startup failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await node.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


_ROUTES: dict[tuple[str, str], Any] = {
    ("GET", "sse"): serve_sse,
    ("GET", "longpoll"): lambda gateway, req, rec, snd: serve_poll(gateway, req, rec, snd, hold=True),
    ("GET", "poll"): lambda gateway, req, rec, snd: serve_poll(gateway, req, rec, snd, hold=False),
    ("POST", "send"): serve_send,
}


_ALLOW: dict[str, str] = {
    **dict.fromkeys(_STATIC, "GET, HEAD, OPTIONS"),
    **{name: f"{method}, OPTIONS" for method, name in _ROUTES},
    "ws": "GET, OPTIONS",
    "health": "GET, HEAD, OPTIONS",
    "metrics": "GET, OPTIONS",
}
"""Every endpoint and the methods it answers: another method on one of them is
``method_not_allowed`` (with this as its ``Allow`` header, RFC 9110 §15.5.6), not ``not_found``."""


async def _http(node: Node, request: Request, receive: Receive, send: Send) -> None:
    started = False
    body_read = False
    allowed = node.settings.allowed_origins

    async def tracked(message: Message) -> None:
        nonlocal started
        started = True
        await send(message)

    async def watched() -> Message:
        nonlocal body_read
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            body_read = True
        return message

    try:
        endpoint = request.endpoint
        if request.method == "OPTIONS":
            if endpoint not in _ALLOW:  # (not "origin not allowed": no origin makes it exist)
                raise LadderError("not_found", f"no endpoint {endpoint!r}")
            await _preflight(allowed, request, tracked)
            return
        if endpoint in _STATIC and request.method in ("GET", "HEAD"):
            await _static(endpoint, request, tracked, cors_headers(allowed, request))
            return
        if endpoint == "metrics" and request.method == "GET":
            await respond(tracked, 200, node.metrics.render(), content_type=METRICS_TYPE)
            return
        if endpoint == "health" and request.method in ("GET", "HEAD"):  # (balancers check with either)
            if not node.stopped:  # shutting down: 503, so that the balancer looks elsewhere
                await node.start()
            health = node.health()
            await respond(tracked, 200 if health["ok"] else 503, orjson.dumps(health))
            return
        route = _ROUTES.get((request.method, endpoint))
        if route is None and endpoint == "ws" and request.method == "GET":
            raise NotUpgraded()
        if route is None:
            if endpoint in _ALLOW:
                allow = _ALLOW[endpoint]
                raise LadderError("method_not_allowed", f"{request.method} is not allowed here: {allow}")
            raise LadderError("not_found", f"no endpoint {endpoint!r}")
        refused = origin_refusal(allowed, request)
        if refused is not None:
            raise refused
        node.gateway.admit(request.address)
        await route(node.gateway, request, watched, tracked)
    except LadderError as exc:
        foreign = exc.code == "origin_not_allowed" and not origin_allowed(allowed, request)
        origin, own = (request.origin, request.own_origin) if foreign else (None, None)
        node.refused(request.endpoint or "http", exc, client=request.who, origin=origin, own=own)
        if not started:
            headers = cors_headers(allowed, request)
            if foreign and origin is not None and request.method != "OPTIONS":
                # The refused page may read why (this error, nothing else): a cross-origin
                # client then gives up naming the fix instead of retrying blind.
                headers = [
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-allow-credentials", b"true"),
                    (b"vary", b"Origin"),
                ]
            if exc.retry_after is not None:
                headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode()))
            if isinstance(exc, NotUpgraded):
                headers.append((b"upgrade", b"websocket"))
            if exc.code == "method_not_allowed" and request.endpoint in _ALLOW:
                headers.append((b"allow", _ALLOW[request.endpoint].encode()))
            # A body left unread (a refusal before it was read: the origin, the request rate)
            # is read and dropped first, as the client most often writes it all before
            # reading; one that does not end soon is answered on a connection then closed.
            if isinstance(exc, BodyNotRead) or not (
                body_read or await drop_body(watched, request, node.settings.limits.max_post_size)
            ):
                headers.append((b"connection", b"close"))
            await respond(send, exc.http_status, error_body(exc), headers=headers)
    except ConnectionError:
        pass  # the client went away mid-request
    except Exception:
        log.exception("request to %s failed", request.path)
        if not started:
            await respond(send, 500, error_body(LadderError("internal")))


class NotUpgraded(LadderError):
    """A plain GET of the WebSocket endpoint: ``426`` naming the usual cause, a proxy that
    drops ``Upgrade`` and ``Connection`` (a 404 sent clients looking for a wrong mount path)."""

    def __init__(self) -> None:
        super().__init__(
            "bad_request",
            "this endpoint takes WebSocket upgrades only, and this request came without "
            "'Upgrade: websocket': a proxy on the way may drop the Upgrade and Connection headers "
            "(nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; "
            'proxy_set_header Connection "upgrade"; see deploy/)',
        )

    @property
    def http_status(self) -> int:
        return 426


async def _preflight(allowed: tuple[str, ...] | None, request: Request, send: Send) -> None:
    headers = cors_headers(allowed, request)
    if not headers:
        if request.origin is None:  # (a preflight always has one: this is not a browser's)
            raise LadderError("origin_not_allowed", "a CORS preflight without an Origin header")
        refused = origin_refusal(allowed, request)
        if refused is not None:
            raise refused
        # The hub's own origin (it said "not allowed"): a browser never preflights it, and
        # its requests need no CORS headers.
        await respond(send, 204)
        return
    headers += [
        (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
        (b"access-control-allow-headers", b"content-type, authorization, x-ladder-rt, last-event-id"),
        (b"access-control-max-age", b"600"),
    ]
    await respond(send, 204, headers=headers)


@functools.cache
def _asset(name: str) -> tuple[bytes, bytes, bytes]:
    """A shipped file, its gzip form and its ETag (read once per process)."""
    try:
        body = resources.files("ladder.static").joinpath(name).read_bytes()
    except (FileNotFoundError, ModuleNotFoundError):
        raise LadderError("not_found", f"{name} is not shipped in this build") from None
    etag = b'"' + hashlib.sha256(body).hexdigest()[:20].encode() + b'"'
    return body, gzip.compress(body, compresslevel=9), etag


async def _static(name: str, request: Request, send: Send, cors: list[tuple[bytes, bytes]]) -> None:
    """A shipped file; with CORS headers for allowed other origins, so that a page there can
    ``import`` the client from the hub it talks to."""
    body, zipped, etag = _asset(name)
    headers = [
        (b"content-type", _STATIC[name]),
        (b"cache-control", b"no-cache"),
        (b"etag", etag),
        *(pair for pair in cors if pair[0] != b"vary"),
        (b"vary", b"Accept-Encoding, Origin" if cors else b"Accept-Encoding"),
    ]
    if request.headers.get("if-none-match") == etag.decode():
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    if request.accepts_gzip():
        body = zipped
        headers.append((b"content-encoding", b"gzip"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body if request.method == "GET" else b""})
