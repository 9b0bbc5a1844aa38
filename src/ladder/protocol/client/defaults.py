"""The clients' options and their defaults (protocol §9.14), in one table.

Both clients take the same options (the Python client in seconds and snake_case, the browser
client in ms and camelCase) with the same defaults. They are the core's constants, gathered
here so a driver never writes one again: a copy could part from the rule it feeds, and the
conformance vectors (``defaults.json``) pin the table for both clients.
"""

from __future__ import annotations

from typing import Any, Final

from ..peer import MAX_QUEUE
from .acking import ACK_EVERY, ACK_INTERVAL
from .backoff import BACKOFF_BASE, BACKOFF_MAX, CONNECT_TIMEOUT
from .climb import PROBE_DELAY, PROBE_MAX_DELAY
from .ladder import CUT_LIMIT, STABLE_AFTER
from .pacing import POLL_FASTEST, POLL_SLOWEST
from .proving import VERIFY_TIMEOUT
from .race import OPEN_TIMEOUT, STAGGER

REQUEST_TIMEOUT: Final = 10_000.0
"""ms a request (``call``, ``publish``, ``presence``, ``history``, ``refresh``) waits for its answer."""

REFRESH_MARGIN: Final = 60_000.0
"""ms before credentials expire at which a token function is asked for new ones."""


def client_defaults() -> dict[str, Any]:
    """Every option both clients take, with its default (durations in ms)."""
    return {
        "stagger": list(STAGGER),
        "open_timeout": OPEN_TIMEOUT,
        "verify_timeout": VERIFY_TIMEOUT,
        "connect_timeout": CONNECT_TIMEOUT,
        "backoff_base": BACKOFF_BASE,
        "backoff_max": BACKOFF_MAX,
        "stable_after": STABLE_AFTER,
        "cut_limit": CUT_LIMIT,
        "probe_delay": PROBE_DELAY,
        "probe_max_delay": PROBE_MAX_DELAY,
        "poll_interval": [POLL_FASTEST, POLL_SLOWEST],
        "max_queue": MAX_QUEUE,
        "ack_every": ACK_EVERY,
        "ack_interval": ACK_INTERVAL,
        "refresh_margin": REFRESH_MARGIN,
        "request_timeout": REQUEST_TIMEOUT,
    }
