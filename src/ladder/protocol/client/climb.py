"""Climbing back: while on a lower rung, probe the better ones with a growing delay."""

from __future__ import annotations

PROBE_DELAY = 2000.0
"""ms: the delay the probes start from (§9.3); the client's ``probe_delay`` by default."""
PROBE_MAX_DELAY = 30_000.0
"""ms: the longest delay between probes; the client's ``probe_max_delay`` by default."""


class ProbeSchedule:
    """Delays (ms) between probes of the better rungs: from ``first`` doubling up to
    ``cap``, each drawn from ``[delay/2, delay)`` so a crowd of clients does not probe at once."""

    def __init__(self, *, first: float = PROBE_DELAY, cap: float = PROBE_MAX_DELAY) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    def next_delay(self, rand: float) -> float:
        """The pause before the next probe (``rand`` from ``[0, 1)``); the one after doubles."""
        pause = self.delay * (0.5 + 0.5 * rand)
        self.delay = min(self.delay * 2, self.cap)
        return pause

    def reset(self) -> None:
        """A new lower rung was reached: start from ``first`` again."""
        self.delay = self.first
