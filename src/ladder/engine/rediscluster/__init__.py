"""The Redis Cluster engine (needs ``ladder-rt[redis]`` with redis-py 8.0 or newer, Redis 7 or newer)."""

from __future__ import annotations

from .needs import check_redis_py

check_redis_py()  # (before .engine imports what older redis-py lacks)

from .engine import RedisClusterEngine  # noqa: E402

__all__ = ["RedisClusterEngine"]
