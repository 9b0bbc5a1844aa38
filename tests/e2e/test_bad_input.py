"""Malformed input on every transport gets its documented error; a healthy client is unaffected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgpack
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ladder import Client
from tests.support.server import LadderServer

FOREIGN = {"origin": "http://evil.example"}


@pytest.fixture
async def http(server: LadderServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def open_session(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/poll", params={"v": 1})
    assert response.status_code == 200
    welcome: dict[str, Any] = orjson.loads(response.content.split(b"\n")[0])
    return welcome


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) >= {"code", "reason"} and body["reason"], body
    return response.status_code, body["code"]


async def ws_hello(url: str) -> Any:
    ws = await websockets.connect(url.replace("http", "ws") + "/ws")
    await ws.send('{"t":"hello","v":1}')
    welcome = orjson.loads(await ws.recv())
    assert welcome["t"] == "welcome"
    return ws


async def next_frames(ws: Any) -> list[dict[str, Any]]:
    """Frames of the next message that is not a heartbeat."""
    while True:
        frames = [orjson.loads(line) for line in (await ws.recv()).split("\n")]
        frames = [f for f in frames if f["t"] not in ("ping", "ack")]
        if frames:
            return frames


async def test_websocket_refusals(server: LadderServer) -> None:
    ws = await ws_hello(server.url)
    await ws.send("{not json")
    assert (await next_frames(ws))[0]["code"] == "bad_frame"
    await ws.send('{"t":"teleport"}')
    assert (await next_frames(ws))[0]["code"] == "unknown_frame"
    await ws.send('{"t":"call","i":1,"ev":42}')
    err = (await next_frames(ws))[0]
    assert (err["t"], err["code"], err["re"]) == ("err", "bad_frame", 1) and "'ev'" in err["reason"]
    await ws.send('{"t":"call","i":2,"ev":"echo","d":"still here"}')
    assert (await next_frames(ws))[0]["d"]["data"] == "still here", "the session stayed up"
    await ws.send("x" * (64 * 1024 + 1))
    with pytest.raises(ConnectionClosed) as closed:
        await next_frames(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert closed.value.rcvd.reason.startswith("frame_too_large: "), closed.value.rcvd  # (§8)

    for first, code, close in [
        ('{"t":"ping"}', "bad_request", 4400),
        ('{"t":"hello","v":1,"sid":"nope","rt":"x"}', "unknown_session", 4404),
        ('{"t":"hello","v":7}', "unsupported_version", 4400),
    ]:
        ws = await websockets.connect(server.url.replace("http", "ws") + "/ws")
        await ws.send(first)
        assert orjson.loads(await ws.recv())["code"] == code
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == close

    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(server.url.replace("http", "ws") + "/ws", additional_headers=FOREIGN)
    assert refused.value.response.status_code == 403
    allowed = await websockets.connect(
        server.url.replace("http", "ws") + "/ws", additional_headers={"origin": "http://allowed.example"}
    )
    await allowed.close()


@pytest.mark.parametrize("endpoint", ["sse", "longpoll", "poll"])
async def test_downstream_http_refusals(http: httpx.AsyncClient, endpoint: str) -> None:
    welcome = await open_session(http)
    sid, token = welcome["sid"], welcome["rt"]
    cases: list[tuple[dict[str, Any], dict[str, str], int, str]] = [
        ({"sid": "nope", "rt": "x"}, {}, 404, "unknown_session"),
        ({"sid": sid, "rt": "wrong"}, {}, 403, "bad_resume_token"),
        ({"sid": sid}, {}, 400, "bad_frame"),
        ({"sid": sid, "ack": "abc"}, {"x-ladder-rt": token}, 400, "bad_frame"),
        ({"v": "x"}, {}, 400, "bad_frame"),
        ({"sid": sid, "ack": 10**6}, {"x-ladder-rt": token}, 400, "bad_frame"),
        ({"v": 2}, {}, 400, "unsupported_version"),
        ({}, FOREIGN, 403, "origin_not_allowed"),
    ]
    if endpoint != "sse":
        cases.append(({"enc": "xml"}, {}, 400, "bad_request"))
    for params, headers, status, code in cases:
        response = await http.get(f"/{endpoint}", params=params, headers=headers)
        assert error_of(response) == (status, code), (params, headers)


EMPTY_FIELDS: list[tuple[str, dict[str, Any]]] = [
    # (the field named in the refusal, the hello's fields; "SID"/"RT": a live session's)
    ("sid", {"sid": "", "rt": "abc"}),
    ("rt", {"sid": "SID", "rt": ""}),
    ("ack", {"sid": "SID", "rt": "RT", "ack": ""}),
    ("v", {"v": ""}),
    ("tok", {"tok": ""}),
    ("why", {"why": ""}),
    ("psid", {"psid": "", "prt": "", "pids": ""}),
]


async def first_answer(http: httpx.AsyncClient, endpoint: str, params: Any, headers: Any) -> tuple[int, Any]:
    """The status and the refusal's code (or the first line of an answer that opened)."""
    async with http.stream("GET", f"/{endpoint}", params=params, headers=headers) as response:
        if response.status_code == 200:
            return 200, "opened"
        await response.aread()
        body = response.json()
        assert body["reason"], body
        return response.status_code, (body["code"], body["reason"])


@pytest.mark.parametrize(("field", "hello"), EMPTY_FIELDS, ids=[f[0] for f in EMPTY_FIELDS])
async def test_a_hello_field_present_but_empty_is_refused_on_every_rung(
    server: LadderServer, http: httpx.AsyncClient, field: str, hello: dict[str, Any]
) -> None:
    """protocol §3.1, §8: the HTTP rungs read an empty query field as absent (``sid=&rt=abc``
    opened a new session instead of resuming one) where a WebSocket hello with ``"sid": ""``
    is ``bad_frame``. Now every rung refuses it alike, naming the field."""
    welcome = await open_session(http)
    live = {"SID": welcome["sid"], "RT": welcome["rt"]}
    hello = {name: live.get(value, value) for name, value in hello.items()}

    async with websockets.connect(server.url.replace("http", "ws") + "/ws") as ws:
        await ws.send(orjson.dumps({"t": "hello", "v": 1, **hello}).decode())
        err = orjson.loads(await ws.recv())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert (err["t"], err["code"]) == ("err", "bad_frame") and f"'{field}'" in err["reason"], err
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400

    for endpoint in ("sse", "longpoll", "poll"):
        status, answer = await first_answer(http, endpoint, {"v": 1, **hello}, {})
        assert status == 400 and answer[0] == "bad_frame" and f"'{field}'" in answer[1], (endpoint, answer)
    if field == "rt":  # (the resume token's header is that field too)
        params = {"v": 1, "sid": welcome["sid"]}
        for endpoint in ("sse", "longpoll", "poll"):
            status, answer = await first_answer(http, endpoint, params, {"x-ladder-rt": ""})
            assert status == 400 and answer[0] == "bad_frame", (endpoint, answer)


@pytest.mark.parametrize(
    ("params", "headers", "words"),
    [
        ({"enc": ""}, {}, "unknown encoding ''"),
        ({"open": ""}, {}, "'open' must be 1"),
        ({"open": "0"}, {}, "'open' must be 1"),
        ({}, {"authorization": "Bearer"}, "Bearer token is empty"),
    ],
    ids=["enc=", "open=", "open=0", "empty Bearer"],
)
async def test_a_poll_field_or_header_present_but_empty_or_wrong_is_refused(
    http: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str], words: str
) -> None:
    """``enc=`` was read as JSON, ``open=`` and ``open=0`` as no ``open`` (no welcome, no word
    of it), and ``Authorization: Bearer`` with no token opened an anonymous session where
    ``tok=`` is refused: each is ``400 bad_request`` naming it."""
    for endpoint in ("longpoll", "poll"):
        status, answer = await first_answer(http, endpoint, {"v": 1, **params}, headers)
        assert (status, answer[0]) == (400, "bad_request") and words in answer[1], (endpoint, answer)


async def test_a_hello_field_whose_percent_encoding_is_not_utf8_is_refused_on_every_http_rung(
    http: httpx.AsyncClient,
) -> None:
    """``tok=user:%ED%A0%80`` (a surrogate's bytes, not UTF-8) reached the authenticate hook as
    "user:\ufffd\ufffd\ufffd" (a session for that user); a hello field must be UTF-8 text, as in
    a WebSocket hello, whose JSON or msgpack cannot carry anything else."""
    for endpoint in ("sse", "longpoll", "poll"):
        status, answer = await first_answer(http, f"{endpoint}?v=1&tok=user:%ED%A0%80", None, {})
        assert (status, answer[0]) == (400, "bad_frame") and "'tok'" in answer[1], (endpoint, answer)
        assert "not UTF-8" in answer[1], answer
        status, _ = await first_answer(http, f"{endpoint}?v=1&tok=caf%C3%A9", None, {})
        assert status == 200, (endpoint, "percent-encoded UTF-8 is taken")
    # POST send's sid and rt too: they were echoed in an unknown_session reason orjson could
    # not write (500, a traceback in the log)
    for query in ("sid=%FF&rt=x", "sid=%ED%A0%80&rt=x", "sid=ab&rt=%FF"):
        posted = await http.post(f"/send?{query}", content=b'{"t":"ping"}')
        assert posted.status_code == 400, (query, posted.status_code, posted.text)
        assert posted.json()["code"] == "bad_frame" and "not UTF-8" in posted.json()["reason"], posted.text


async def test_an_empty_pu_is_an_anonymous_lost_session_and_a_pu_alone_is_refused_on_every_rung(
    server: LadderServer, http: httpx.AsyncClient
) -> None:
    """``pu`` is the one hello field whose empty value means something (``""``: the lost
    session was anonymous), in a query as in a WebSocket hello; without ``psid`` it is
    ``bad_frame`` naming it."""
    lost = {"v": 1, "psid": "gone", "prt": "r", "pids": "1", "pu": ""}
    for endpoint in ("sse", "longpoll", "poll"):
        assert (await first_answer(http, endpoint, lost, {}))[0] == 200, endpoint
        status, answer = await first_answer(http, endpoint, {"v": 1, "pu": "alice"}, {})
        assert status == 400 and answer[0] == "bad_frame" and "'pu'" in answer[1], (endpoint, answer)


async def test_a_resume_token_without_a_session_is_refused_on_every_rung(
    server: LadderServer, http: httpx.AsyncClient
) -> None:
    """The same rule: ``rt`` without ``sid`` is ``bad_frame`` in a WebSocket hello; in a query
    (or as ``X-Ladder-Rt``) it was ignored and a new session opened."""
    async with websockets.connect(server.url.replace("http", "ws") + "/ws") as ws:
        await ws.send('{"t":"hello","v":1,"rt":"abc"}')
        assert orjson.loads(await ws.recv())["code"] == "bad_frame"
    for endpoint in ("sse", "longpoll", "poll"):
        for params, headers in (({"v": 1, "rt": "abc"}, {}), ({"v": 1}, {"x-ladder-rt": "abc"})):
            status, answer = await first_answer(http, endpoint, params, headers)
            assert status == 400 and answer[0] == "bad_frame" and "'rt'" in answer[1], (endpoint, headers, answer)


async def test_an_empty_last_event_id_is_refused_as_an_empty_ack(http: httpx.AsyncClient) -> None:
    """SSE's ``Last-Event-ID`` is an ``ack``: present but empty (a browser sends none then),
    it is ``bad_frame`` as ``ack=`` is; the stream was opened as if it were absent."""
    welcome = await open_session(http)
    params, auth = {"v": 1, "sid": welcome["sid"]}, {"x-ladder-rt": welcome["rt"]}
    status, answer = await first_answer(http, "sse", params, {**auth, "last-event-id": ""})
    assert status == 400 and answer[0] == "bad_frame" and "last-event-id" in answer[1], answer
    assert await first_answer(http, "sse", params, {**auth, "last-event-id": "0"}) == (200, "opened")


async def test_upstream_post_refusals(http: httpx.AsyncClient) -> None:
    welcome = await open_session(http)
    auth = {"x-ladder-rt": welcome["rt"]}
    sid = {"sid": welcome["sid"]}
    post = http.post
    assert error_of(await post("/send", params=sid, headers=auth, content=b"{nope")) == (400, "bad_frame")
    assert error_of(await post("/send", params=sid, headers=auth, content=b"x" * (1024 * 1024 + 1))) == (
        413,
        "frame_too_large",
    )
    huge_frame = orjson.dumps({"t": "emit", "i": 1, "ev": "x", "d": "y" * 70_000})
    assert error_of(await post("/send", params=sid, headers=auth, content=huge_frame)) == (
        413,
        "frame_too_large",
    )
    assert error_of(await post("/send", params={"sid": "nope"}, headers=auth, content=b"")) == (
        404,
        "unknown_session",
    )
    assert error_of(await post("/send", params=sid, headers={"x-ladder-rt": "no"}, content=b"")) == (
        403,
        "bad_resume_token",
    )
    assert (await post("/send", content=b"")).status_code == 204, "an empty POST naming no session asks why"
    assert error_of(await post("/send", content=b'{"t":"emit","i":1,"ev":"x"}')) == (400, "bad_request")
    assert error_of(await post("/send", params={"sid": "s"}, content=b"")) == (400, "bad_request")
    assert error_of(await post("/send", params=sid, headers={**auth, **FOREIGN}, content=b"")) == (
        403,
        "origin_not_allowed",
    )
    wrong = await http.get("/send")
    assert error_of(wrong) == (405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST, OPTIONS", "a 405 names the methods that work (RFC 9110)"
    for method, endpoint, allow in (
        ("POST", "/health", "GET, HEAD, OPTIONS"),
        ("PUT", "/metrics", "GET, OPTIONS"),
        ("POST", "/client.js", "GET, HEAD, OPTIONS"),
        ("DELETE", "/ws", "GET, OPTIONS"),
        ("POST", "/sse", "GET, OPTIONS"),
    ):
        # (each was 404 "no endpoint", which a GET of it contradicts)
        response = await http.request(method, endpoint)
        assert error_of(response) == (405, "method_not_allowed"), endpoint
        assert response.headers["allow"] == allow, endpoint
    assert error_of(await http.get("/teleport")) == (404, "not_found")
    # (a preflight of it was 403 "a CORS preflight without an Origin header", of a path
    # that is not there whatever the origin)
    assert error_of(await http.options("/teleport")) == (404, "not_found")
    assert error_of(await http.options("/teleport", headers=FOREIGN)) == (404, "not_found")
    # Valid and invalid frames in one body: the valid ones count, the others are reported.
    mixed = b'{"t":"bogus"}\n{"t":"call","i":1,"ev":"echo","d":5}\n{"t":"sub","i":2,"ch":7}'
    response = await post("/send", params=sid, headers=auth, content=mixed)
    assert response.status_code == 204
    poll = await http.get("/poll", params={**sid, "ack": 0}, headers=auth)
    frames = [orjson.loads(line) for line in poll.content.split(b"\n")]
    kinds = {(f["t"], f.get("re"), f.get("code")) for f in frames}
    assert ("reply", 1, None) in kinds and ("err", 2, "bad_frame") in kinds


async def test_a_post_naming_no_session_answers_for_its_credentials() -> None:
    """protocol §3.6: a page cannot read why its WebSocket upgrade or event stream was
    refused; an empty POST naming no session hears the refusal a hello with the same
    credentials would get (it got ``bad_request`` whatever they were), and opens nothing."""
    with LadderServer({"require_token": True}) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            nothing = await http.post("/send", content=b"")
            assert error_of(nothing) == (401, "unauthorized")
            assert "no credentials" in nothing.json()["reason"]
            wrong = await http.post("/send", headers={"Authorization": "Bearer nobody"}, content=b"")
            assert error_of(wrong) == (401, "unauthorized")
            right = await http.post("/send", headers={"Authorization": "Bearer user:ada"}, content=b"")
            assert (right.status_code, right.content) == (204, b""), "nothing refused (was 400 bad_request)"
            # Half a session is the client's mistake, not a question (it was 401 unauthorized,
            # blaming the token, where a proxy stripped X-Ladder-Rt):
            for half in ({"params": {"sid": "abc"}}, {"headers": {"x-ladder-rt": "abc"}}, {"params": {"rt": "abc"}}):
                assert error_of(await http.post("/send", content=b"", **half)) == (400, "bad_request"), half
            health = (await http.get("/health")).json()
            assert health["sessions"] == 0


@pytest.mark.parametrize("driver", [(), ("--asgi-ws",)], ids=["native", "asgi"])
async def test_a_broken_authenticate_hook_is_internal_on_both_websocket_drivers(driver: tuple[str, ...]) -> None:
    """A hook returning 42 is the app's bug: the client hears ``internal`` in an ``err`` frame
    and a 1011 close, as HTTP's 500 says it (through ASGI the connection was dropped with no
    close frame at all, 1006, which every client takes for a network failure and retries),
    and the server keeps serving everyone else."""
    with LadderServer({"require_token": True}, args=driver) as server:
        ws = await websockets.connect(server.url.replace("http", "ws") + "/ws")
        await ws.send('{"t":"hello","v":1,"tok":"hook-bug"}')
        err = orjson.loads(await ws.recv())
        assert (err["t"], err["code"]) == ("err", "internal")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        assert closed.value.rcvd.reason.startswith("internal"), closed.value.rcvd
        ws = await websockets.connect(server.url.replace("http", "ws") + "/ws")
        await ws.send('{"t":"hello","v":1,"tok":"user:ada"}')
        assert orjson.loads(await ws.recv())["t"] == "welcome"
        await ws.close()


async def test_a_refresh_the_authenticate_hook_fails_on_is_internal_and_the_session_goes_on() -> None:
    """No event handler is involved: it was answered ``handler_error`` "the event handler failed"."""
    with LadderServer({"require_token": True}) as server:
        ws = await websockets.connect(server.url.replace("http", "ws") + "/ws")
        await ws.send('{"t":"hello","v":1,"tok":"user:ada"}')
        assert orjson.loads(await ws.recv())["t"] == "welcome"
        await ws.send('{"t":"refresh","i":1,"tok":"hook-bug"}')
        err = (await next_frames(ws))[0]
        assert (err["t"], err["code"], err["re"]) == ("err", "internal", 1), err
        assert "authenticate hook" in err["reason"]
        await ws.send('{"t":"call","i":2,"ev":"echo","d":"still here"}')
        assert (await next_frames(ws))[0]["d"]["data"] == "still here", "the session stayed up"
        await ws.close()


async def test_a_healthy_client_is_unaffected_by_abuse_on_every_rung(server: LadderServer) -> None:
    async with Client(server.url, transports=["websocket"]) as healthy:
        sub = healthy.subscribe("feed:healthy")
        await sub.ready()
        await healthy.call(
            "publish", {"channel": "feed:healthy", "count": 300, "interval": 0.005, "background": True}
        )

        async def abuse() -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                for _ in range(20):
                    await http.post("/send", params={"sid": "x"}, content=b"\x00" * 10_000)
                    await http.get("/sse", params={"ack": "-1"})
                    await http.get("/longpoll", params={"v": "x"})
                    await http.get("/poll", headers=FOREIGN)
            for _ in range(10):
                ws = await websockets.connect(server.url.replace("http", "ws") + "/ws")
                await ws.send(b"\xc1\xc1")
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                    await ws.recv()

        abuser = asyncio.create_task(abuse())
        got = []
        async with asyncio.timeout(30):
            async for pub in sub:
                got.append(pub.data["n"])
                if len(got) == 300:
                    break
        await abuser
        assert got == list(range(300))
        assert (await healthy.call("echo", 1))["data"] == 1


@pytest.mark.parametrize("rung", ["websocket", "sse"])
async def test_a_bytes_shaped_map_from_a_msgpack_publisher_never_reaches_json_readers(
    server: LadderServer, rung: str
) -> None:
    """``{"$b": "!!!"}`` is a map to msgpack, but JSON readers take it for bytes and cannot
    decode it: it was fanned out, and every JSON subscriber (SSE is always JSON) closed. Now
    it is refused to its publisher alone, and the readers get the next publication."""
    async with Client(server.url, transports=[rung], encoding="json") as reader:
        sub = reader.subscribe("open:bad-tag")
        await sub.ready()
        async with websockets.connect(server.url.replace("http", "ws") + "/ws") as ws:
            await ws.send(msgpack.packb({"t": "hello", "v": 1, "enc": "msgpack"}))
            assert msgpack.unpackb(await ws.recv())["t"] == "welcome"
            for i, data in enumerate(({"x": {"$b": "!!!"}}, {"x": "fine"}), start=1):
                await ws.send(msgpack.packb({"t": "pub", "i": i, "ch": "open:bad-tag", "d": data}))
            answers: dict[int, dict[str, Any]] = {}
            while len(answers) < 2:
                unpacker = msgpack.Unpacker()
                unpacker.feed(await asyncio.wait_for(ws.recv(), 5))
                answers.update((frame["re"], frame) for frame in unpacker if "re" in frame)
        assert answers[1]["t"] == "err" and answers[1]["code"] == "bad_frame", answers[1]
        assert '{"$b": str}' in answers[1]["reason"] and "standard base64" in answers[1]["reason"]
        assert answers[2]["t"] == "reply", answers[2]
        publication = await asyncio.wait_for(anext(sub), 5)
        assert publication.data == {"x": "fine"} and reader.state == "connected"


@pytest.mark.parametrize("driver", [(), ("--asgi-ws",)], ids=["native", "asgi"])
async def test_an_unknown_frame_beside_the_hello_is_refused_alone(driver: tuple[str, ...]) -> None:
    """protocol §2: a frame refused on its own gets its own ``err`` and the rest of the batch
    counts. In the hello's own message it refused the hello: ``unknown_frame``, close 4400,
    no session (in any later message, the same frame got its ``err`` alone)."""
    with LadderServer({}, args=driver) as server:
        async with websockets.connect(server.url.replace("http", "ws") + "/ws") as ws:
            await ws.send('{"t":"hello","v":1}\n{"t":"zzz"}\n{"t":"call","i":1,"ev":"echo","d":"after"}')
            seen: list[dict[str, Any]] = []
            while not any(f.get("t") == "reply" for f in seen):
                seen += [orjson.loads(line) for line in (await asyncio.wait_for(ws.recv(), 5)).splitlines()]
            kinds = [(f["t"], f.get("code")) for f in seen if f["t"] in ("welcome", "err", "reply")]
            assert kinds == [("welcome", None), ("err", "unknown_frame"), ("reply", None)], seen
            assert next(f for f in seen if f["t"] == "reply")["d"]["data"] == "after"


async def _frames_until(ws: Any, done: Any) -> list[dict[str, Any]]:
    """Every frame the server writes until ``done(frames)`` holds (heartbeats and acks left out)."""
    seen: list[dict[str, Any]] = []
    while not done(seen):
        lines = (await asyncio.wait_for(ws.recv(), 5)).splitlines()
        seen += [f for f in map(orjson.loads, lines) if f["t"] not in ("ping", "ack")]
    return seen


@pytest.mark.parametrize("driver", [(), ("--asgi-ws",)], ids=["native", "asgi"])
async def test_a_refused_frame_is_answered_and_rated_in_its_place_in_the_batch(driver: tuple[str, ...]) -> None:
    """protocol §4: a batch is read in order. A frame refused without an id was answered and
    charged to the message rate before the rest of its batch: written after 40 calls within a
    burst of 40, it took the 40th call's place (``rate_limited`` ``re`` 40: sent again for a
    frame written after it), and its ``err`` came before the pongs of pings written before it."""
    limits = {"limits": {"message_rate": 20, "message_burst": 40}}
    with LadderServer(limits, args=driver) as server:
        async with websockets.connect(server.url.replace("http", "ws") + "/ws") as ws:
            await ws.send('{"t":"hello","v":1}')
            assert orjson.loads(await ws.recv())["t"] == "welcome"
            calls = [orjson.dumps({"t": "call", "i": n, "ev": "echo", "d": n}).decode() for n in range(1, 41)]
            await ws.send("\n".join([*calls, '{"t":"zzz"}']))
            seen = await _frames_until(ws, lambda s: sum(f["t"] == "reply" for f in s) == 40)
            errors = [(f["code"], f.get("re")) for f in seen if f["t"] == "err"]
            assert errors == [("rate_limited", None)], errors  # (the frame over the burst: zzz)
            assert [f["re"] for f in seen if f["t"] == "reply"] == list(range(1, 41))

        with LadderServer({}, args=driver) as plain:
            async with websockets.connect(plain.url.replace("http", "ws") + "/ws") as ws:
                await ws.send('{"t":"hello","v":1}')
                assert orjson.loads(await ws.recv())["t"] == "welcome"
                pings = ['{"t":"ping","n":1}', '{"t":"zzz"}', '{"t":"ping","n":2}', '{"t":"ping","n":"x"}']
                await ws.send("\n".join([*pings, '{"t":"ping","n":3}']))
                seen = await _frames_until(ws, lambda s: any(f.get("n") == 3 for f in s))
                said = [f.get("n") if f["t"] == "pong" else f["code"] for f in seen]
                assert said == [1, "unknown_frame", 2, "bad_frame", 3], seen


async def test_a_refusal_posted_last_is_the_newest_control_frame_a_poll_keeps(http: httpx.AsyncClient) -> None:
    """protocol §5: a poll session keeps its 32 newest control frames. A refusal at the end of
    a POSTed batch of 40 pings was queued first, before their pongs, and was the one dropped."""
    welcome = await open_session(http)
    params, headers = {"sid": welcome["sid"]}, {"X-Ladder-Rt": welcome["rt"]}
    body = "\n".join([*(f'{{"t":"ping","n":{n}}}' for n in range(1, 41)), '{"t":"zzz"}'])
    posted = await http.post("/send", params=params, headers=headers, content=body)
    assert posted.status_code == 204
    answer = await http.get("/poll", params={"v": 1, "sid": welcome["sid"], "ack": 0}, headers=headers)
    frames = [orjson.loads(line) for line in answer.content.splitlines()]
    kept = [f.get("n") if f["t"] == "pong" else f.get("code") for f in frames if f["t"] in ("pong", "err")]
    assert kept == [*range(10, 41), "unknown_frame"], kept
