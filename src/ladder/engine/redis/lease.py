"""A node's lease on its sessions: ``{prefix}:live:{node}`` (see ``docs/ops.md``).

A paused process keeps its pub/sub subscription, so being subscribed does not prove a node
answers. Each node refreshes its lease key (a TTL of ``node_lease``); a node asking another
that did not answer in time may replace a *lapsed* lease with a tombstone, atomically: the
silent node is then dead for everyone, its sessions are lost (their clients start
successors), and the node itself, when it wakes, finds the tombstone at its next refresh
and ends the sessions it still holds (it fences itself) before it takes the lease again.
"""

from __future__ import annotations

from typing import Final

from redis.exceptions import RedisError

from .link import RedisLink, unavailable

TOMBSTONE: Final = b"dead"
"""What a lease key holds once its node was declared dead."""

_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
return 1
"""
"""Refresh the lease unless the node was declared dead (0: fenced; the tombstone stays)."""

_DECLARE = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then return 1 end
if held then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
"""Declare a node dead only if its lease lapsed (1: dead, now or already; 0: lease held, or
no trace of the node here, KEYS[2]: a node on another database of the server, which shares
pub/sub, keeps its lease there, and a lease never held here cannot lapse here)."""


class RedisLease:
    """The lease keys of one Redis (each node's lives where its other routing keys do)."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link

    def scripts(self) -> None:
        """Register the scripts on the command client (after it is opened)."""
        redis = self._link.redis
        self._refresh = redis.register_script(_REFRESH)
        self._declare = redis.register_script(_DECLARE)

    def key(self, node: str) -> str:
        return self._link.k("live", node)

    async def refresh(self, node: str, seconds: float, *, take: bool = False) -> bool:
        """Hold ``node``'s lease ``seconds`` more; False if it was declared dead (fenced).
        ``take``: replace a tombstone too (the node starts, or ended what it held)."""
        key, ms = self.key(node), max(1, int(seconds * 1000))
        try:
            if take:
                await self._link.redis.set(key, b"1", px=ms)
                return True
            return bool(await self._refresh(keys=[key], args=[TOMBSTONE, ms]))
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc

    async def declare_dead(self, node: str, keep: float) -> bool:
        """Whether ``node`` is dead: its lease lapsed (a tombstone kept ``keep`` seconds is
        written in its place) or it was declared dead before. False while the lease lives,
        and for a node that left no trace here (``{prefix}:node:{node}``: it runs on another
        engine, and its lease, if any, is not here to lapse)."""
        try:
            ms = max(1, int(keep * 1000))
            keys = [self.key(node), self._link.k("node", node)]
            return bool(await self._declare(keys=keys, args=[TOMBSTONE, ms]))
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc
