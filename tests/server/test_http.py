"""The ASGI request view: query strings read as ``parse_qsl`` reads them, faster when plain."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from ladder.server.http import Request, parse_query

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
