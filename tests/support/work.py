"""How much work a call does, counted in lines of Python it runs (``sys.settrace``).

Deterministic, unlike a duration: a test can hold work to what is due, not to what is held
(run it with 10 items and 5,000, compare), on a loaded machine as well as a quiet one.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any


class _Lines:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            self.count += 1
        return self


def lines_run(call: Callable[[], object]) -> int:
    """Lines of Python ``call()`` runs, itself and everything it calls."""
    lines = _Lines()
    sys.settrace(lines)
    try:
        call()
    finally:
        sys.settrace(None)
    return lines.count


async def lines_awaited(awaitable: Awaitable[object]) -> int:
    """Lines of Python run while ``awaitable`` is awaited (anything else the loop runs
    meanwhile counts too: await only what completes without waiting for other tasks)."""
    lines = _Lines()
    sys.settrace(lines)
    try:
        await awaitable
    finally:
        sys.settrace(None)
    return lines.count
