"""Writing many connections from one loop: what a fan-out wakes is flushed together, in slices."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

log = logging.getLogger("ladder")

SLICE = 64
"""Connections flushed per loop turn. uvloop sends what a turn wrote only when the turn ends,
so a publication to 1,000 subscribers written in one turn reaches its first subscriber only
after the bytes of all 1,000 are built; in slices, the first slice is on the wire while the
next is built, and a turn in between lets the loop read what arrived meanwhile."""


class Flushable(Protocol):
    def flush(self) -> None: ...


class Flusher:
    """The connections of one event loop that have something to write, flushed in order.

    A publication wakes every subscriber's connection in one synchronous loop; each joins
    this list, and the first schedules the callback that writes them, :data:`SLICE` per
    loop turn. A connection woken again before its turn is written once, with everything.
    """

    __slots__ = ("due", "loop", "next", "slice")

    def __init__(self, loop: asyncio.AbstractEventLoop, per_turn: int = SLICE) -> None:
        self.loop = loop
        self.slice = per_turn
        self.due: list[Flushable] = []
        self.next = 0
        """Where the next turn starts in ``due`` (what is before it was written)."""

    def add(self, connection: Flushable) -> None:
        due = self.due
        if not due:
            self.loop.call_soon(self.run)
        due.append(connection)

    def run(self) -> None:
        due, start = self.due, self.next
        end = start + self.slice
        if end >= len(due):
            batch = due[start:] if start else due
            self.due, self.next = [], 0  # (a connection woken during this slice starts a new list)
        else:
            batch = due[start:end]
            if end >= 4 * self.slice and 2 * end >= len(due):  # a list kept busy must not only grow
                del due[:end]
                end = 0
            self.next = end
            self.loop.call_soon(self.run)
        for connection in batch:
            try:
                connection.flush()
            except Exception:  # one connection's bug must not leave the others unwritten
                log.exception("flushing a connection failed")


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Flusher] = weakref.WeakKeyDictionary()


def flusher_of(loop: asyncio.AbstractEventLoop) -> Flusher:
    flusher = _flushers.get(loop)
    if flusher is None:
        flusher = _flushers[loop] = Flusher(loop)
    return flusher
