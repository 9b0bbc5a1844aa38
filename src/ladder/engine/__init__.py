"""Engines: the message backbone behind a hub (memory for one process, Redis for many)."""

from __future__ import annotations

from typing import Any
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
from .urls import check_redis_url, shown

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


def remade(engine: Engine) -> Engine:
    """A new, unstarted engine of ``engine``'s kind with its settings and a node id of its
    own: what a forked process publishes with, since the connections (and the node id) of an
    engine its parent used are the parent's. Raises ``ConfigurationError`` for an engine that
    does not say what it was made with (``made_with``: a URL and keyword settings)."""
    made = getattr(engine, "made_with", None)
    if made is None:
        raise ConfigurationError(
            "engine",
            f"a {type(engine).__name__} used before the process forked cannot be made again in the child",
            "pass the engine's URL instead, or give the engine a made_with = (url, settings)",
        )
    url, settings = made
    make: Any = type(engine)  # (an engine class that says made_with takes them back)
    fresh: Engine = make(url, **{**settings, "node_id": None})
    return fresh


def create_engine(spec: str | Engine) -> Engine:
    """Build an engine from a URL (``memory://``, ``redis://host:port/db``,
    ``redis://h1:port,h2:port/db`` for several servers) or pass one through.

    A URL of no known kind, a Redis URL that names no server (or has an empty entry in its
    list), lists one server twice (the port defaults to 6379; a cluster's seeds, which are
    only ways in, may repeat) or gives a server of a list a
    scheme or a database of its own, a ``unix://`` URL with a comma (one socket only), a
    missing Redis extra, a ``memory://`` URL with more after it or an object that is no
    engine raises
    :class:`~ladder.errors.ConfigurationError` naming the fix (a cluster's in cluster terms).
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
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster", "unix"):
        check_redis_url(spec)
    if scheme == "memory":
        if spec.rstrip("/").lower() != "memory:":
            raise ConfigurationError(
                "engine",
                f"{shown(spec)!r}: the memory engine takes nothing after memory://",
                'pass "memory://" (its settings are MemoryEngine(...)\'s arguments: '
                "engine=MemoryEngine(idle_ttl=...))",
            )
        return MemoryEngine()
    if scheme in ("redis+cluster", "rediss+cluster"):
        try:
            from .rediscluster import RedisClusterEngine  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise _redis_missing(spec) from exc
        cluster: Engine = RedisClusterEngine(spec)
        return cluster
    if scheme in ("redis", "rediss", "unix"):
        try:
            from .redis import RedisEngine  # noqa: PLC0415 - optional dependency
            from .shards import ShardedEngine  # noqa: PLC0415
        except ImportError as exc:
            raise _redis_missing(spec) from exc
        several = "," in urlsplit(spec).netloc
        engine: Engine = ShardedEngine(spec) if several else RedisEngine(spec)
        return engine
    raise ConfigurationError(
        "engine",
        f"unknown engine URL {shown(spec)!r}",
        'use "memory://" (one process), "redis://host:6379/0" (several processes; also '
        '"rediss://" for TLS and "unix:///path/to/redis.sock") or "redis://h1:6379,h2:6379/0" '
        "(several Redis servers, channels and sessions spread over them) or "
        '"redis+cluster://h1:7000,h2:7000" (a Redis Cluster, by some of its nodes)',
    )


def _redis_missing(spec: str) -> ConfigurationError:
    """The error for a Redis URL when the Redis extra is not installed."""
    return ConfigurationError(
        "engine",
        f"{shown(spec)!r} needs the Redis engine, which is not installed",
        f"install it with `{install_hint('redis')}`",
    )
