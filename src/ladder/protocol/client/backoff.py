"""When to try again: reconnect delays with full jitter, and the first connect's deadline.

Full jitter spreads a crowd of clients that lost the same server over the whole window, so
they do not come back in synchronised waves. Every welcome starts the count of failed races
again, so one refusing node among good ones never grows the delay. Connections that keep
ending soon after their welcome (a server that welcomes, then cannot serve) do grow the
pause before the next, or the client would reconnect a few times a second for as long as
that lasts: a reconnect loop.
"""

from __future__ import annotations

from typing import Any

from .ladder import STABLE_AFTER

RETRIES_AT_ONCE = 2
"""Failed races retried at once before backing off: behind a round-robin balancer the next
request usually reaches another node, so one refusing node costs no waiting."""

BACKOFF_BASE = 500.0
"""ms: the reconnect delays' first ceiling (§9.4); the client's ``backoff_base`` by default."""
BACKOFF_MAX = 5000.0
"""ms: their largest ceiling; the client's ``backoff_max`` by default."""
CONNECT_TIMEOUT = 15_000.0
"""ms: how long the first connection may take (§9.5); the client's ``connect_timeout``."""


def full_jitter(attempt: int, base: float, cap: float, rand: float) -> float:
    """A delay in ``[0, min(cap, base * 2**attempt))``, ``rand`` being a draw from ``[0, 1)``."""
    return float(min(cap, base * (2 ** min(attempt, 32))) * rand)


def reconnect_delay(
    failures: int, base: float, cap: float, rand: float, at_once: int = RETRIES_AT_ONCE
) -> float:
    """The pause before the next race, ``failures`` races having failed since the last welcome.

    0 failures (a connection ended; the server was reachable): ``[0, base)``; then ``at_once``
    immediate retries; then full jitter doubling from ``base`` up to ``cap``.
    """
    if failures <= 0:
        return full_jitter(0, base, cap, rand)
    if failures <= at_once:
        return 0.0
    return full_jitter(failures - at_once, base, cap, rand)


class Reconnect:
    """The reconnect bookkeeping of one client (ms): how long to wait, and when to give up.

    ``connect_timeout`` bounds the first connection only (None: no bound); ``max_attempts``
    bounds races failed in a row (None: forever). ``at_deadline`` is what the first connect's
    deadline leads to: ``"give_up"`` (a script: ``connect()`` raises) or ``"report"`` (a page,
    which cannot be re-run: say so once and keep trying).
    """

    def __init__(
        self,
        *,
        base: float = BACKOFF_BASE,
        cap: float = BACKOFF_MAX,
        at_once: int = RETRIES_AT_ONCE,
        connect_timeout: float | None = CONNECT_TIMEOUT,
        max_attempts: int | None = None,
        at_deadline: str = "give_up",
        stable_after: float = STABLE_AFTER,
    ) -> None:
        if at_deadline not in ("give_up", "report"):
            raise ValueError(f"at_deadline must be 'give_up' or 'report', not {at_deadline!r}")
        self.base = base
        self.cap = cap
        self.at_once = at_once
        self.connect_timeout = connect_timeout
        self.max_attempts = max_attempts
        self.failures = 0
        """Races failed since the last welcome or wake (the delay grows with it)."""
        self.attempts = 0
        """Races failed since the last welcome (``max_attempts`` counts these)."""
        self.connected = False
        self.deadline: float | None = None
        self.at_deadline = at_deadline
        self.reported = False
        """The deadline was reported (``at_deadline="report"``): once is enough."""
        self.stable_after = stable_after
        self.short = 0
        """Connections in a row that ended within ``stable_after`` of their welcome."""

    def started(self, now: float) -> float | None:
        """The client starts connecting at ``now``: returns the first connect's deadline."""
        if not self.connected and self.connect_timeout is not None and self.deadline is None:
            self.deadline = now + self.connect_timeout
        return self.deadline

    def failed(self, now: float, rand: float) -> dict[str, Any]:
        """A race failed at ``now``: ``{"wait": ms}`` before the next, or ``{"give_up": code,
        "at": ms}`` (``connect_failed`` once the next try would pass the first connect's
        deadline, at that deadline; ``timeout`` after ``max_attempts``, at once)."""
        self.failures += 1
        self.attempts += 1
        if self.max_attempts is not None and self.attempts >= self.max_attempts:
            return {"give_up": "timeout", "at": now}
        delay = reconnect_delay(self.failures, self.base, self.cap, rand, self.at_once)
        if (
            self.at_deadline == "give_up"
            and not self.connected
            and self.deadline is not None
            and now + delay >= self.deadline
        ):
            return {"give_up": "connect_failed", "at": max(now, self.deadline)}
        return {"wait": delay}

    def expired(self) -> str | None:
        """The first connect's deadline passed without a welcome (the port's timer fired,
        perhaps during a race): ``"give_up"``, ``"report"`` (once), or None (nothing to do:
        connected, no deadline, or already reported)."""
        if self.connected or self.deadline is None:
            return None
        if self.at_deadline == "give_up":
            return "give_up"
        if self.reported:
            return None
        self.reported = True
        return "report"

    def woken(self) -> None:
        """Something says the network is back (the browser went online, the page became
        visible): the delay starts again, so the next wait is short (``max_attempts`` still
        counts every failed race)."""
        self.failures = 0

    def welcomed(self) -> None:
        """A welcome: the count starts again and the first connect's deadline is gone."""
        self.failures = self.attempts = 0
        self.connected = True
        self.deadline = None

    def ended(self, action: str, rand: float, lived: float | None = None) -> float:
        """A connection that was established ended with ``action`` (:data:`~.ending.Action`)
        ``lived`` ms after its welcome: the pause before reconnecting, ``[0, base)`` (the
        server was reachable; a crowd that lost it comes back spread out), none for
        ``resume_now`` (the server is going away). After ``back_off`` (a refusal) from the
        second connection in a row that ended so within ``stable_after``: full jitter
        doubling up to ``cap``, so a server that welcomes, then cannot serve, is not
        reconnected to a few times a second (a connection cut on the way is not that: a
        flaky network is reconnected at once, each time)."""
        if action == "resume_now":
            return 0.0
        if action == "back_off" and lived is not None and lived < self.stable_after:
            self.short += 1
        else:
            self.short = 0
        return full_jitter(max(0, self.short - 1), self.base, self.cap, rand)
