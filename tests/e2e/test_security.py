"""Authentication, permissions and abuse limits against a real server."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.exceptions import ConnectionClosed

from ladder import Client, LadderError
from ladder.protocol.sids import label
from tests.support.metrics import metric
from tests.support.server import LadderServer, free_port

SECRET = "s3cret-for-tests-only-0123456789abcdef"


def token(user: str, *, ttl: float = 60.0, key: Any = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time() + ttl), **claims}, key, algorithm=algorithm)


@pytest.fixture(scope="module")
def jwt_server() -> Iterator[LadderServer]:
    config = {"heartbeat": 1.0, "jwt": {"key": SECRET, "audience": "ladder-tests"}, "private_channels": True}
    with LadderServer(config) as server:
        yield server


async def test_jwt_accepts_good_tokens_and_refuses_bad_ones(jwt_server: LadderServer) -> None:
    good = token("ada", aud="ladder-tests")
    async with Client(jwt_server.url, token=good, transports=["websocket"]) as client:
        assert (await client.call("echo", 1))["user"] == "ada"
    async with Client(jwt_server.url, token=good, transports=["sse"]) as client:  # Authorization header
        assert (await client.call("echo", 1))["user"] == "ada"
    for bad, code in [
        (token("ada", key="wrong-secret-wrong-secret-wrong-sec", aud="ladder-tests"), "unauthorized"),
        (token("ada", aud="someone-else"), "unauthorized"),
        (token("ada", ttl=-10, aud="ladder-tests"), "token_expired"),
        ("not-a-jwt", "unauthorized"),
        (None, "unauthorized"),
    ]:
        with pytest.raises(LadderError) as refused:
            await Client(jwt_server.url, token=bad, transports=["websocket"], max_attempts=3).connect()
        assert refused.value.code == code, bad
        if bad is None:  # the reason names the fix (it said only "credentials were refused")
            assert "token" in refused.value.reason and "Client(url, token=...)" in refused.value.reason


async def test_a_bearer_token_is_bounded_as_the_hello_s_tok_is(jwt_server: LadderServer) -> None:
    """``tok`` was refused past 8,192 characters; the same token in a header went to the hook."""
    async with httpx.AsyncClient(base_url=jwt_server.url) as http:
        answer = await http.get("/poll", params={"v": 1}, headers={"authorization": "Bearer " + "x" * 9000})
        assert answer.status_code == 400
        assert answer.json()["code"] == "bad_request" and "over 8192 characters" in answer.json()["reason"]


@pytest.mark.parametrize("rung", ["websocket", "sse", "longpoll", "poll"])
async def test_a_token_callable_is_called_once_per_transport_not_per_request(
    jwt_server: LadderServer, rung: str
) -> None:
    """The HTTP rungs asked it for every POST and poll (303 calls in 50 s on short polling),
    for an Authorization header the server does not read after the session opened."""
    calls: list[str] = []

    def fresh() -> str:
        calls.append(token("ada", ttl=600, aud="ladder-tests"))
        return calls[-1]

    async with Client(jwt_server.url, token=fresh, transports=[rung]) as client:
        for n in range(20):
            assert (await client.call("echo", n))["user"] == "ada"
    assert len(calls) == 1, len(calls)


async def test_rs256_tokens() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    config = {"jwt": {"key": public_pem, "algorithms": ["RS256"]}}
    with LadderServer(config) as server:
        signed = token("grace", key=private, algorithm="RS256")
        async with Client(server.url, token=signed, transports=["longpoll"]) as client:
            assert (await client.call("echo", 1))["user"] == "grace"
        forged = token("grace", key=SECRET, algorithm="HS256")  # the classic algorithm confusion
        with pytest.raises(LadderError) as refused:
            await Client(server.url, token=forged, max_attempts=2).connect()
        assert refused.value.code == "unauthorized"


async def test_token_refresh_keeps_the_session_and_expiry_ends_it(jwt_server: LadderServer) -> None:
    issued: list[str] = []

    def fresh() -> str:
        issued.append(token("ada", ttl=3, aud="ladder-tests"))
        return issued[-1]

    # A callable token is refreshed before it expires, over the live session.
    async with Client(jwt_server.url, token=fresh, transports=["websocket"], refresh_margin=2.0) as client:
        session = client.session_id
        await asyncio.sleep(4.5)  # past the first token's expiry: the refresh must have happened
        assert (await client.call("echo", 1))["user"] == "ada"
        assert client.session_id == session, "refreshed in place, no reconnect"
        assert len(issued) >= 2
    # A fixed token that expires ends the session; the server says why, and the client gives
    # up at once (it started a new session with the same token, to be refused so).
    errors: asyncio.Queue[Any] = asyncio.Queue()
    client = Client(jwt_server.url, token=token("ada", ttl=2, aud="ladder-tests"), transports=["websocket"])
    ends: list[Any] = []
    client.on("disconnected", ends.append)
    client.on("error", errors.put_nowait)
    states: list[str] = []
    client.on("state", lambda event: states.append(event.state))
    await client.connect()
    error = await asyncio.wait_for(errors.get(), 10)
    assert error.code == "token_expired" and client.state == "closed"
    assert len(ends) == 1 and "token_expired" in ends[0].reason, ends
    assert states == ["connected", "closed"], states  # (was: ..., "connecting", "closed")
    await client.close()


async def test_a_quiet_session_s_callable_token_is_refreshed_in_time() -> None:
    """Nothing arrives for longer than a token lives (the default 20 s heartbeat): the client
    checked for a refresh only when frames arrived, so the session ended with
    ``token_expired`` and a new one began (``session_lost``)."""
    with LadderServer({"jwt": {"key": SECRET, "audience": "ladder-tests"}}) as server:
        issued: list[str] = []

        def fresh() -> str:
            issued.append(token("ada", ttl=4, aud="ladder-tests"))
            return issued[-1]

        ended: list[object] = []
        client = Client(server.url, token=fresh, transports=["websocket"], refresh_margin=2.0)
        client.on("disconnected", ended.append)
        client.on("session_lost", ended.append)
        async with client:
            session = client.session_id
            await asyncio.sleep(6.5)  # quiet, past the first tokens' expiry: the point of the test
            assert ended == [] and client.session_id == session, ended
            assert len(issued) >= 3, issued
            assert (await client.call("echo", 1))["user"] == "ada"


async def test_a_token_shorter_than_the_refresh_margin_is_refreshed_once_per_half_life(
    jwt_server: LadderServer,
) -> None:
    """4 s tokens with the default 60 s margin: every token was inside the margin as soon as it
    was issued, so each refresh asked for the next at once (about 500 token calls in 3 s, and
    the server's rate limit refusing them). Now halfway through what is left of each."""
    issued: list[str] = []

    def fresh() -> str:
        issued.append(token("ada", ttl=4, aud="ladder-tests"))
        return issued[-1]

    ended: list[object] = []
    client = Client(jwt_server.url, token=fresh, transports=["websocket"])
    client.on("disconnected", ended.append)
    client.on("session_lost", ended.append)
    async with client:
        session = client.session_id
        await asyncio.sleep(6.5)  # time passing is the point: three tokens' lives, at least
        assert ended == [] and client.session_id == session, ended
        assert 3 <= len(issued) <= 8, len(issued)
        assert (await client.call("echo", 1))["user"] == "ada"


async def test_refresh_must_be_the_same_user(jwt_server: LadderServer) -> None:
    async with Client(jwt_server.url, token=token("ada", aud="ladder-tests")) as client:
        with pytest.raises(LadderError) as refused:
            await client.refresh(token("mallory", aud="ladder-tests"))
        assert refused.value.code == "forbidden"
        await client.refresh()  # the client's own token still: a refused one is not kept
        await client.refresh(token("ada", aud="ladder-tests"))


async def test_per_channel_permissions(jwt_server: LadderServer) -> None:
    async with Client(jwt_server.url, token=token("ada", aud="ladder-tests")) as ada:
        assert (await ada.subscribe("private:ada").ready()).recovered
        with pytest.raises(LadderError) as denied:
            await ada.subscribe("private:grace").ready()
        assert denied.value.code == "forbidden"
        with pytest.raises(LadderError) as denied:
            await ada.publish("private:ada", "hi")
        assert denied.value.code == "forbidden"
        with pytest.raises(LadderError) as denied:
            await ada.history("private:grace")
        assert denied.value.code == "forbidden"


async def test_a_channel_s_past_is_history_to_the_permissions_hook(jwt_server: LadderServer) -> None:
    """Refused ``history`` on ``sealed:*``, ``subscribe(recent=10)`` and a recovery from
    offset 0 were both handed every publication kept. ``recent`` is refused now, and the
    recovery is told it was not recovered (a ``resync`` event, as when history is gone): it
    gets none of them, and what comes next all the same."""
    ada_token, grace_token = token("ada", aud="ladder-tests"), token("grace", aud="ladder-tests")
    async with Client(jwt_server.url, token=ada_token) as ada, Client(jwt_server.url, token=grace_token) as grace:
        channel = "sealed:past"
        await ada.call("publish", {"channel": channel, "count": 3})
        with pytest.raises(LadderError) as refused:
            await ada.subscribe(channel, recent=10).ready()
        assert refused.value.code == "forbidden" and "history" in refused.value.reason
        now = await grace.subscribe(channel).ready()
        assert (now.offset, now.missed, now.recovered) == (3, 0, True)
        resyncs: list[Any] = []
        ada.on("resync", resyncs.append)
        sub = ada.subscribe(channel, since=(now.epoch, 0))
        result = await sub.ready()
        assert (result.recovered, result.missed, result.offset) == (False, 0, 3)
        assert [(event.channel, event.epoch, event.offset) for event in resyncs] == [(channel, now.epoch, 3)]
        await ada.call("publish", {"channel": channel, "count": 1, "start": 3})
        async with asyncio.timeout(5):
            pub = await anext(aiter(sub))
        assert (pub.offset, pub.data["n"]) == (4, 3), "the first one it gets is the one after the resync"


async def test_a_session_is_resumed_only_with_its_resume_token(jwt_server: LadderServer) -> None:
    async with Client(jwt_server.url, token=token("ada", aud="ladder-tests"), transports=["longpoll"]) as ada:
        sid = ada.session_id
        async with httpx.AsyncClient(base_url=jwt_server.url) as http:
            stolen = await http.get("/longpoll", params={"sid": sid, "ack": 0})
            assert stolen.status_code == 400 and stolen.json()["code"] == "bad_frame", (
                "a session id alone is refused"
            )
            guessed = await http.get(
                "/longpoll", params={"sid": sid, "ack": 0}, headers={"x-ladder-rt": "guess"}
            )
            assert guessed.status_code == 403 and guessed.json()["code"] == "bad_resume_token"
            posted = await http.post(
                "/send", params={"sid": sid}, headers={"x-ladder-rt": "guess"}, content=b""
            )
            assert posted.status_code == 403


async def test_message_rate_limit_answers_retry_after_then_disconnects_floods() -> None:
    # (A client that honours retry_after is paced, never refused for good: test_client_edges.)
    with LadderServer({"limits": {"message_rate": 5, "message_burst": 5}}) as server:
        # Keep flooding while being told to wait: the session is dropped (after 3 s of it).
        batches = (
            "\n".join(f'{{"t":"emit","i":{batch * 10 + i},"ev":"echo"}}' for i in range(1, 11))
            for batch in range(100)
        )
        frames = await flooded(server, batches, pause=0.1)  # a steady flood, ten messages every 100 ms
        limited_replies = [f for f in frames if f.get("code") == "rate_limited" and "re" in f]
        assert limited_replies and all(f["retry_after"] > 0 for f in limited_replies)


async def test_a_bye_past_the_message_rate_still_ends_the_session() -> None:
    """A client that closes right after a burst: its ``bye`` was over the rate too, dropped
    without a word, and the session lived on until its TTL (close() says the server forgets
    it at once)."""
    with LadderServer({"limits": {"message_rate": 5, "message_burst": 5}}) as server:
        async with websockets.connect(server.url.replace("http", "ws") + "/ws") as ws:
            await ws.send('{"t":"hello","v":1}')
            await ws.recv()
            await ws.send("\n".join(f'{{"t":"emit","i":{i},"ev":"echo"}}' for i in range(1, 11)))
            limited = []
            while not limited:
                limited = [f for f in map(orjson.loads, str(await ws.recv()).split("\n")) if f.get("re") == 6]
            assert limited[0]["code"] == "rate_limited", limited
            await ws.send('{"t":"bye"}')
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000, closed.value
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/health")).json()["sessions"] == 0


async def flooded(server: LadderServer, messages: Iterable[str], *, pause: float) -> list[dict[str, Any]]:
    """Send ``messages`` on a new session's WebSocket, ``pause`` s apart, until the server
    ends the session for flooding (``bye`` then close 4429); returns every frame it sent."""
    ws = await websockets.connect(server.url.replace("http", "ws") + "/ws", max_size=None)
    await ws.send('{"t":"hello","v":1}')
    await ws.recv()
    frames: list[dict[str, Any]] = []

    async def flood() -> None:
        for message in messages:
            await ws.send(message)
            await asyncio.sleep(pause)

    flooder = asyncio.create_task(flood())
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                frames += [orjson.loads(line) for line in (await ws.recv()).split("\n")]
    flooder.cancel()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    assert frames[-1]["t"] == "bye" and frames[-1]["reason"] == "persistent flooding"
    return frames


@pytest.mark.parametrize(
    ("size", "again"),
    [(1, False), (10, False), (50, False), (50, True)],
    ids=["one-a-message", "ten-a-message", "fifty-a-message", "fifty-from-the-refused-one-at-once"],
)
async def test_a_flood_of_messages_is_ended_its_patience_after_it_began_however_batched(
    size: int, again: bool, tmp_path: Path
) -> None:
    """Emits at five times the default rate (100 a second, burst 200), ``size`` to a
    WebSocket message, ignoring every refusal: new ids each time, or (``again``) from the
    refused one as soon as it is heard. One a message was ended after ``flood_patience``;
    batched, it never was (only a batch's refused frame counted, and each batch came after
    the wait it was told), and its log had a line for every message too far ahead."""
    limits = {"flood_patience": 1.0, "inbox_window": 50}
    log = tmp_path / "server.log"
    with LadderServer({"limits": limits}, args=("--log-level", "info"), log=log) as server:
        ws = await websockets.connect(server.url.replace("http", "ws") + "/ws", max_size=None)
        await ws.send('{"t":"hello","v":1}')
        sid = orjson.loads(await ws.recv())["sid"]
        first = 1
        refused_at: float | None = None

        async def flood() -> None:
            nonlocal first
            while True:
                await ws.send("\n".join(f'{{"t":"emit","i":{i},"ev":"echo"}}' for i in range(first, first + size)))
                first += size
                await asyncio.sleep(size / 500)

        flooder = asyncio.create_task(flood())
        frames: list[dict[str, Any]] = []
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(6):
                while True:
                    frames += (received := [orjson.loads(line) for line in (await ws.recv()).split("\n")])
                    limited = [f["re"] for f in received if f.get("code") == "rate_limited" and "re" in f]
                    if limited and refused_at is None:
                        refused_at = time.monotonic()
                    if limited and again:
                        first = min(limited)
        ended_at = time.monotonic()
        flooder.cancel()
        async with httpx.AsyncClient() as http:
            body = (await http.get(f"{server.url}/metrics")).text
        too_far = metric(body, "ladder_errors_total", code="too_far_ahead")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    assert frames[-1]["t"] == "bye" and frames[-1]["reason"] == "persistent flooding"
    assert refused_at is not None and 0.9 <= ended_at - refused_at < 2.5, ended_at - refused_at
    lines = [line for line in log.read_text().splitlines() if f"refused on websocket ({label(sid)})" in line]
    # Messages too far ahead were refused (counted; which of a 100 ms's refusals is the one
    # logged depends on timing, so the log need not name them).
    assert too_far > 0 or again, too_far
    # At most one a 100 ms, and the last, which ends the session: tens, where it was hundreds.
    assert len(lines) <= (ended_at - refused_at) / 0.1 + 10, len(lines)
    assert any("persistent flooding" in line for line in lines), lines[-5:]  # (never held back)


@pytest.mark.parametrize(
    "junk",
    [
        '{"t":"zzz"}',  # an unknown frame type
        "{",  # a message that cannot be decoded
        "\n".join(['{"t":"zzz"}'] * 3000),  # a batch of 3,000 unknown frames
        '{"t":"ping"}\n' * 2000 + '{"t":"ping"}',  # pings past the rate, in one batch
        '{"t":"ack","s":0}\n' * 2000 + '{"t":"ack","s":0}',  # acks: only a batch's first is free
    ],
    ids=["unknown", "undecodable", "unknown-batch", "ping-batch", "ack-batch"],
)
async def test_a_flood_of_refused_frames_counts_against_the_rate_and_is_ended(junk: str) -> None:
    """Frames refused before they were offered went around the message rate: each got its
    own err and log line (650,000 in 8 s), and the session was never ended; a batch of pings
    over the rate got an err for each ping."""
    with LadderServer({"limits": {"message_rate": 5, "message_burst": 5, "flood_patience": 1.0}}) as server:
        frames = await flooded(server, itertools.repeat(junk), pause=0.01)
        refused = [f for f in frames if f["t"] == "err" and f["code"] != "rate_limited"]
        limited = [f for f in frames if f["t"] == "err" and f["code"] == "rate_limited"]
        assert limited and all(f["retry_after"] > 0 for f in limited)
        # The burst (5), then one a second for about the patience, plus what came meanwhile
        # between two refusals: tens, where every frame was answered before (thousands).
        assert len(refused) <= 70, len(refused)
        assert len(limited) <= 400, len(limited)


async def test_a_post_of_refused_frames_is_not_read_past_64_of_them() -> None:
    """A 1 MiB POST of 80,000 unknown frames grew the server by 80 MiB of errors."""
    with LadderServer() as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            opened = orjson.loads((await http.get("/poll", params={"v": 1})).content.split(b"\n")[0])
            sid, rt = opened["sid"], opened["rt"]
            body = "\n".join(['{"t":"zzz"}'] * 80_000) + '\n{"t":"emit","i":1,"ev":"echo"}'
            posted = await http.post("/send", params={"sid": sid}, headers={"x-ladder-rt": rt}, content=body)
            assert posted.status_code == 204
            answer = await http.get("/poll", params={"sid": sid, "ack": 0}, headers={"x-ladder-rt": rt})
            errs = [orjson.loads(line) for line in answer.content.split(b"\n") if line]
            codes = [f.get("code") for f in errs if f["t"] == "err"]
            assert 0 < len(codes) <= 65, len(codes)
            assert not any(f["t"] == "ack" for f in errs), "the emit after the 64th refusal was not read"


async def test_requests_per_address_are_limited_with_retry_after() -> None:
    with LadderServer({"limits": {"request_rate": 5, "request_burst": 10}}) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            statuses = [(await http.get("/poll", params={"v": 1})).status_code for _ in range(20)]
            assert statuses.count(200) <= 11 and statuses[-1] == 429
            refused = await http.post("/send", params={"sid": "x"}, headers={"x-ladder-rt": "y"}, content=b"")
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
            assert refused.json()["code"] == "rate_limited"
            # The header is the body's wait in whole seconds, rounded up (the body's was 0.0 at times)
            assert 0 < refused.json()["retry_after"] <= int(refused.headers["retry-after"])
            assert (await http.get("/health")).status_code == 200, "health checks are not rate limited"


async def test_sessions_per_address_and_per_user_are_bounded() -> None:
    config = {"limits": {"max_sessions_per_address": 3, "max_sessions_per_user": 2}, "require_token": True}
    with LadderServer(config) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            users = ["user:a", "user:a", "user:a", "user:b", "user:c"]
            answers = [await http.get("/poll", params={"v": 1, "tok": user}) for user in users]
            codes = [a.status_code for a in answers]
            assert codes[:2] == [200, 200]
            assert codes[2] == 429 and answers[2].json()["reason"].startswith(
                "at most 2 per user (Limits(max_sessions_per_user=")
            assert codes[3] == 200
            assert codes[4] == 429 and answers[4].json()["reason"].startswith(
                "at most 3 per address (Limits(max_sessions_per_address=")


@pytest.mark.parametrize("trusted", [False, True])
async def test_x_forwarded_for_counts_only_when_trusted(trusted: bool) -> None:
    """The client address is the peer's unless ``trust_forwarded_for`` (docs/security.md), on
    the HTTP rungs as on WebSocket: ``ladder serve`` let uvicorn take it from the header for
    loopback peers on the HTTP rungs."""
    config = {"limits": {"max_sessions_per_address": 1, "trust_forwarded_for": trusted}}
    with LadderServer(config) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            first, second = [
                await http.get("/poll", params={"v": 1}, headers={"x-forwarded-for": address})
                for address in ("198.51.100.1", "198.51.100.2")
            ]
            assert first.status_code == 200
            if trusted:
                assert second.status_code == 200, "two clients behind a trusted proxy"
            else:
                assert second.status_code == 429 and second.json()["reason"].startswith("at most 1 per address (Limits(max_sessions_per_address=")


async def test_a_trusted_proxy_s_entry_is_the_last_one_and_its_scheme_counts(tmp_path: Path) -> None:
    """A proxy appends the peer it saw to ``X-Forwarded-For`` (both shipped configs do): the
    entries before it are whatever the client wrote. The first one was taken, so a client
    chose its own address for every per-address limit. And behind a TLS proxy the page's
    origin is https while the hop to Ladder is http: ``X-Forwarded-Proto`` says so (the hub's
    own page was refused ``origin_not_allowed``)."""
    limits = {"max_sessions_per_address": 1, "trust_forwarded_for": True}
    config = {"limits": limits, "allowed_origins": None}  # same origin only
    log = tmp_path / "server.log"
    with LadderServer(config, log=log, args=("--log-level", "info")) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            answers = [
                await http.get("/poll", params={"v": 1}, headers={"x-forwarded-for": f"10.9.9.{n}, 198.51.100.7"})
                for n in (1, 2)
            ]
            assert [a.status_code for a in answers] == [200, 429], "one client, whatever it wrote first"
            page = {"host": "app.example", "origin": "https://app.example", "x-forwarded-proto": "https"}
            own = await http.get("/poll", params={"v": 1}, headers={**page, "x-forwarded-for": "198.51.100.8"})
            assert own.status_code == 200, own.text
            page["x-forwarded-proto"] = "http"
            other = await http.get("/poll", params={"v": 1}, headers={**page, "x-forwarded-for": "198.51.100.9"})
            assert other.status_code == 403 and other.json()["code"] == "origin_not_allowed"
            assert (await http.get("/health")).status_code == 200  # (after the refusals: logged by now)
    # The log names the address the limit counted, and the proxy it came through (it named the proxy only).
    refused = [line for line in log.read_text().splitlines() if "too_many_sessions" in line]
    assert len(refused) == 1 and "(198.51.100.7 via 127.0.0.1:" in refused[0], refused


async def test_slowloris_ties_up_nothing(server: LadderServer) -> None:
    """Hundreds of connections dribbling their headers do not slow a healthy client down."""
    writers = []
    for _ in range(300):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /poll?v=1 HTTP/1.1\r\nHost: x\r\n")
        writers.append(writer)
    try:
        async with Client(server.url, transports=["websocket"]) as client:
            started = time.perf_counter()
            for n in range(50):
                assert (await client.call("echo", n))["data"] == n
                if n % 10 == 0:
                    for writer in writers:
                        writer.write(b"X-Slow: 1\r\n")
            took = time.perf_counter() - started
        print(f"\n50 calls in {took * 1000:.0f} ms with 300 slowloris connections open")
        assert took < 5.0
    finally:
        for writer in writers:
            writer.close()


def test_a_flood_of_refused_requests_from_one_address_is_logged_damped_and_counted_in_full(
    tmp_path: Path,
) -> None:
    """1,600 quick refused polls from one address were 1,600 INFO lines in 0.8 s: the damping
    of a session's refusals (one line per 100 ms, then how many were not) applies per address
    to the refusals made before a session, and the counts stay exact."""
    log = tmp_path / "server.log"
    with LadderServer(args=("--log-level", "info"), log=log) as server, httpx.Client(base_url=server.url) as http:
        started = time.monotonic()
        codes = [http.get("/poll", params={"v": 99}).json()["code"] for _ in range(600)]
        elapsed = time.monotonic() - started
        time.sleep(0.15)  # past the 100 ms of damping: the next one is logged, with the count
        codes.append(http.get("/poll", params={"v": 99}).json()["code"])
        metrics = http.get("/metrics").text
    counted = {code: metric(metrics, "ladder_errors_total", code=code) for code in set(codes)}
    assert counted == {code: codes.count(code) for code in set(codes)}
    lines = [line for line in log.read_text().splitlines() if "refused on poll (127.0.0.1:" in line]
    said = sum(1 + int(line.rsplit("(and ", 1)[1].split()[0]) if "more not logged)" in line else 1 for line in lines)
    assert said == len(codes) == 601, lines[-3:]
    assert len(lines) <= elapsed / 0.1 + 2, (len(lines), elapsed)


@pytest.mark.parametrize("rung", ["websocket", "longpoll"])
@pytest.mark.parametrize("next_user", ["bob", "alice"])
async def test_messages_queued_in_a_session_the_server_forgot_are_not_applied_as_another_users(
    next_user: str, rung: str
) -> None:
    """Alice's client queues a call and an emit while the server is down; the server comes back
    knowing nothing of her session (a restart of the memory engine, as after its ttl), and the
    client's credentials now say ``next_user``. Before, the new server, unable to tell whose the
    carried messages were, applied them as bob's. The client knows, and its hello says whose
    they were (``pu``): bob's session refuses each with ``forbidden``. Alice's applies them."""
    port = free_port()
    user = "alice"
    client = Client(
        f"http://127.0.0.1:{port}", token=lambda: f"user:{user}", transports=[rung],
        backoff_base=0.05, backoff_max=0.2,
    )
    errors: list[Any] = []
    client.on("error", errors.append)
    config = {"require_token": True}
    try:
        with LadderServer(config, port=port):
            await client.connect(timeout=15)
            assert (await client.call("echo", 1))["user"] == "alice"
        calling = asyncio.create_task(client.call("echo", "queued by alice", timeout=30))
        await client.emit("record", {"key": "carried", "value": "by alice"})
        user = next_user
        with LadderServer(config, port=port):
            if next_user == "bob":
                with pytest.raises(LadderError) as refused:
                    await calling
                assert (refused.value.code, refused.value.reason) == (
                    "forbidden", "written in a session of another user: not applied"
                )
                assert [(e.code, e.reason) for e in errors] == [(refused.value.code, refused.value.reason)]
                assert await client.call("records", "carried", timeout=10) == []
            else:
                assert (await calling)["user"] == "alice"
                assert await client.call("records", "carried", timeout=10) == ["by alice"]
                assert errors == []
            assert (await client.call("echo", 2))["user"] == next_user
    finally:
        await client.close()
