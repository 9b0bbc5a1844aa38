"""When to acknowledge the server's messages on a stream (protocol §3.4).

At once when ``every`` frames are unacknowledged; otherwise once, ``interval`` ms after the
first unacknowledged frame arrived (one timer, started by that frame and not moved by later
ones), so a quiet subscriber acks about once a second instead of once per message. An ack
also rides along with any message or pong written meanwhile. Polls need none: every
request carries ``ack``.
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
