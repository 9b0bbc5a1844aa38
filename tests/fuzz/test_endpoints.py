"""Every endpoint's input, fuzzed in-process: WebSocket conversations (``ws``), the downstream
rungs' query strings and headers (``sse``, ``longpoll``, ``poll``) and upstream bodies (``send``).

Each Hypothesis example draws edge-biased inputs and derives about a hundred more from its seed
(see ``strategies.Derive``); a few sessions are opened first so that inputs carrying their id
and resume token reach the code behind the session lookup. Every answer is checked by the
harness against the documented contract; at least 100,000 inputs per endpoint.
Then single faults, one at a time, each with its exact documented refusal.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ladder.protocol.errors import ERRORS
from tests.fuzz.conftest import TALLY, TARGET, Fuzz, fuzz_settings
from tests.fuzz.harness import ALLOWED_ORIGIN, Driver, check_websocket
from tests.fuzz.strategies import Derive, bodies, encode_msgpack, headers, methods, mutations, query_strings

DERIVED = 120
"""Inputs derived from each example's seed, on top of the ones Hypothesis drew."""
LIMIT = 65536


async def open_sessions(driver: Driver, count: int) -> list[tuple[str, str]]:
    """Live sessions (not counted as fuzz input): their (sid, resume token)."""
    out = []
    for _ in range(count):
        answer = await driver.http("sessions opened for the inputs", "GET", "/poll", query=b"v=1")
        assert answer.status == 200, answer
        frame = orjson.loads(answer.body.split(b"\n")[0])
        out.append((frame["sid"], frame["rt"]))
    return out


# -- WebSocket ----------------------------------------------------------------------------------

HELLOS: list[dict[str, Any]] = [
    {"type": "websocket.receive", "text": '{"t":"hello","v":1}'},
    {"type": "websocket.receive", "bytes": encode_msgpack({"t": "hello", "v": 1})},
    {"type": "websocket.receive", "text": '{"t":"hello","v":1}\n{"t":"sub","i":1,"ch":"open:fuzz"}'},
]
CONVERSATIONS = 4
MESSAGES = 30


def ws_message(data: bytes, binary: bool) -> dict[str, Any]:
    if binary:
        return {"type": "websocket.receive", "bytes": data}
    return {"type": "websocket.receive", "text": data.decode("utf-8", "replace")}


def test_websocket_conversations(fuzz: Fuzz) -> None:
    @fuzz_settings(TARGET // (CONVERSATIONS * (MESSAGES + 1)) + 1)
    @given(st.lists(bodies, min_size=2, max_size=2), headers, st.integers(0, 2**32))
    def run(drawn: list[bytes], drawn_headers: list[tuple[bytes, bytes]], seed: int) -> None:
        fuzz.run(conversations(fuzz, drawn, drawn_headers, seed))

    run()
    report_endpoint("ws")


async def conversations(
    fuzz: Fuzz, drawn: list[bytes], drawn_headers: list[tuple[bytes, bytes]], seed: int
) -> None:
    derive = Derive(seed)
    rng = derive.rng
    sessions = await open_sessions(fuzz.driver, 1)
    for n in range(CONVERSATIONS):
        roll = rng.random()
        if roll < 0.6:
            first = dict(rng.choice(HELLOS))
        elif roll < 0.75:  # resume a live session (or try to, with a wrong token)
            sid, rt = sessions[0]
            token = rt if rng.random() < 0.8 else rng.choice(["wrong", "é", rt[:-1] + "\u00ff", ""])
            hello = {"t": "hello", "v": 1, "sid": sid, "rt": token, "ack": rng.choice([0, 1, 2**60])}
            binary = rng.random() < 0.5
            first = ws_message(encode_msgpack(hello) if binary else orjson.dumps(hello), binary)
        else:  # instead of a hello: anything
            first = ws_message(derive.body(drawn), rng.random() < 0.5)
        messages = [first]
        for _ in range(MESSAGES):
            data = (
                derive.body(drawn)
                if rng.random() < 0.9
                else mutations(rng.choice(drawn), rng.getrandbits(32), 1)[0]
            )
            messages.append(ws_message(data, rng.random() < 0.5))
        if n == 0 and rng.random() < 0.1:  # now and then, a message over the frame limit
            messages.insert(
                rng.randint(1, len(messages)),
                ws_message(b"x" * (LIMIT + rng.randint(1, 100)), rng.random() < 0.5),
            )
        scope_headers = drawn_headers if n == 0 else derive.headers(None)
        if rng.random() < 0.3:
            scope_headers = [
                *scope_headers,
                (b"origin", rng.choice([ALLOWED_ORIGIN.encode(), b"http://evil.example", b"null"])),
            ]
        path = "/ws" if rng.random() < 0.97 else rng.choice(["/ws/", "/ws/x", "/"])
        sent, context = await fuzz.driver.websocket(path, derive.query(None), scope_headers, list(messages))
        if path.rstrip("/").endswith("/ws") or path == "/ws":
            labels = check_websocket(sent, messages, LIMIT, context)
        else:
            closes = [m for m in sent if m["type"] == "websocket.close"]
            assert [m.get("code") for m in closes] == [4404], (context, sent)
            labels = ["not_found (4404)"]
        TALLY.count("ws", labels[0], inputs=len(messages))
        for label in labels[1:]:
            TALLY.count("ws", label, inputs=0)


# -- downstream rungs: query strings and headers --------------------------------------------------


@pytest.mark.parametrize("endpoint", ["sse", "longpoll", "poll"])
def test_downstream_query_strings_and_headers(fuzz: Fuzz, endpoint: str) -> None:
    @fuzz_settings(TARGET // (DERIVED + 1) + 1)
    @given(st.data(), headers, methods, st.integers(0, 2**32))
    def run(data: st.DataObject, drawn_headers: list[tuple[bytes, bytes]], method: str, seed: int) -> None:
        fuzz.run(downstream(fuzz, endpoint, data, drawn_headers, method=method, seed=seed))

    run()
    report_endpoint(endpoint)


async def downstream(
    fuzz: Fuzz,
    endpoint: str,
    data: st.DataObject,
    drawn_headers: list[tuple[bytes, bytes]],
    *,
    method: str,
    seed: int,
) -> None:
    derive = Derive(seed)
    rng = derive.rng
    sessions = await open_sessions(fuzz.driver, 2)
    query = data.draw(query_strings(session=sessions[0]))
    await fuzz.driver.http(endpoint, method, f"/{endpoint}", query=query, headers=drawn_headers)
    for _ in range(DERIVED):
        session = rng.choice(sessions) if rng.random() < 0.7 else None
        verb = "GET" if rng.random() < 0.92 else rng.choice(["POST", "PUT", "HEAD", "OPTIONS", "DELETE"])
        path = (
            f"/{endpoint}"
            if rng.random() < 0.97
            else rng.choice([f"/{endpoint}/", f"/x/{endpoint}", "/nope", "/"])
        )
        await fuzz.driver.http(
            endpoint, verb, path, query=derive.query(session), headers=derive.headers(session)
        )


# -- upstream bodies ------------------------------------------------------------------------------

CONTENT_TYPES = [
    b"application/msgpack",
    b"application/x-ndjson",
    b"application/json",
    b"text/plain",
    b"",
    b"application/msgpack; q=1",
    b"\xff",
]


def test_upstream_bodies(fuzz: Fuzz) -> None:
    @fuzz_settings(TARGET // (DERIVED + 2) + 1)
    @given(st.lists(bodies, min_size=2, max_size=2), st.sampled_from(CONTENT_TYPES), st.integers(0, 2**32))
    def run(drawn: list[bytes], content_type: bytes, seed: int) -> None:
        fuzz.run(upstream(fuzz, drawn, content_type, seed))

    run()
    report_endpoint("send")


async def upstream(fuzz: Fuzz, drawn: list[bytes], content_type: bytes, seed: int) -> None:
    derive = Derive(seed)
    rng = derive.rng
    sessions = await open_sessions(fuzz.driver, 2)
    driver = fuzz.driver
    for body in drawn:
        sid, rt = sessions[0]
        await driver.http(
            "send",
            "POST",
            "/send",
            query=f"sid={sid}".encode(),
            headers=[(b"x-ladder-rt", rt.encode()), (b"content-type", content_type)],
            body=[body],
        )
    for n in range(DERIVED):
        roll = rng.random()
        if roll < 0.8:
            sid, rt = rng.choice(sessions)
            query = f"sid={sid}".encode() if rng.random() < 0.9 else derive.query((sid, rt))
            request_headers = [(b"x-ladder-rt", (rt if rng.random() < 0.9 else "wrong").encode())]
        else:
            query, request_headers = derive.query(None), derive.headers(None)
        request_headers.append((b"content-type", rng.choice(CONTENT_TYPES)))
        if rng.random() < 0.2:
            request_headers += derive.headers(None)
        body = derive.body(drawn)
        if n == 0 and rng.random() < 0.05:
            body = b"[" * (1024 * 1024 + rng.randint(1, 64))  # over the POST limit
        cut = sorted(rng.sample(range(len(body) + 1), min(len(body) + 1, rng.randint(0, 2))))
        chunks = [body[a:b] for a, b in zip([0, *cut], [*cut, len(body)], strict=True)]
        await driver.http("send", "POST", "/send", query=query, headers=request_headers, body=chunks)


def report_endpoint(endpoint: str) -> None:
    answers = TALLY.answers.get(endpoint, Counter())
    print(f"\n{endpoint}: {TALLY.inputs[endpoint]} inputs, answers {dict(answers)}")
    assert TALLY.inputs[endpoint] >= TARGET, f"{endpoint}: only {TALLY.inputs[endpoint]} inputs"
    assert not TALLY.crashes, TALLY.crashes[:3]


# -- one fault at a time, each with its exact documented refusal ---------------------------------

NOT_A_NUMBER = (
    st.text(min_size=1, max_size=8).filter(lambda t: not t.isdigit()).map(lambda t: quote(t, safe=""))
)
FAULTS: list[tuple[str, Any, str]] = [
    # (what, how to break a valid request, the documented code)
    ("version", lambda d, s: {"query": f"v={d.draw(st.integers(2, 1000))}"}, "unsupported_version"),
    ("version not a number", lambda d, s: {"query": f"v={d.draw(NOT_A_NUMBER)}"}, "bad_frame"),
    (
        "ack not a number",
        lambda d, s: {
            "query": f"sid={s[0]}&ack={d.draw(st.sampled_from(['x', '-1', '1.5', '1e3', ' ']))}",
            "headers": [(b"x-ladder-rt", s[1].encode())],
        },
        "bad_frame",
    ),
    (
        "unknown session",
        lambda d, s: {
            "query": f"sid={d.draw(st.text('abcdefghijklmnopqrstuvwxyz0123456789', min_size=1, max_size=40))}&rt=x"
        },
        "unknown_session",
    ),
    (
        "wrong resume token",
        lambda d, s: {
            "query": f"sid={s[0]}",
            "headers": [(b"x-ladder-rt", d.draw(st.text("abcdefXYZ0123", min_size=1, max_size=40)).encode())],
        },
        "bad_resume_token",
    ),
    ("sid without token", lambda d, s: {"query": f"sid={s[0]}"}, "bad_frame"),
    (
        "a field present but empty",
        lambda d, s: {
            "query": d.draw(st.sampled_from(["v=", "sid=&rt=x", "ack=", "tok=", "why=", "psid=&prt=&pids="]))
        },
        "bad_frame",
    ),
    (
        "foreign origin",
        lambda d, s: {
            "headers": [
                (
                    b"origin",
                    d.draw(
                        st.sampled_from(
                            [
                                b"http://evil.example",
                                b"null",
                                b"https://app.example",
                                b"http://app.example:81",
                            ]
                        )
                    ),
                )
            ]
        },
        "origin_not_allowed",
    ),
    (
        "wrong method",
        lambda d, s: {"method": d.draw(st.sampled_from(["POST", "PUT", "DELETE", "PATCH"]))},
        "method_not_allowed",
    ),
]
POLL_FAULTS = [
    (
        "unknown encoding",
        lambda d, s: {"query": f"v=1&enc={d.draw(st.sampled_from(['xml', 'JSON', 'bson', 'x']))}"},
        "bad_request",
    )
]


@pytest.mark.parametrize("endpoint", ["sse", "longpoll", "poll"])
@pytest.mark.parametrize(
    ("what", "fault", "code"), FAULTS + POLL_FAULTS, ids=[f[0] for f in FAULTS + POLL_FAULTS]
)
def test_a_single_fault_gets_its_documented_refusal(
    fuzz: Fuzz, endpoint: str, what: str, fault: Any, code: str
) -> None:
    if (what, fault, code) in POLL_FAULTS and endpoint == "sse":
        code = None  # SSE is always JSON: ``enc`` is not read

    @fuzz_settings(60)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        async def one() -> None:
            session = (await open_sessions(fuzz.driver, 1))[0]
            change = fault(data, session)
            answer = await fuzz.driver.http(
                f"{endpoint} (single faults)",
                change.get("method", "GET"),
                f"/{endpoint}",
                query=change.get("query", "v=1").encode(),
                headers=change.get("headers", []),
            )
            if code is None:
                assert answer.status == 200, answer
            else:
                assert (answer.status, answer.label) == (ERRORS[code].http_status, code), (change, answer)

        fuzz.run(one())

    run()


SEND_FAULTS: list[tuple[str, Any, str]] = [
    ("no session", lambda d, s: {"query": "", "headers": [(b"x-ladder-rt", s[1].encode())]}, "bad_request"),
    ("no token", lambda d, s: {"query": f"sid={s[0]}", "headers": []}, "bad_request"),
    (
        "unknown session",
        lambda d, s: {
            "query": f"sid={d.draw(st.text('abcdef0123456789', min_size=1, max_size=30))}",
            "headers": [(b"x-ladder-rt", b"x")],
        },
        "unknown_session",
    ),
    (
        "wrong token",
        lambda d, s: {"query": f"sid={s[0]}", "headers": [(b"x-ladder-rt", b"wrong")]},
        "bad_resume_token",
    ),
    (
        "not JSON",
        lambda d, s: {"body": d.draw(st.sampled_from([b"{", b"nope", b'{"t":', b"\xff\xfe", b"[1,"]))},
        "bad_frame",
    ),
    # (A truncated msgpack frame is not refused: see test_decoders.test_a_truncated_msgpack_frame_is_refused.)
    (
        "not msgpack",
        lambda d, s: {
            "body": d.draw(st.sampled_from([b"\xc1", b"\x91\xc1", b"\xc7\x01\x05x"])),
            "type": b"application/msgpack",
        },
        "bad_frame",
    ),
    (
        "a frame over the limit",
        lambda d, s: {
            "body": b'{"t":"emit","i":1,"ev":"x","d":"'
            + b"y" * d.draw(st.integers(LIMIT, LIMIT + 500))
            + b'"}'
        },
        "frame_too_large",
    ),
    (
        "a body over the limit",
        lambda d, s: {"body": b"\n" * (1024 * 1024 + d.draw(st.integers(1, 100)))},
        "frame_too_large",
    ),
    (
        "declared over the limit",
        lambda d, s: {
            "headers": [
                (b"x-ladder-rt", s[1].encode()),
                (b"content-length", str(1024 * 1024 + d.draw(st.integers(1, 10**9))).encode()),
            ]
        },
        "frame_too_large",
    ),
    (
        "foreign origin",
        lambda d, s: {"headers": [(b"x-ladder-rt", s[1].encode()), (b"origin", b"http://evil.example")]},
        "origin_not_allowed",
    ),
]


@pytest.mark.parametrize(("what", "fault", "code"), SEND_FAULTS, ids=[f[0] for f in SEND_FAULTS])
def test_a_single_fault_in_a_post_gets_its_documented_refusal(
    fuzz: Fuzz, what: str, fault: Any, code: str
) -> None:
    @fuzz_settings(30)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        async def one() -> None:
            sid, rt = (await open_sessions(fuzz.driver, 1))[0]
            change = fault(data, (sid, rt))
            answer = await fuzz.driver.http(
                "send (single faults)",
                "POST",
                "/send",
                query=change.get("query", f"sid={sid}").encode(),
                headers=[
                    *change.get("headers", [(b"x-ladder-rt", rt.encode())]),
                    (b"content-type", change.get("type", b"application/x-ndjson")),
                ],
                body=[change.get("body", b"")],
            )
            assert (answer.status, answer.label) == (ERRORS[code].http_status, code), (
                what,
                answer.status,
                answer.body[:200],
            )

        fuzz.run(one())

    run()


def test_a_non_ascii_resume_token_is_refused(fuzz: Fuzz) -> None:
    @fuzz_settings(50)
    @given(
        st.text(min_size=1, max_size=40).filter(lambda t: t.isprintable() and not t.isascii()),
        st.sampled_from(["poll", "longpoll", "sse", "send", "ws"]),
    )
    def run(token: str, endpoint: str) -> None:
        async def one() -> None:
            sid, _ = (await open_sessions(fuzz.driver, 1))[0]
            if endpoint == "ws":
                hello = orjson.dumps({"t": "hello", "v": 1, "sid": sid, "rt": token})
                sent, context = await fuzz.driver.websocket("/ws", b"", [], [ws_message(hello, False)])
                assert check_websocket(sent, [], LIMIT, context) == [
                    "hello refused: bad_resume_token",
                    "close 4403",
                ]
                return
            method = "POST" if endpoint == "send" else "GET"
            query = f"sid={sid}&rt={quote(token, safe='')}".encode()
            answer = await fuzz.driver.http(
                "non-ASCII resume tokens", method, f"/{endpoint}", query=query
            )
            assert (answer.status, answer.label) == (403, "bad_resume_token"), answer

        fuzz.run(one())

    run()
