"""Hypothesis strategies for hostile input: frames, batches, query strings, headers, bodies.

Inputs lean towards the edges that break parsers: the frame types and field names Ladder
knows, given the wrong types, huge or negative numbers, floats, control characters, very
long strings; valid frames mixed with broken ones in a batch; bytes that are neither JSON nor
msgpack; msgpack extension types; query strings with broken percent-escapes and non-UTF-8
bytes; headers that lie (Content-Length, Content-Type, Origin).

Each example carries a ``seed``: :func:`mutations` derives more inputs from it (byte flips,
truncations, splices), cheaply, so an example tests many inputs without generating each one
from scratch. Everything stays reproducible from the example.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any
from urllib.parse import quote

import msgpack
import orjson
from hypothesis import strategies as st

from ladder.protocol.frames import CLIENT_FRAME_TYPES

FRAME_TYPES = sorted(CLIENT_FRAME_TYPES)
FIELDS = [
    "t",
    "i",
    "ch",
    "ev",
    "d",
    "s",
    "n",
    "ep",
    "off",
    "recent",
    "limit",
    "tok",
    "v",
    "sid",
    "rt",
    "ack",
    "why",
]

edge_ints = st.sampled_from(
    [
        0,
        1,
        -1,
        2,
        2**31 - 1,
        2**31,
        2**53 - 1,
        2**53,
        2**63 - 1,
        2**64 - 1,
        -(2**63),
        10**20,
        1023,
        1024,
        1025,
    ]
)
ints = st.one_of(edge_ints, st.integers(-5, 3000))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["", "\x00", "\n", "\u2028", "é" * 3, "room:lobby", "open:x", "*", " " * 5]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=8,
)
names = st.one_of(
    st.sampled_from(
        ["echo", "room:lobby", "open:fuzz", "open:x", "nope", "a" * 255, "a" * 256, "bad\nname", "\x7f"]
    ),
    st.text(max_size=20),
)
field_values = st.one_of(json_values, names, ints)


@st.composite
def frames(draw: st.DrawFn) -> dict[str, Any]:
    """A client frame, more or less: a known type with fields of the right name (often the
    wrong type), sometimes an unknown type or extra fields."""
    frame: dict[str, Any] = {}
    kind = draw(st.one_of(st.sampled_from(FRAME_TYPES), st.text(max_size=8), ints, st.none()))
    if draw(st.integers(0, 9)):
        frame["t"] = kind
    if draw(st.integers(0, 3)):
        frame["i"] = draw(st.one_of(st.integers(1, 40), ints, st.text(max_size=3)))
    for name in draw(st.lists(st.sampled_from(FIELDS[2:]), max_size=4, unique=True)):
        frame[name] = draw(field_values)
    if frame.get("t") == "hello" and draw(st.booleans()):
        frame["v"] = draw(st.one_of(st.just(1), ints))
    return frame


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):  # as Ladder sends bytes in JSON
        return {"$b": base64.b64encode(value).decode()}
    raise TypeError(type(value).__name__)


def encode_json(frame: Any) -> bytes:
    try:
        return orjson.dumps(frame, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # integers beyond 64 bits: the standard library writes them anyway
        return json.dumps(frame, default=_json_default).encode()


def encode_msgpack(frame: Any) -> bytes:
    try:
        return bytes(msgpack.packb(frame, use_bin_type=True))
    except (OverflowError, TypeError, ValueError):  # beyond msgpack's integers: send the text instead
        return bytes(msgpack.packb(encode_json(frame).decode(), use_bin_type=True))


@st.composite
def json_batches(draw: st.DrawFn) -> bytes:
    """Newline-delimited JSON: frames, arbitrary JSON values, or raw garbage lines."""
    lines = draw(
        st.lists(
            st.one_of(
                frames().map(encode_json),
                json_values.map(encode_json),
                st.binary(max_size=40),
                st.text(max_size=40).map(str.encode),
                st.sampled_from(
                    [b'{"$b":"!!"}', b'{"t":"pub","i":1,"ch":"open:x","d":{"$b":"AAEC"}}', b"{", b"[]"]
                ),
            ),
            min_size=1,
            max_size=5,
        )
    )
    return b"\n".join(lines)


@st.composite
def msgpack_batches(draw: st.DrawFn) -> bytes:
    """Concatenated msgpack: frames, values, extension types, truncations, raw bytes."""
    parts = draw(
        st.lists(
            st.one_of(
                frames().map(encode_msgpack),
                json_values.map(encode_msgpack),
                st.binary(max_size=40),
                st.builds(
                    lambda code, data: bytes(msgpack.packb(msgpack.ExtType(code, data))),
                    st.integers(0, 127),
                    st.binary(max_size=8),
                ),
                st.sampled_from([b"\xc1", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\x81\xa1t"]),
            ),
            min_size=1,
            max_size=5,
        )
    )
    return b"".join(parts)


bodies = st.one_of(json_batches(), msgpack_batches(), st.binary(max_size=120))


def mutations(data: bytes, seed: int, count: int) -> list[bytes]:
    """``count`` variants of ``data``: bytes flipped, inserted or removed, cut short, spliced."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        buf = bytearray(data or b"{}")
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(5)
            pos = rng.randrange(len(buf) + 1)
            if op == 0 and buf:
                buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
            elif op == 1:
                buf[pos:pos] = bytes([rng.choice(b'{}[]",:\n\\\x00\x80\xff0123456789tie')])
            elif op == 2 and buf:
                del buf[min(pos, len(buf) - 1)]
            elif op == 3:
                del buf[pos:]
            else:
                buf[pos:pos] = buf[: rng.randint(0, len(buf))]
        out.append(bytes(buf))
    return out


# -- HTTP requests ---------------------------------------------------------------------------

QUERY_KEYS = ["v", "sid", "ack", "tok", "enc", "open", "rt", "why"]
query_values = st.one_of(
    st.sampled_from(
        [
            "1",
            "0",
            "2",
            "-1",
            "",
            "01",
            "1.0",
            "1e3",
            "99999999999999999",
            "9" * 40,
            "json",
            "msgpack",
            "xml",
            "\x00",
            "%",
            "%zz",
            "%00",
            "%ff",
        ]
    ),
    st.text(max_size=16),
    st.integers(-10, 2**64).map(str),
)


@st.composite
def query_strings(draw: st.DrawFn, session: tuple[str, str] | None = None) -> bytes:
    """A query string: known keys with odd values, unknown keys, or raw bytes; with ``session``,
    often that session's id and resume token (to get past the session lookup)."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=60))
    pairs: list[tuple[str, str]] = []
    for key in draw(st.lists(st.one_of(st.sampled_from(QUERY_KEYS), st.text(max_size=5)), max_size=6)):
        pairs.append((key, draw(query_values)))
    if session is not None and draw(st.booleans()):
        sid, rt = session
        pairs.append(("sid", sid if draw(st.integers(0, 4)) else sid[:-1] + "x"))
        if draw(st.booleans()):
            pairs.append(("rt", rt if draw(st.integers(0, 4)) else "wrong"))
    encoded = "&".join(
        f"{quote(k, safe='') if draw(st.booleans()) else k}={quote(v, safe='') if draw(st.booleans()) else v}"
        for k, v in pairs
    )
    return encoded.encode("utf-8", "surrogatepass")


HEADER_NAMES = [
    b"origin",
    b"x-ladder-rt",
    b"authorization",
    b"last-event-id",
    b"accept-encoding",
    b"content-type",
    b"content-length",
    b"cookie",
    b"host",
    b"x-forwarded-for",
    b"accept",
]
header_values = st.one_of(
    st.sampled_from(
        [
            b"",
            b"http://app.example",
            b"http://evil.example",
            b"null",
            b"gzip",
            b"gzip, br",
            b"application/msgpack",
            b"application/x-ndjson",
            b"text/plain",
            b"Bearer x",
            b"Bearer",
            b"a=b; c",
            b"=;;=",
            b"1",
            b"-1",
            b"99999999999999999999",
            b"1048577",
            b"127.0.0.1",
            b"\xff\xfe",
            b"1, 2, 3",
        ]
    ),
    st.binary(max_size=24),
)
headers = st.lists(
    st.tuples(st.one_of(st.sampled_from(HEADER_NAMES), st.binary(min_size=1, max_size=8)), header_values),
    max_size=5,
)
methods = st.one_of(
    st.sampled_from(["GET", "POST", "HEAD", "OPTIONS"]), st.sampled_from(["PUT", "DELETE", "PATCH", "FOO"])
)


# -- fast derived inputs ------------------------------------------------------------------------

EDGE_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    7,
    1023,
    1024,
    1025,
    2**31,
    2**53 - 1,
    2**53,
    2**63 - 1,
    2**64 - 1,
    -(2**63),
    10**20,
    1.5,
    -0.0,
    1e308,
    "",
    "\x00",
    "a" * 255,
    "a" * 256,
    "room:lobby",
    "open:x",
    "open:fuzz",
    "echo",
    "nope",
    "\n",
    "é",
    "\u2028",
    [],
    {},
    [1, 2],
    {"a": 1},
    {"$b": "AAEC"},
    {"$b": "!!"},
    {"$b": 1},
    b"\x00\xff",
    "1",
    "json",
    "msgpack",
]


class Derive:
    """More inputs around an example, from its seed: random frames, batches, queries and headers
    built from Ladder's own vocabulary and edge values, and byte mutations. About a hundred times
    cheaper than drawing each input through Hypothesis, and just as reproducible."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6 or depth > 2:
            return rng.choice(EDGE_VALUES)
        if roll < 0.75:
            return rng.randint(-(2**40), 2**40)
        if roll < 0.85:
            return "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 12)))
        if roll < 0.93:
            return [self.value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(FIELDS): self.value(depth + 1) for _ in range(rng.randint(0, 3))}

    def frame(self) -> Any:
        rng = self.rng
        if rng.random() < 0.05:
            return self.value()
        frame: dict[Any, Any] = {}
        if rng.random() < 0.93:
            frame["t"] = rng.choice(FRAME_TYPES) if rng.random() < 0.85 else self.value()
        if rng.random() < 0.8:
            frame["i"] = rng.randint(1, 50) if rng.random() < 0.7 else self.value()
        for name in rng.sample(FIELDS[2:], rng.randint(0, 4)):
            frame[name] = self.value()
        if frame.get("t") == "hello" and rng.random() < 0.6:
            frame["v"] = 1
        return frame

    def json_batch(self) -> bytes:
        return b"\n".join(encode_json(self.frame()) for _ in range(self.rng.randint(1, 4)))

    def msgpack_batch(self) -> bytes:
        return b"".join(encode_msgpack(self.frame()) for _ in range(self.rng.randint(1, 4)))

    def body(self, drawn: list[bytes]) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.35:
            return self.json_batch()
        if roll < 0.6:
            return self.msgpack_batch()
        if roll < 0.7:
            return rng.randbytes(rng.randint(0, 80))
        source = rng.choice(drawn) if drawn else self.json_batch()
        return mutations(source, rng.getrandbits(32), 1)[0]

    def query(self, session: tuple[str, str] | None) -> bytes:
        rng = self.rng
        if rng.random() < 0.08:
            return rng.randbytes(rng.randint(0, 40))
        pairs = [
            (rng.choice(QUERY_KEYS) if rng.random() < 0.85 else str(self.value()), str(self.value()))
            for _ in range(rng.randint(0, 5))
        ]
        if session is not None and rng.random() < 0.6:
            sid, rt = session
            pairs.append(("sid", sid if rng.random() < 0.85 else sid[:-1] + "x"))
            pairs.append(("ack", str(rng.choice([0, 0, 1, 5, 2**53, -1]))))
            if rng.random() < 0.7:
                pairs.append(("rt", rt if rng.random() < 0.85 else "wrong"))
        text = "&".join(
            f"{quote(k, safe='')}={quote(v, safe='') if rng.random() < 0.8 else v}" for k, v in pairs
        )
        return text.encode("utf-8", "surrogatepass")

    def headers(self, session: tuple[str, str] | None) -> list[tuple[bytes, bytes]]:
        rng = self.rng
        out = []
        for _ in range(rng.randint(0, 4)):
            name = rng.choice(HEADER_NAMES) if rng.random() < 0.9 else rng.randbytes(rng.randint(1, 6))
            value = rng.choice(
                [
                    b"",
                    b"http://app.example",
                    b"http://evil.example",
                    b"gzip",
                    b"application/msgpack",
                    b"text/plain",
                    b"Bearer t",
                    b"5",
                    b"99999999999",
                    b"1048577",
                    b"\xff",
                ]
            )
            out.append((name, value if rng.random() < 0.85 else rng.randbytes(rng.randint(0, 12))))
        if session is not None and rng.random() < 0.5:
            out.append((b"x-ladder-rt", session[1].encode()))
        return out
