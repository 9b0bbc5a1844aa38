"""When to acknowledge the server's messages on a stream (protocol §3.4).

At once when ``every`` frames are unacknowledged; otherwise once, about ``interval`` ms after
the first unacknowledged frame arrived (one timer, started by that frame and not moved by
later ones), so a quiet subscriber acks about once a second instead of once per message. An
ack also rides along with any message or pong written meanwhile. Polls need none: every
request carries ``ack``.

The timer's length is drawn from ``interval`` ± ``spread`` (a fraction of it): the
subscribers of a channel receive each publication within a millisecond of each other, and
with one fixed length all of them would acknowledge in the same millisecond, a second
later, delaying whatever the server and the network carry then. Drawn afresh for each
timer, the acknowledgements spread over the whole window and stay apart, at the same
average rate.
"""

from __future__ import annotations

from typing import Literal


class AckPolicy:
    def __init__(self, *, every: int = 32, interval: float = 1000.0, spread: float = 0.25) -> None:
        if not 0 <= spread < 1:
            raise ValueError(f"spread must be in [0, 1), not {spread!r}")
        self.every = every
        self.interval = interval
        self.spread = spread

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

    def delay(self, rand: float) -> float:
        """How long the ack timer runs (ms), ``rand`` being a draw from ``[0, 1)``: uniform in
        ``interval * [1 - spread, 1 + spread)``, ``interval`` on average."""
        return self.interval * (1 - self.spread + 2 * self.spread * rand)
