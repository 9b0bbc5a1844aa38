"""How fast the client writes its messages after the server said it sends too fast.

A rate limit never consumes a reliable message (protocol §4): the server refuses a message
over its rate with ``err`` ``rate_limited`` naming the message (``re``) and ``retry_after``,
without using up its id. The client then rewinds to that message, waits ``retry_after`` and
paces what it writes: one message per ``interval`` (the largest ``retry_after`` heard since
pacing began, about the time the server needs to earn one more message), the ones that
became due meanwhile together. Pacing ends once every message was acknowledged. So a
queue far beyond the server's burst (an offline queue written on reconnect) drains at the
server's rate instead of being refused, and the server never sees a client ignore its
``retry_after`` (which it would end as flooding). No I/O, no clock of its own.
"""

from __future__ import annotations

MIN_INTERVAL = 0.001
"""Seconds: the shortest pace, whatever a server says."""
MAX_DUE = 64
"""Most messages that may become due while the client was busy (one batch at most)."""


class Pacer:
    """The pace of upstream messages: unlimited until the server refuses one for its rate."""

    def __init__(self) -> None:
        self.interval = 0.0
        """Seconds between messages while pacing; 0 when not pacing."""
        self.resume_at = 0.0
        self._due = 0.0
        self._stamp = 0.0

    @property
    def pacing(self) -> bool:
        return self.interval > 0

    def refused(self, retry_after: float, now: float) -> None:
        """The server refused a message for its rate: wait ``retry_after``, then pace."""
        retry_after = max(retry_after, MIN_INTERVAL)
        self.interval = max(self.interval, retry_after)
        self.resume_at = max(self.resume_at, now + retry_after)
        self._stamp = self.resume_at
        self._due = 1.0  # the refused message, once the wait is over

    def allowance(self, now: float) -> tuple[int | None, float]:
        """How many messages may be written now (None: any number) and, when none may, how
        many seconds until the next one may."""
        if not self.pacing:
            return None, 0.0
        if now < self.resume_at:
            return 0, self.resume_at - now
        self._due = min(float(MAX_DUE), self._due + (now - self._stamp) / self.interval)
        self._stamp = now
        due = int(self._due)
        if due == 0:
            return 0, (1.0 - self._due) * self.interval
        return due, 0.0

    def wrote(self, count: int) -> None:
        """``count`` messages were written under the current allowance."""
        if self.pacing:
            self._due = max(0.0, self._due - count)

    def drained(self) -> None:
        """Every message was acknowledged: write freely again."""
        self.interval = 0.0
        self.resume_at = 0.0
        self._due = 0.0
