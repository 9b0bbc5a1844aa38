"""How a native connection's socket is read: why it is not read now (a bit per reason, read
again once none is left, rather than flags checked wherever reading resumes), and how long
a message that has begun may take to arrive whole."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from . import cutoff

READ_SLICE: Final = 256 * 1024
"""Bytes a connection is read before the loop serves the others (read again next turn).
libuv reads a busy socket up to 32 times per wake-up: a client writing junk as fast as TCP
let it (each batch decoded to be refused) held every other connection 200 ms at a time."""

SLICE: Final = 1
"""Read past :data:`READ_SLICE` in this loop turn."""
BACKLOG: Final = 2
"""More than ``max_post_size`` bytes of messages wait to be applied."""
ENDING: Final = 4
"""Its session ended while the socket took nothing: what the client sends is not applied."""


class ReadGate:
    """The reasons a connection's transport is not read (none: it is read), and the timer of
    a message that has begun (``stalled`` if it is not whole within ``frame_timeout``)."""

    __slots__ = ("budget", "frame_timeout", "loop", "reasons", "stalled", "timer", "transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        frame_timeout: float,
        stalled: Callable[[], None],
    ) -> None:
        self.transport = transport
        self.loop = loop
        self.reasons = 0
        self.budget = READ_SLICE
        self.frame_timeout = frame_timeout
        self.stalled = stalled
        self.timer: asyncio.TimerHandle | None = None

    def read(self, size: int, in_message: bool) -> None:
        """``size`` bytes were read, ``in_message``: a message has begun and is not whole
        (it is timed from its first bytes). Past the slice, the others are read first."""
        if not in_message:
            self.untime()
        elif self.timer is None:
            self.timer = self.loop.call_later(self.frame_timeout, self.stalled)
        self.budget -= size
        if self.budget <= 0:
            self.budget = READ_SLICE
            if not self.reasons & SLICE:
                self.hold(SLICE)
                self.loop.call_soon(self.release, SLICE)

    def untime(self) -> None:
        """No message is on its way (or the connection closes): its timer is cancelled."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def end(self) -> None:
        """Its session ended while the socket took nothing: not read any more (nothing of
        it would be applied), and cut off unless it reads up to its ``bye`` in time
        (:data:`.cutoff.BYE_WAIT`, the rule of every rung)."""
        if not self.reasons & ENDING:
            self.hold(ENDING)
            self.loop.call_later(cutoff.BYE_WAIT, self._cut_off)

    def unanswered(self) -> None:
        """A close the client has not answered within a second: closed now if it read
        everything, else (a client that reads nothing) cut off once it had ``BYE_WAIT``."""
        if self.transport.is_closing():
            return
        if cutoff.unread(self.transport):
            self.loop.call_later(max(cutoff.BYE_WAIT - 1.0, 0.0), self._cut_off)
        else:
            self.transport.abort()

    def _cut_off(self) -> None:
        if not self.transport.is_closing():  # (else it closed meanwhile, its bye read)
            cutoff.cut_off(self.transport)

    def hold(self, reason: int) -> None:
        if not self.reasons:
            self.transport.pause_reading()
        self.reasons |= reason

    def release(self, reason: int) -> None:
        if self.reasons & reason:
            self.reasons &= ~reason
            if not self.reasons and not self.transport.is_closing():
                self.transport.resume_reading()
