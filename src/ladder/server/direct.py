"""Writing a connection's bytes to its socket directly, where the transport would do the same.

A fan-out writes every subscriber's socket once per publication, and the socket takes all of
it almost every time. uvloop's ``write`` still goes through its buffer list, its write
request and several checks for each one: about a seventh of the server's time outside the
kernel in a paced fan-out (S10). When the transport holds nothing, writing to the descriptor
first keeps the order and skips those layers; whatever the socket does not take (or an
error) goes to the transport, which buffers it and pauses the writer, or finds the error and
closes.

The transport holds nothing exactly when the writer is not paused: the native driver sets its
high-water mark to 0, so any byte kept (in uvloop's buffer or libuv's queue) pauses it. The
descriptor is the connection's while the transport is not closing (once it is, the number
may already belong to another socket), so the caller checks ``is_closing()`` before writing,
and again after any write the transport took part in.
"""

from __future__ import annotations

import asyncio
import sys
from os import write as os_write  # (a name: no module attribute looked up per write)


def direct_fd(transport: asyncio.Transport) -> int:
    """The descriptor to write to directly, or -1: TLS (the transport encrypts), Windows
    (sockets are not descriptors) or a transport with no socket (tests, other servers)."""
    if sys.platform == "win32" or transport.get_extra_info("sslcontext") is not None:
        return -1
    sock = transport.get_extra_info("socket")
    if sock is None:
        return -1
    try:
        fd = sock.fileno()
    except (AttributeError, OSError, ValueError):
        return -1
    return fd if isinstance(fd, int) else -1


def write(fd: int, transport: asyncio.Transport, data: bytes) -> bool:
    """Write ``data``: to ``fd`` if it is not -1, the rest (or all, on an error) through the
    transport. Returns whether the transport had to take any of it (then it may have
    buffered it and paused the writer, or closed)."""
    if fd >= 0:
        try:
            sent = os_write(fd, data)
        except OSError:  # would block, or a broken connection: the transport finds out itself
            sent = 0
        if sent == len(data):
            return False
        if sent:
            data = data[sent:]
    transport.write(data)
    return True
