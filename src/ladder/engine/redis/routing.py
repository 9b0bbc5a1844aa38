"""Session routing through Redis: where a session lives, and messages between nodes.

A session id starts with the id of the node that made it; a hand-over is recorded under
``{prefix}:moved:{sid}``. A node is alive while its listener is subscribed to its own
pub/sub key ``{prefix}:n:{node}`` (a killed process's subscription ends with its
connection); ``{prefix}:all`` reaches every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Final

from redis.exceptions import RedisError

from .link import RedisLink, unavailable
from .listener import Listener

RESUBSCRIBE_GRACE: Final = 3.0
"""Seconds after Redis (re)started that live nodes get to subscribe again: until then
:meth:`RedisRouting.node_alive` keeps asking rather than declare a node without a
subscription dead (its sessions would be lost, and with them, without persistence, the
record of what they applied)."""


class RedisRouting:
    """The :class:`~ladder.engine.base.SessionRouting` part of the Redis engine."""

    resubscribe_grace = RESUBSCRIBE_GRACE

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self.node_id = link.node_id
        self.listener: Listener | None = None
        """Set by the engine: whether this node hears its own broadcasts."""

    def on_message(self, data: bytes) -> None:
        """A message on this node's key or the all-nodes key."""
        sink = self._link.sink
        if sink is not None:
            sink.on_node_message(data)

    def session_prefix(self) -> str:
        """Session ids start with the id of the node that made them (``<node>.``)."""
        return f"{self.node_id}."

    async def locate_session(self, sid: str) -> str | None:
        """The live node that holds ``sid`` (after hand-overs), or None."""
        try:
            moved: bytes | None = await self._link.redis.get(self._link.k("moved", sid))  # type: ignore[assignment]
            node = moved.decode() if moved else sid.split(".", 1)[0]
            if node == self.node_id:
                return node
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc
        return node if await self.node_alive(node) else None

    async def node_alive(self, node: str) -> bool:
        """Whether ``node``'s listener is subscribed to its own key.

        The answer must come fast: a client resuming a session of a dead node waits for it,
        and a connection cut meanwhile would leave it resuming forever. A live listener whose
        connection dropped is back within about 0.1 s, so a missing subscription is checked
        once more after 0.15 s; only while Redis has been up less than ``resubscribe_grace``
        (it just restarted: every node is subscribing again) is it asked until then.
        """
        channel = self._link.k("n", node)
        try:
            for attempt in itertools.count():
                ((_, listeners),) = await self._link.redis.pubsub_numsub(channel)
                if listeners:
                    return True
                if attempt:
                    uptime = int((await self._link.redis.info("server")).get("uptime_in_seconds", 0))
                    if uptime >= self.resubscribe_grace:
                        return False
                await asyncio.sleep(0.15 if attempt == 0 else 0.25)
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc
        return False  # pragma: no cover - the loop only ends by returning

    async def claim_session(self, sid: str, ttl: float) -> None:
        """Record that ``sid`` now lives on this node (after a hand-over)."""
        key = self._link.k("moved", sid)
        try:
            if sid.split(".", 1)[0] == self.node_id:
                await self._link.redis.delete(key)
            else:
                await self._link.redis.set(key, self.node_id, px=int(ttl * 1000))
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc

    async def release_session(self, sid: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._link.redis.delete(self._link.k("moved", sid))

    async def send_node(self, node: str, message: bytes) -> None:
        """Deliver ``message`` to ``node``'s ``on_node_message`` (fire and forget)."""
        try:
            await self._link.redis.publish(self._link.k("n", node), message)
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc

    async def broadcast(self, message: bytes) -> int:
        """Publish ``message`` to every node; returns how many *other* nodes received it."""
        try:
            receivers = int(await self._link.redis.publish(self._link.all_nodes, message))
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc
        hears_itself = self.listener is not None and self.listener.subscribed.is_set()
        return max(0, receivers - 1) if hears_itself else receivers
