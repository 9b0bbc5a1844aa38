"""Which rungs to try, when to step down and what to probe: the ladder as bookkeeping.

No I/O and no clock of its own: the connection manager reports what happened (a race
won, a connection that lived so long, a probe that worked) and asks what to do next.
"""

from __future__ import annotations

from collections.abc import Sequence

_WINNERS: dict[str, str] = {}
"""The rung that last won per server URL, for this process's lifetime."""


def remembered(url: str) -> str | None:
    return _WINNERS.get(url)


def remember(url: str, rung: str) -> None:
    _WINNERS[url] = rung


_CATEGORIES = (
    ("buffered", "buffered"),
    ("cut ", "cut"),
    ("heartbeat", "heartbeat"),
    ("refused", "refused"),
    ("cannot connect", "refused"),
    ("not open after", "timeout"),
    ("no welcome", "timeout"),
    ("probe", "probe"),
    ("lost", "lost"),
    ("closed", "lost"),
)


def reason_category(reason: str) -> str:
    """A one-word kind of a step's reason, told to the server for its metrics."""
    lowered = reason.lower()
    return next((category for needle, category in _CATEGORIES if needle in lowered), "error")


def forget_all() -> None:
    """Forget every remembered rung (tests use this for a clean start)."""
    _WINNERS.clear()


class RungPolicy:
    """The ladder's state for one client: the floor it stands on and its recent cuts."""

    def __init__(
        self,
        rungs: Sequence[str],
        *,
        cut_limit: int = 3,
        stable_after: float = 10.0,
        start: str | None = None,
    ) -> None:
        if not rungs:
            raise ValueError("at least one transport is needed")
        self.rungs = list(rungs)
        self.cut_limit = cut_limit
        self.stable_after = stable_after
        self.floor = self.rungs.index(start) if start in self.rungs else 0
        self._cuts = dict.fromkeys(self.rungs, 0)

    def index(self, rung: str) -> int:
        return self.rungs.index(rung)

    @property
    def current(self) -> str:
        return self.rungs[self.floor]

    def candidates(self) -> list[str]:
        """Rungs to race on (re)connect: from the floor down."""
        return self.rungs[self.floor :]

    def above(self, rung: str) -> list[str]:
        """Better rungs than ``rung``, best first: what a probe tries."""
        return self.rungs[: self.index(rung)]

    def won(self, rung: str) -> None:
        """A race (or a probe) was won on ``rung``: stand there."""
        self.floor = self.index(rung)

    def dropped(self, rung: str, lived: float, reason: str) -> str | None:
        """A connection on ``rung`` ended after ``lived`` seconds.

        Returns the reason for stepping down when this makes ``cut_limit`` short-lived
        connections in a row (a proxy cutting streams), else None.
        """
        if lived >= self.stable_after:
            self._cuts[rung] = 0
            return None
        self._cuts[rung] += 1
        position = self.index(rung)
        if self._cuts[rung] >= self.cut_limit and position + 1 < len(self.rungs) and self.floor <= position:
            self._cuts[rung] = 0
            self.floor = position + 1
            return (
                f"{rung}: cut {self.cut_limit} times in a row, each within "
                f"{self.stable_after:g} s of opening (last: {reason})"
            )
        return None
