"""Driving a hub in-process: ASGI calls with made-up scopes, bodies and WebSocket messages.

No sockets, no server: ``await hub(scope, receive, send)`` directly, so a hundred thousand
inputs per endpoint take seconds. Every answer is checked against the documented contract
(docs/protocol.md §8 and ``ladder.protocol.errors.ERRORS``):

* nothing escapes the ASGI app, and nothing is logged at ERROR level (a handled bug still is one);
* an HTTP refusal has the status of its code and the body ``{"t":"err","code":…,"reason":…}``;
  a success is one of the documented answers, in its documented content type;
* a WebSocket is closed with 1000 or the close code of the error that ended it;
* ``internal`` (a server bug) never appears, nor ``handler_error`` (the fuzz hub's handlers never
  fail).

Everything seen is tallied per endpoint for the report.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from ladder import ChannelOptions, Ladder, Limits
from ladder.protocol.errors import ERRORS

Headers = list[tuple[bytes, bytes]]

ALLOWED_ORIGIN = "http://app.example"
WS_CLOSE_CODES = {1000} | {spec.ws_close for spec in ERRORS.values() if spec.ws_close}
SERVER_BUGS = {"internal", "handler_error"}
"""Codes that mean something went wrong inside the server (the fuzz hub's handlers never fail)."""


class Clock:
    """The hub's clock, moved by hand: sessions are expired between batches without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_hub(clock: Clock) -> Ladder:
    """The hub under fuzz: an ``echo`` handler, a channel clients may publish to, small limits
    where that makes refusals reachable, and per-address limits lifted (every fuzz input comes
    from one address; the limits are the abuse tests' subject)."""
    wanted: dict[str, Any] = {
        "max_subscriptions": 8,
        "request_rate": 0.0,
        "message_rate": 0.0,
        "max_sessions_per_address": 10**9,
    }
    known = set(Limits.__dataclass_fields__)
    limits = Limits(**{name: value for name, value in wanted.items() if name in known})
    hub = Ladder(
        allowed_origins=[ALLOWED_ORIGIN],
        channels={
            "open:*": ChannelOptions(client_publish=True, history_size=16),
            "*": ChannelOptions(history_size=16),
        },
        limits=limits,
        session_ttl=30.0,
        heartbeat=20.0,
        poll_timeout=25.0,
        clock=clock,
    )

    @hub.on("echo")
    async def echo(ctx: Any, data: Any) -> Any:
        return data

    return hub


class ErrorLog(logging.Handler):
    """Records everything Ladder logs at ERROR or above (each one is a crash for the tally)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Tally:
    """Inputs, answers and crashes per endpoint."""

    inputs: Counter[str] = field(default_factory=Counter)
    answers: dict[str, Counter[str]] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)

    def count(self, endpoint: str, answer: str, inputs: int = 1) -> None:
        """``inputs`` more inputs tried on ``endpoint``, and one more ``answer`` seen."""
        self.inputs[endpoint] += inputs
        self.answers.setdefault(endpoint, Counter())[answer] += 1

    def crash(self, what: str) -> None:
        self.crashes.append(what)


class Violation(AssertionError):
    """An answer outside the documented contract."""


def check_error_body(status: int, body: bytes, context: str) -> str:
    """An HTTP refusal: documented status for its code, the documented JSON body. Returns the code."""
    try:
        err = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Violation(f"{context}: HTTP {status} with a body that is not JSON: {body[:200]!r}") from None
    if not isinstance(err, dict) or err.get("t") != "err":
        raise Violation(f"{context}: HTTP {status} body is not an err frame: {err!r}")
    code, reason = err.get("code"), err.get("reason")
    if code not in ERRORS:
        raise Violation(f"{context}: undocumented code {code!r}")
    if not isinstance(reason, str) or not reason:
        raise Violation(f"{context}: {code} without a reason: {err!r}")
    if ERRORS[code].http_status != status:
        raise Violation(
            f"{context}: {code} answered with HTTP {status}, documented {ERRORS[code].http_status}"
        )
    if code in SERVER_BUGS:
        raise Violation(f"{context}: the server failed: {err!r}")
    return str(code)


def decode_batch(body: bytes, content_type: str) -> list[Any]:
    """A batch the server wrote: msgpack maps concatenated, or JSON lines."""
    if "msgpack" in content_type:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        unpacker.feed(body)
        return list(unpacker)
    return [orjson.loads(line) for line in body.split(b"\n") if line]


def check_frames(frames: Iterable[Any], context: str) -> list[str]:
    """Server frames: every ``err`` carries a documented code. Returns the codes seen."""
    codes = []
    for frame in frames:
        if not isinstance(frame, dict) or not isinstance(frame.get("t"), str):
            raise Violation(f"{context}: not a frame: {frame!r}")
        if frame["t"] == "err":
            code = frame.get("code")
            if code not in ERRORS or code in SERVER_BUGS:
                raise Violation(f"{context}: err frame with code {code!r}: {frame!r}")
            codes.append(str(code))
    return codes


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    label: str
    """What the tally counts: ``200``, ``204`` or the refusal's code."""


class Driver:
    """Feeds one hub requests and WebSocket conversations, checks and tallies every answer."""

    def __init__(self, hub: Ladder, tally: Tally, errors: ErrorLog) -> None:
        self.hub = hub
        self.tally = tally
        self.errors = errors

    def _check_log(self, context: str) -> None:
        """Raise if the server logged an error."""
        if not self.errors.records:
            return
        logged = "; ".join(
            f"{r.getMessage()} ({r.exc_info[1]!r})" if r.exc_info else r.getMessage()
            for r in self.errors.records
        )
        self.errors.records.clear()
        self.tally.crash(f"{context}: logged {logged}")
        raise Violation(f"{context}: the server logged an error: {logged}")

    async def http(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        query: bytes = b"",
        headers: Headers | None = None,
        body: list[bytes] | None = None,
    ) -> HttpAnswer:
        """One request (``body``: the chunks it arrives in); the answer, checked and tallied."""
        headers = headers or []
        body_chunks = body or []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode("utf-8", "surrogateescape"),
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }
        incoming = [
            {"type": "http.request", "body": chunk, "more_body": n < len(body_chunks) - 1}
            for n, chunk in enumerate(body_chunks or [b""])
        ]

        async def receive() -> dict[str, Any]:
            if incoming:
                return incoming.pop(0)
            await asyncio.sleep(0)
            return {"type": "http.disconnect"}  # the client goes away once it said everything

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        context = f"{method} {path}?{query[:300]!r} {headers[:6]!r} {b''.join(body_chunks)[:300]!r}"
        try:
            await self.hub(scope, receive, send)
        except Exception as exc:
            self.tally.crash(f"{context}: {exc!r}")
            raise Violation(f"{context}: the ASGI app raised {exc!r}") from exc
        self._check_log(context)
        starts = [m for m in sent if m["type"] == "http.response.start"]
        if len(starts) != 1:
            raise Violation(f"{context}: {len(starts)} response starts: {sent[:3]!r}")
        status = int(starts[0]["status"])
        response_headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in starts[0].get("headers", [])
        }
        content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        if status >= 400:
            label = check_error_body(status, content, context)
        else:
            label = str(status)
            self._check_success(endpoint, status, response_headers, content, context)
        self.tally.count(endpoint, label)
        return HttpAnswer(status, response_headers, content, label)

    @staticmethod
    def _check_success(
        endpoint: str, status: int, headers: dict[str, str], body: bytes, context: str
    ) -> None:
        kind = headers.get("content-type", "")
        if status == 204:
            if body:
                raise Violation(f"{context}: 204 with a body")
            return
        if status not in (200, 304):
            raise Violation(f"{context}: undocumented status {status}")
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if "event-stream" in kind:
            text = body.decode()
            if not text.startswith(":") and not text.startswith("retry:"):
                raise Violation(
                    f"{context}: an SSE stream that does not start with its prelude: {text[:100]!r}"
                )
            data = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
            frames = [orjson.loads(d) for d in data]
            if not frames or frames[0].get("t") != "welcome":
                raise Violation(f"{context}: an SSE stream without its welcome: {frames[:2]!r}")
            check_frames(frames, context)
        elif "ndjson" in kind or "msgpack" in kind:
            check_frames(decode_batch(body, kind), context)
        elif endpoint in ("poll", "longpoll", "sse", "send", "ws"):
            raise Violation(f"{context}: a {status} answer of type {kind!r}")

    async def websocket(
        self, path: str, query: bytes, headers: Headers, messages: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], str]:
        """A WebSocket conversation: connect, the messages, disconnect. Returns what the server
        sent and the label tallied for the connection (how it ended)."""
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode("utf-8", "surrogateescape"),
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 40001),
            "server": ("127.0.0.1", 8000),
            "subprotocols": [],
        }
        incoming = [{"type": "websocket.connect"}, *messages]
        sent: list[dict[str, Any]] = []
        closed = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(0)  # let the writer run between messages, as a network would
            if incoming and not closed.is_set():
                return incoming.pop(0)
            return {"type": "websocket.disconnect", "code": 1000}

        async def send(message: dict[str, Any]) -> None:
            if closed.is_set():
                raise RuntimeError("send after close")  # what an ASGI server does
            sent.append(message)
            if message["type"] == "websocket.close":
                closed.set()

        context = f"ws {path}?{query[:200]!r} {headers[:6]!r} {[m.get('text', m.get('bytes')) for m in messages][:8]!r}"[
            :2000
        ]
        try:
            await self.hub(scope, receive, send)
        except Exception as exc:
            self.tally.crash(f"{context}: {exc!r}")
            raise Violation(f"{context}: the ASGI app raised {exc!r}") from exc
        self._check_log(context)
        return sent, context


def check_websocket(
    sent: list[dict[str, Any]], messages: list[dict[str, Any]], limit: int, context: str
) -> list[str]:
    """A WebSocket conversation against the contract. Returns the answers to tally: each err
    code sent, ``welcome``, and ``close <code>``.

    * Refused before the upgrade (close without accept): only a foreign origin (4403).
    * After the accept, the first frame is the welcome, or an ``err`` refusing the hello followed
      by a close with that code's WebSocket code.
    * With a session: a message over the frame limit closes with 1009 (unless the session ended
      first); otherwise the close is 1000 (the client went away, or said bye).
    """
    accepts = [m for m in sent if m["type"] == "websocket.accept"]
    closes = [m for m in sent if m["type"] == "websocket.close"]
    if len(accepts) > 1 or len(closes) > 1:
        raise Violation(f"{context}: {len(accepts)} accepts, {len(closes)} closes")
    close = int(closes[0].get("code", 1000)) if closes else None
    if close is not None and close not in WS_CLOSE_CODES:
        raise Violation(f"{context}: undocumented close code {close}")
    if not accepts:
        if close != ERRORS["origin_not_allowed"].ws_close:
            raise Violation(f"{context}: closed before the upgrade with {close}")
        return [f"refused before the upgrade ({close})"]
    frames: list[Any] = []
    for message in sent:
        if message["type"] == "websocket.send":
            if message.get("bytes") is not None:
                frames.extend(decode_batch(message["bytes"], "msgpack"))
            else:
                frames.extend(decode_batch(message["text"].encode(), "json"))
    labels = check_frames(frames, context)
    if not frames:
        if close is None:  # the client went away before its hello was read
            return ["no hello"]
        raise Violation(f"{context}: closed with {close} without a word")
    first = frames[0]
    if first.get("t") == "err":
        code = str(first["code"])
        if close != ERRORS[code].ws_close:
            raise Violation(f"{context}: hello refused with {code} but closed with {close}")
        return [f"hello refused: {code}", f"close {close}"]
    if first.get("t") != "welcome":
        raise Violation(f"{context}: first frame {first!r}")
    oversized = any(len(_payload_bytes(m)) > limit for m in messages[1:])
    allowed = {1000, 1009} if oversized else {1000}
    if close is not None and close not in allowed:
        raise Violation(
            f"{context}: closed with {close}, expected one of {sorted(allowed)} (oversized: {oversized})"
        )
    return ["welcome", *labels, f"close {close}"]


def _payload_bytes(message: dict[str, Any]) -> bytes:
    data = message.get("bytes")
    if data is not None:
        return bytes(data)
    return str(message.get("text") or "").encode("utf-8", "surrogatepass")
