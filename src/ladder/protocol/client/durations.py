"""Durations in the reasons both clients give, written one way: in seconds, as the protocol
writes its other durations (a call timed out "within 0.5 s" in one client and "within 500 ms"
in the other)."""

from __future__ import annotations

import math


def seconds(ms: float) -> str:
    """``ms`` as a reason writes it: seconds to the millisecond (at least 1 ms), without
    trailing zeros: ``0.5 s``, ``10 s``, ``0.001 s``."""
    whole = max(1, math.floor(ms + 0.5))
    fraction = f".{whole % 1000:03d}".rstrip("0") if whole % 1000 else ""
    return f"{whole // 1000}{fraction} s"


def no_reply(timeout: float) -> str:
    """The reason of a request (``call``, ``publish``, ``presence``, ``history``) that had no
    answer within its ``timeout`` ms: the ``timeout`` error's."""
    return f"no reply within {seconds(timeout)}"
