"""Delays between attempts: exponential growth with full jitter, forgiving one bad node."""

from __future__ import annotations

import random

RETRIES_AT_ONCE = 2
"""Failed races retried at once before backing off: behind a round-robin balancer the next
request usually reaches another node, so one refusing node costs no waiting."""


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """A delay drawn uniformly from ``[0, min(cap, base * 2**attempt))``.

    Full jitter spreads a crowd of clients that lost the same server over the whole window,
    so they do not come back in synchronised waves.
    """
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    return (rng or random).uniform(0.0, ceiling)


def reconnect_delay(
    failures: int,
    base: float,
    cap: float,
    *,
    at_once: int = RETRIES_AT_ONCE,
    rng: random.Random | None = None,
) -> float:
    """How long to wait before the next race (protocol §9.4).

    ``failures`` counts the races that failed since the last welcome: 0 right after a
    connection ended (the server was reachable: a short jittered pause, ``[0, base)``), then
    ``at_once`` immediate retries, then full jitter doubling from ``base`` up to ``cap``. Every
    welcome starts the count again, so frequent cuts or one bad node among good ones never
    grow the delay.
    """
    if failures <= 0:
        return full_jitter(0, base, cap, rng)
    if failures <= at_once:
        return 0.0
    return full_jitter(failures - at_once, base, cap, rng)
