"""When to refresh a session's credentials over the live session (protocol §9.12).

``margin`` before they expire, but never sooner than halfway through what is left of them:
a token that lives less than the margin is refreshed once per half of its life, not again
and again at once. A floor keeps a client whose clock disagrees with the server's (``exp``
is the server's Unix time) from refreshing in a loop.
"""

from __future__ import annotations

REFRESH_FLOOR = 1000.0
"""ms: the shortest wait before a refresh (a clock far off the server's sees every ``exp`` as past)."""

REFRESH_RETRY = 5000.0
"""ms: the shortest wait after a refresh that failed (the token function raised, the server refused)."""


def refresh_delay(expires: float, now: float, margin: float, retry: bool = False) -> float:
    """ms until credentials expiring at ``expires`` should be refreshed, at ``now`` (both ms
    of Unix time), ``margin`` ms ahead; ``retry``: the last refresh failed."""
    left = expires - now
    delay = left - min(margin, left / 2) if left > 0 else 0.0
    return max(delay, REFRESH_RETRY if retry else REFRESH_FLOOR)
