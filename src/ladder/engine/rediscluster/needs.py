"""What the Redis Cluster engine needs of redis-py, checked before anything imports the rest.

The ``redis`` extra allows redis-py 5.0.2, enough for one or several Redis servers; a Redis
Cluster needs 8.0, whose asyncio client has sharded pub/sub. Older ones also lack names the
engine's modules import, so the check runs first (an ``ImportError`` would say the extra is
missing, which it is not), and again when an engine is built.
"""

from __future__ import annotations

import redis
from redis.asyncio.client import PubSub

from ...errors import ConfigurationError


def check_redis_py() -> None:
    """Raise :class:`~ladder.ConfigurationError` naming the upgrade on a redis-py before 8.0."""
    if not hasattr(PubSub, "ssubscribe"):
        raise ConfigurationError(
            "engine",
            f"a Redis Cluster needs redis-py 8.0 or newer, whose asyncio client has sharded "
            f"pub/sub (SSUBSCRIBE, SPUBLISH); this is redis-py {redis.__version__}",
            "upgrade it: pip install -U 'redis[hiredis]>=8'",
        )
