"""A client that stops reading while publications flow, on every rung of ``ladder serve``:
its session is dropped (``slow_consumer``, counted and logged as a refusal), and its
connection is reset ``BYE_WAIT`` later, the bytes it never read dropped at once. (An SSE
stream was kept open for as long as the client held it, megabytes queued; a WebSocket
was closed, and the kernel kept the socket and its unsent bytes while the window stayed
shut.)"""

from __future__ import annotations

import asyncio
import errno
import json
import re
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ladder import Client
from tests.e2e.cut_app import BYE_WAIT
from tests.e2e.test_edges import frame, read_frame, upgrade
from tests.support.metrics import metric
from tests.support.server import LadderServer

RUNGS = {"sse": (), "native": (), "asgi": ("--asgi-ws",)}
CONFIG = {"heartbeat": 60.0, "allowed_origins": None, "limits": {"max_queue": 50}}
TCP_CLOSE = 7
"""``tcpi_state`` of a socket that got a reset (a close would leave it ESTABLISHED: the
server's FIN waits behind the data the shut window holds back)."""


@pytest.fixture(params=sorted(RUNGS))
def rung(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, LadderServer]]:
    log = tmp_path / "server.log"
    args = ("--log-level", "info", *RUNGS[request.param])
    with LadderServer(CONFIG, app="tests.e2e.cut_app:hub", args=args, log=log) as server:
        yield request.param, server


def _small_socket(server: LadderServer) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # (before connecting: a small window)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    return sock


def _open_sse(server: LadderServer) -> socket.socket:
    sock = _small_socket(server)
    sock.sendall(f"GET /sse?v=1 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    data = b""
    while b"\n\n" not in data.partition(b'"welcome"')[2]:  # (chunked: the event ends inside)
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    line = next(line for line in data.split(b"\n") if b'"welcome"' in line)
    welcome = json.loads(line.split(b"data: ", 1)[1])
    sub = httpx.post(
        f"{server.url}/send?sid={welcome['sid']}",
        content=json.dumps({"t": "sub", "i": 1, "ch": "room:a"}),
        headers={"X-Ladder-Rt": welcome["rt"]},
    )
    assert sub.status_code in (200, 204), sub.text
    return sock


def _open_ws(server: LadderServer) -> socket.socket:
    sock, status, _, _ = upgrade(server, rcvbuf=4096)
    assert status == 101
    sock.sendall(frame(0x1, b'{"t":"hello","v":1}'))
    assert b'"welcome"' in read_frame(sock)[1]
    sock.sendall(frame(0x1, b'{"t":"sub","i":1,"ch":"room:a"}'))
    return sock


def _log(server: LadderServer) -> str:
    assert server.log is not None
    return server.log.read_text(errors="replace")


def test_a_client_that_reads_nothing_is_dropped_then_reset(rung: tuple[str, LadderServer]) -> None:
    name, server = rung
    sock = _open_sse(server) if name == "sse" else _open_ws(server)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        deadline = time.monotonic() + 30
        while "closed: slow_consumer" not in _log(server):  # (the client reads nothing meanwhile)
            assert time.monotonic() < deadline, "never dropped"
            asyncio.run(_publish(server))
        dropped = time.monotonic()
        poller = select.poll()
        poller.register(sock.fileno(), 0)  # (only an error or a hang-up: not the data it holds)
        events = poller.poll((BYE_WAIT + 5) * 1000)
        waited = time.monotonic() - dropped
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        assert events and state == TCP_CLOSE, f"not reset {waited:.1f} s after the drop (tcp state {state})"
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET
        assert BYE_WAIT - 1 < waited < BYE_WAIT + 3, waited
        errors = metric(http.get("/metrics").text, "ladder_errors_total", code="slow_consumer")
    sock.close()
    assert errors == 1, "the drop is counted once, as a refusal"
    transport = "sse" if name == "sse" else "websocket"
    refused = rf"refused on {transport} \([\w-]{{8}}\): slow_consumer: client fell too far behind"
    assert len(re.findall(refused, _log(server))) == 1, _log(server)


async def _publish(server: LadderServer) -> None:
    async with Client(server.url, transports=["websocket"]) as publisher:
        await publisher.call("publish", {"channel": "room:a", "count": 40, "pad": 20_000}, timeout=30)
