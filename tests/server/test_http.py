"""The ASGI request view: query strings read as ``parse_qsl`` reads them, faster when plain;
a body over the limit read to its end before the refusal when it is not much over."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest

from ladder.protocol.codec import JSON, MSGPACK, codec_for_content_type
from ladder.protocol.errors import LadderError
from ladder.server.http import (
    UNTRUSTED_PROXY,
    BodyTooLarge,
    Request,
    accepts_coding,
    error_body,
    origin_refusal,
    parse_query,
    read_body,
)
from ladder.server.proxies import proxy_trusted

QUERIES = [
    "",
    "v=1&sid=n1.AbC-_09&rt=ZmFrZQ-_x&ack=12",
    "v=1&open=1&enc=msgpack",
    "a=1&a=2",  # the last counts
    "flag&x=&=y&&z=1=2",  # no '=', blank value, blank name, empty field, '=' in a value
    "tok=a%20b&why=c+d",  # unquoted ('+' is a space)
    "tok=%E2%9C%93&x=%zz",  # UTF-8, and a malformed escape kept as it is
    "x=1;y=2",  # ';' is not a separator
]


@pytest.mark.parametrize("query", QUERIES)
def test_a_query_reads_as_parse_qsl_reads_it(query: str) -> None:
    assert parse_query(query) == dict(parse_qsl(query, keep_blank_values=True))


def test_a_request_reads_its_query_string() -> None:
    scope = {"type": "http", "path": "/longpoll", "query_string": b"sid=s1&rt=r1&ack=7&tok=a%2Bb", "headers": []}
    request = Request(scope)
    assert request.query == {"sid": "s1", "rt": "r1", "ack": "7", "tok": "a+b"}
    assert request.hello().ack == 7


LIMIT = 1000
CHUNK = 100


class Body:
    """An ASGI ``receive`` giving a body of ``size`` bytes in chunks, counting what was read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read = 0

    async def __call__(self) -> dict[str, Any]:
        chunk = min(CHUNK, self.size - self.read)
        self.read += chunk
        return {"type": "http.request", "body": b"x" * chunk, "more_body": self.read < self.size}


def _post(size: int | None) -> Request:
    headers = [] if size is None else [(b"content-length", str(size).encode())]
    return Request({"type": "http", "method": "POST", "path": "/send", "headers": headers})


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_up_to_twice_the_limit_is_read_to_its_end_before_the_413(declared: bool) -> None:
    """Closing a socket with unread bytes resets it, and the reset can destroy the 413 on its
    way (a proxy in front lost it): what is not much over the limit is read to its end first."""
    size = LIMIT * 3 // 2
    body = Body(size)
    with pytest.raises(BodyTooLarge):
        await read_body(body, _post(size if declared else None), LIMIT)
    assert body.read == size


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_far_over_the_limit_is_not_read_past_twice_the_limit(declared: bool) -> None:
    size = LIMIT * 50
    body = Body(size)
    with pytest.raises(BodyTooLarge):
        await read_body(body, _post(size if declared else None), LIMIT)
    assert body.read == (0 if declared else 2 * LIMIT)  # declared: no reading that cannot end well


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/ladder/metrics", "metrics"),
        ("/ladder/metrics/", "metrics"),
        ("/ladder/metrics//", ""),  # a proxy rule on the ending ('/metrics', '/metrics/') holds
        ("/ladder//metrics///", ""),
        ("/ws", "ws"),
    ],
)
def test_the_endpoint_is_the_last_segment_with_at_most_one_trailing_slash(path: str, endpoint: str) -> None:
    assert Request({"type": "http", "path": path, "headers": []}).endpoint == endpoint


def _from(origin: str, host: str, proto: str | None, *, trust: bool = False) -> Request:
    headers = [(b"origin", origin.encode()), (b"host", host.encode())]
    if proto is not None:
        headers.append((b"x-forwarded-proto", proto.encode()))
    return Request({"type": "http", "scheme": "http", "path": "/sse", "headers": headers}, trust_forwarded=trust)


def test_a_refused_origin_behind_an_untrusted_tls_proxy_names_the_setting() -> None:
    behind = origin_refusal(None, _from("https://app.example", "app.example", "https"))
    assert behind is not None and behind.code == "origin_not_allowed"
    assert behind.reason.endswith(UNTRUSTED_PROXY) and "trust_forwarded_for=True" in behind.reason
    assert origin_refusal(None, _from("https://app.example", "app.example", "https", trust=True)) is None
    foreign = origin_refusal(None, _from("https://evil.example", "app.example", "https"))
    assert foreign is not None and foreign.reason == "origin 'https://evil.example' is not allowed"
    plain = origin_refusal(None, _from("https://app.example", "app.example", None))
    assert plain is not None and UNTRUSTED_PROXY not in plain.reason, "no proxy said https"
    listed = origin_refusal(("https://other.example",), _from("https://app.example", "app.example", "https"))
    assert listed is not None and UNTRUSTED_PROXY not in listed.reason, "a list is the app's own choice"


class _Uvicorn:
    def __init__(self, allowed: str | list[str], *, proxy_headers: bool = True) -> None:
        self.forwarded_allow_ips = allowed
        self.proxy_headers = proxy_headers


@pytest.mark.parametrize(
    ("allowed", "peer", "trusted"),
    [
        ("127.0.0.1,::1", "127.0.0.1", True),
        ("127.0.0.1,::1", "::1", True),
        ("127.0.0.1", "10.0.0.2", False),
        ("10.0.0.0/24, 192.168.1.7", "10.0.0.2", True),
        (["10.0.0.0/24"], "10.0.1.2", False),
        ("*", "203.0.113.9", True),
        ("", "127.0.0.1", False),
    ],
)
def test_the_native_driver_trusts_the_proxies_uvicorn_trusts(allowed: str, peer: str, trusted: bool) -> None:
    assert proxy_trusted(_Uvicorn(allowed), peer) is trusted
    assert proxy_trusted(_Uvicorn(allowed, proxy_headers=False), peer) is False, "a hub served alone"


@pytest.mark.parametrize(
    ("header", "gzip"),
    [
        ("gzip", True),
        ("GZIP", True),  # (codings are case-insensitive: this one was not compressed)
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),  # (q=0 refuses it: it was compressed)
        ("identity, gzip;q=0", False),
        ("*", True),
        ("*;q=0", False),
        ("gzip;q=0, *", False),  # (named: its own weight decides, not the wildcard's)
        ("br, *;q=0.1", True),
        ("identity", False),
        ("", False),
        ("gzip;q=abc", False),
    ],
)
def test_accept_encoding_is_read_with_its_weights(header: str, gzip: bool) -> None:
    """Protocol §3.5: a poll's answer is gzipped only when the request takes gzip."""
    assert accepts_coding(header, "gzip") is gzip


@pytest.mark.parametrize(
    ("content_type", "msgpack"),
    [
        ("application/msgpack", True),
        ("application/x-msgpack", True),
        ("Application/MsgPack", True),  # (media types are case-insensitive: read as JSON before)
        ("APPLICATION/X-MSGPACK; charset=binary", True),
        ("application/vnd.msgpack-like", False),
        ("application/x-ndjson", False),
        (None, False),
    ],
)
def test_a_post_bodys_codec_is_the_content_type_s_media_type(content_type: str | None, msgpack: bool) -> None:
    """Protocol §3.6: msgpack when the Content-Type names it, otherwise JSON."""
    assert codec_for_content_type(content_type) is (MSGPACK if msgpack else JSON)


@pytest.mark.parametrize(("scheme", "own"), [("ws", "http://h:1"), ("wss", "https://h:1"), ("https", "https://h:1")])
def test_an_upgrades_own_origin_is_the_pages_scheme_not_ws(scheme: str, own: str) -> None:
    """The refused-origin WARNING of a WebSocket named the server ``ws://localhost:42102``:
    a page's origin is never ``ws://``, and a reader copied it into ``allowed_origins``."""
    scope = {"type": "websocket", "scheme": scheme, "path": "/ws", "query_string": b"", "headers": [(b"host", b"h:1")]}
    assert Request(scope).own_origin == own


def test_an_error_whose_reason_echoes_bytes_that_are_not_utf8_is_still_written() -> None:
    """A reason naming a query value kept as lone surrogates (not UTF-8 once percent-decoded)
    made orjson raise while the answer was written: a 500 and a traceback, not the refusal."""
    body = orjson.loads(error_body(LadderError("unknown_session", "no session 'ab\udcffcd'")))
    assert body == {"t": "err", "code": "unknown_session", "reason": "no session 'ab\\udcffcd'"}
