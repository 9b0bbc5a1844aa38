"""The benchmark hub (``ladder_app``) observed by the garbage collector's own callbacks.

Every collection's generation and duration is recorded (``gc.callbacks``: a start and a
stop event around each collection); the ``gcstats`` call returns what was recorded since
the last one and starts afresh, with the time a full collection forced then takes. ``ladder serve gc_app:hub`` is otherwise exactly
``ladder serve ladder_app:hub``.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from typing import Any

from ladder_app import hub

from ladder import Context

_pauses: list[tuple[int, float]] = []
_started = [0.0]
_after_full: list[Counter[str]] = [Counter()]


def _observe(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _pauses.append((int(info["generation"]), time.perf_counter() - _started[0]))


gc.callbacks.append(_observe)


def _oldest() -> Counter[str]:
    """What the oldest generation holds, by type: what grows there between two full
    collections (survivors of young collections, live or garbage) is what triggers the next."""
    return Counter(type(o).__qualname__ for o in gc.get_objects(generation=2))


@hub.on("gcstats")
async def gcstats(ctx: Context, data: Any) -> dict[str, Any]:
    taken = list(_pauses)
    grown = _oldest() - _after_full[0]
    started = time.perf_counter()
    gc.collect()  # what a full pass costs now (outside the window)
    full = time.perf_counter() - started
    _pauses.clear()
    _after_full[0] = _oldest()
    return {
        "pauses": [[generation, seconds] for generation, seconds in taken],
        "full": full,
        "tracked": len(gc.get_objects()),
        "frozen": gc.get_freeze_count(),
        "grown": dict(grown.most_common(8)),
        "grown_total": sum(grown.values()),
    }


__all__ = ["hub"]
