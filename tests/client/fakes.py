"""An in-memory server end for unit tests of :class:`ladder.Client`: no sockets, no sleeps.

:class:`FakeServer` stands in for the hub: the client's transports are :class:`FakeTransport`
objects (one kind per rung, with that rung's properties), the test pushes frames down with
:meth:`FakeServer.push` and sees every upstream write in :attr:`FakeServer.writes`. Message ids
are applied once and in order, like the real server, and acknowledged on the downstream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from ladder import Client
from ladder.client import Connected
from ladder.client.transports.base import Endpoint, Frame, Transport, TransportClosed
from ladder.protocol.errors import LadderError

RUNG_KINDS: dict[str, dict[str, bool]] = {
    "websocket": {"pongs": True, "separate_upstream": False, "implicit_ack": False, "streaming": True},
    "sse": {"pongs": False, "separate_upstream": True, "implicit_ack": False, "streaming": True},
    "longpoll": {"pongs": False, "separate_upstream": True, "implicit_ack": True, "streaming": False},
    "poll": {"pongs": False, "separate_upstream": True, "implicit_ack": True, "streaming": False},
}


class FakeTransport(Transport):
    def __init__(self, server: FakeServer, rung: str, endpoint: Endpoint, applied: Callable[[], int]) -> None:
        super().__init__(endpoint, applied)
        self.name = rung
        for attribute, value in RUNG_KINDS[rung].items():
            setattr(self, attribute, value)
        self.server = server
        self.down: asyncio.Queue[list[Frame] | None] = asyncio.Queue()
        self.closed = False
        self.hello: Frame = {}

    async def open(self, hello: Frame, verify_timeout: float) -> Frame:
        self.hello = hello
        self.server.hellos.append((asyncio.get_running_loop().time(), hello))
        if self.server.refuse_opens:
            self.server.refuse_opens -= 1
            raise TransportClosed(f"{self.name}: refused by the server (engine_unavailable: test)")
        self.welcome = self.server.welcome_for(hello)
        self.server.opened.append(self)
        return self.welcome

    async def _recv(self) -> list[Frame]:
        frames = await self.down.get()
        if frames is None or self.closed:
            raise TransportClosed(f"{self.name}: closed")
        self.received += len(json.dumps(frames))  # (the bytes of the batch, as a stream counts them)
        return frames

    async def send(self, frames: list[Frame]) -> None:
        if self.server.hold_writes is not None:
            await self.server.hold_writes.wait()
        if self.closed:
            raise TransportClosed(f"{self.name}: closed")
        self.server.writes.append((self, [dict(frame) for frame in frames]))
        self.server.wrote.set()
        stall = self.server.stalls.pop(0) if self.server.stalls else None
        if stall is not None:  # (written, and its answer slow: a POST whose handler runs)
            await stall.wait()
        failure = self.server.failures.pop(0) if self.server.failures else None
        if failure is not None:
            raise failure
        self.server.accept(self, frames)

    async def close(self) -> None:
        self.closed = True
        self.down.put_nowait(None)


class FakeServer:
    """The server side of every transport the client opens (one session, ``s1``)."""

    def __init__(self) -> None:
        self.opened: list[FakeTransport] = []
        self.writes: list[tuple[FakeTransport, list[Frame]]] = []
        """Every upstream write, failed ones included, in order."""
        self.wrote = asyncio.Event()
        self.failures: list[TransportClosed | None] = []
        """What the next writes raise (None: that one goes through)."""
        self.applied: list[Frame] = []
        self.seq = 0
        self.sessions = 0
        self.refuse_opens = 0
        """How many of the next opens are refused (a bad node in a round-robin rotation)."""
        self.hellos: list[tuple[float, Frame]] = []
        """Every hello, with the loop time it arrived."""
        self.lim: dict[str, int] | None = None
        """The welcome's ``lim``, when a test sets one."""
        self.exp: float | None = None
        """The welcome's ``exp`` (Unix time the credentials expire), when a test sets one."""
        self.stalls: list[asyncio.Event | None] = []
        """What the next writes wait for once written (None: that one is answered at once)."""
        self.hold_writes: asyncio.Event | None = None
        """Upstream writes wait for this, when a test sets it (an upload that hangs)."""

    def welcome_for(self, hello: Frame) -> Frame:
        resumed = hello.get("sid") == f"s{self.sessions}"
        if not resumed:
            self.sessions += 1
            self.applied = []
            self.seq = 0  # (a new session numbers its frames from 1)
        return {
            "t": "welcome",
            "v": 1,
            "sid": f"s{self.sessions}",
            "rt": "rt",
            "cid": "c",
            "resumed": resumed,
            "ack": len(self.applied),
            "seq": self.seq,
            "hb": 20_000,
            "ttl": 120_000,
            "poll": 25_000,
            **({"lim": self.lim} if self.lim is not None else {}),
            **({"exp": self.exp} if self.exp is not None else {}),
        }

    @property
    def current(self) -> FakeTransport:
        return self.opened[-1]

    def accept(self, transport: FakeTransport, frames: list[Frame]) -> None:
        """Apply numbered frames once, in order, and acknowledge them downstream."""
        before = len(self.applied)
        for frame in frames:
            if "i" in frame and frame["i"] == len(self.applied) + 1:
                self.applied.append(frame)
        if len(self.applied) > before:
            transport.down.put_nowait([{"t": "ack", "i": len(self.applied)}])

    def push(self, *frames: Frame) -> None:
        """One downstream batch on the newest transport (sequenced frames get their ``s``)."""
        batch = []
        for frame in frames:
            if frame.get("t") in ("ping", "pong", "ack", "err", "bye"):
                batch.append(frame)
            else:
                self.seq += 1
                batch.append({**frame, "s": self.seq})
        self.current.down.put_nowait(batch)

    def refuse(self, msg_id: int, code: str, reason: str = "test") -> None:
        """Refuse client message ``msg_id``: an ``err`` with ``re``, sequenced (protocol §5),
        unlike the control ``err`` :meth:`push` sends."""
        self.seq += 1
        self.current.down.put_nowait([{"t": "err", "re": msg_id, "code": code, "reason": reason, "s": self.seq}])

    def ups(self, kind: str) -> list[Frame]:
        """Every upstream frame of type ``kind``, in order."""
        return [frame for _, frames in self.writes for frame in frames if frame.get("t") == kind]

    async def next_write(self, timeout: float = 5.0) -> list[Frame]:
        """Wait for the next upstream write; returns its frames."""
        count = len(self.writes)
        async with asyncio.timeout(timeout):
            while len(self.writes) == count:
                self.wrote.clear()
                await self.wrote.wait()
        return self.writes[count][1]

    @staticmethod
    def refusal(code: str | None = None) -> TransportClosed:
        if code is None:
            return TransportClosed("sse: HTTP 403 from the server or a proxy")
        return TransportClosed(f"refused ({code})", LadderError(code, "test"))


class FakeClient(Client):
    """A :class:`Client` whose rungs are the fake server's transports."""

    def __init__(self, server: FakeServer, **options: Any) -> None:
        options.setdefault("remember", False)
        super().__init__("http://fake.invalid/ladder", **options)
        self.server = server

    def _make(self, rung: str) -> Transport:
        return FakeTransport(self.server, rung, self.endpoint, self._applied)


async def connected_client(server: FakeServer, **options: Any) -> tuple[FakeClient, asyncio.Queue[Connected]]:
    """A client of ``server``, connected; the queue gets its next ``connected`` events."""
    client = FakeClient(server, **options)
    events: asyncio.Queue[Connected] = asyncio.Queue()
    client.on("connected", events.put_nowait)
    await client.connect(timeout=5)
    await events.get()
    return client, events
