"""``deploy/nginx.conf``'s passive health checks, with stand-in nodes that answer as told.

Open-source nginx sets an upstream aside for ``fail_timeout`` after ``max_fails`` failures
(here: a 503) within it. A healthy Ladder node may answer one request 503 (a session whose node
is stopping during a rolling restart); with ``max_fails=1`` each such answer took a healthy
node out of rotation for 5 s. The stand-ins are plain HTTP servers in this process: what is
tested is the shipped config on a real nginx, not Ladder's answers (tests/deploy/test_deploy.py
runs real nodes behind it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

import httpx

from tests.deploy.lb import NginxSite
from tests.support.server import free_port

MOUNT = "/api/realtime"


class StandIns:
    """Three HTTP/1.1 servers naming themselves; node 1 answers 503 to its first ``/once``."""

    def __init__(self) -> None:
        self.ports = [free_port() for _ in range(3)]
        self.hits: collections.Counter[str] = collections.Counter()
        self.refused = 0

    async def _serve(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                if name == "node1" and path.endswith("/once") and not self.refused:
                    self.refused += 1
                    status, body = "503 Service Unavailable", b"engine_unavailable"
                else:
                    self.hits[name] += 1
                    status, body = "200 OK", name.encode()
                writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
        writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[StandIns]:
        servers = [
            await asyncio.start_server(
                lambda r, w, name=f"node{i + 1}": self._serve(name, r, w), "127.0.0.1", port
            )
            for i, port in enumerate(self.ports)
        ]
        try:
            yield self
        finally:
            for server in servers:
                server.close()


async def test_one_503_from_a_healthy_node_does_not_take_it_out_of_rotation() -> None:
    stand_ins = StandIns()
    async with stand_ins.running():
        values = {"LADDER_MOUNT": MOUNT, **{f"LADDER_NODE_{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(stand_ins.ports)}}
        with NginxSite.from_deploy("nginx.conf", values) as nginx:
            async with httpx.AsyncClient(base_url=nginx.url, timeout=10) as http:
                while not stand_ins.refused:  # round robin reaches node 1 within three requests
                    answer = await http.get(f"{MOUNT}/once")
                    assert answer.status_code == 200, "the 503 was retried on another node"
                stand_ins.hits.clear()
                for _ in range(30):
                    assert (await http.get(f"{MOUNT}/health")).status_code == 200
    assert stand_ins.hits["node1"] >= 5, f"node 1 was set aside after one 503: {dict(stand_ins.hits)}"


class HungNode(StandIns):
    """Node 1 reads requests and never answers one (its event loop stuck, its kernel accepting)."""

    async def _serve(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if name != "node1":
            await super()._serve(name, reader, writer)
            return
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while await reader.read(65536):
                self.refused += 1  # (a request it will never answer)
        writer.close()


async def test_a_short_poll_landing_on_a_hung_node_is_answered_by_another_before_the_client_gives_up() -> None:
    """ops.md: a node that hangs still accepts. A short poll that landed on it waited for nginx's
    60 s read timeout, so the client's own 10 s ran out first and it reconnected: short-polling
    clients of every node stalled while one hung. A short poll is answered at once, so nginx
    gives it 5 s and tries the next node."""
    stand_ins = HungNode()
    async with stand_ins.running():
        values = {"LADDER_MOUNT": MOUNT, **{f"LADDER_NODE_{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(stand_ins.ports)}}
        with NginxSite.from_deploy("nginx.conf", values) as nginx:
            async with httpx.AsyncClient(base_url=nginx.url, timeout=10) as http:
                for _ in range(4):  # round robin sends one of them (or more) to the hung node
                    answer = await http.get(f"{MOUNT}/poll", params={"v": 1})
                    assert answer.status_code == 200 and answer.text in ("node2", "node3"), answer
    assert stand_ins.refused >= 1, "no poll reached the hung node"
