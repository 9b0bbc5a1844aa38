"""The benchmark hub (``ladder_app``) observed by the garbage collector's own callbacks.

Every collection's generation and duration is recorded (``gc.callbacks``: a start and a
stop event around each collection); the ``gcstats`` call returns what was recorded since
the last one and starts afresh, with the time a full collection forced then takes. ``ladder serve gc_app:hub`` is otherwise exactly
``ladder serve ladder_app:hub``.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from ladder_app import hub

from ladder import Context

_pauses: list[tuple[int, float]] = []
_started = [0.0]


def _observe(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _pauses.append((int(info["generation"]), time.perf_counter() - _started[0]))


gc.callbacks.append(_observe)


@hub.on("gcstats")
async def gcstats(ctx: Context, data: Any) -> dict[str, Any]:
    taken = list(_pauses)
    started = time.perf_counter()
    gc.collect()  # what a full pass costs now (outside the window)
    full = time.perf_counter() - started
    _pauses.clear()
    return {
        "pauses": [[generation, seconds] for generation, seconds in taken],
        "full": full,
        "tracked": len(gc.get_objects()),
        "frozen": gc.get_freeze_count(),
    }


__all__ = ["hub"]
