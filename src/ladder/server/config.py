"""Server settings: limits and per-channel options, with defaults a production app can keep."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ..engine.base import ChannelOptions

TRANSPORTS: Final = ("websocket", "sse", "longpoll", "poll")
"""Every rung, best first."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one client can make the server hold or do. All configurable."""

    max_frame_size: int = 64 * 1024
    """Largest single frame (bytes). Bigger: error, WebSocket close 1009, HTTP 413."""
    max_post_size: int = 1024 * 1024
    """Largest upstream POST body (a batch of frames)."""
    max_subscriptions: int = 512
    """Channels one session may be subscribed to at once."""
    max_sessions: int = 100_000
    """Sessions this process holds at once (live or waiting to be resumed)."""
    max_queue: int = 10_000
    """Unacknowledged frames kept per session; past it the session is dropped (slow consumer)."""
    max_queue_bytes: int = 8 * 1024 * 1024
    """Unacknowledged bytes kept per session; same policy."""
    inbox_window: int = 1024
    """How far ahead of the next expected client message id a message may arrive."""
    batch_frames: int = 512
    """Most frames written in one WebSocket message, SSE write or poll response."""
    hello_timeout: float = 10.0
    """Seconds a new WebSocket may take to send its hello."""


class ChannelRules:
    """Channel options by glob pattern (``room:*``); the first match wins."""

    def __init__(
        self, patterns: Mapping[str, ChannelOptions] | None = None, default: ChannelOptions | None = None
    ) -> None:
        self.patterns = dict(patterns or {})
        self.default = default or ChannelOptions()
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
