"""The Redis Cluster engine (needs ``ladder-rt[redis]`` with redis-py 8.0 or newer, Redis 7 or newer)."""

from __future__ import annotations

from .engine import RedisClusterEngine

__all__ = ["RedisClusterEngine"]
