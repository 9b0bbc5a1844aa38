"""A session's lifecycle as data (phases, events, the legal moves) and its limits.

Kept apart from :mod:`.session` so the table reads at a glance, as h11's does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class Phase(enum.Enum):
    LIVE = "live"
    """At least one transport is attached."""
    DETACHED = "detached"
    """No transport; the session waits ``ttl`` seconds for the client to come back."""
    CLOSED = "closed"
    """Ended (expired, closed by either side, or dropped as a slow consumer)."""


class Event(enum.Enum):
    ATTACH = "attach"
    DETACH = "detach"
    DETACH_LAST = "detach_last"
    EXPIRE = "expire"
    CLOSE = "close"


TRANSITIONS: Final[dict[tuple[Phase, Event], Phase]] = {
    (Phase.DETACHED, Event.ATTACH): Phase.LIVE,
    (Phase.LIVE, Event.ATTACH): Phase.LIVE,
    (Phase.LIVE, Event.DETACH): Phase.LIVE,
    (Phase.LIVE, Event.DETACH_LAST): Phase.DETACHED,
    (Phase.DETACHED, Event.EXPIRE): Phase.CLOSED,
    (Phase.LIVE, Event.CLOSE): Phase.CLOSED,
    (Phase.DETACHED, Event.CLOSE): Phase.CLOSED,
}
"""Every legal move of the session lifecycle; anything else is a bug and raises."""


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Timing and bounds of one session (all seconds, counts or bytes)."""

    ttl: float = 120.0
    heartbeat: float = 20.0
    poll_timeout: float = 25.0
    max_queue: int = 10_000
    max_queue_bytes: int = 8 * 1024 * 1024
    inbox_window: int = 1024
    batch_frames: int = 512

    @property
    def dead_after(self) -> float:
        """Silence after which a transport that must answer pings counts as dead."""
        return self.heartbeat * 2 + 1.0
