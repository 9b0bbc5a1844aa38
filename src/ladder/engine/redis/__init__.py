"""The Redis engine (needs ``ladder-rt[redis]``): one module per concern, composed in
:mod:`.engine`."""

from __future__ import annotations

import redis.asyncio  # noqa: F401 - without the extra, importing this package fails here

from .engine import RedisEngine

__all__ = ["RedisEngine"]
