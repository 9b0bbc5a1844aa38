"""One transport's hold on a session: what it has been sent, when it was last heard, and
how its writer is woken. The session (:mod:`.session`) decides; the attachment records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import LadderError


def _noop() -> None:
    return None


class Attachment:
    """One transport's hold on a session (a WebSocket, an SSE stream or one poll request)."""

    __slots__ = (
        "ack_sent",
        "close_error",
        "closed",
        "control",
        "cursor",
        "hold",
        "last_heard",
        "last_sent",
        "opened",
        "ping_sent",
        "pinged",
        "streaming",
        "transport",
        "wake",
    )

    def __init__(self, transport: str, *, streaming: bool, cursor: int, now: float) -> None:
        # (What a publication and a write read come first: the compiled class lays its
        # fields out in this order, near the header.)
        self.wake: Callable[[], None] = _noop
        self.control: list[dict[str, Any]] | None = None
        """Unsequenced frames to write next (a list only while there are some)."""
        self.cursor = cursor
        self.close_error: LadderError | None = None
        self.ack_sent = 0
        self.closed = False
        self.streaming = streaming
        self.last_sent = now
        self.transport = transport
        """Which transport holds the session: ``websocket``, ``sse``, ``longpoll`` or ``poll``."""
        self.opened = now
        self.last_heard = now
        self.pinged = streaming and transport == "websocket"
        """Whether the client must answer pings on this transport (WebSocket only)."""
        self.ping_sent = now
        """When the last ping was queued (one per heartbeat to a client not heard from)."""
        self.hold: float | None = None
        """Seconds a long poll is held at most when the client asked for less than the
        session's ``poll_timeout`` (``hold``: a proxy on its way cuts longer requests)."""

    def wake_with(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever this transport has something new to write (and now, since
        the welcome or a replay may already be waiting)."""
        self.wake = wake
        wake()

    def queue(self, body: dict[str, Any]) -> None:
        """Write the unsequenced frame ``body`` next (the caller wakes the writer)."""
        if self.control is None:
            self.control = [body]
        else:
            self.control.append(body)

    def heard(self, now: float) -> None:
        """The client was heard from on this transport (it is alive)."""
        self.last_heard = now

    def end(self, error: LadderError | None = None) -> None:
        """The transport is over (its peer went away, or ``error`` must close it): its
        writer wakes, writes what it must and stops."""
        self.closed = True
        if error is not None:
            self.close_error = error
        self.wake()

    def __repr__(self) -> str:
        return f"<Attachment {self.transport} cursor={self.cursor} closed={self.closed}>"
