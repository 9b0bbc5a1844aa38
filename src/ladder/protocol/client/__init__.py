"""The client's decisions, with no I/O: time passed in (ms), decisions out.

Both reference clients (the asyncio :mod:`ladder.client` and the browser's ``client.js``)
are drivers around these rules; the shared conformance vectors (``tests/vectors/*.json``)
pin every one of them, and ``docs/protocol.md`` §9 states them for third-party clients.
Randomness is passed in too (``rand``, a draw from ``[0, 1)``), so every decision is
reproducible.
"""

from .acking import AckPolicy
from .backoff import (
    BACKOFF_BASE,
    BACKOFF_MAX,
    CONNECT_TIMEOUT,
    RETRIES_AT_ONCE,
    Reconnect,
    full_jitter,
    reconnect_delay,
)
from .climb import PROBE_DELAY, PROBE_MAX_DELAY, ProbeSchedule
from .credentials import REFRESH_FLOOR, REFRESH_RETRY, refresh_delay
from .durations import no_reply, seconds
from .ending import FATAL, SESSION_GONE, after_race, after_transport, answers_ping
from .ladder import CUT_LIMIT, STABLE_AFTER, RungPolicy, why
from .liveness import RECENT, silence_limit, silence_verdict, wake_action
from .pacing import Pacer, PollPace
from .proving import PROOF_FACTOR, PROOF_FLOOR, PROOF_STRIKES, StreamProof, pong_bound, proves_stream
from .race import RaceSchedule
from .renewal import RETRYABLE, Renewal
from .upstream import UpstreamRetry

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "CONNECT_TIMEOUT",
    "CUT_LIMIT",
    "FATAL",
    "PROBE_DELAY",
    "PROBE_MAX_DELAY",
    "PROOF_FACTOR",
    "PROOF_FLOOR",
    "PROOF_STRIKES",
    "RECENT",
    "REFRESH_FLOOR",
    "REFRESH_RETRY",
    "RETRIES_AT_ONCE",
    "RETRYABLE",
    "SESSION_GONE",
    "STABLE_AFTER",
    "AckPolicy",
    "Pacer",
    "PollPace",
    "ProbeSchedule",
    "RaceSchedule",
    "Reconnect",
    "Renewal",
    "RungPolicy",
    "StreamProof",
    "UpstreamRetry",
    "after_race",
    "after_transport",
    "answers_ping",
    "full_jitter",
    "no_reply",
    "pong_bound",
    "proves_stream",
    "reconnect_delay",
    "refresh_delay",
    "seconds",
    "silence_limit",
    "silence_verdict",
    "wake_action",
    "why",
]
