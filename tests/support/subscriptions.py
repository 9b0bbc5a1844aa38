"""Helpers for reading a client's subscriptions in tests."""

from __future__ import annotations

import asyncio

from ladder.client import Publication, Subscription


async def take(sub: Subscription, count: int, timeout: float = 60.0) -> list[Publication]:
    """The next ``count`` publications of ``sub`` (``TimeoutError`` if they do not come)."""
    out: list[Publication] = []
    async with asyncio.timeout(timeout):
        async for pub in sub:
            out.append(pub)
            if len(out) == count:
                break
    return out
