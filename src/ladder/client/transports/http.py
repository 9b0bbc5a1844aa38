"""What the HTTP rungs share: the hello as query fields, upstream POSTs, refusals."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import httpx
import orjson

from ...protocol.codec import JSON
from ...protocol.errors import LadderError
from .base import (
    RUNNING_THERE,
    Endpoint,
    Frame,
    Transport,
    TransportClosed,
    connect_hint,
    no_endpoint,
    refusal,
)


def hello_query(hello: Frame) -> dict[str, Any]:
    """The hello's fields as query parameters (the resume token goes in a header)."""
    query: dict[str, Any] = {"v": hello.get("v", 1)}
    if hello.get("why"):
        query["why"] = hello["why"]
    if hello.get("sid"):
        query["sid"] = hello["sid"]
        query["ack"] = hello.get("ack", 0)
    for name in ("psid", "prt", "pids"):  # a new session naming the one it replaces
        if hello.get(name):
            query[name] = hello[name]
    if "pu" in hello:  # (its user: "" is anonymous, sent as an empty field)
        query["pu"] = hello["pu"]
    return query


def auth_headers(endpoint: Endpoint, token: str | None, bearer: str | None = None) -> dict[str, str]:
    """The headers of a request: the resume ``token`` (``X-Ladder-Rt``) and, on the request that
    opens a rung, the hello's credentials as ``Authorization: Bearer`` (kept out of URLs, and
    so of access logs). Later requests carry the resume token only: the server checked the
    credentials when the session opened (asking the token callable for every poll and POST
    called it hundreds of times a minute)."""
    headers = dict(endpoint.headers)
    if bearer:
        headers["authorization"] = f"Bearer {bearer}"
    if token:
        headers["x-ladder-rt"] = token
    return headers


def refusal_of(response: httpx.Response, body: bytes, rung: str) -> TransportClosed:
    """A non-2xx answer as a transport failure (with the server's code when it sent one)."""
    try:
        frame = orjson.loads(body)
    except orjson.JSONDecodeError:
        frame = None
    url = str(response.request.url.copy_with(query=None))
    ours = isinstance(frame, dict) and "code" in frame
    if response.status_code == 404 and not (ours and frame.get("code") == "unknown_session"):
        return TransportClosed(no_endpoint(rung, url, 404))
    if ours:
        return refusal(frame, rung)
    return TransportClosed(f"{rung}: HTTP {response.status_code} from the server or a proxy at {url}")


def unreachable(rung: str, url: str, exc: Exception) -> str:
    """The reason for a request that reached no server at all."""
    if isinstance(exc, httpx.ConnectError):
        hint = connect_hint(exc, otherwise=RUNNING_THERE)  # (any other failure to connect too)
        return f"{rung}: cannot connect to {url} ({exc or type(exc).__name__}){hint}"
    return f"{rung}: request to {url} failed ({exc!r})"


UNORDERED: Final = frozenset({"ack", "ping", "pong", "bye"})
"""Frames a POST may carry alongside another one still answered (protocol §3.6): a ``bye``
too, or ``close()`` would wait behind a call's POST until its handler returns."""


class HttpTransport(Transport):
    """Base of the HTTP rungs: a session id, a resume token and ``POST /send`` upstream."""

    separate_upstream = True

    def __init__(self, endpoint: Endpoint, applied: Any, http: httpx.AsyncClient) -> None:
        super().__init__(endpoint, applied)
        self.http = http
        self.sid: str | None = None
        self.token: str | None = None
        self._closed = False
        self._post_lock = asyncio.Lock()

    def adopt(self, welcome: Frame) -> None:
        self.sid = str(welcome["sid"])
        self.token = str(welcome["rt"])

    async def send(self, frames: list[Frame]) -> None:
        if self._closed or self.sid is None:
            raise TransportClosed(f"{self.name}: not open")
        codec = self.endpoint.codec
        body = codec.join(codec.encode(frame) for frame in frames)
        # Messages go one POST at a time, in order (protocol §3.6); acks, pings and pongs at
        # once: a POST held while a long call is applied must not hold them back.
        ordered = not all(frame.get("t") in UNORDERED for frame in frames)
        async with self._post_lock if ordered else contextlib.nullcontext():
            try:
                response = await self.http.post(
                    self.endpoint.http("send"),
                    params={"sid": self.sid},
                    content=body,
                    headers={**auth_headers(self.endpoint, self.token), "content-type": codec.content_type},
                )
            except httpx.HTTPError as exc:
                raise TransportClosed(unreachable(self.name, self.endpoint.http("send"), exc)) from exc
        if response.status_code >= 300:
            refused = refusal_of(response, response.content, self.name)
            if response.status_code == 413 and refused.error is None:  # (not the server's 413)
                refused.too_large = len(body)
            raise refused
        self.wake()

    def decode(self, body: bytes, content_type: str | None) -> list[Frame]:
        """The frames of an answer; one that is not Ladder's (a page, a proxy's) says so."""
        codec = self.endpoint.codec if content_type and "msgpack" in content_type else JSON
        try:
            frames: list[Frame] = codec.decode(body)
        except LadderError as exc:
            kind = (content_type or "no content type").split(";")[0]
            raise TransportClosed(
                f"{self.name}: the answer from {self.endpoint.http(self.name)} is not Ladder's "
                f"({kind}, {exc.reason}): no Ladder endpoint there, or a proxy answered"
            ) from exc
        return frames
