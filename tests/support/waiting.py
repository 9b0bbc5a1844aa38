"""Waiting for a condition no event tells of (a process's log, another process's state)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(check: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    """Wait until ``check()`` is true (asked every 50 ms)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        await asyncio.sleep(0.05)
