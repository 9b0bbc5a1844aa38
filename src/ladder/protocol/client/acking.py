"""When to acknowledge the server's messages on a stream (protocol §9.7).

Acknowledgements exist to let the server forget what it keeps for a session, so their pace
follows the server's bounds rather than the message rate: at once when the frames
unacknowledged reach a count drawn from ``[every/2, every]`` (drawn again after each such
ack, so the subscribers of one channel do not all ack on the same publication), or half the
server's ``lim.queue``, or when their bytes reach half its ``lim.qbytes`` (a stream of large
publications); otherwise once the stream has been quiet for ``interval`` ms. A subscriber so
acks once per lull or per ~``every`` frames: an ack costs the server more than a delivery,
and a thousand subscribers acking the same publication together delayed the next one. One
timer, started by the first unacknowledged frame and never moved (frames only note when they
came): when it fires it asks :meth:`AckPolicy.due` how long is left of the quiet spell. An
ack also rides along with any message or pong written meanwhile. Polls need none: every
request carries ``ack``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

ACK_EVERY = 512
"""Unacknowledged frames at which an ack goes at once, at most (the count is drawn from
``[every/2, every]``). What the server keeps meanwhile is small (a reference and a size per
frame, 16 bytes: the frame itself is shared by every subscriber of its publication), and
every ack costs the client a write (on SSE a POST) and the server a wake-up and a read; a
client also acks when the server pings it (a WebSocket unheard for a heartbeat), so a slow
steady stream is acknowledged about every ``hb``."""

ACK_INTERVAL = 1000.0
"""ms of quiet after which the frames unacknowledged are acknowledged."""


class AckPolicy:
    __slots__ = ("at", "every", "interval", "max_bytes", "max_frames")

    def __init__(self, *, every: int = ACK_EVERY, interval: float = ACK_INTERVAL) -> None:
        self.every = every
        self.interval = interval
        self.max_frames: int | None = None
        """Half the server's ``lim.queue`` (None until a welcome says)."""
        self.max_bytes: int | None = None
        """Half the server's ``lim.qbytes`` (None until a welcome says)."""
        self.at = every
        """Unacknowledged frames at which the next ack goes at once."""

    def welcome(self, lim: dict[str, Any], rand: float) -> None:
        """A transport was welcomed with the server's limits ``lim``: ack before half its
        queue of unacknowledged frames (``queue``) or bytes (``qbytes``) fills."""
        self.max_frames = _half(lim.get("queue"))
        self.max_bytes = _half(lim.get("qbytes"))
        self._draw(rand)

    def received(
        self,
        unacked: int,
        timer_running: bool,
        implicit: bool = False,
        unacked_bytes: int = 0,
        rand: float = 0.5,
    ) -> Literal["now", "timer", "none"]:
        """Frames were delivered, ``unacked`` of them (``unacked_bytes`` bytes) not yet
        acknowledged: ``now`` (send an ack; the next count is drawn with ``rand``), ``timer``
        (start the ack timer, ``interval`` ms) or ``none``. ``implicit``: the transport acks by
        itself (polling)."""
        if implicit or unacked <= 0:
            return "none"
        max_bytes = self.max_bytes
        if unacked >= self.at or (max_bytes is not None and unacked_bytes >= max_bytes):
            self._draw(rand)
            return "now"
        return "none" if timer_running else "timer"

    def due(self, quiet: float) -> float:
        """The ack timer fired, the last frame having arrived ``quiet`` ms ago: ms still to
        wait (start the timer again for that long), or 0: acknowledge now."""
        return max(0.0, self.interval - quiet)

    def _draw(self, rand: float) -> None:
        every = self.every
        at = max(1, math.ceil(every / 2 + rand * every / 2))
        self.at = at if self.max_frames is None else min(at, self.max_frames)


def _half(limit: Any) -> int | None:
    """Half a limit the welcome gave, or None when it gave none (or not a positive integer)."""
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        return max(1, limit // 2)
    return None
