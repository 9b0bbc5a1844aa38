"""What every client transport offers the connection manager: open, recv, send, close.

A transport is one rung for one connection attempt. ``open`` sends the hello and returns
only once the server's welcome arrived over this very transport (and, for a stream, once
a ping went up and its pong came back down: a stream that a proxy buffers never gets
there). ``recv`` returns the next batch of frames; every failure surfaces as
:class:`TransportClosed` with a reason a person can read in a log.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any, Final

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
        self.status: int | None = None
        """The HTTP status of an answer that was not the server's (a proxy's), if any."""
        self.too_large: int | None = None
        """The bytes of a ``POST send`` refused with HTTP 413 by something that is not the
        server (a proxy's body limit): see :class:`~ladder.protocol.client.UpstreamRetry`."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the server is and how to talk to it (shared by every transport of a client)."""

    base: str
    """``http(s)://host:port/mount`` without a trailing slash."""
    codec: Codec
    headers: dict[str, str]
    ssl: SSLContext | None = None
    """TLS settings for https/wss (None: the system's default verification)."""

    @property
    def secure(self) -> bool:
        return self.base.startswith("https://")

    def tls(self) -> SSLContext | None:
        """The TLS context for this server: none for plain http, else ``ssl`` or the default."""
        if self.ssl is not None:
            return self.ssl
        return default_tls() if self.secure else None

    def http(self, endpoint: str) -> str:
        return f"{self.base}/{endpoint}"

    def ws(self) -> str:
        scheme, rest = self.base.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws"


def connect_hint(exc: BaseException, *, otherwise: str = "") -> str:
    """What a failed connection most likely needs: a server started, an http:// URL for a
    server without TLS (its "wrong version number" named nothing), or a trusted certificate;
    ``otherwise`` when the error says none of these."""
    said = str(exc)
    if "WRONG_VERSION_NUMBER" in said or "wrong version number" in said:
        return ": the server there speaks plain HTTP, not TLS: use an http:// URL"
    if "CERTIFICATE_VERIFY_FAILED" in said:
        return ": its certificate is not trusted here: fix the server's, or pass ssl_context="
    if isinstance(exc, ConnectionRefusedError) or "refused" in said.lower():
        return RUNNING_THERE
    return otherwise


RUNNING_THERE: Final = ": is the server running there?"


@functools.cache
def default_tls() -> SSLContext:
    """One verifying TLS context per process, shared by every client and rung.

    Loading the CA bundle takes ~40 ms, and httpx and ``websockets`` would each do it for
    every client (``websockets`` for every connection). The trust store is httpx's default
    (``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set, else certifi's bundle), for every rung.
    """
    import httpx  # noqa: PLC0415 - only needed for https

    return httpx.create_ssl_context()


def no_endpoint(rung: str, url: str, status: int) -> str:
    """The reason for a 404 where a Ladder endpoint should be: almost always a wrong URL."""
    return f"{rung}: no Ladder endpoint at {url} (HTTP {status}): check the mount path in the client's URL"


def refusal(frame: Frame, rung: str) -> TransportClosed:
    """A server ``err`` frame or body, as the transport failure it causes."""
    error = LadderError.of(frame)
    return TransportClosed(f"{rung}: refused by the server ({error.code}: {error.reason})", error)


class Transport:
    """One rung's connection. Subclasses implement the four methods."""

    name = ""
    streaming = True
    """Frames are pushed as they come (WebSocket, SSE) rather than fetched (polls)."""
    implicit_ack = False
    """Each request already tells the server what was received (polls): no ack frames."""
    pongs = False
    """The server expects a ``pong`` for each ``ping`` (WebSocket only, protocol §3.3-3.4):
    it closes a silent WebSocket, but never waits for pongs on SSE or polls."""
    separate_upstream = False
    """Upstream writes travel apart from the downstream (POSTs): a failed write does not
    mean the downstream died, so it is worth writing again on the same transport."""

    def __init__(self, endpoint: Endpoint, applied: Callable[[], int]) -> None:
        self.endpoint = endpoint
        self.applied = applied
        """Reads the client's highest delivered server sequence number (for poll acks)."""
        self.welcome: Frame = {}
        self.pending: list[Frame] = []
        """Frames that arrived together with the welcome, returned by the first ``recv``."""
        self.received = 0
        """Bytes of frames read so far (streams: the server keeps them until acknowledged,
        and the client acks before half its ``lim.qbytes`` fills)."""
        self._reader: asyncio.Task[object] | None = None
        self._interrupted: str | None = None
        self._interrupt_error: LadderError | None = None

    async def open(self, hello: Frame, verify_timeout: float) -> Frame:
        """Send ``hello``; return the welcome once this transport proved it delivers."""
        raise NotImplementedError

    async def recv(self) -> list[Frame]:
        """The next batch of frames (waits for it). :meth:`interrupt` ends the wait."""
        if self.pending:
            frames, self.pending = self.pending, []
            return frames
        if self._interrupted is not None:
            raise TransportClosed(self._interrupted, self._interrupt_error)
        task = asyncio.current_task()
        self._reader = task
        try:
            return await self._recv()
        except asyncio.CancelledError:
            if self._interrupted is not None and task is not None and task.uncancel() == 0:
                raise TransportClosed(self._interrupted, self._interrupt_error) from None
            raise
        finally:
            self._reader = None

    async def _recv(self) -> list[Frame]:
        raise NotImplementedError

    def interrupt(self, reason: str, error: LadderError | None = None) -> None:
        """Make a pending (or the next) :meth:`recv` fail with ``reason`` (and the server's
        ``error``, if it gave one); from any task."""
        if self._interrupted is None:
            self._interrupted = reason
            self._interrupt_error = error
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
