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
    __slots__ = (
        "answered_at", "ignored", "ignoring", "ignoring_since", "refused_message", "stamp", "tokens",
        "told_until",
    )

    def __init__(self, rate: Rate, now: float) -> None:
        self.tokens = rate.burst
        self.stamp = now
        self.told_until = now
        """Until when the client was last told to wait."""
        self.refused_message: int | None = None
        """The first message (its id) refused since the client last came back as told: a
        client that heard it was refused writes that one again first."""
        self.ignoring = False
        """The latest refusal was of a message sent while told to wait."""
        self.ignored = 0
        """Refusals of what arrived before the wait the client was told was over, since it
        last came back as told (or the bucket was last full)."""
        self.ignoring_since = now
        self.answered_at = -1.0e9
        """When a refusal past the rate was last answered in words (see ``Throttle``)."""

    def take(self, rate: Rate, now: float, message: int | None = None) -> float:
        """Take a token for ``message`` (a message id; None for anything else): 0.0 when
        allowed, else the seconds to wait for one."""
        waited = now >= self.told_until - TOLD_SLACK
        if waited and message is not None and message == self.refused_message:
            self.ignored = 0  # back with the refused message as told: what came before was in flight
            self.refused_message = None
        self.tokens = min(rate.burst, self.tokens + (now - self.stamp) * rate.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            if self.tokens >= rate.burst:
                self.ignored = 0  # it had stopped long enough to refill: forgive
            self.tokens -= 1.0
            return 0.0
        self.ignoring = not waited
        if self.ignoring:
            if self.ignored == 0:
                self.ignoring_since = now
            self.ignored += 1
        wait = (1.0 - self.tokens) / rate.rate
        self.told_until = now + wait
        if message is not None and (self.refused_message is None or message < self.refused_message):
            self.refused_message = message
        return wait

    def abusive(self, rate: Rate, now: float, patience: float) -> bool:
        """Still sending while told to wait, past the burst, ``patience`` seconds after it
        began, and never back with a refused message as told meanwhile. A client that waits
        as it is told is refused at times (what it had sent before it heard; the next
        message sent with the one due) but never dropped: it is paced."""
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
