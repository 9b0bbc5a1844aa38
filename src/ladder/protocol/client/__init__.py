"""The client's decisions, with no I/O: time passed in (ms), decisions out.

Both reference clients (the asyncio :mod:`ladder.client` and the browser's ``client.js``)
are drivers around these rules; the shared conformance vectors (``tests/vectors/*.json``)
pin every one of them, and ``docs/protocol.md`` §9 states them for third-party clients.
Randomness is passed in too (``rand``, a draw from ``[0, 1)``), so every decision is
reproducible.
"""

from .acking import ACK_EVERY, ACK_INTERVAL, AckPolicy
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
from .defaults import REFRESH_MARGIN, REQUEST_TIMEOUT, client_defaults
from .durations import no_reply, seconds
from .ending import FATAL, SESSION_GONE, after_race, after_transport, answers_ping
from .ladder import CUT_LIMIT, STABLE_AFTER, RungPolicy, why
from .liveness import HIDDEN_SLACK, RECENT, silence_limit, silence_verdict, wake_action
from .pacing import (
    HOLD_CUT_FLOOR,
    HOLD_MARGIN,
    POLL_FASTEST,
    POLL_REFUSED_MAX,
    POLL_SLOWEST,
    POST_GAP,
    TIMED_OUT,
    LongPollHold,
    Pacer,
    PollPace,
    poll_again_in,
)
from .proving import (
    PROOF_FACTOR,
    PROOF_FLOOR,
    PROOF_STRIKES,
    VERIFY_TIMEOUT,
    StreamProof,
    pong_bound,
    proves_stream,
)
from .race import OPEN_TIMEOUT, STAGGER, RaceSchedule
from .renewal import RETRYABLE, Renewal
from .upstream import UpstreamRetry

__all__ = [
    "ACK_EVERY",
    "ACK_INTERVAL",
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "CONNECT_TIMEOUT",
    "CUT_LIMIT",
    "FATAL",
    "HIDDEN_SLACK",
    "HOLD_CUT_FLOOR",
    "HOLD_MARGIN",
    "OPEN_TIMEOUT",
    "POLL_FASTEST",
    "POLL_REFUSED_MAX",
    "POLL_SLOWEST",
    "POST_GAP",
    "PROBE_DELAY",
    "PROBE_MAX_DELAY",
    "PROOF_FACTOR",
    "PROOF_FLOOR",
    "PROOF_STRIKES",
    "RECENT",
    "REFRESH_FLOOR",
    "REFRESH_MARGIN",
    "REFRESH_RETRY",
    "REQUEST_TIMEOUT",
    "RETRIES_AT_ONCE",
    "RETRYABLE",
    "SESSION_GONE",
    "STABLE_AFTER",
    "STAGGER",
    "TIMED_OUT",
    "VERIFY_TIMEOUT",
    "AckPolicy",
    "LongPollHold",
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
    "client_defaults",
    "full_jitter",
    "no_reply",
    "poll_again_in",
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
