"""Writing native WebSocket connections: a publication as its fan-out reaches them, the rest batched.

A paced publisher (a chat, a dashboard: one publication at a time) is served best by writing
each subscriber as the fan-out loop queues the frame for it, as Node's Socket.IO does: the
first subscribers have their bytes while the loop is still queueing for the last. A busy one
(many publications a turn) is served best by writing each connection once for all of them.
So a connection is written at once the first time a fan-out wakes it in a loop turn, and
what the turn's later publications bring it waits for :meth:`Flusher.run`, in the next turn.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

log = logging.getLogger("ladder")

SLICE = 16
"""Connections :meth:`Flusher.run` writes per loop turn: between slices the loop reads what
arrived meanwhile (acks, calls, the next publications, which then share the next write).
Small, so that a publisher whose next publication takes several loop turns to come (a
handler awaiting ``publish`` on the Redis engine: its offset, then the message's record)
gets more of them into each subscriber's write (S9, one such publisher, 1,000 subscribers:
1.4-1.5 CPU-µs per delivery with 16, 3.2-3.4 with 64)."""


class Flushable(Protocol):
    def flush(self) -> None: ...


class Flusher:
    """The connections of one event loop that have something to write.

    A connection woken while :attr:`fanning` is written at once (:meth:`write_now`), once
    per loop turn; any other wake-up puts it on a list, and the first schedules the callback
    that writes them in order, :data:`SLICE` per loop turn (:meth:`run`). A connection woken
    again before its turn is written once, with everything.
    """

    __slots__ = ("_turning", "due", "fanning", "loop", "next", "slice", "turn")

    def __init__(self, loop: asyncio.AbstractEventLoop, per_turn: int = SLICE) -> None:
        self.loop = loop
        self.slice = per_turn
        self.due: list[Flushable] = []
        self.next = 0
        """Where the next turn starts in ``due`` (what is before it was written)."""
        self.fanning = False
        """A publication is being queued for its subscribers now (set by the channel table):
        a connection it wakes is written at once, the first time in a loop turn."""
        self.turn = 0
        self._turning = False

    def write_now(self, connection: Flushable) -> int:
        """Write ``connection`` now, for a fan-out in progress; returns this loop turn's
        number. The number moves on when the turn ends: a connection is written at once at
        most once per turn, and what a turn's later publications bring it is batched by
        :meth:`run`."""
        if not self._turning:
            self._turning = True
            self.loop.call_soon(self._turned)
        flush_guarded(connection)  # (the fan-out goes on to the other subscribers)
        return self.turn

    def _turned(self) -> None:
        self.turn += 1
        self._turning = False

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
            flush_guarded(connection)


def flush_guarded(connection: Flushable) -> None:
    """Write one connection; its bug must not leave the others unwritten."""
    try:
        connection.flush()
    except Exception:
        log.exception("flushing a connection failed")


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Flusher] = weakref.WeakKeyDictionary()


def flusher_of(loop: asyncio.AbstractEventLoop) -> Flusher:
    flusher = _flushers.get(loop)
    if flusher is None:
        flusher = _flushers[loop] = Flusher(loop)
    return flusher
