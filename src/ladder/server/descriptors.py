"""The process's file-descriptor limit: every connection holds a descriptor.

A process at its limit cannot accept: the event loop (libuv's) then takes each waiting
connection and closes it at once, so clients see a reset and the server logs nothing. A
shell's default soft limit is often 1,024 while the hard limit allows far more, so
``ladder serve`` raises the soft limit to the hard one when it starts (:func:`raise_limit`),
and the node's clock warns, naming the fix, when the descriptors in use near the limit
(:class:`Watch`; Linux, where ``/proc/self`` tells how many are open).
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Final

try:
    import resource
except ImportError:  # pragma: no cover - Windows: no such limit to read or raise
    resource = None  # type: ignore[assignment]

log = logging.getLogger("ladder")

NEAR: Final = 0.9
"""The share of the limit in use at which the node warns."""

EVERY: Final = 5.0
"""Seconds between two looks at the descriptors in use."""

AGAIN: Final = 60.0
"""Seconds between two warnings while the count stays near the limit."""

ADVICE: Final = (
    "raise the limit (ulimit -n; systemd LimitNOFILE=; docker run --ulimit nofile=N:N) "
    "or spread the clients over more processes (ladder serve --workers N)"
)

UNLIMITED_TRIES: Final = (1 << 20, 1 << 16, 10240)
"""Soft limits asked for, in turn, when the hard one is unlimited: Linux's default
``nr_open``, then less for systems that cap a process below it (macOS: ``OPEN_MAX``)."""


def soft_limit() -> int | None:
    """The limit that applies now; None where there is none to read."""
    if resource is None:  # pragma: no cover - Windows
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_limit() -> tuple[int, int] | None:
    """Raise the soft limit to the hard one (what a process may do without privilege).

    Returns (before, after) when it changed, else None (a system that refuses every
    higher value keeps its limit)."""
    if resource is None:  # pragma: no cover - Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    tries = UNLIMITED_TRIES if hard == resource.RLIM_INFINITY else (hard,)
    for wanted in tries:
        if wanted <= soft:
            return None
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            continue
        return soft, wanted
    return None


def in_use(limit: int) -> int | None:
    """How many descriptors are open, when that could be near ``limit`` (None: it cannot,
    or this system does not say).

    Counting them lists ``/proc/self/fd``, which costs milliseconds with tens of thousands
    open; the size of the process's descriptor table (``FDSize``, read first) bounds the
    count from above, so the list is read only when the table is that large. Both take a
    descriptor: a process with none left is at its limit."""
    try:
        with open("/proc/self/status", "rb") as f:
            size = next((int(line.split()[1]) for line in f if line.startswith(b"FDSize:")), None)
        if size is None or size < NEAR * limit:
            return None
        return len(os.listdir("/proc/self/fd"))
    except OSError as exc:
        return limit if exc.errno in (errno.EMFILE, errno.ENFILE) else None


class Watch:
    """Looks at the descriptors in use every :data:`EVERY` seconds and warns near the limit
    (``limit``: the process's soft limit, read at each look, unless given)."""

    __slots__ = ("limit", "next_look", "quiet_until")

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.next_look = 0.0
        self.quiet_until = 0.0

    def look(self, now: float) -> None:
        if now < self.next_look:
            return
        self.next_look = now + EVERY
        limit = self.limit if self.limit is not None else soft_limit()
        if limit is None:
            return
        used = in_use(limit)
        if used is None or used < NEAR * limit or now < self.quiet_until:
            return
        self.quiet_until = now + AGAIN
        log.warning(
            "%d of the process's %d file descriptors are in use: at the limit new connections "
            "are reset without an answer; %s",
            used,
            limit,
            ADVICE,
        )
