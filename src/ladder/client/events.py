"""What a client reports to the app. Each is a small frozen record.

Register with ``client.on("transport", callback)`` (the names are the ``name`` fields
below) or iterate ``client.events()`` to receive every kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..protocol.errors import LadderError
from ..protocol.peer import Frame


@dataclass(frozen=True, slots=True)
class Event:
    name: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """A transport is up and the session is live (``resumed``: the same session as before)."""

    name: ClassVar[str] = "connected"
    transport: str
    session_id: str
    resumed: bool


@dataclass(frozen=True, slots=True)
class Disconnected(Event):
    """The transport was lost; the client is reconnecting unless it was closed."""

    name: ClassVar[str] = "disconnected"
    transport: str
    reason: str


@dataclass(frozen=True, slots=True)
class TransportChanged(Event):
    """The client moved to another rung (down after a failure, up after a probe).

    ``reason`` says why: for an SSE stream a proxy buffers (from its open, or mid-session:
    its pong came back more than ``max(1 s, 4 round trips)`` after its POSTed ping was
    answered, twice in a row), ``sse: stream buffered by something on the way (…)``.
    """

    name: ClassVar[str] = "transport"
    old: str | None
    new: str
    reason: str


@dataclass(frozen=True, slots=True)
class SessionLost(Event):
    """The server no longer had the session (expired or dropped); a new one was started.

    Messages the old session had not acknowledged were carried over to the new one.
    """

    name: ClassVar[str] = "session_lost"
    reason: str


@dataclass(frozen=True, slots=True)
class Resubscribed(Event):
    """A channel was subscribed again after a new session; ``recovered`` says if nothing was lost."""

    name: ClassVar[str] = "resubscribed"
    channel: str
    recovered: bool


@dataclass(frozen=True, slots=True)
class ResyncNeeded(Event):
    """History could not cover a gap in ``channel`` (or this client may not read it):
    refetch the app's state for it. The subscription goes on from ``offset`` in ``epoch``:
    publications after it are delivered; what it skipped, up to it, ``history`` returns
    (where the channel keeps it)."""

    name: ClassVar[str] = "resync"
    channel: str
    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Push(Event):
    """An event the server pushed to this session or user."""

    name: ClassVar[str] = "push"
    event: str
    data: Any


@dataclass(frozen=True, slots=True)
class Presence(Event):
    """Someone joined or left a channel this client follows (``kind``: join or leave)."""

    name: ClassVar[str] = "presence"
    kind: str
    channel: str
    member: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ServerError(Event):
    """An error no call was waiting for: a failed emit, a refusal the client gave up on
    (``origin_not_allowed``, ``unauthorized``, …), ``connect_failed`` (the first connection
    could not be made within ``connect_timeout``), ``engine_unavailable`` when the
    session's messages wait for the Redis server keeping its records, which is down (they
    are answered once it is back; the connection is kept), or the refusal of a subscription
    renewed in a new session, the reason naming the channel: ``engine_unavailable`` once (it
    is sent again until the server takes it), any other code when it ended. ``details`` and
    ``retry_after``: what the server's ``err`` carried (a handler's ``LadderError(...,
    details=..., retry_after=...)`` for a failed emit), else None."""

    name: ClassVar[str] = "error"
    code: str
    reason: str
    details: Any = None
    retry_after: float | None = None

    @classmethod
    def of(cls, frame: Frame) -> ServerError:
        """The event an ``err`` frame nothing waited for makes, every wire field kept."""
        error = LadderError.of(frame)
        return cls(error.code, error.reason, error.details, error.retry_after)


@dataclass(frozen=True, slots=True)
class ProbeResult(Event):
    """A better rung was tried while the client stood on a lower one (``ok``: it worked, and
    the client moves there)."""

    name: ClassVar[str] = "probe"
    rung: str
    ok: bool
    reason: str


@dataclass(frozen=True, slots=True)
class StateChanged(Event):
    """The connection state changed: ``connecting``, ``connected``, ``disconnected`` or
    ``closed`` (``reason``: why, when it got worse)."""

    name: ClassVar[str] = "state"
    state: str
    reason: str


EVENT_NAMES = frozenset(
    cls.name
    for cls in (
        Connected,
        Disconnected,
        TransportChanged,
        SessionLost,
        Resubscribed,
        ResyncNeeded,
        Push,
        Presence,
        ServerError,
        ProbeResult,
        StateChanged,
    )
)
