"""The race's schedule (protocol §9.1): rung *k* starts ``stagger[k]`` ms into the race, or at
once when every rung started before it already failed. A black-holed WebSocket therefore
costs ``stagger[1]``, not an open timeout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STAGGER = (0.0, 300.0, 1000.0, 2000.0)
"""ms, per rung in ladder order."""


class RaceSchedule:
    """Which rungs to start when, for one race."""

    def __init__(self, rungs: Sequence[str], stagger: Sequence[float] = STAGGER) -> None:
        self.rungs = list(rungs)
        self.stagger = list(stagger) or [0.0]
        self.index = 0

    def due(self, elapsed: float, running: int) -> dict[str, Any]:
        """``{"start": [rungs], "wait": ms | None}``: the rungs to start ``elapsed`` ms into
        the race with ``running`` attempts in flight, and how long until the next is due
        (None: none left)."""
        start: list[str] = []
        while self.index < len(self.rungs):
            at = self.stagger[min(self.index, len(self.stagger) - 1)]
            if running + len(start) == 0 or elapsed >= at:
                start.append(self.rungs[self.index])
                self.index += 1
                continue
            return {"start": start, "wait": at - elapsed}
        return {"start": start, "wait": None}
