"""Small ASGI helpers shared by the transports: request view, origin policy, responses."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qsl, urlsplit

import orjson

from ..protocol.errors import LadderError
from ..protocol.frames import Hello, parse_client_frame
from .auth import AuthRequest, bearer_token, parse_cookies

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
Headers: TypeAlias = Sequence[tuple[bytes, bytes]]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _last(header: str | None) -> str | None:
    """The last entry of a comma-separated header (None if there is none)."""
    if header is None:
        return None
    return header.rsplit(",", 1)[-1].strip() or None


def accepts_coding(header: str, coding: str) -> bool:
    """Whether an ``Accept-Encoding`` value takes ``coding`` (RFC 9110 §12.5.3): the coding
    itself decides when it is listed, else ``*``; a weight of 0 refuses."""
    weights: dict[str, float] = {}
    for item in header.split(","):
        name, _, params = item.partition(";")
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights.setdefault(name.strip().lower(), weight)
    chosen = weights.get(coding, weights.get("*", 0.0))
    return chosen > 0


class Request:
    """The parts of an ASGI HTTP or WebSocket scope that Ladder reads."""

    __slots__ = ("address", "client", "extensions", "headers", "method", "path", "query", "scheme")

    def __init__(self, scope: Scope, *, trust_forwarded: bool = False) -> None:
        self.method: str = scope.get("method", "GET")
        self.scheme: str = scope.get("scheme", "http")
        self.extensions: Mapping[str, Any] = scope.get("extensions") or {}
        """The ASGI extensions the server offers."""
        path: str = scope.get("path", "/")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        self.path = path
        headers: dict[str, str] = {}
        for raw_key, raw_value in scope.get("headers", ()):
            key = raw_key.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        self.headers = headers
        self.query = parse_query(scope.get("query_string", b"").decode("latin-1"))
        client = scope.get("client")
        self.client = f"{client[0]}:{client[1]}" if client else None
        forwarded = _last(headers.get("x-forwarded-for")) if trust_forwarded else None
        self.address: str | None = forwarded or (client[0] if client else None)
        """The client's address, for per-address limits: with ``trust_forwarded``, the last
        ``X-Forwarded-For`` entry, the one the proxy in front added (the ones before it are
        the client's to write: a proxy appends, it does not replace)."""
        if trust_forwarded:
            proto = (_last(headers.get("x-forwarded-proto")) or "").lower()
            if proto in ("http", "https"):
                self.scheme = proto  # the page's own origin, behind a TLS proxy

    @property
    def who(self) -> str | None:
        """Who made the request, for the log of a refusal: the peer, and before it the
        address the limits counted when that is another one (a trusted proxy's entry)."""
        client, address = self.client, self.address
        if client is None or address is None or client.rpartition(":")[0] == address:
            return client
        return f"{address} via {client}"

    @property
    def endpoint(self) -> str:
        """The last path segment: ``ws``, ``sse``, ``longpoll``, ``poll``, ``send``, ...

        One trailing slash is allowed, not more: a proxy rule that blocks paths ending in
        ``/metrics`` or ``/metrics/`` must not be passed by ``/metrics//``."""
        return self.path.removesuffix("/").rsplit("/", 1)[-1]

    @property
    def origin(self) -> str | None:
        return self.headers.get("origin")

    @property
    def own_origin(self) -> str | None:
        """This server's origin as the request names it (its scheme and ``Host``): what a
        page's ``Origin`` must be, same-origin (an upgrade's ``ws``/``wss`` as the page's
        ``http``/``https``: a WARNING naming ``ws://`` would be copied into ``allowed_origins``)."""
        host = self.headers.get("host")
        scheme = {"ws": "http", "wss": "https"}.get(self.scheme, self.scheme)
        return f"{scheme}://{host}" if host else None

    def accepts_gzip(self) -> bool:
        """Whether ``Accept-Encoding`` takes gzip: named (in any case) or ``*``, with a
        ``q`` above 0 (``gzip;q=0`` refuses it; "gzip" anywhere in the header counted)."""
        return accepts_coding(self.headers.get("accept-encoding", ""), "gzip")

    def auth_request(self, token: str | None, transport: str) -> AuthRequest:
        return AuthRequest(
            headers=self.headers,
            cookies=parse_cookies(self.headers.get("cookie")),
            token=token or bearer_token(self.headers),
            client=self.client,
            transport=transport,
            address=self.address,
        )

    def resume_token(self) -> str | None:
        """The resume token from the ``X-Ladder-Rt`` header, else from the ``rt`` query field."""
        return self.headers.get("x-ladder-rt") or self.query.get("rt") or None

    def hello(self, *, ack_header: str | None = None) -> Hello:
        """The hello an HTTP rung carries in its query string (``sid``, ``ack``, ``tok``, ...;
        the resume token from ``X-Ladder-Rt`` or ``rt``), checked as a WebSocket hello is.

        Every field present goes to :func:`parse_client_frame`, an empty one too: read as
        absent, ``sid=&rt=abc`` opened a new session where it asked to resume one, while
        ``"sid": ""`` in a WebSocket hello is ``bad_frame``. Only the numbers are read here,
        from their digits (``ack_header``, SSE's ``Last-Event-ID``, is an ``ack`` too: the
        larger wins)."""
        query = self.query
        fields: dict[str, Any] = {name: query[name] for name in _HELLO_TEXT if name in query}
        rt = self.headers.get("x-ladder-rt", query.get("rt"))
        if rt is not None:
            fields["rt"] = rt
        for name, value in fields.items():
            check_text(name, value)
        fields["t"] = "hello"
        fields["v"] = _int_field(query, "v", 1)
        ack = _int_field(query, "ack", 0)
        if ack_header is not None and ack_header in self.headers:
            ack = max(ack, _int_value(ack_header, self.headers[ack_header]))
        fields["ack"] = ack
        frame = parse_client_frame(fields)
        assert isinstance(frame, Hello)
        return frame


_HELLO_TEXT: Final = ("sid", "tok", "why", "psid", "prt", "pids", "pu")
"""The hello's text fields a query carries as they are (``rt`` may come as a header)."""


def parse_query(query: str) -> dict[str, str]:
    """A query string's fields (the last of a repeated name counts), as ``parse_qsl`` with
    blank values kept reads them. What Ladder's clients send (``v=1&sid=...&ack=12``) has
    nothing to unquote, and is split directly: 0.7 µs instead of ``parse_qsl``'s 3, on every
    poll and upstream POST."""
    if "%" not in query and "+" not in query:
        fields: dict[str, str] = {}
        for field in query.split("&"):
            if field:
                name, _, value = field.partition("=")
                fields[name] = value
        return fields
    try:
        # (bytes that are not UTF-8 kept as lone surrogates, refused where a field is read:
        # replaced by U+FFFD, "user:%ED%A0%80" reached the authenticate hook as "user:���")
        return dict(parse_qsl(query, keep_blank_values=True, errors="surrogateescape"))
    except ValueError:
        return {}


def check_text(name: str, value: str | None) -> None:
    """A query field must be UTF-8 text once percent-decoded: ``bad_frame`` naming it when it
    holds a lone surrogate (what :func:`parse_query` keeps of bytes that were not UTF-8)."""
    if value is None or value.isascii():
        return
    try:
        value.encode()
    except UnicodeEncodeError:
        raise LadderError("bad_frame", f"query field {name!r} is not UTF-8 once percent-decoded") from None


def _int_value(name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 16:  # "¹".isdigit() is True
        raise LadderError("bad_frame", f"hello field {name!r} must be a whole number of at most 16 digits")
    return int(value)


def _int_field(query: dict[str, str], name: str, default: int) -> int:
    """A number of the query, ``default`` when absent (present but empty is refused)."""
    value = query.get(name)
    return default if value is None else _int_value(name, value)


def _origin_key(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS.get(scheme, 0)


def origin_allowed(allowed: tuple[str, ...] | None, request: Request) -> bool:
    """Same-origin unless configured; requests without ``Origin`` (non-browser) pass.

    Browsers always send ``Origin`` on WebSocket upgrades and cross-site POSTs, which is
    what cross-site WebSocket hijacking and request forgery need to be refused on.
    """
    origin = request.origin
    if origin is None:
        return True
    if allowed is None:
        own = request.own_origin
        return own is not None and _origin_key(origin) == _origin_key(own)
    if "*" in allowed:
        return True
    key = _origin_key(origin)
    return key is not None and any(_origin_key(a) == key for a in allowed)


UNTRUSTED_PROXY = (
    "it came through a proxy (X-Forwarded-Proto) that this server does not trust: behind a "
    "proxy you control, set Limits(trust_forwarded_for=True) on the hub"
)
"""The fix a refused origin names when the request's own ``X-Forwarded-Proto`` would have
made it same-origin (a TLS proxy in front of a hub that reads only the socket)."""


def origin_refusal(allowed: tuple[str, ...] | None, request: Request) -> LadderError | None:
    """``origin_not_allowed`` for a request whose ``Origin`` is not allowed (None if it is),
    naming the fix when the page's origin is this server's behind an untrusted proxy."""
    if origin_allowed(allowed, request):
        return None
    origin = request.origin or ""
    reason = f"origin {request.origin!r} is not allowed"
    proto = (_last(request.headers.get("x-forwarded-proto")) or "").lower()
    host = request.headers.get("host")
    proxied = allowed is None and host and proto in ("http", "https")
    if proxied and _origin_key(origin) == _origin_key(f"{proto}://{host}"):
        reason = f"{reason}: {UNTRUSTED_PROXY}"
    return LadderError("origin_not_allowed", reason)


def cors_headers(allowed: tuple[str, ...] | None, request: Request) -> list[tuple[bytes, bytes]]:
    """CORS headers for an allowed cross-origin browser request (none for same-origin)."""
    origin = request.origin
    if origin is None or allowed is None or not origin_allowed(allowed, request):
        return []
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin"),
    ]


async def respond(
    send: Send,
    status: int,
    body: bytes = b"",
    *,
    content_type: bytes = b"application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
    gzip_min: int | None = None,
) -> None:
    """Send a whole response. Bodies of at least ``gzip_min`` bytes are gzip-compressed. A
    204 has no content: no ``Content-Type``, and no ``Content-Length`` (RFC 9110 §8.6)."""
    out = [(b"cache-control", b"no-store")]
    if status != 204:
        out.insert(0, (b"content-type", content_type))
    if gzip_min is not None and len(body) >= gzip_min:
        body = gzip.compress(body, compresslevel=5)
        out.append((b"content-encoding", b"gzip"))
        out.append((b"vary", b"Accept-Encoding"))
    if status != 204:
        out.append((b"content-length", str(len(body)).encode()))
    if headers:
        out.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def error_body(error: LadderError) -> bytes:
    body = {"t": "err", **error.body()}
    try:
        return orjson.dumps(body)
    except TypeError:  # a reason echoing input that is not UTF-8 text: escaped, not a 500
        body["reason"] = error.reason.encode("utf-8", "backslashreplace").decode()
        body.pop("details", None)
        return orjson.dumps(body)


class BodyNotRead(LadderError):
    """The refusal of a request whose body was not read to its end: the answer must close the
    connection (``Connection: close``), since the rest of the body is not read."""


class BodyTooLarge(BodyNotRead):
    """``frame_too_large``: a body past the limit."""

    def __init__(self, reason: str) -> None:
        super().__init__("frame_too_large", reason)


async def read_body(
    receive: Receive, request: Request, limit: int, *, timeout: float | None = None, drain_timeout: float = 1
) -> bytes:
    """The whole request body, refused with ``frame_too_large`` (413) past ``limit`` bytes,
    and with ``heartbeat_timeout`` (408) when none of it arrives for ``timeout`` seconds (a
    body that stalled held its connection for ever; a slow link that keeps sending is not
    cut: a 1 MiB body takes 80 s at 100 kbit/s).

    Before refusing, the body is read and dropped up to twice ``limit`` bytes in all, for at
    most ``drain_timeout`` seconds: a client that writes its whole body before reading the
    answer (most do) then gets the 413 instead of a connection reset (closing a socket with
    unread bytes resets it, and the reset can destroy the answer on its way, in the client's
    or a proxy's kernel); one that stalls gets it after ``drain_timeout``. A body declared
    longer than that is not read at all: the reset cannot be avoided, so nothing is waited for.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        if int(declared) <= 2 * limit:
            await _drain(receive, int(declared), drain_timeout)
        raise BodyTooLarge(f"body of {declared} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(timeout):
                message = await receive()
        except TimeoutError:
            raise BodyNotRead(
                "heartbeat_timeout", f"the request body stopped arriving: nothing of it for {timeout:g} s"
            ) from None
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await _drain(receive, 2 * limit - size, drain_timeout)
            raise BodyTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _drain(receive: Receive, most: int, timeout: float) -> bool:
    """Read and drop the body to its end if it ends within ``most`` more bytes and
    ``timeout`` seconds; whether it ended."""
    dropped = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while dropped < most:
                message = await receive()
                if message["type"] == "http.disconnect" or not message.get("more_body", False):
                    return True
                dropped += len(message.get("body", b""))
    return False


def declares_body(request: Request) -> bool:
    """Whether the request says a body follows (``Content-Length`` above 0, or chunked)."""
    headers = request.headers
    length = headers.get("content-length")
    return "transfer-encoding" in headers or (length is not None and length.strip() not in ("", "0"))


async def drop_body(receive: Receive, request: Request, limit: int, timeout: float = 1) -> bool:
    """Read and drop the body of a request refused before reading it, up to ``limit`` bytes
    for ``timeout`` seconds; whether it ended. One that did not must be answered with
    ``Connection: close``: left unread, it held the connection until the keep-alive ran out
    (75 s)."""
    return not declares_body(request) or await _drain(receive, limit, timeout)
