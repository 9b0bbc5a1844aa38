"""Pacing after a rate refusal, in seconds, for the asyncio driver: the core's
:class:`~ladder.protocol.client.Pacer` (ms) behind the driver's clock (``loop.time()``)."""

from __future__ import annotations

from ..protocol.client import pacing as core


class Pacer:
    """The pace of upstream messages: unlimited until the server refuses one for its rate."""

    def __init__(self) -> None:
        self._core = core.Pacer()

    @property
    def pacing(self) -> bool:
        return self._core.pacing

    @property
    def interval(self) -> float:
        """Seconds between messages while pacing; 0 when not pacing."""
        return self._core.interval / 1000

    def refused(self, retry_after: float, now: float) -> None:
        self._core.refused(retry_after * 1000, now * 1000)

    def allowance(self, now: float, separate_upstream: bool = False) -> tuple[int | None, float]:
        """How many messages may be written now (None: any number) and, when none may, how
        many seconds until the next one may (``separate_upstream``: each write a ``POST``)."""
        allowed = self._core.allowance(now * 1000, separate_upstream)
        return allowed["count"], allowed["wait"] / 1000

    def wrote(self, count: int) -> None:
        self._core.wrote(count)

    def returned(self, count: int) -> None:
        self._core.returned(count)

    def drained(self) -> None:
        self._core.drained()
