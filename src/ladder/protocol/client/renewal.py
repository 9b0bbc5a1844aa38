"""A subscription renewed in a new session that the server refuses: subscribe again, or end it.

A renewal is the client's own doing (its session was lost), not the app's: a refusal that
only says "later" (``engine_unavailable``: the Redis server holding the channel is briefly
down) must not end, silently and for good, a subscription the app still follows. It is sent
again after a pause drawn as the reconnect delays are (full jitter, doubling from the
client's ``backoff_base`` up to its ``backoff_max``), from where it was, until the server
takes it or refuses it for a reason retrying cannot fix. The app hears once per outage, not
once per try, and hears of a renewal refused for good too. A fresh ``subscribe()`` refused is
its caller's to decide (``ready()`` raises): nothing is retried nor told then.
"""

from __future__ import annotations

from typing import Any

from .backoff import BACKOFF_BASE, BACKOFF_MAX, full_jitter

RETRYABLE = frozenset({"engine_unavailable"})
"""Refusals of a ``sub`` that say "later" (protocol §8). ``rate_limited`` is not among them:
a message over the rate is not applied and is written again by pacing (§4), never refused."""


class Renewal:
    """The renewals of one subscription (ms): what a refusal leads to, and how long to wait."""

    def __init__(self, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> None:
        self.base = base
        self.cap = cap
        self.refusals = 0
        """Refusals in a row since the subscription was last confirmed (the pause grows with it)."""

    def refused(
        self, channel: str, code: str, reason: str, rand: float, renewal: bool = True
    ) -> dict[str, Any]:
        """The ``sub`` of ``channel`` was refused with ``code``: ``{"retry_in": ms}`` (with
        ``"tell"``, the ``error`` event's reason, at the first refusal in a row), or ``{"end":
        True}`` (with ``"tell"`` for a ``renewal``; a fresh subscribe is told by ``ready()``)."""
        if not renewal:
            return {"end": True}
        self.refusals += 1
        refusal = f"renewing the subscription to '{channel}' in a new session was refused ({code}: {reason})"
        if code not in RETRYABLE:
            return {"end": True, "tell": f"{refusal}: it ended; subscribe again to follow the channel"}
        step: dict[str, Any] = {"retry_in": full_jitter(self.refusals - 1, self.base, self.cap, rand)}
        if self.refusals == 1:
            step["tell"] = f"{refusal}: it is sent again, from where it was, until the server takes it"
        return step

    def confirmed(self) -> None:
        """The server took the subscription: the next outage starts the count again."""
        self.refusals = 0
