"""Climbing back: while on a lower rung, probe the better ones with a growing delay."""

from __future__ import annotations

PROBE_DELAY = 2000.0
"""ms: the delay the probes start from (§9.3); the client's ``probe_delay`` by default."""
PROBE_MAX_DELAY = 30_000.0
"""ms: the longest delay between probes; the client's ``probe_max_delay`` by default."""


class ProbeSchedule:
    """Delays (ms) between probes of the better rungs: from ``first`` doubling up to
    ``cap``, each drawn from ``[delay/2, delay)`` so a crowd of clients does not probe at once.

    One schedule lasts while the client stands on one rung: a reconnect on the same rung (a
    proxy cutting long polls every few seconds) goes on with it, since the rungs above are no
    likelier to work for it. Started again from ``first`` only where a new rung is reached."""

    def __init__(self, *, first: float = PROBE_DELAY, cap: float = PROBE_MAX_DELAY) -> None:
        self.first = first
        self.cap = cap
        self.delay = first
        self.rung: str | None = None
        """Where the client stood when last told (``stand``)."""
        self.due: float | None = None
        """When the next probe is due (ms, the driver's clock), once drawn with ``now``."""
        self._fresh = True

    def next_delay(self, rand: float, now: float | None = None) -> float:
        """The pause before the next probe (``rand`` from ``[0, 1)``); the one after doubles.
        With ``now``, the probe's time is kept for a reconnect (``resume``)."""
        pause = self.delay * (0.5 + 0.5 * rand)
        self.delay = min(self.delay * 2, self.cap)
        self.due = None if now is None else now + pause
        return pause

    def reset(self) -> None:
        """A new lower rung was reached: start from ``first`` again."""
        self.delay = self.first
        self.due = None

    def stand(self, rung: str) -> None:
        """The client stands on ``rung`` now (every welcome, a probe's too): on another rung
        than before, the next ``resume`` starts the schedule again."""
        if rung != self.rung:
            self.rung = rung
            self._fresh = True

    def resume(self, first: float, cap: float, rand: float, now: float) -> float:
        """The pause before the first probe from a connection that just opened (``first`` and
        ``cap``: the schedule's, were it to start again). On a rung just reached: drawn from
        ``[first/2, first)``, doubling after. After a reconnect on the same rung: the probe
        that was due keeps its time, and the delays after it go on doubling; one that fell
        due while reconnecting is drawn again from ``[first/2, first)`` (a crowd coming back
        from an outage does not probe at once)."""
        if self._fresh:
            self._fresh = False
            self.first, self.cap = first, cap
            self.reset()
        elif self.due is not None:
            if self.due > now:
                return self.due - now
            pause = self.first * (0.5 + 0.5 * rand)
            self.due = now + pause
            return pause
        return self.next_delay(rand, now)
