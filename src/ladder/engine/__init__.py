"""Engines: the message backbone behind a hub (memory for one process, Redis for many)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..protocol.errors import LadderError
from .base import ChannelOptions, Engine, EngineSink, HistoryResult, Member, Position, Publication
from .memory import MemoryEngine

__all__ = [
    "ChannelOptions",
    "Engine",
    "EngineSink",
    "HistoryResult",
    "Member",
    "MemoryEngine",
    "Position",
    "Publication",
    "create_engine",
]


def create_engine(spec: str | Engine) -> Engine:
    """Build an engine from a URL (``memory://``, ``redis://host:port/db``) or pass one through."""
    if not isinstance(spec, str):
        return spec
    scheme = urlsplit(spec).scheme
    if scheme == "memory":
        return MemoryEngine()
    if scheme in ("redis", "rediss", "unix"):
        try:
            from .redis import RedisEngine  # noqa: PLC0415 - optional dependency
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise LadderError("bad_request", "the Redis engine needs `pip install ladder[redis]`") from exc
        engine: Engine = RedisEngine(spec)
        return engine
    raise ValueError(f"unknown engine {spec!r}: use memory:// or redis://host:port/db")
