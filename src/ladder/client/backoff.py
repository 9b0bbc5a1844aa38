"""Reconnect delays in seconds, for the asyncio driver: the core's rules
(:mod:`ladder.protocol.client.backoff`, in ms) with the draw made here."""

from __future__ import annotations

import random

from ..protocol.client import backoff as core
from ..protocol.client.backoff import RETRIES_AT_ONCE

__all__ = ["RETRIES_AT_ONCE", "full_jitter", "reconnect_delay"]


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """A delay drawn uniformly from ``[0, min(cap, base * 2**attempt))``."""
    return core.full_jitter(attempt, base, cap, (rng or random).random())


def reconnect_delay(
    failures: int,
    base: float,
    cap: float,
    *,
    at_once: int = RETRIES_AT_ONCE,
    rng: random.Random | None = None,
) -> float:
    """How long to wait before the next race (protocol §9.4); see the core's rule."""
    return core.reconnect_delay(failures, base, cap, (rng or random).random(), at_once)
