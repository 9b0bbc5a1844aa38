"""Is the transport alive? Judged by what arrives, not by the socket's word (ms).

A transport silent past its limit is broken, unless the watchdog itself fired late: a
throttled or frozen tab, a suspended laptop, a blocked event loop. Then the client asks
the server (a ``ping`` with a nonce, on the transport or POSTed) and decides by the pong.
"""

from __future__ import annotations

from typing import Literal

from .pacing import POLL_SLOWEST

LATE_SLACK = 1000.0
"""A watchdog firing more than this late (ms) means the client, not the link, was asleep."""

HIDDEN_SLACK = 60_000.0
"""ms more a hidden page's transport may stay silent (browsers throttle its timers; the
browser client only)."""

RECENT = 5000.0
"""A visible page heard from this recently (ms) needs no check when it becomes visible again."""

WakeAction = Literal["suspend", "resume", "leave", "check", "reconnect", "none"]


def silence_limit(
    rung: str,
    hb: float = 20_000.0,
    poll: float = 25_000.0,
    *,
    hidden: bool = False,
    hidden_slack: float = HIDDEN_SLACK,
    poll_max: float = POLL_SLOWEST,
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


def wake_action(
    cause: str, state: str, silent: float = 0.0, *, persisted: bool = False, recent: float = RECENT
) -> WakeAction:
    """What a page or machine event leads to. ``cause``: ``pagehide``/``pageshow`` (with
    ``persisted``: the back/forward cache), ``freeze``/``resume`` (a frozen tab),
    ``visible``, ``online``, ``offline``; ``state`` the client's; ``silent`` ms since the
    transport last delivered anything. ``suspend`` (release every connection, keep the
    session), ``resume`` (reconnect now, resuming it), ``leave`` (say ``bye``, keep unsent
    messages for the next page), ``check`` (ping; drop the transport without a pong in
    time), ``reconnect`` (now, not after the backoff) or ``none``. The browser client acts on
    every cause; a Python process has no page, and its own sleeps are caught by the late
    watchdog (:func:`silence_verdict`), which decides ``check`` the same way ``resume`` does."""
    if state == "closed":
        return "none"
    if cause == "pagehide":
        return "suspend" if persisted else "leave"
    if cause == "pageshow":
        return "resume" if persisted else "none"
    if cause == "freeze":
        return "none"  # nothing runs while frozen: ``resume`` decides
    connected = state == "connected"
    if cause == "offline":
        return "check" if connected else "none"
    if cause == "visible" and connected and silent < recent:
        return "none"
    if cause in ("resume", "visible", "online"):
        return "check" if connected else "reconnect"
    return "none"
