"""What every client transport offers the connection manager: open, recv, send, close.

A transport is one rung for one connection attempt. ``open`` sends the hello and returns
only once the server's welcome arrived over this very transport (and, for a stream, once
a ping went up and its pong came back down: a stream that a proxy buffers never gets
there). ``recv`` returns the next batch of frames; every failure surfaces as
:class:`TransportClosed` with a reason a person can read in a log.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...protocol.codec import Codec
from ...protocol.errors import LadderError

Frame = dict[str, Any]


class TransportClosed(Exception):
    """The transport cannot be used any more. ``reason`` says why, for logs and events."""

    def __init__(self, reason: str, error: LadderError | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error
        """The server's refusal, when it sent one (for example ``unknown_session``)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the server is and how to talk to it (shared by every transport of a client)."""

    base: str
    """``http(s)://host:port/mount`` without a trailing slash."""
    codec: Codec
    headers: dict[str, str]
    token: Callable[[], str | None]
    ssl: ssl.SSLContext | None = None
    """TLS settings for https/wss (None: the system's default verification)."""

    def http(self, endpoint: str) -> str:
        return f"{self.base}/{endpoint}"

    def ws(self) -> str:
        scheme, rest = self.base.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws"


def refusal(frame: Frame, rung: str) -> TransportClosed:
    """A server ``err`` frame or body, as the transport failure it causes."""
    error = LadderError(str(frame.get("code", "internal")), str(frame.get("reason", "")))
    return TransportClosed(f"{rung}: refused by the server ({error.code}: {error.reason})", error)


class Transport:
    """One rung's connection. Subclasses implement the four methods."""

    name = ""
    streaming = True
    """Frames are pushed as they come (WebSocket, SSE) rather than fetched (polls)."""
    implicit_ack = False
    """Each request already tells the server what was received (polls): no ack frames."""

    def __init__(self, endpoint: Endpoint, applied: Callable[[], int]) -> None:
        self.endpoint = endpoint
        self.applied = applied
        """Reads the client's highest delivered server sequence number (for poll acks)."""
        self.welcome: Frame = {}
        self.pending: list[Frame] = []
        """Frames that arrived together with the welcome, returned by the first ``recv``."""
        self._reader: asyncio.Task[object] | None = None
        self._interrupted: str | None = None

    async def open(self, hello: Frame, verify_timeout: float) -> Frame:
        """Send ``hello``; return the welcome once this transport proved it delivers."""
        raise NotImplementedError

    async def recv(self) -> list[Frame]:
        """The next batch of frames (waits for it). :meth:`interrupt` ends the wait."""
        if self.pending:
            frames, self.pending = self.pending, []
            return frames
        if self._interrupted is not None:
            raise TransportClosed(self._interrupted)
        task = asyncio.current_task()
        self._reader = task
        try:
            return await self._recv()
        except asyncio.CancelledError:
            if self._interrupted is not None and task is not None and task.uncancel() == 0:
                raise TransportClosed(self._interrupted) from None
            raise
        finally:
            self._reader = None

    async def _recv(self) -> list[Frame]:
        raise NotImplementedError

    def interrupt(self, reason: str) -> None:
        """Make a pending (or the next) :meth:`recv` fail with ``reason``; from any task."""
        if self._interrupted is None:
            self._interrupted = reason
            reader = self._reader
            if reader is not None and reader is not asyncio.current_task():
                reader.cancel()

    async def send(self, frames: list[Frame]) -> None:
        """Write frames upstream."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release the connection (idempotent, never raises)."""
        raise NotImplementedError

    def wake(self) -> None:
        """Something was just sent: a polling transport should ask again soon."""


def split_welcome(frames: list[Frame], rung: str) -> tuple[Frame, list[Frame]]:
    """The welcome (which must come first) and whatever followed it."""
    if not frames:
        raise TransportClosed(f"{rung}: connection ended before the welcome")
    first = frames[0]
    if first.get("t") == "err":
        raise refusal(first, rung)
    if first.get("t") != "welcome":
        raise TransportClosed(f"{rung}: expected a welcome, got {first.get('t')!r}")
    return first, frames[1:]
