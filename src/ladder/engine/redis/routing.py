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
from .listener import PubSubListener

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
        self.listener: PubSubListener | None = None
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
        node = await self.holder(sid)
        if node == self.node_id:
            return node
        return node if await self.node_alive(node) else None

    async def holder(self, sid: str) -> str:
        """The node ``sid`` was last handed to, else the node that made it (alive or not)."""
        try:
            moved: bytes | None = await self._link.redis.get(self._link.k("moved", sid))  # type: ignore[assignment]
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc
        return moved.decode() if moved else sid.split(".", 1)[0]

    async def node_alive(self, node: str) -> bool:
        """Whether ``node``'s listener is subscribed to (one of) its own keys.

        The answer must come fast: a client resuming a session of a dead node waits for it,
        and a connection cut meanwhile would leave it resuming forever. A live listener whose
        connection dropped is back within about 0.1 s, so a missing subscription is checked
        once more after 0.15 s; only while Redis has been up less than ``resubscribe_grace``
        (it just restarted: every node is subscribing again) is it asked until then.
        """
        try:
            for attempt in itertools.count():
                if await self.listening(node):
                    return True
                if attempt and await self._link.uptime(self._link.node_key(node)) >= self.resubscribe_grace:
                    return False
                await asyncio.sleep(0.15 if attempt == 0 else 0.25)
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc
        return False  # pragma: no cover - the loop only ends by returning

    async def listening(self, node: str) -> bool:
        """Whether ``node``'s listener is subscribed now to one of the keys messages to it
        travel on (one check, no waiting)."""
        try:
            for key in self._link.node_keys_of(node):
                if await self._link.subscribers(key):
                    return True
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc
        return False

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

    async def send_node(self, node: str, message: bytes) -> bool:
        """Deliver ``message`` to ``node``'s ``on_node_message``; False if no listener of it
        heard it. A key nobody heard it on was not delivered, so the next key (a cluster's
        next primary) is tried: never a message twice."""
        try:
            for key in self._link.node_keys_of(node):
                if await self._link.publish(key, message):
                    return True
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc
        return False

    async def broadcast(self, message: bytes) -> int:
        """Publish ``message`` to every node; returns how many *other* nodes received it."""
        try:
            receivers = await self._link.publish(self._link.node_key("*"), message)
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc
        hears_itself = self.listener is not None and self.listener.subscribed.is_set()
        return max(0, receivers - 1) if hears_itself else receivers
