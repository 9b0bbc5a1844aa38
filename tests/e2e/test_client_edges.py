"""The Python client at the edges, against a real server: a value that cannot be encoded, the
rate limit meeting an offline queue, a wrong URL, a server that is down, a refused origin."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ladder import Client, Ladder, LadderError
from ladder.client import ServerError
from tests.net.faultproxy import FaultProxy
from tests.support.metrics import metric
from tests.support.server import LadderServer, free_port

RUNGS = ["websocket", "sse", "longpoll", "poll"]


def _circular() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


@pytest.mark.parametrize(("rung", "encoding"), [("websocket", "msgpack"), ("longpoll", "json")])
async def test_a_value_that_cannot_be_encoded_fails_at_once_and_wedges_nothing(
    server: LadderServer, rung: str, encoding: str
) -> None:
    async with Client(server.url, transports=[rung], encoding=encoding) as client:
        bad: list[tuple[str, Any]] = [("int", 2**70), ("circular", _circular()), ("keys", {1: "a"})]
        if encoding == "msgpack":
            bad.append(("datetime", datetime.datetime.now(datetime.UTC)))
        for name, value in bad:
            with pytest.raises(TypeError) as refused:
                await client.call("echo", value, timeout=5)
            message = str(refused.value)
            assert "msgpack" not in message and "JSON" not in message
            expected = {
                "int": "int of 71 bits",
                "circular": "contains itself",
                "keys": "dict key of type int",
            }
            assert expected.get(name, name) in message, message
            with pytest.raises(TypeError):
                await client.emit("record", {"key": f"bad-{rung}", "value": value})
            with pytest.raises(TypeError):
                await client.publish("open:edges", value)
        # Nothing took an id: every later message works, at once and in order.
        for n in range(3):
            await client.emit("record", {"key": f"after-{rung}", "value": n})
        assert (await client.call("echo", "still here", timeout=5))["data"] == "still here"
        assert await client.call("records", f"after-{rung}", timeout=5) == [0, 1, 2]
        assert await client.call("records", f"bad-{rung}", timeout=5) == []
        assert client.state == "connected"


async def test_a_message_over_the_frame_limit_is_refused_before_it_takes_an_id(server: LadderServer) -> None:
    async with Client(server.url, transports=["websocket"]) as client:
        with pytest.raises(LadderError) as refused:
            await client.call("echo", "x" * 70_000, timeout=5)
        assert refused.value.code == "frame_too_large" and "at most 65472 (" in refused.value.reason
        assert (await client.call("echo", "small", timeout=5))["data"] == "small"


async def test_a_message_just_under_the_frame_limit_is_refused_in_words_that_add_up(server: LadderServer) -> None:
    """65,474 bytes were refused as over "frames of at most 65536": the reason now says what
    this client sends (the limit less the 64 bytes kept for an ack) and the fix."""
    async with Client(server.url, transports=["websocket"]) as client:
        with pytest.raises(LadderError) as refused:
            await client.call("echo", "x" * 65_450, timeout=5)
        reason = refused.value.reason
        assert "sends at most 65472 (the server's frame limit, 65536, less 64" in reason, reason
        assert "Limits(max_frame_size=)" in reason, reason


async def test_a_json_client_refuses_nan_it_would_send_as_null(server: LadderServer) -> None:
    """The server would have applied ``None``: refused at the call, before it takes an id."""
    async with Client(server.url, transports=["websocket"], encoding="json") as client:
        with pytest.raises(TypeError, match=r"cannot send nan at d\['v'\]: JSON has no NaN"):
            await client.call("echo", {"v": float("nan")}, timeout=5)
        assert (await client.call("echo", {"v": None}, timeout=5))["data"] == {"v": None}
    async with Client(server.url, transports=["websocket"], encoding="msgpack") as client:
        assert math.isnan((await client.call("echo", {"v": float("nan")}, timeout=5))["data"]["v"])


async def test_publishing_data_that_cannot_be_encoded_is_a_type_error_not_a_bad_frame(tmp_path: Path) -> None:
    hub = Ladder()
    with pytest.raises(TypeError, match="cannot send a datetime at"):
        await hub.publish("room:x", {"when": datetime.datetime.now(datetime.UTC)})
    with pytest.raises(TypeError, match="contains itself"):
        await hub.publish("room:x", _circular())

    # In a handler it is a bug of the handler: handler_error for the client, a traceback logged.
    log = tmp_path / "server.log"
    with LadderServer(app="tests.e2e.edges_app:hub", log=log) as server:
        async with Client(server.url, transports=["websocket"]) as client:
            with pytest.raises(LadderError) as failed:
                await client.call("publish_datetime", None, timeout=5)
            assert failed.value.code == "handler_error"
            assert (await client.call("echo", 1, timeout=5))["data"] == 1
    text = log.read_text()
    assert "Traceback" in text and "TypeError: cannot send a datetime at ['when']" in text


@pytest.mark.parametrize("rung", ["websocket", "sse"])
async def test_a_client_paced_by_the_rate_limit_for_longer_than_its_patience_keeps_its_session(rung: str) -> None:
    """120 emits at once against 20 a second (burst 20): five seconds of pacing, longer than
    ``flood_patience`` (3 s). The client waits each time it is told to, so it is slowed down,
    never dropped (it was: ``bye rate_limited: persistent flooding`` after 3 s, a lost
    session, and three of those stepped the client down a rung)."""
    limits = {"message_rate": 20, "message_burst": 20}
    with LadderServer({"limits": limits}) as server:
        async with Client(server.url, transports=[rung]) as client:
            session = client.session_id
            lost: list[Any] = []
            client.on("session_lost", lost.append)
            for n in range(120):
                await client.emit("record", {"key": f"paced-{rung}", "value": n})
            await client.flush(timeout=20)
            assert await client.call("records", f"paced-{rung}", timeout=10) == list(range(120))
            assert client.session_id == session and lost == []


@pytest.mark.parametrize("rung", RUNGS)
async def test_an_offline_queue_beyond_the_rate_burst_is_paced_not_lost(rung: str) -> None:
    """300 emits queued while the server is down, default limits (burst 200, 100 per second):
    every one applied exactly once, in order, and the session never dropped for flooding."""
    port = free_port()
    client = Client(f"http://127.0.0.1:{port}", transports=[rung], backoff_base=0.05, backoff_max=0.2)
    errors: list[ServerError] = []
    client.on("error", errors.append)
    connecting = asyncio.create_task(client.connect())
    for n in range(300):
        await client.emit("record", {"key": f"queue-{rung}", "value": n})
    with LadderServer({"heartbeat": 1.0, "poll_timeout": 2.0}, port=port):
        await asyncio.wait_for(connecting, 20)
        session = client.session_id
        started = time.monotonic()
        await client.flush(timeout=20)
        took = time.monotonic() - started
        assert await client.call("records", f"queue-{rung}", timeout=10) == list(range(300))
        assert client.session_id == session, "the same session: never dropped as a flood"
        assert errors == [], "no error events: nothing was refused for good"
        assert took < 10, f"the last 100 drain at about the server's rate, not in backoff ({took:.1f} s)"
        await client.close()


async def test_calls_over_the_rate_wait_their_turn_instead_of_failing() -> None:
    with LadderServer({"limits": {"message_rate": 5, "message_burst": 5}}) as server:
        async with Client(server.url, transports=["websocket"]) as client:
            results = await asyncio.gather(*(client.call("echo", n, timeout=10) for n in range(12)))
            assert [r["data"] for r in results] == list(range(12))


async def test_a_wrong_url_fails_the_first_connect_with_each_rungs_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert Client("http://127.0.0.1:1/").connect_timeout == 15.0, "the documented default bound"
    caplog.set_level(logging.WARNING, "ladder.client")
    with LadderServer(app="tests.support.mounted:app") as server:
        await _wrong_mount(f"{server.url}/api/realtim", caplog)  # mounted at /api/realtime


async def _wrong_mount(wrong: str, caplog: pytest.LogCaptureFixture) -> None:
    client = Client(wrong, connect_timeout=2.0)
    started = time.monotonic()
    with pytest.raises(LadderError) as failed:
        await client.connect()
    assert time.monotonic() - started < 4
    assert failed.value.code == "connect_failed"
    reason = failed.value.reason
    assert reason.startswith(f"could not connect to {wrong} within 2 s: ")
    # Starlette refuses an unknown WebSocket path with 403; the HTTP rungs get its 404.
    assert (
        f"websocket: upgrade refused at {wrong.replace('http', 'ws')}/ws (HTTP 403, not from Ladder)"
        in reason
    )
    for rung in RUNGS[1:]:
        assert f"{rung}: no Ladder endpoint at {wrong}/{rung} (HTTP 404)" in reason
    assert "check the mount path" in reason
    assert client.state == "closed"
    with pytest.raises(LadderError) as later:
        await client.call("echo", 1)
    assert later.value.code == "connect_failed", "later calls say why, not just 'closed'"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and any("no Ladder endpoint" in r.getMessage() for r in warnings)


async def test_a_proxy_that_cannot_reach_the_server_is_named_so_on_the_websocket_rung() -> None:
    """A proxy's own 502 to the upgrade (every node out of its rotation during a Redis outage)
    read "no Ladder endpoint there, or something on the way refuses WebSockets", which sent an
    operator looking at the proxy's WebSocket settings."""
    async with FaultProxy(free_port()) as proxy:  # nothing listens behind it: 502 to everything
        client = Client(proxy.url, transports=["websocket"], connect_timeout=1.0)
        with pytest.raises(LadderError) as failed:
            await client.connect()
    reason = failed.value.reason
    assert "upgrade answered HTTP 502" in reason and "could not reach a server behind it" in reason, reason
    assert "refuses WebSockets" not in reason


async def test_a_server_that_is_not_ladder_is_named_so_on_the_http_rungs() -> None:
    """A web server answering 200 text/html on every path: the polling rungs said
    ``LadderError('bad_frame: invalid JSON ...')``, which reads like a protocol error."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><p>a page</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        with pytest.raises(LadderError) as failed:
            await Client(url, transports=["longpoll", "poll"], connect_timeout=1.5).connect()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
    reason = failed.value.reason
    for rung in ("longpoll", "poll"):
        assert f"{rung}: the answer from {url}/{rung} is not Ladder's (text/html, " in reason, reason
    assert "no Ladder endpoint there, or a proxy answered" in reason


@pytest.mark.parametrize(
    ("allowed", "offered", "args"),
    [
        (["websocket"], ["sse", "longpoll", "poll"], ()),  # refused at the hello (native driver)
        (["websocket"], ["sse", "longpoll", "poll"], ("--asgi-ws",)),  # the upgrade refused
        (["websocket", "sse"], ["longpoll", "poll"], ()),
    ],
)
async def test_transports_the_server_does_not_offer_fail_at_once_naming_the_fix(
    allowed: list[str], offered: list[str], args: tuple[str, ...]
) -> None:
    """A client restricted to rungs the server switched off retried each refusal
    (``unsupported_transport``) for the whole ``connect_timeout`` (15 s), then said
    ``connect_failed``: a user's mistake gets an error naming the fix, at once."""
    with LadderServer({"transports": offered}, args=args) as server:
        client = Client(server.url, transports=allowed)
        errors: list[ServerError] = []
        client.on("error", errors.append)
        started = time.monotonic()
        with pytest.raises(LadderError) as refused:
            await client.connect()
        assert time.monotonic() - started < 3, "no retry loop until connect_timeout"
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{server.url}/metrics")).text
    assert refused.value.code == "unsupported_transport"
    reason = refused.value.reason
    assert f"this client allows only {', '.join(allowed)} (its transports option)" in reason, reason
    assert f"the server offers only {', '.join(offered)} (its transports setting)" in reason, reason
    assert "in the client's transports, or offer" in reason
    assert [(e.code, e.reason) for e in errors] == [("unsupported_transport", reason)]
    assert metric(metrics, "ladder_errors_total", code="unsupported_transport") == len(allowed), "one race"
    assert client.state == "closed"
    with pytest.raises(LadderError) as later:
        await client.call("echo", 1)
    assert later.value.code == "unsupported_transport", "later calls say why"


async def test_a_server_that_is_down_fails_the_first_connect_in_bounded_time() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with asyncio.timeout(10):
        with pytest.raises(LadderError) as failed:
            await Client(url, connect_timeout=1.5).connect()
    assert failed.value.code == "connect_failed"
    assert "websocket: cannot connect to" in failed.value.reason
    assert "poll: cannot connect to" in failed.value.reason and "is the server running" in failed.value.reason

    # connect(timeout=...) says why too (and the client keeps trying until closed).
    client = Client(url)
    with pytest.raises(LadderError) as timed_out:
        await client.connect(timeout=1.0)
    assert timed_out.value.code == "connect_failed" and "within 1 s: websocket: cannot connect" in (
        timed_out.value.reason
    )
    await client.close()


async def test_an_https_url_for_a_plain_http_server_names_the_fix(server: LadderServer) -> None:
    """Each rung said only TLS's "wrong version number" (the HTTP rungs added "is the server
    running there?", which it was)."""
    url = server.url.replace("http://", "https://")
    with pytest.raises(LadderError) as failed:
        await Client(url, connect_timeout=1.5, transports=["websocket", "longpoll"]).connect()
    reason = failed.value.reason
    assert failed.value.code == "connect_failed"
    assert reason.count("the server there speaks plain HTTP, not TLS: use an http:// URL") == 2, reason
    assert "is the server running" not in reason


async def test_a_refused_origin_is_fatal_with_an_error_naming_the_setting(server: LadderServer) -> None:
    client = Client(
        server.url, headers={"origin": "http://evil.example"}, transports=["websocket", "longpoll"]
    )
    errors: list[ServerError] = []
    client.on("error", errors.append)
    with pytest.raises(LadderError) as refused:
        await client.connect()
    assert refused.value.code == "origin_not_allowed"
    assert "allowed_origins" in refused.value.reason and "http://evil.example" in refused.value.reason
    assert [e.code for e in errors] == ["origin_not_allowed"]
    with pytest.raises(LadderError) as later:
        await client.call("echo", 1)
    assert later.value.code == "origin_not_allowed"
    with pytest.raises(LadderError) as subscribing:  # (it said only "closed")
        client.subscribe("room")
    assert subscribing.value.code == "origin_not_allowed"


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "localhost:8000/ladder", "ftp://x"])
def test_a_url_without_http_or_https_is_refused_at_once_naming_the_fix(url: str) -> None:
    """It was taken, and connect() failed after connect_timeout (15 s) with a reason that
    buried "Request URL is missing an 'http://' or 'https://' protocol" among the rungs'."""
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        Client(url)


@pytest.mark.parametrize("remember", [5, "no", None])
def test_remember_is_true_or_false_as_the_browser_clients_flags(remember: Any) -> None:
    with pytest.raises(TypeError, match=rf"^remember must be True or False, not {remember!r}$"):
        Client("http://127.0.0.1:1", remember=remember)


def test_an_unknown_encoding_is_a_value_error_like_an_unknown_transport() -> None:
    with pytest.raises(ValueError, match="encoding must be 'msgpack' or 'json', not 'cbor'"):
        Client("http://127.0.0.1:1", encoding="cbor")


async def test_an_oversized_message_queued_before_the_limit_was_known_wedges_nothing() -> None:
    port = free_port()
    client = Client(f"http://127.0.0.1:{port}", transports=["websocket"], backoff_base=0.05, backoff_max=0.2)
    errors: list[ServerError] = []
    client.on("error", errors.append)
    connecting = asyncio.create_task(client.connect())
    big = asyncio.create_task(client.call("echo", "x" * 70_000, timeout=15))
    await client.emit("record", {"key": "oversize", "value": "y" * 70_000})
    await client.emit("record", {"key": "oversize", "value": "small"})
    small = asyncio.create_task(client.call("echo", "small", timeout=15))
    with LadderServer({"heartbeat": 1.0}, port=port):
        await asyncio.wait_for(connecting, 20)
        with pytest.raises(LadderError) as refused:
            await big
        assert refused.value.code == "frame_too_large"
        assert (await small)["data"] == "small"
        assert await client.call("records", "oversize", timeout=5) == ["small"]
        assert [e.code for e in errors] == ["frame_too_large"], "the emit nobody waits for: an error event"
        await client.close()


async def test_a_request_of_a_client_never_connected_times_out_naming_connect() -> None:
    """Messages before connect() wait for it (they go out once connected); with no connect()
    at all, a call timed out saying only "no reply", and a publish waited forever."""
    client = Client(f"http://127.0.0.1:{free_port()}")
    for request in (client.call("echo", 1, timeout=0.2), client.publish("room", 1, timeout=0.2)):
        with pytest.raises(LadderError) as timed_out:
            await request
        assert (timed_out.value.code, timed_out.value.reason) == (
            "timeout",
            "no reply within 0.2 s (this client was never connected: call `await client.connect()`)",
        ), "the browser client's wording and unit (protocol §9.13)"
    assert inspect.signature(Client.publish).parameters["timeout"].default == 10.0  # as call's
    await client.close()


@pytest.mark.parametrize("timeout", [0, -5, "5", True])
async def test_a_timeout_that_cannot_work_is_refused_before_the_message_is_queued(timeout: Any) -> None:
    """0 failed at once (the browser client's waited forever), -5 said "no reply within -5
    s", and "5" raised asyncio's TypeError about ``+``."""
    client = Client(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ValueError, match=r"^timeout is in seconds \(a number above 0, or None"):
        await client.call("echo", 1, timeout=timeout)
    assert len(client.peer.outbox) == 0, "nothing was queued"
    await client.close()


async def test_a_flush_waiting_when_the_client_closes_and_one_after_fail_closed() -> None:
    """Nothing acknowledges a closed client's messages: a flush waiting at close() waited
    for good, and one called after close() too (or timed out), where every other request
    fails ``closed`` at once."""
    client = Client(f"http://127.0.0.1:{free_port()}")
    await client.emit("later", 1)  # queued for a connect() that never comes
    waiting = asyncio.ensure_future(client.flush())
    await asyncio.sleep(0)
    await client.close()
    async with asyncio.timeout(5):
        with pytest.raises(LadderError) as closed:
            await waiting
        assert closed.value.code == "closed"
        with pytest.raises(LadderError) as after:
            await client.flush()
        assert after.value.code == "closed"


async def test_closing_a_client_whose_token_refresh_is_on_its_way_logs_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ladder.client")
    client = Client("http://127.0.0.1:1", token=lambda: "fresh")
    await client.close()
    client._expires = time.time()  # due now: the refresh starts, and meets the closed client
    client._maybe_refresh()
    async with asyncio.timeout(5):
        while client._refreshing:  # noqa: ASYNC110 - the client's own task ends it
            await asyncio.sleep(0.01)
    assert not [r.message for r in caplog.records if "token refresh failed" in r.message]


@pytest.mark.parametrize("rung", ["sse", "longpoll"])
async def test_a_call_that_streams_to_its_caller_for_longer_than_the_queue_holds_keeps_the_session(
    rung: str,
) -> None:
    """A handler that publishes 300 messages to its caller's channel over 3 s before it answers
    (a reply streamed as it is made), against a server that keeps at most 50 unacknowledged
    frames per session. On SSE the client acknowledges by POST, and its POSTs went one at a
    time: the acks waited behind the call's POST for the whole 3 s, and the session was
    dropped as a slow consumer. A POST of acks and pings now goes at once."""
    with LadderServer({"limits": {"max_queue": 50}}) as server:
        await _stream_keeps_the_session(server, rung, count=300, interval=0.01, answered_after=True)


async def _stream_keeps_the_session(
    server: LadderServer, rung: str, *, count: int, interval: float, pad: int = 0, answered_after: bool = False
) -> None:
    """Publish ``count`` messages of ``pad`` bytes, ``interval`` apart, to a subscriber on
    ``rung`` (``answered_after``: the call that asks for them answers only once they are all
    published): it gets each once, in order, on the session it started with."""
    async with Client(server.url, transports=[rung]) as client:
        session = client.session_id
        lost: list[Any] = []
        client.on("session_lost", lost.append)
        sub = client.subscribe("stream:feed")
        await sub.ready()
        call = {"channel": "stream:feed", "count": count, "pad": pad, "interval": interval}
        if answered_after:
            assert await client.call("publish", call, timeout=30) == {"published": count}
        else:
            assert await client.call("publish", {**call, "background": True}, timeout=10) == {"started": True}
        received = []
        async with asyncio.timeout(30):
            async for pub in sub:
                received.append(pub.data["n"])
                if len(received) == count:
                    break
        assert received == list(range(count))
        assert client.session_id == session and lost == [], f"{len(lost)} sessions lost as slow consumers"


@pytest.mark.parametrize("rung", ["websocket", "sse"])
async def test_a_stream_against_a_queue_smaller_than_the_ack_count_keeps_the_session(rung: str) -> None:
    """A server keeping at most 16 unacknowledged frames, 100 publications at 100 a second:
    clients acked every 32 frames, so the session was dropped as a slow consumer at every
    17th frame (39 sessions lost in 10 s, and only 15 of 60 publications received). They now
    ack before half the server's ``lim.queue`` fills."""
    with LadderServer({"limits": {"max_queue": 16}}) as server:
        await _stream_keeps_the_session(server, rung, count=100, interval=0.01)


@pytest.mark.parametrize("rung", ["websocket", "sse"])
async def test_a_stream_of_large_publications_keeps_the_session(rung: str) -> None:
    """300 kB publications, 50 a second, against the default 8 MiB of unacknowledged bytes per
    session: 28 of them fill it, before the 32 frames that made an ack, and the stream never
    goes quiet for the timer, so the session was dropped (twice in 60 publications). Clients
    now ack once half the server's ``lim.qbytes`` arrived."""
    with LadderServer() as server:
        await _stream_keeps_the_session(server, rung, count=60, pad=300_000, interval=0.02)


@pytest.mark.parametrize("rung", ["websocket", "sse"])
async def test_publications_larger_than_the_servers_byte_bound_reach_a_subscriber_that_keeps_up(rung: str) -> None:
    """Publications of 1.1 MB against ``max_queue_bytes`` of 1 MB, 0.3 s apart: each is the
    only frame unacknowledged when it comes, and is delivered (the first one dropped every
    subscriber as a slow consumer, whatever it did). (A frame that follows one before the
    client's ack is back is past the bound: here the call is answered after the stream.)"""
    with LadderServer({"limits": {"max_queue_bytes": 1_000_000}}) as server:
        await _stream_keeps_the_session(server, rung, count=3, interval=0.3, pad=1_100_000, answered_after=True)


async def test_a_steady_stream_keeps_its_websocket_though_the_client_rarely_acks(server: LadderServer) -> None:
    """Publications every 0.3 s (the client acks after 256-512 frames or 1 s of quiet, so it
    sent nothing) to a server with a 1 s heartbeat: the server wrote steadily, so it never
    pinged, and closed the WebSocket ``heartbeat_timeout`` every 3 s (2 x hb + 1 s); each
    time the client resumed. It is pinged now when unheard for a heartbeat, and answers."""
    async with Client(server.url, transports=["websocket"]) as client:
        dropped: list[Any] = []
        client.on("disconnected", dropped.append)
        sub = client.subscribe("steady")
        await sub.ready()
        count = 30  # 9 s: three times the silence a WebSocket was dropped after
        await client.call("publish", {"channel": "steady", "count": count, "interval": 0.3, "background": True})
        got = [(await asyncio.wait_for(anext(sub), 5)).data["n"] for _ in range(count)]
        assert got == list(range(count))
        assert dropped == [], f"the WebSocket was dropped {len(dropped)} times: {dropped[:1]}"


async def test_messages_given_back_when_the_engine_went_away_are_written_again_on_every_rung() -> None:
    """Messages queued behind one whose handler ran as the engine went away are given back
    (not applied: they could not be recorded). On the polling rungs nothing told the client:
    its POST was answered 204 and a short poll has no transport to end, so it never wrote
    them again (protocol §4). Each rung: an outage of 0.3 s, then two messages in the same
    batch; both are applied once, in order, once the engine is back."""
    with LadderServer({"heartbeat": 1.0}, app="tests.e2e.edges_app:hub") as server:
        for rung in RUNGS:
            async with Client(server.url, transports=[rung], backoff_max=0.5) as client:
                await client.connect(timeout=10)
                key = f"given-back:{rung}"
                await client.emit("outage", 0.3)  # (no await yields: the three go in one batch)
                await client.emit("record", {"key": key, "value": "b"})
                await client.emit("record", {"key": key, "value": "c"})
                try:
                    async with asyncio.timeout(15):
                        await client.flush()
                except TimeoutError:
                    pytest.fail(f"{rung}: the messages given back were never acknowledged")
                assert await client.call("records", key, timeout=5) == ["b", "c"], rung


@pytest.mark.parametrize("rung", ["sse", "longpoll", "poll"])
async def test_close_ends_the_session_at_once_while_a_call_is_in_its_handler(server: LadderServer, rung: str) -> None:
    """protocol §3.6: a ``bye`` needs no order. On an HTTP rung the client's ``bye`` waited
    behind the POST of a call still in its handler (3 s): ``close()`` gave up on it after 1 s
    and the session lived on, unended, until its ttl."""
    client = Client(server.url, transports=[rung])
    await client.connect()
    napping: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    client.on("push", lambda push: napping.done() or napping.set_result(push.event))
    call = asyncio.create_task(client.call("nap", 3, timeout=10))
    assert await asyncio.wait_for(napping, 5) == "napping"  # the handler runs now
    async with httpx.AsyncClient(timeout=5) as http:
        assert metric((await http.get(f"{server.url}/metrics")).text, "ladder_sessions") == 1
    started = time.monotonic()
    await client.close()
    closed = time.monotonic() - started
    with pytest.raises(LadderError) as refused:
        await call
    assert refused.value.code == "closed"
    async with httpx.AsyncClient(timeout=5) as http:
        sessions = metric((await http.get(f"{server.url}/metrics")).text, "ladder_sessions")
    assert (sessions, closed < 0.9) == (0, True), f"{sessions} session(s) left after close() took {closed:.2f} s"


@pytest.mark.parametrize("rung", ["longpoll", "poll"])
async def test_a_poll_refused_for_the_address_s_request_rate_is_asked_again_not_a_dropped_transport(
    rung: str,
) -> None:
    """A poll answered ``429 rate_limited`` (too many requests from this address: each of a
    paced client's POSTs counts too) dropped its transport: the client reconnected, and a
    burst of calls stalled meanwhile. It is asked again after ``retry_after`` (the core's
    ``poll_again_in``), on the same transport."""
    # (short polling asks up to 20 times a second while messages flow: below that its polls
    # alone would take every request the address may make)
    rate = 4.0 if rung == "longpoll" else 24.0
    limits = {"request_rate": rate, "request_burst": rate}
    with LadderServer({"heartbeat": 5.0, "limits": limits}) as server:
        client = Client(server.url, transports=[rung], poll_interval=(0.05, 0.2))
        dropped: list[str] = []
        client.on("disconnected", lambda event: dropped.append(event.reason))
        async with client:
            for n in range(12):
                assert (await client.call("echo", n, timeout=30))["data"] == n
        async with httpx.AsyncClient(timeout=5) as http:
            refused = metric((await http.get(f"{server.url}/metrics")).text, "ladder_errors_total", code="rate_limited")
        assert refused > 0, "the address's request rate refused some requests"
        assert dropped == ["the client was closed"], dropped


async def test_async_with_cancelled_while_connecting_leaves_no_client_behind(server: LadderServer) -> None:
    """``__aenter__`` raising (a timeout around ``async with Client(...)``) skips
    ``__aexit__``: the client went on connecting, unreachable, and connected a second later
    (a session opened by nobody's client, until its ttl). (A session the server opened
    before the cancellation outlives it so, without a ``bye``, as after a dropped
    connection.)"""
    clients: list[Client] = []
    for timeout in (0.0005, 0.002, 0.01):
        client = Client(server.url, transports=["websocket"])
        clients.append(client)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(timeout), client:
                await asyncio.sleep(30)
    assert [client.state for client in clients] == ["closed"] * 3
    left = [task for task in asyncio.all_tasks() if "ladder" in repr(task.get_coro())]
    assert left == [], f"client tasks left: {left}"


async def test_a_paced_queue_on_long_polling_writes_one_post_per_gap_within_the_address_s_request_rate(
    tmp_path: Path,
) -> None:
    """A burst of calls past the message rate, on long polling: paced, the client wrote one
    POST per message at the rate's pace, which with the polls took the address's request
    rate (each POST and poll a request): polls were refused 429, control frames were lost
    with them, and a queue of 1,000 calls stalled (2 runs of 5) or its session was ended
    for "persistent flooding". Paced POSTs go at most one per 50 ms now (protocol §9.8),
    the messages due meanwhile together."""
    log = tmp_path / "server.log"
    limits = {"message_rate": 50.0, "message_burst": 20.0, "request_rate": 60.0, "request_burst": 60.0}
    with LadderServer({"heartbeat": 5.0, "limits": limits}, log=log, args=("--log-level", "info")) as server:
        async with Client(server.url, transports=["longpoll"]) as client:
            answers = await asyncio.gather(*(client.call("echo", n, timeout=60) for n in range(200)))
            assert [answer["data"] for answer in answers] == list(range(200))
    said = log.read_text()
    assert said.count("rate_limited: message") > 0, "paced: the message rate refused some"
    assert "too many requests from this address" not in said, [
        line for line in said.splitlines() if "from this address" in line
    ][:3]
    assert "persistent flooding" not in said
