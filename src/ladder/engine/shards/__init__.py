"""Several Redis servers as one engine (needs ``ladder-rt[redis]``)."""

from __future__ import annotations

from .engine import ShardedEngine
from .placement import Placement

__all__ = ["Placement", "ShardedEngine"]
