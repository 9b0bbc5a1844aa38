"""Connections whose session ended while their client read nothing: the one rule of every
rung. What was written up to the ``bye`` gets :data:`BYE_WAIT` seconds to be read; then the
connection is cut off with a reset, so that the kernel drops what the client never read (a
plain close keeps the socket, and its unsent megabytes, for as long as the client keeps its
window shut)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final

from ..protocol.attachment import Attachment

BYE_WAIT: float = 10.0
"""Seconds a connection whose session ended may take to read up to its ``bye``; a client
that reads nothing is cut off then. (Not ``Final``: a compiled build would fold it into the
code, and tests shorten it.)"""

CUT_OFF: Final = "ladder.cut_off"
"""The ASGI extension ``ladder serve`` offers on its HTTP and WebSocket connections:
``{"cut_off_after": <callable(seconds)>}`` cuts the connection off that many seconds later
if its client has not read everything written to it by then (see :func:`unread`); the
connection owns that timer (:class:`PendingCut`), so one that closes first is not kept."""

_LINGER_RESET: Final = struct.pack("ii", 1, 0)


def cut_off(transport: asyncio.Transport) -> None:
    """Abort with a reset (``SO_LINGER`` on, 0 s): nothing unsent is kept. Only for a client
    that does not read; a normal close stays graceful (the client gets its last frames)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError, ValueError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()


def unread(transport: asyncio.WriteTransport) -> bool:
    """Whether bytes written to ``transport`` have not reached its client: still buffered
    by the transport, or in the kernel's send queue (unsent or unacknowledged; Linux)."""
    if transport.get_write_buffer_size():
        return True
    sock = transport.get_extra_info("socket")
    if sock is None or sys.platform != "linux":
        return False
    import fcntl  # noqa: PLC0415 - not on Windows
    import termios  # noqa: PLC0415

    try:
        queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, AttributeError, ValueError):
        return False
    return bool(struct.unpack("i", queued)[0])


class PendingCut:
    """The cut a connection's driver asked for (``cut_off_after``), owned by the connection:
    one timer at most, cancelled when the connection is lost. (Held by the driver instead, it
    kept every connection that closed normally, protocol and transport with it, for
    :data:`BYE_WAIT`: 10,000 polls a second held 100,000.)"""

    __slots__ = ("loop", "timer", "transport")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.WriteTransport | None = None

    def after(self, transport: asyncio.WriteTransport, delay: float) -> None:
        if self.timer is None and not transport.is_closing():
            self.transport = transport
            self.timer = self.loop.call_later(delay, self._due)

    def _due(self) -> None:
        transport, self.transport, self.timer = self.transport, None, None
        if transport is not None and not transport.is_closing() and unread(transport):
            cut_off(transport)  # type: ignore[arg-type]  # (an asyncio.Transport)

    def cancel(self) -> None:
        """The connection is lost: nothing to cut."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.transport = None


class ByeWait:
    """The :data:`BYE_WAIT` of a connection served through ASGI (the HTTP rungs, the ASGI
    WebSocket driver), armed once its attachment closed (its session ended, or the server
    stopped writing to it): then, under ``ladder serve``, the server cuts the connection off
    if its client has not read everything (the connection's :class:`PendingCut`); under
    another server, which offers no way to, the driver's task is cancelled so that it stops
    writing and returns (:meth:`stopped`)."""

    __slots__ = ("armed", "att", "cut", "done", "fired", "task", "timer", "wake")

    def __init__(self, att: Attachment, wake: Callable[[], None], extensions: Mapping[str, Any]) -> None:
        offered = extensions.get(CUT_OFF)
        cut = offered.get("cut_off_after") if isinstance(offered, dict) else None
        self.cut: Callable[[float], None] | None = cut if callable(cut) else None
        self.armed = False
        self.att = att
        self.wake = wake
        self.task = asyncio.current_task()
        self.timer: asyncio.TimerHandle | None = None
        self.done = False
        self.fired = False
        att.wake_with(self)

    def __call__(self) -> None:
        self.wake()
        if self.att.closed and not self.armed and not self.done:
            self.armed = True
            if self.cut is not None:  # (the connection's: it may outlive the driver, what it
                self.cut(BYE_WAIT)  # wrote last may still be unread; gone if it closes first)
            else:
                self.timer = asyncio.get_running_loop().call_later(BYE_WAIT, self._due)

    def _due(self) -> None:
        if not self.done and self.task is not None:
            self.fired = True
            self.task.cancel()

    def __enter__(self) -> ByeWait:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> bool:
        """The driver returned: what is left is the server's cut, if it offers one. A
        cancellation that is this wait's (under another server: stop writing to a client that
        reads nothing) ends the driver quietly; any other goes on."""
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return kind is asyncio.CancelledError and self.stopped()

    def stopped(self) -> bool:
        """Whether the cancellation being handled is this wait's (then it is forgotten)."""
        return self.fired and self.task is not None and self.task.uncancel() == 0
