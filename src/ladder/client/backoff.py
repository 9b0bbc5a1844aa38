"""Delays between attempts: exponential growth with full jitter."""

from __future__ import annotations

import random


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """A delay drawn uniformly from ``[0, min(cap, base * 2**attempt))``.

    Full jitter spreads a crowd of clients that lost the same server over the whole window,
    so they do not come back in synchronised waves.
    """
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    return (rng or random).uniform(0.0, ceiling)
