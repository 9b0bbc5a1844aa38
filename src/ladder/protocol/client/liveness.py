"""Is the transport alive? Judged by what arrives, not by the socket's word (ms).

A transport silent past its limit is broken, unless the watchdog itself fired late: a
throttled or frozen tab, a suspended laptop, a blocked event loop. Then the client asks
the server (a ``ping`` with a nonce, on the transport or POSTed) and decides by the pong.
"""

from __future__ import annotations

from typing import Literal

LATE_SLACK = 1000.0
"""A watchdog firing more than this late (ms) means the client, not the link, was asleep."""


def silence_limit(
    rung: str,
    hb: float = 20_000.0,
    poll: float = 25_000.0,
    *,
    hidden: bool = False,
    hidden_slack: float = 60_000.0,
    poll_max: float = 2000.0,
) -> float:
    """How long (ms) ``rung`` may stay silent: a stream ``1.5 hb + 1 s``; a long poll
    its hold (``poll``) ``+ hb/2 + 5 s``; a short poll its slowest interval ``+ 15 s``.
    ``hb`` and ``poll`` come from the welcome. A hidden page gets ``hidden_slack`` more
    (browsers run a background tab's timers once a minute)."""
    if rung in ("websocket", "sse"):
        limit = hb * 1.5 + 1000
    elif rung == "longpoll":
        limit = poll + hb / 2 + 5000
    else:
        limit = poll_max + 15_000
    return limit + hidden_slack if hidden else limit


def silence_verdict(
    silent: float, limit: float, late: float, slack: float = LATE_SLACK
) -> Literal["alive", "check", "dead"]:
    """What a watchdog that fired ``late`` ms after it was due concludes, the transport
    having been silent ``silent`` ms: ``alive`` (rearm for the rest), ``check`` (ping and
    drop the transport only if no pong comes within the check's timeout), ``dead``."""
    if silent < limit:
        return "alive"
    return "check" if late > slack else "dead"
