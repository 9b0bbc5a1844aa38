"""The race's schedule (protocol §9.1): rung *k* starts ``stagger[k]`` ms into the race, or at
once when every rung started before it already failed. A black-holed WebSocket therefore
costs ``stagger[1]``, not an open timeout; a refusal no rung can get past (a bad token, a
refused origin) ends the race at once, instead of trying every other rung."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .ending import gives_up

STAGGER = (0.0, 300.0, 1000.0, 2000.0)
"""ms, per rung in ladder order."""

OPEN_TIMEOUT = 10_000.0
"""ms a started rung has to deliver its welcome before it counts as failed."""


class RaceSchedule:
    """Which rungs to start when, for one race."""

    def __init__(
        self, rungs: Sequence[str], stagger: Sequence[float] = STAGGER, token_refreshable: bool = True
    ) -> None:
        self.rungs = list(rungs)
        self.stagger = list(stagger) or [0.0]
        self.token_refreshable = token_refreshable
        self.index = 0
        self.over = False

    def failed(self, code: str | None) -> bool:
        """A rung failed, refused with ``code`` (None: no refusal heard). True when the race is
        over (the client gives up, :func:`~.ending.gives_up`): start no other rung, stop
        waiting for those opening."""
        if gives_up(code, token_refreshable=self.token_refreshable):
            self.over = True
            self.index = len(self.rungs)
        return self.over

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
