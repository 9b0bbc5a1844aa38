"""Server settings: limits and per-channel options, with defaults a production app can keep."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final
from urllib.parse import urlsplit

from ..checks import check_number
from ..engine.base import ChannelOptions
from ..errors import ConfigurationError
from ..protocol.errors import LadderError
from ..protocol.session import SessionLimits
from .auth import Authenticate, Permissions

OPEN_ORIGINS: Final = (  # (logged by the hub when it is built)
    'allowed_origins=["*"] with an authenticate hook: a page on any site can open a session '
    "with what its visitors' browsers send by themselves (cookies, HTTP authentication); if "
    "the hook reads those, list the origins allowed instead (a token the page presents, as "
    "JWT's, is safe with any origin)"
)

TRANSPORTS: Final = ("websocket", "sse", "longpoll", "poll")
"""Every rung, best first."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one client can make the server hold or do. All configurable.

    A value of the wrong type or a negative one raises
    :class:`~ladder.errors.ConfigurationError` when ``Limits(...)`` is built, and so does 0
    for a size or a time that cannot be 0 (every frame would be refused, every hello late).
    """

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            above_zero = "pass a number above 0 (see its default)"
            fix = above_zero if spec.name in _ABOVE_ZERO else "pass a finite number >= 0"
            check_number(f"Limits({spec.name}=...)", value, spec.type, fix)
            if spec.name in _ABOVE_ZERO and not value:
                raise ConfigurationError(f"Limits({spec.name}=...)", "0 cannot work", above_zero)
        defaults = {spec.name: spec.default for spec in fields(self)}
        for name in ("max_frame_size", "max_post_size", "max_queue_bytes"):
            value = getattr(self, name)
            if 0 < value < SMALLEST_FRAME_LIMIT:
                raise ConfigurationError(
                    f"Limits({name}=...)",
                    f"{value} bytes cannot work (a hello with its token, a small call, or what a "
                    "stream keeps until its client acks, is larger)",
                    f"pass at least {SMALLEST_FRAME_LIMIT} (the default is {defaults[name]})",
                )
        for rate, burst in (("message_rate", "message_burst"), ("request_rate", "request_burst")):
            if getattr(self, rate) and getattr(self, burst) < 1:
                raise ConfigurationError(
                    f"Limits({burst}=...)",
                    f"{getattr(self, burst)!r} cannot work with {rate}={getattr(self, rate)!r}: not one "
                    "message could ever be taken, and clients would be told to wait forever",
                    f"pass at least 1 (the default is {defaults[burst]:g}), or {rate}=0 for no limit",
                )
        least, most = FLOOD_PATIENCE
        if not least <= self.flood_patience <= most:
            raise ConfigurationError(
                "Limits(flood_patience=...)",
                f"{self.flood_patience!r} s is out of range: under {least:g} s, a client that waits as "
                "told would be ended for the messages it sent before it heard (they arrive up to a "
                f"round trip later); over {most:.0f} s, a flooding session is kept that long",
                f"pass {least:g} to {most:.0f} seconds (the default is {defaults['flood_patience']:g})",
            )
        if not 0 <= self.shard_hold <= SHARD_HOLD:
            raise ConfigurationError(
                "Limits(shard_hold=...)",
                f"{self.shard_hold!r} s is out of range: a client's messages would wait unanswered "
                "that long, on a connection its client cannot tell from a dead one",
                f"pass 0 (no wait) to {SHARD_HOLD:.0f} seconds (the default is {defaults['shard_hold']:g})",
            )
        if self.max_post_size < self.max_frame_size:
            raise ConfigurationError(
                "Limits(max_post_size=...)",
                f"{self.max_post_size} is below max_frame_size ({self.max_frame_size}): a frame a "
                "WebSocket takes could not be sent by POST",
                "pass a max_post_size of at least max_frame_size",
            )

    max_frame_size: int = 64 * 1024
    """Largest single frame (bytes). Bigger: error, WebSocket close 1009, HTTP 413."""
    max_post_size: int = 1024 * 1024
    """Largest upstream POST body (a batch of frames)."""
    max_subscriptions: int = 512
    """Channels one session may be subscribed to at once."""
    max_sessions: int = 100_000
    """Sessions this process holds at once (live or waiting to be resumed)."""
    max_queue: int = 10_000
    """Unacknowledged frames kept per session; past it the session is dropped (slow consumer).
    Also the most unsequenced frames (errors, pongs) waiting on one transport: past it the
    client is not reading them, and more are dropped."""
    max_queue_bytes: int = 8 * 1024 * 1024
    """Unacknowledged bytes kept per session (each frame counted as its smaller encoding;
    a larger frame is kept when it is the only one); same policy. The welcome tells clients
    both bounds (``lim.queue``, ``lim.qbytes``) and they ack before half of either fills."""
    inbox_window: int = 1024
    """How far ahead of the next expected client message id a message may arrive."""
    batch_frames: int = 512
    """Most frames written in one WebSocket message, SSE write or poll response."""
    hello_timeout: float = 10.0
    """Seconds a new WebSocket may take to send its hello."""
    frame_timeout: float = 10.0
    """Seconds a WebSocket message may take to arrive whole once its first byte came (a
    header announcing a payload that never comes is closed with 4408; ``ladder serve``)."""
    message_rate: float = 100.0
    """Client messages per second one session may send on average (0: no limit)."""
    message_burst: float = 200.0
    """...and at once. Past it, each message is refused with ``rate_limited`` and ``retry_after``."""
    flood_patience: float = 3.0
    """A session that keeps sending past its burst this many seconds after being told to wait
    is disconnected (``rate_limited``). From 1 s (what a client sent before it heard it was
    told to wait arrives up to a round trip later) to an hour."""
    shard_hold: float = 10.0
    """Seconds a WebSocket session's emits and calls wait, unapplied and unacknowledged, for
    the one Redis server (a shard, or a cluster primary) that keeps its records to answer
    again, while the process reaches the others; the connection and its deliveries go on.
    Past it (or past ``inbox_window`` messages waiting) the WebSocket is closed with 1011
    ``engine_unavailable`` and the client sends them again after it resumes. 0 to an hour;
    0 closes at once. The default is how long a client waits for a call by default."""
    request_rate: float = 200.0
    """HTTP requests and WebSocket openings per second from one client address (0: no limit).
    Generous because a whole office may share one address behind NAT."""
    request_burst: float = 1000.0
    """...and at once (a page load opening a session, its stream and a first POST counts three).
    Past it, HTTP 429 with ``Retry-After``, a WebSocket ``err rate_limited`` then close 4429."""
    max_sessions_per_address: int = 1000
    """Sessions one client address may hold at once (NAT: many users may share one)."""
    max_sessions_per_user: int = 100
    """Sessions one authenticated user may hold at once."""
    trust_forwarded_for: bool = False
    """Take the client address from the last ``X-Forwarded-For`` entry and the scheme from
    ``X-Forwarded-Proto`` (only behind a proxy you control, which appends the entry)."""


FLOOD_PATIENCE: Final = (1.0, 3600.0)
"""The least and most seconds of ``flood_patience``. At 0 a client that waits as told was
ended for the frames it had sent before it heard (a queue written in batches on a slow
link)."""

SHARD_HOLD: Final = 3600.0
"""The most seconds of ``shard_hold``: beyond an hour, a connection would carry messages
nobody answers for longer than any client waits for them."""

SMALLEST_FRAME_LIMIT: Final = 1024
"""Bytes below which a frame or POST limit cannot work."""

_ABOVE_ZERO: Final = frozenset(
    {
        "max_frame_size",
        "max_post_size",
        "max_queue",
        "max_queue_bytes",
        "inbox_window",
        "batch_frames",
        "hello_timeout",
        "frame_timeout",
        "max_sessions",
        "max_sessions_per_address",
        "max_sessions_per_user",
        "max_subscriptions",
    }
)
"""Limits for which 0 cannot work (every session, or every subscription, would be refused;
for the rates, 0 means no limit)."""

LEAST_TIMING: Final = 0.05

NODE_LEASE: Final = 10.0
"""Seconds without refreshing its lease before a node may be declared dead (see ``lease.py``)."""

HUB_TIMINGS: Final = {
    "heartbeat": (LEAST_TIMING, 3600.0),
    "poll_timeout": (LEAST_TIMING, 3600.0),
    "presence_ttl": (LEAST_TIMING, 86_400.0),
    "session_ttl": (LEAST_TIMING, 30 * 86_400.0),
    "node_lease": (0.5, 3600.0),
}
"""The least and most seconds of each hub timing, one table for both ends (0 is below the
least: a heartbeat of 0 pinged at every tick). A heartbeat of a millisecond was a ping storm, of 10**9 s dead
connections never found; a poll held for days outlives every proxy on the way."""

MAX_SSE_PADDING: Final = 64 * 1024
"""The most ``sse_padding`` bytes: proxies that hold back a response's start hold a few
kilobytes; more is only sent again on every stream (a GB per stream was taken)."""

MAX_GZIP_MIN_SIZE: Final = 1024 * 1024
"""The most ``gzip_min_size`` bytes: as large as the largest request body a hub takes by
default (``max_post_size``); past it, hardly a poll response would be gzipped (``1.5`` and
``10**12`` were taken)."""


def check_channel_options(setting: str, options: Any) -> ChannelOptions:
    """``options`` if it is a :class:`~ladder.ChannelOptions` (which refused unsound values
    when it was made), else a clear error."""
    if isinstance(options, Mapping):
        keys = ", ".join(f"{key}=..." for key in options)
        raise ConfigurationError(
            setting,
            "got a dict where ChannelOptions are expected",
            f"write ChannelOptions({keys}) (from ladder import ChannelOptions)",
        )
    if not isinstance(options, ChannelOptions):
        raise ConfigurationError(
            setting,
            f"got a {type(options).__name__}",
            "pass ChannelOptions(...) (from ladder import ChannelOptions)",
        )
    return options  # (its values were checked when it was made)


def check_hub_settings(
    allowed_origins: Any,
    transports: Any,
    numbers: Mapping[str, Any],
    *,
    authenticate: Any = None,
    permissions: Any = None,
    limits: Any = None,
) -> tuple[str, ...]:
    """Refuse a hub setting that cannot work, naming it; returns the transports, best first."""
    if allowed_origins is not None:
        if isinstance(allowed_origins, str) or not isinstance(allowed_origins, Sequence):
            raise ConfigurationError(
                "allowed_origins",
                f"got {allowed_origins!r}, not a list",
                f"pass a list of origins: allowed_origins=[{allowed_origins!r}]",
            )
        if not allowed_origins:
            raise ConfigurationError(
                "allowed_origins",
                "an empty list refuses every browser origin, the hub's own pages' included",
                "pass None for the hub's own origin only, or list the origins allowed",
            )
        for origin in allowed_origins:
            _check_origin(origin)
    if isinstance(transports, str) or not transports or any(t not in TRANSPORTS for t in transports):
        raise ConfigurationError(
            "transports", f"got {transports!r}", f"pass a non-empty list of rungs among {list(TRANSPORTS)}"
        )
    for name, value in numbers.items():
        bounds = HUB_TIMINGS.get(name)
        fix = f"pass {bounds[0]:g} to {bounds[1]:.0f} seconds" if bounds else "pass a finite number >= 0"
        check_number(name, value, "int" if name in ("sse_padding", "gzip_min_size") else "float", fix)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            problem = "0 cannot work" if value == 0 else f"{value!r} s is out of range"
            raise ConfigurationError(name, problem, fix)
    padding = numbers.get("sse_padding", 0)
    if padding > MAX_SSE_PADDING:
        raise ConfigurationError(
            "sse_padding",
            f"{padding} bytes is over the most, {MAX_SSE_PADDING}, and would be sent on every SSE stream",
            f"pass at most {MAX_SSE_PADDING} (the default, 2048, gets through the proxies that buffer)",
        )
    gzip_min = numbers.get("gzip_min_size", 0)
    if gzip_min > MAX_GZIP_MIN_SIZE:
        raise ConfigurationError(
            "gzip_min_size",
            f"{gzip_min} bytes is over the most, {MAX_GZIP_MIN_SIZE}: hardly a poll response is "
            "that large, so it would turn gzip off without saying so",
            f"pass at most {MAX_GZIP_MIN_SIZE} (the default is 1024; 0 gzips every response the "
            "client accepts gzip for)",
        )
    if authenticate is not None and not callable(authenticate):
        raise ConfigurationError(
            "authenticate",
            f"got a {type(authenticate).__name__}, not a function",
            "pass a function of the AuthRequest returning an Identity, a user id or None "
            "(async or not), or JWT(key)",
        )
    if permissions is not None and not callable(permissions):
        raise ConfigurationError(
            "permissions",
            f"got a {type(permissions).__name__}, not a function",
            "pass a function (identity, action, channel, options) -> bool (async or not)",
        )
    if limits is not None and not isinstance(limits, Limits):
        keys = ", ".join(f"{key}=..." for key in limits) if isinstance(limits, Mapping) else "..."
        raise ConfigurationError(
            "limits",
            f"got a {type(limits).__name__} where Limits are expected",
            f"write Limits({keys}) (from ladder import Limits)",
        )
    return tuple(t for t in TRANSPORTS if t in transports)


def _check_origin(origin: Any) -> None:
    """Refuse an ``allowed_origins`` entry no browser's ``Origin`` header could ever equal."""
    if origin == "*":
        return
    if isinstance(origin, str) and "*" in origin:
        raise ConfigurationError(
            "allowed_origins",
            f"{origin!r} has a wildcard inside it, and origins are matched whole, not as patterns",
            'list each origin (e.g. "https://app.example", "https://admin.example"), or pass ["*"] '
            "to allow any origin",
        )
    if not _is_origin(origin):
        raise ConfigurationError(
            "allowed_origins",
            f"{origin!r} is not an origin",
            'write scheme://host[:port] as the browser shows it, e.g. "https://app.example", '
            'or "*" for any',
        )


def _is_origin(origin: Any) -> bool:
    """``scheme://host[:port]``, as a browser's ``Origin`` header says it (a trailing / too)."""
    if not isinstance(origin, str):
        return False
    parts = urlsplit(origin)
    try:
        port = parts.port  # (raises for a port that is not a number from 0 to 65535)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and parts.path in ("", "/")
        and (port is None or port > 0)
    )


class ChannelRules:
    """Channel options by glob pattern (``room:*``); the first match wins."""

    def __init__(
        self, patterns: Mapping[str, ChannelOptions] | None = None, default: ChannelOptions | None = None
    ) -> None:
        if patterns is not None and not isinstance(patterns, Mapping):
            raise ConfigurationError(
                "channels",
                f"got a {type(patterns).__name__}",
                'pass a dict of channel patterns to ChannelOptions: {"room:*": ChannelOptions(...)}',
            )
        for pattern, options in (patterns or {}).items():
            if not isinstance(pattern, str) or not pattern:
                raise ConfigurationError(
                    "channels",
                    f"the pattern {pattern!r} is not a channel glob",
                    'use a string such as "room:*"',
                )
            check_channel_options(f"channels[{pattern!r}]", options)
        self.patterns = dict(patterns or {})
        self.default = (
            ChannelOptions() if default is None else check_channel_options("default_channel", default)
        )
        self._cache: dict[str, ChannelOptions] = {}

    def options(self, channel: str) -> ChannelOptions:
        found = self._cache.get(channel)
        if found is None:
            found = next(
                (opts for pattern, opts in self.patterns.items() if fnmatch.fnmatchcase(channel, pattern)),
                self.default,
            )
            if len(self._cache) < 10_000:
                self._cache[channel] = found
        return found


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a hub was configured with, checked, in one object its parts share."""

    allowed_origins: tuple[str, ...] | None
    transports: tuple[str, ...]
    limits: Limits
    channel_rules: ChannelRules
    session_limits: SessionLimits
    authenticate: Authenticate | None
    permissions: Permissions
    presence_ttl: float
    sse_padding: int
    gzip_min_size: int
    clock: Callable[[], float]
    node_lease: float = NODE_LEASE
    """Seconds a node silent that long may be declared dead by another (see ``lease.py``)."""

    def not_offered(self, rungs: Sequence[str]) -> LadderError | None:
        """The refusal of ``rungs`` this hub does not offer (``unsupported_transport``, naming
        those it does, also as ``details.tr``: the welcome's list), or None: a client allowed
        only rungs the server switched off can then give up at once, naming both lists."""
        missing = [rung for rung in rungs if rung not in self.transports]
        if not missing:
            return None
        verb = "is" if len(missing) == 1 else "are"
        offered = ", ".join(self.transports)
        return LadderError(
            "unsupported_transport",
            f"{', '.join(missing)} {verb} not offered by this server, which offers {offered}",
            details={"tr": list(self.transports)},
        )
