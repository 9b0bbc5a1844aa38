"""When to acknowledge the server's messages on a stream (protocol §9.7).

At once when ``every`` frames are unacknowledged; otherwise once the stream has been quiet
for ``interval`` ms (no frame for that long), so a subscriber acks once per lull or per
``every`` frames instead of once per message or per second: on a stream of two messages a
second, every client acking each second made the acks cost the server more than the
deliveries. One timer, started by the first unacknowledged frame and never moved (frames
only note when they came): when it fires it asks :meth:`AckPolicy.due` how long is left of
the quiet spell. An ack also rides along with any message or pong written meanwhile. Polls
need none: every request carries ``ack``.
"""

from __future__ import annotations

from typing import Literal


class AckPolicy:
    def __init__(self, *, every: int = 32, interval: float = 1000.0) -> None:
        self.every = every
        self.interval = interval

    def received(
        self, unacked: int, timer_running: bool, implicit: bool = False
    ) -> Literal["now", "timer", "none"]:
        """Frames were delivered, ``unacked`` of them not yet acknowledged: ``now`` (send an
        ack), ``timer`` (start the ack timer, ``interval`` ms) or ``none``. ``implicit``: the
        transport acks by itself (polling)."""
        if implicit or unacked <= 0:
            return "none"
        if unacked >= self.every:
            return "now"
        return "none" if timer_running else "timer"

    def due(self, quiet: float) -> float:
        """The ack timer fired, the last frame having arrived ``quiet`` ms ago: ms still to
        wait (start the timer again for that long), or 0: acknowledge now."""
        return max(0.0, self.interval - quiet)
