"""The fault proxy against a real Ladder server: every fault must be observable by a real client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from ladder import Client
from tests.net.faultproxy import FaultProxy, endpoint_of
from tests.support.server import LadderServer, free_port

Frame = dict[str, Any]


@pytest.fixture(scope="module")
def upstream() -> Iterator[LadderServer]:
    """One real server for the module (pings every second, so streams always have traffic)."""
    with LadderServer({"heartbeat": 1.0, "poll_timeout": 5.0}) as srv:
        yield srv


@pytest.fixture
async def proxy(upstream: LadderServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(upstream.port) as p:
        yield p
    assert not p._tasks, "stop() leaves no task of the proxy running"


def ws_url(proxy: FaultProxy) -> str:
    return f"ws://127.0.0.1:{proxy.port}/ws"


def frames(body: str | bytes) -> list[Frame]:
    """A JSON batch (newline-delimited frames), as Ladder writes it."""
    if isinstance(body, str):
        body = body.encode()
    return [orjson.loads(line) for line in body.split(b"\n") if line.strip()]


async def ws_open(proxy: FaultProxy) -> tuple[ClientConnection, Frame]:
    """A WebSocket through the proxy, with its welcome."""
    ws = await websockets.connect(ws_url(proxy), open_timeout=5, ping_interval=None, close_timeout=1)
    await ws.send(orjson.dumps({"t": "hello", "v": 1}).decode())
    async with asyncio.timeout(5):
        welcome = frames(await ws.recv())[0]
    assert welcome["t"] == "welcome"
    return ws, welcome


async def read_until(chunks: AsyncIterator[bytes], marker: bytes) -> bytes:
    data = b""
    async for chunk in chunks:
        data += chunk
        if marker in data:
            return data
    raise AssertionError(f"the stream ended before {marker!r}")


async def drain(chunks: AsyncIterator[bytes]) -> None:
    async for _ in chunks:
        pass


async def ws_replies(ws: ClientConnection, count: int) -> list[Frame]:
    """The next ``count`` reply frames (acks and pings may come in between)."""
    replies: list[Frame] = []
    async with asyncio.timeout(5):
        while len(replies) < count:
            replies += [f for f in frames(await ws.recv()) if f.get("t") == "reply"]
    return replies


async def drain_ws(ws: ClientConnection) -> None:
    """Receive (the server's pings) until the connection ends: raises its ConnectionClosed."""
    while True:
        await ws.recv()


def test_endpoint_is_the_last_path_segment_without_query() -> None:
    assert endpoint_of(b"/ladder/sse?v=1&sid=a/b") == "sse"
    assert endpoint_of(b"/ws") == "ws"
    assert endpoint_of(b"http://host:1/x/longpoll?v=1") == "longpoll"
    assert endpoint_of(b"/") == ""


async def test_transparent_keep_alive_with_several_endpoints(proxy: FaultProxy) -> None:
    """A poll, a POST and a long-poll on one kept-alive connection: forwarded intact, counted per request."""
    async with httpx.AsyncClient(base_url=proxy.url) as http:
        opened = await http.get("/poll", params={"v": 1})
        assert opened.status_code == 200
        welcome = frames(opened.content)[0]
        assert welcome["t"] == "welcome"
        auth = {"x-ladder-rt": welcome["rt"]}
        call = {"t": "call", "i": 1, "ev": "echo", "d": {"x": "y" * 5000}}
        query = {"sid": welcome["sid"]}
        sent = await http.post("/send", params=query, content=orjson.dumps(call), headers=auth)
        assert sent.status_code == 204
        polled = await http.get("/longpoll", params={"v": 1, "sid": welcome["sid"], "ack": 0}, headers=auth)
        reply = next(f for f in frames(polled.content) if f.get("t") == "reply")
        assert reply["re"] == 1 and reply["d"]["data"] == call["d"]
    assert proxy.stats["connections"] == 1
    assert [proxy.stats[f"requests:{name}"] for name in ("poll", "send", "longpoll")] == [1, 1, 1]


async def test_refusal_is_decided_per_request_on_a_reused_connection(proxy: FaultProxy) -> None:
    async with httpx.AsyncClient(base_url=proxy.url) as http:
        assert (await http.get("/poll", params={"v": 1})).status_code == 200
        proxy.refuse = {"sse"}
        refused = await http.get("/sse", params={"v": 1})
        assert refused.status_code == 403
        assert proxy.stats["connections"] == 1, "the refused SSE came on the poll's kept-alive connection"
        assert refused.headers["connection"] == "close"
        for _ in range(2):
            assert (await http.get("/poll", params={"v": 1})).status_code == 200
    assert proxy.stats["refused"] == 1
    assert proxy.stats["connections"] == 2, "after the refusal's close, one new connection served both polls"


async def test_switches_apply_to_requests_that_start_afterwards(proxy: FaultProxy) -> None:
    """An SSE stream already flowing keeps flowing when SSE becomes refused or buffered."""
    async with httpx.AsyncClient(base_url=proxy.url) as http, http.stream("GET", "/sse?v=1") as stream:
        chunks = stream.aiter_raw()
        async with asyncio.timeout(5):
            await read_until(chunks, b'"welcome"')
        proxy.refuse = {"sse"}
        proxy.buffer = {"sse"}
        async with asyncio.timeout(5):
            await read_until(chunks, b'"ping"')
    assert proxy.stats["refused"] == 0


async def test_refused_websocket_upgrade_is_a_403(proxy: FaultProxy) -> None:
    proxy.refuse = {"ws"}
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(ws_url(proxy), open_timeout=5)
    assert refused.value.response.status_code == 403
    assert proxy.stats["refused"] == 1 and proxy.stats["requests:ws"] == 1

    proxy.refuse.clear()
    ws, _ = await ws_open(proxy)
    async with ws:
        await ws.send('{"t":"call","i":1,"ev":"echo","d":"through"}')
        [reply] = await ws_replies(ws, 1)
        assert reply["re"] == 1 and reply["d"]["data"] == "through"


async def test_blackholed_requests_are_never_answered(proxy: FaultProxy) -> None:
    proxy.blackhole = {"ws", "poll"}
    with pytest.raises(TimeoutError):
        await websockets.connect(ws_url(proxy), open_timeout=0.5)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=0.5) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/poll", params={"v": 1})
        assert (await http.get("/health")).status_code == 200, "other endpoints still pass"

    # At the TCP level: neither an answer nor a close, only silence.
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"GET /poll?v=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await reader.read(1)
    writer.close()
    assert proxy.stats["blackholed"] == 3


async def test_buffered_sse_delivers_nothing_while_unbuffered_streams(proxy: FaultProxy) -> None:
    proxy.buffer = {"sse"}
    got: list[bytes] = []
    async with httpx.AsyncClient(base_url=proxy.url) as http:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0), http.stream("GET", "/sse?v=1") as stream:
                async for chunk in stream.aiter_raw():
                    got.append(chunk)
        assert got == [], "not even the headers get through a buffering proxy"

        proxy.buffer.clear()
        async with asyncio.timeout(1.0), http.stream("GET", "/sse?v=1") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            await read_until(stream.aiter_raw(), b'"welcome"')


async def test_buffered_responses_arrive_whole(proxy: FaultProxy) -> None:
    proxy.buffer = {"poll", "longpoll", "send"}
    proxy.split = True  # the held response still goes out in pieces: it must reassemble
    async with httpx.AsyncClient(base_url=proxy.url) as http:
        polled = await http.get("/poll", params={"v": 1})
        assert polled.status_code == 200
        assert int(polled.headers["content-length"]) == len(polled.content)
        welcome = frames(polled.content)[0]
        auth = {"x-ladder-rt": welcome["rt"]}
        call = orjson.dumps({"t": "call", "i": 1, "ev": "echo", "d": 7})
        sent = await http.post("/send", params={"sid": welcome["sid"]}, content=call, headers=auth)
        assert sent.status_code == 204
        polled = await http.get("/longpoll", params={"v": 1, "sid": welcome["sid"], "ack": 0}, headers=auth)
        assert [f["d"]["data"] for f in frames(polled.content) if f.get("t") == "reply"] == [7]


async def test_latency_delays_each_direction_and_keeps_order(proxy: FaultProxy) -> None:
    proxy.latency = 0.25
    async with httpx.AsyncClient(base_url=proxy.url) as http:
        started = time.monotonic()
        assert (await http.get("/poll", params={"v": 1})).status_code == 200
        elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 2.0, "request and response are each delayed by 0.25 s"

    proxy.latency = 0.1
    ws, _ = await ws_open(proxy)
    async with ws:
        for i in range(1, 21):
            if i == 11:
                proxy.latency = 0.0  # later chunks are due earlier, but must not overtake
            await ws.send(orjson.dumps({"t": "call", "i": i, "ev": "echo", "d": i}).decode())
        replies = await ws_replies(ws, 20)
    assert [reply["re"] for reply in replies] == list(range(1, 21))


async def test_cut_after_cuts_live_and_new_connections_within_the_window(proxy: FaultProxy) -> None:
    async with httpx.AsyncClient(base_url=proxy.url) as http, http.stream("GET", "/sse?v=1") as stream:
        chunks = stream.aiter_raw()
        async with asyncio.timeout(5):
            await read_until(chunks, b'"welcome"')
        ws, _ = await ws_open(proxy)

        started = time.monotonic()
        proxy.cut_after = (0.3, 0.6)
        with pytest.raises(httpx.ReadError):  # a reset, not the clean end of a response
            async with asyncio.timeout(3):
                await drain(chunks)
        with pytest.raises(ConnectionClosedError) as closed:
            async with asyncio.timeout(3):
                await drain_ws(ws)
        elapsed = time.monotonic() - started
        assert closed.value.rcvd is None, "no close frame: the connection just died"
        assert 0.3 <= elapsed < 1.2

    # A connection opened later is cut the same time after its own start.
    ws, _ = await ws_open(proxy)
    started = time.monotonic()
    with pytest.raises(ConnectionClosedError):
        async with asyncio.timeout(3):
            await drain_ws(ws)
    assert time.monotonic() - started < 1.0
    assert proxy.stats["cuts"] == 3

    proxy.cut_after = None
    ws, _ = await ws_open(proxy)
    async with ws:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await drain_ws(ws)
    assert proxy.stats["cuts"] == 3


async def test_cut_all_resets_every_live_connection(proxy: FaultProxy) -> None:
    ws, _ = await ws_open(proxy)
    async with httpx.AsyncClient(base_url=proxy.url) as http, http.stream("GET", "/sse?v=1") as stream:
        chunks = stream.aiter_raw()
        async with asyncio.timeout(5):
            await read_until(chunks, b'"welcome"')
        assert proxy.cut_all() == 2
        with pytest.raises(httpx.ReadError):
            async with asyncio.timeout(3):
                await drain(chunks)
    with pytest.raises(ConnectionClosedError) as closed:
        async with asyncio.timeout(3):
            await drain_ws(ws)
    assert closed.value.rcvd is None
    assert proxy.stats["cuts"] == 2
    assert proxy.cut_all() == 0
    async with httpx.AsyncClient(base_url=proxy.url) as http:
        assert (await http.get("/health")).status_code == 200, "the proxy itself lives on"


class _Reads(asyncio.Protocol):
    """Counts the reads a raw client sees: the measure of how finely data arrives."""

    def __init__(self, marker: bytes) -> None:
        self.reads: list[bytes] = []
        self.marker = marker
        self.seen = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.reads.append(data)
        if self.marker in b"".join(self.reads):
            self.seen.set()


async def test_split_delivers_small_pieces(proxy: FaultProxy) -> None:
    proxy.split = True
    loop = asyncio.get_running_loop()
    transport, reads = await loop.create_connection(lambda: _Reads(b"}\n\n"), "127.0.0.1", proxy.port)
    try:
        transport.write(b"GET /sse?v=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            await reads.seen.wait()
    finally:
        transport.close()
    data = b"".join(reads.reads)
    assert data.startswith(b"HTTP/1.1 200 ") and b'"welcome"' in data
    # Unsplit, the ~2.5 kB arrive in one or two reads. Split, in pieces of 32 bytes on average,
    # of which a read may catch a few at once.
    assert len(reads.reads) >= len(data) // 256, f"{len(data)} bytes came in {len(reads.reads)} reads"
    assert max(map(len, reads.reads)) < 1024


@pytest.mark.parametrize("rung", ["websocket", "sse", "longpoll", "poll"])
async def test_split_data_is_reassembled_by_the_ladder_client_and_server(
    proxy: FaultProxy, rung: str
) -> None:
    """Both directions in random small pieces: every parser on the way must cope."""
    proxy.split = True
    async with Client(
        proxy.url, transports=[rung], encoding="json", max_attempts=2, backoff_base=0.1
    ) as client:
        assert client.transport == rung
        echoed = await client.call("echo", {"rung": rung, "pad": "z" * 3000})
        assert echoed["data"] == {"rung": rung, "pad": "z" * 3000}


async def test_ladder_client_steps_down_to_sse_when_websocket_is_refused(proxy: FaultProxy) -> None:
    proxy.refuse = {"ws"}
    async with Client(proxy.url, transports=["websocket", "sse", "longpoll", "poll"]) as client:
        assert client.transport == "sse"
        assert (await client.call("echo", 1))["data"] == 1
    assert proxy.stats["refused"] >= 1 and proxy.stats["requests:sse"] >= 1


async def test_clear_makes_the_proxy_transparent_again(proxy: FaultProxy) -> None:
    proxy.refuse, proxy.blackhole, proxy.buffer = {"poll"}, {"sse"}, {"longpoll"}
    proxy.latency, proxy.split, proxy.cut_after = 1.0, True, (5.0, 6.0)
    proxy.clear()
    assert (proxy.refuse, proxy.blackhole, proxy.buffer) == (set(), set(), set())
    assert (proxy.latency, proxy.split) == (0.0, False)
    assert proxy.cut_after is None
    async with httpx.AsyncClient(base_url=proxy.url, timeout=2) as http:
        assert (await http.get("/poll", params={"v": 1})).status_code == 200
    with pytest.raises(ValueError):
        proxy.cut_after = (2.0, 1.0)


async def test_unreachable_upstream_is_a_502() -> None:
    async with FaultProxy(free_port()) as proxy, httpx.AsyncClient(base_url=proxy.url) as http:
        assert (await http.get("/poll")).status_code == 502


async def test_an_upstream_closing_between_requests_is_replaced_unseen() -> None:
    """A server's keep-alive timeout closes the proxy's upstream side; the client's stays usable."""
    accepted = 0

    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        writer.close()  # no "Connection: close": like an idle timeout right after the answer

    server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        async with FaultProxy(port) as proxy, httpx.AsyncClient(base_url=proxy.url) as http:
            for _ in range(3):
                assert (await http.get("/poll")).text == "ok"
            assert proxy.stats["connections"] == 1
    assert accepted == 3


async def test_stop_closes_every_connection_and_leaves_nothing_running(upstream: LadderServer) -> None:
    proxy = await FaultProxy(upstream.port).start()
    ws, _ = await ws_open(proxy)
    proxy.blackhole = {"poll"}
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"GET /poll?v=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    async with httpx.AsyncClient(base_url=proxy.url) as http, http.stream("GET", "/sse?v=1") as stream:
        chunks = stream.aiter_raw()
        async with asyncio.timeout(5):
            await read_until(chunks, b'"welcome"')
        await proxy.stop()
        with pytest.raises(httpx.ReadError):
            async with asyncio.timeout(3):
                await drain(chunks)
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(3):
            await drain_ws(ws)
    async with asyncio.timeout(3):
        with contextlib.suppress(ConnectionResetError):  # closed, with or without a reset
            assert await reader.read() == b""
    writer.close()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("faultproxy")]
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", proxy.port)
    assert proxy.stats["cuts"] == 0, "stopping is not counted as cutting"
