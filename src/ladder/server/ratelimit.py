"""Token buckets: how fast one session, or one client address, may make the server work.

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; each message or
request takes one. An empty bucket answers with how long until the next token, which the
client gets as ``retry_after``. Time is passed in, like everywhere in the core.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    """``rate`` per second on average, up to ``burst`` at once (0 switches the limit off)."""

    rate: float
    burst: float

    @property
    def enabled(self) -> bool:
        return self.rate > 0


class Bucket:
    __slots__ = ("refused", "refusing_since", "stamp", "tokens")

    def __init__(self, rate: Rate, now: float) -> None:
        self.tokens = rate.burst
        self.stamp = now
        self.refused = 0
        """Requests refused since the bucket was last full (the client last calmed down)."""
        self.refusing_since = now

    def take(self, rate: Rate, now: float) -> float:
        """Take a token: 0.0 when allowed, else the seconds to wait for one."""
        self.tokens = min(rate.burst, self.tokens + (now - self.stamp) * rate.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            if self.tokens >= rate.burst:
                self.refused = 0  # it had stopped long enough to refill: forgive
            self.tokens -= 1.0
            return 0.0
        if self.refused == 0:
            self.refusing_since = now
        self.refused += 1
        return (1.0 - self.tokens) / rate.rate

    def abusive(self, rate: Rate, now: float, patience: float) -> bool:
        """Still sending, past the burst, ``patience`` seconds after being told to wait."""
        return self.refused > rate.burst and now - self.refusing_since >= patience

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
