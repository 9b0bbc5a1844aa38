"""The ladder for the asyncio driver: the core's rung policy in seconds, and the rung that
last won per server URL (process state, so not in the core)."""

from __future__ import annotations

from collections.abc import Sequence

from ..protocol.client import ladder as core

_WINNERS: dict[tuple[str, tuple[str, ...]], str] = {}
"""The rung that last won per server URL and set of allowed rungs, for this process's
lifetime: a client limited to short polling by its ``transports`` says nothing of what the
network lets through, and must not start the next client of that URL on its rung."""


def remembered(url: str, rungs: Sequence[str]) -> str | None:
    return _WINNERS.get((url, tuple(rungs)))


def remember(url: str, rungs: Sequence[str], rung: str) -> None:
    _WINNERS[(url, tuple(rungs))] = rung


def forget_all() -> None:
    """Forget every remembered rung (tests use this for a clean start)."""
    _WINNERS.clear()


class RungPolicy(core.RungPolicy):
    """The core's :class:`~ladder.protocol.client.RungPolicy` with the driver's unit (seconds)."""

    def __init__(
        self,
        rungs: Sequence[str],
        *,
        cut_limit: int = 3,
        stable_after: float = 10.0,
        start: str | None = None,
    ) -> None:
        super().__init__(rungs, cut_limit=cut_limit, stable_after=stable_after * 1000, start=start)

    def dropped(
        self, rung: str, lived: float, reason: str, heard: float | None = None, action: str | None = None
    ) -> str | None:
        """A connection on ``rung`` ended after ``lived`` seconds (``heard``: seconds from its
        opening to the last thing it delivered; ``action``: what its end leads to): the
        reason for stepping down, when it was the ``cut_limit``-th cut in a row."""
        return super().dropped(rung, lived * 1000, reason, None if heard is None else heard * 1000, action)
