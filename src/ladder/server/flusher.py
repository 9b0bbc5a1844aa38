"""Writing many connections in one callback: what a fan-out wakes is flushed together."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

log = logging.getLogger("ladder")


class Flushable(Protocol):
    def flush(self) -> None: ...


class Flusher:
    """The connections of one event loop that have something to write, flushed together.

    A publication wakes every subscriber's connection in one synchronous loop; each joins
    this list and the first schedules the one callback that writes them all, in order.
    """

    __slots__ = ("due", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: list[Flushable] = []

    def add(self, connection: Flushable) -> None:
        due = self.due
        if not due:
            self.loop.call_soon(self.run)
        due.append(connection)

    def run(self) -> None:
        due, self.due = self.due, []
        for connection in due:
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
