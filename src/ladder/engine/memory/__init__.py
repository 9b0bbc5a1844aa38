"""The embedded engine: channels, history, presence and records in this process's memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from ...checks import check_number, check_positive
from ..base import EngineSink
from ..composed import ComposedEngine
from .applied import MemoryAppliedRecords
from .channels import MemoryChannels
from .presence import MemoryPresence
from .routing import LocalRouting

__all__ = ["MemoryEngine"]

log = logging.getLogger("ladder")


class MemoryEngine(ComposedEngine):
    """One process, no dependencies. The default engine (``memory://``).

    Everything lives in this process's memory: hubs in other processes (and a
    :class:`~ladder.Publisher` there) cannot see it.

    Args:
        idle_ttl: Seconds a channel with no subscribers, no history and no members keeps its
            epoch and offset after its last use (default 1 h); a channel used again after
            that starts a new epoch, so a client back from before recovers nothing
            (``rec`` false) even if nothing was published meanwhile. The Redis engine keeps
            them 24 h instead (its ``meta_ttl``), subscribers or not.
        clock: The monotonic clock (tests pass a fake one).
        sweep_every: Seconds between sweeps of expired presence members (their ``leave`` is
            announced then), aged history and idle channels.
    """

    def __init__(
        self,
        *,
        idle_ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        sweep_every: float = 5.0,
    ) -> None:
        check_positive("MemoryEngine(sweep_every=...)", sweep_every)
        check_number("MemoryEngine(idle_ttl=...)", idle_ttl, "float")
        self.healthy = True
        self.sweep_every = sweep_every
        self._clock = clock
        self._sink: EngineSink | None = None
        self._last_sweep = clock()
        self._sweeper: asyncio.Task[None] | None = None
        channels = MemoryChannels(clock, idle_ttl, self._get_sink, self._due)
        presence = MemoryPresence(clock, self._get_sink, channels.listening, channels.channel)
        self._records = MemoryAppliedRecords(clock, self._due)
        super().__init__(channels, presence, LocalRouting(), self._records)
        self._channels = channels
        self._presence = presence

    def _get_sink(self) -> EngineSink | None:
        return self._sink

    @property
    def idle_ttl(self) -> float:
        return self._channels.idle_ttl

    def _due(self, now: float) -> None:
        """Sweep on use too, when a sweep is due (a fake clock moves without the timer)."""
        if now - self._last_sweep >= self.sweep_every:
            self.sweep(now)

    def sweep(self, now: float) -> None:
        """Expire stale presence (announcing each ``leave``), old history, idle channels and
        forgotten records."""
        self._last_sweep = now
        self._presence.sweep(now)
        self._channels.sweep(now, self._presence)
        self._records.sweep(now)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_every)
            try:
                self.sweep(self._clock())
            except Exception:  # a bug (in a sink, say): say so, and keep sweeping
                log.exception("memory engine sweep failed")

    async def start(self, sink: EngineSink) -> None:
        self._sink = sink
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_forever(), name="ladder-memory-sweeper"
            )

    async def stop(self) -> None:
        self._sink = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def details(self) -> dict[str, Any]:
        # ``kept``, not ``channels``: /health merges this over the node's own ``channels``
        # (those with subscribers here), which it replaced with the engine's count of
        # channels it keeps (history and position, an hour after their last use).
        return {"engine": "memory", "healthy": True, "kept": len(self._channels)}
