"""Token buckets: how fast one session, or one client address, may make the server work.

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; each message or
request takes one. An empty bucket answers with how long until the next token, which the
client gets as ``retry_after``. Time is passed in, like everywhere in the core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    """``rate`` per second on average, up to ``burst`` at once (0 switches the limit off)."""

    rate: float
    burst: float

    @property
    def enabled(self) -> bool:
        return self.rate > 0


def told(wait: float) -> float:
    """``wait`` as a client is told it (``retry_after``): whole milliseconds, rounded up and
    at least one, so a client that waits exactly that finds its token there (rounded to
    the nearest, a third of a second was told as 0.333 and refused again at its return)."""
    return max(0.001, math.ceil(wait * 1000 - 1e-9) / 1000)


TOLD_SLACK = 0.002
"""Seconds a message may arrive before the time its client was told to wait for and still
count as having waited (timers fire early)."""


class Bucket:
    """A token bucket, and what its client did while told to wait (see :meth:`abusive`)."""

    __slots__ = (
        "answered_at", "back", "brought", "ignored", "ignoring", "ignoring_since", "refused_message",
        "refused_until", "rushed", "stamp", "tokens", "told_until",
    )

    def __init__(self, rate: Rate, now: float) -> None:
        self.tokens = rate.burst
        self.stamp = now
        self.told_until = now
        """Until when the client was last told to wait."""
        self.refused_message: int | None = None
        """The lowest message (its id) refused and not let through since: a client that
        heard it was refused writes that one again first."""
        self.refused_until = now
        """Until when the client was told to wait before writing ``refused_message`` again."""
        self.rushed = False
        """It wrote ``refused_message`` again sooner than told: it heard and did not wait, so
        that message let through at last (by chance, for a client that writes it again at
        once, over and over) does not forgive what it sent meanwhile."""
        self.brought = False
        """The batch being read brought ``refused_message`` again: the client is paced, and
        what it sends with it past the rate was sent while told to wait."""
        self.back = False
        """... and it was let through, not rushed (see :meth:`read`)."""
        self.ignoring = False
        """The latest refusal was of a frame sent while told to wait: before the wait was
        over, or any frame but the refused message after its refusal, until it was let
        through, and in the batch that brought it."""
        self.ignored = 0
        """Frames sent while told to wait (refused, or not read after one refused in their
        batch), since the client last came back with a refused message as told (see
        :meth:`read`), or the bucket was last full."""
        self.ignoring_since = now
        self.answered_at = -1.0e9
        """When a refusal past the rate was last answered in words (see ``Throttle``)."""

    def take(self, rate: Rate, now: float, message: int | None = None) -> float:
        """Take a token for ``message`` (a message id; None for anything else): 0.0 when
        allowed, else the seconds to wait for one."""
        waited = now >= self.told_until - TOLD_SLACK
        again = message is not None and message == self.refused_message
        if again:
            self.brought = True
            if now < self.refused_until - TOLD_SLACK:
                self.rushed = True  # it heard (it writes that one again) and did not wait
        self.tokens = min(rate.burst, self.tokens + (now - self.stamp) * rate.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            if self.tokens >= rate.burst:
                self.ignored = 0  # it had stopped long enough to refill: forgive
                self.rushed = False
            if again:  # the refused message, let through at last
                self.back = not self.rushed
                self.rushed = False
                self.refused_message = None
            self.tokens -= 1.0
            return 0.0
        # A flood in batches comes after each wait, each batch refused once: what tells it
        # is that it never writes the refused message again, or writes more with it than due.
        self.ignoring = not waited or (
            message != self.refused_message and (self.refused_message is not None or self.brought)
        )
        if self.ignoring:
            self._ignored(1, now)
        wait = (1.0 - self.tokens) / rate.rate
        self.told_until = now + wait
        if message is not None and (self.refused_message is None or message <= self.refused_message):
            self.refused_message = message
            self.refused_until = self.told_until
        return wait

    def read(self, unread: int | None, now: float) -> None:
        """A batch (a WebSocket message, a POST) was read: to its end (``unread`` None), or up
        to a frame refused, after which ``unread`` more were not (the client sends them
        again). Those were sent while told to wait when the refused one was, and count as it
        does (only it counted: a flood of 50 frames a message was never ended). A batch that
        brought the refused message back as told, and no more than was due (nothing unread),
        shows the client heard and paces: what it sent before was in flight, and is
        forgiven. (Forgiven on that message alone, a client writing it again with 49 more
        was forgiven whenever it came after the wait.)"""
        if unread and self.ignoring:
            self._ignored(unread, now)
        if self.back and not unread:
            self.ignored = 0
        self.back = self.brought = False

    def _ignored(self, count: int, now: float) -> None:
        if self.ignored == 0:
            self.ignoring_since = now
        self.ignored += count

    def abusive(self, rate: Rate, now: float, patience: float) -> bool:
        """Asked once a batch was read: still sending while told to wait, more than a burst
        of frames, ``patience`` seconds after it began, and never back with a refused
        message as told meanwhile (see :meth:`read`). A client that waits as it is told is
        refused at times (what it had sent before it heard; the next message sent with the
        one due) but never dropped: it is paced."""
        return self.ignoring and self.ignored > rate.burst and now - self.ignoring_since >= patience

    def full(self, rate: Rate, now: float) -> bool:
        return self.tokens + (now - self.stamp) * rate.rate >= rate.burst


class Limiter:
    """Buckets by key (client address), forgetting idle ones so the table stays bounded."""

    def __init__(self, rate: Rate, *, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: dict[str, Bucket] = {}

    def take(self, key: str, now: float) -> float:
        if not self.rate.enabled:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self.sweep(now)
                if len(self._buckets) >= self.max_keys:  # all busy: make room, oldest first
                    del self._buckets[next(iter(self._buckets))]
            bucket = self._buckets[key] = Bucket(self.rate, now)
        return bucket.take(self.rate, now)

    def sweep(self, now: float) -> None:
        """Forget buckets that refilled completely: they hold nothing worth remembering."""
        for key, bucket in list(self._buckets.items()):
            if bucket.full(self.rate, now):
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
