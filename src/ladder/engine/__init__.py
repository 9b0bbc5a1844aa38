"""Engines: the message backbone behind a hub (memory for one process, Redis for many)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigurationError, install_hint
from .base import (
    AppliedRecords,
    ChannelOptions,
    Channels,
    Engine,
    EngineSink,
    HistoryResult,
    Member,
    Position,
    Presence,
    Publication,
    SessionRouting,
)
from .memory import MemoryEngine

__all__ = [
    "AppliedRecords",
    "ChannelOptions",
    "Channels",
    "Engine",
    "EngineSink",
    "HistoryResult",
    "Member",
    "MemoryEngine",
    "Position",
    "Presence",
    "Publication",
    "SessionRouting",
    "create_engine",
]


def create_engine(spec: str | Engine) -> Engine:
    """Build an engine from a URL (``memory://``, ``redis://host:port/db``) or pass one through.

    A URL of no known kind, a missing Redis extra or an object that is no engine raises
    :class:`~ladder.errors.ConfigurationError` naming the fix.
    """
    if not isinstance(spec, str):
        if not isinstance(spec, Engine):
            raise ConfigurationError(
                "engine",
                f"{type(spec).__name__} is not an engine",
                'pass a URL ("memory://", "redis://host:6379/0") or an object implementing '
                "ladder.engine.Engine",
            )
        return spec
    scheme = urlsplit(spec).scheme
    if scheme == "memory":
        return MemoryEngine()
    if scheme in ("redis", "rediss", "unix"):
        try:
            from .redis import RedisEngine  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise ConfigurationError(
                "engine",
                f"{spec!r} needs the Redis engine, which is not installed",
                f"install it with `{install_hint('redis')}`",
            ) from exc
        engine: Engine = RedisEngine(spec)
        return engine
    raise ConfigurationError(
        "engine",
        f"unknown engine URL {spec!r}",
        'use "memory://" (one process) or "redis://host:6379/0" (several processes; also '
        '"rediss://" for TLS and "unix:///path/to/redis.sock")',
    )
