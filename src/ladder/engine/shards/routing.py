"""Session routing over several shards.

Every node listens on every shard for messages to it (``{p}:n:{node}``) and to all nodes
(``{p}:all``), so a message may travel through any shard that is up. The hand-over record
of a session (``{p}:moved:{sid}``) lives on the session's shard, which need not be the one
carrying messages to its node: finding a session reads the record there, then asks the
node's messenger shard whether the node is alive. A node's lease (``{p}:live:{node}``)
lives on its own shard by rendezvous, whether that one is up or not: a lease moving from
shard to shard would let a node be declared dead on one while it holds its lease on another.
"""

from __future__ import annotations

import contextlib

from ...protocol.errors import LadderError
from ..redis import RedisEngine
from .placement import Placement


class ShardedRouting:
    """The :class:`~ladder.engine.base.SessionRouting` part of the sharded engine."""

    def __init__(self, placement: Placement[RedisEngine], node_id: str, trace: bytes) -> None:
        self._placement = placement
        self.node_id = node_id
        self.trace = trace
        """What this node's trace says on every shard: the servers it lists."""

    def messengers(self, node: str) -> list[RedisEngine]:
        """The shards that may carry messages to ``node``, best first: its own by
        rendezvous, then the next ones, skipping those that are down (every node listens
        on all of them)."""
        ranked = self._placement.ranked(node)
        return [shard for shard in ranked if shard.healthy] or ranked[:1]

    def messenger(self, node: str) -> RedisEngine:
        """The first of :meth:`messengers`."""
        return self.messengers(node)[0]

    def keeper(self, node: str) -> RedisEngine:
        """The shard holding ``node``'s lease: its own by rendezvous, up or not."""
        return self._placement.ranked(node)[0]

    async def refresh_lease(self, seconds: float, *, take: bool = False) -> bool:
        return await self.keeper(self.node_id).routing_part.refresh_lease(seconds, take=take)

    async def declare_dead(self, node: str) -> bool:
        return await self.keeper(node).routing_part.declare_dead(node)

    def session_prefix(self) -> str:
        return f"{self.node_id}."

    async def locate_session(self, sid: str) -> str | None:
        node = await self._placement.of(sid).routing_part.holder(sid)
        if node == self.node_id:
            return node
        return node if await self.node_alive(node) else None

    async def node_alive(self, node: str) -> bool:
        """Listening on some shard that is up now, or (asked with patience) on the first
        (a node declared dead but still subscribed too, as with one Redis)."""
        for shard in self.messengers(node):
            with contextlib.suppress(LadderError):  # (that shard failed meanwhile: the next)
                if await shard.routing_part.listening(node):
                    return True
        return await self.messenger(node).node_alive(node)

    async def node_trace(self, node: str) -> bytes | None:
        """The trace ``node`` left on some shard that answers (each shard keeps every node's
        own); raises only when none answers."""
        failed: LadderError | None = None
        for shard in self.messengers(node):
            try:
                trace = await shard.routing_part.node_trace(node)
            except LadderError as exc:
                failed = exc
                continue
            if trace is not None:
                return trace
        if failed is not None:
            raise failed
        return None

    async def claim_session(self, sid: str, ttl: float) -> None:
        await self._placement.of(sid).claim_session(sid, ttl)

    async def release_session(self, sid: str) -> None:
        await self._placement.of(sid).release_session(sid)

    async def send_node(self, node: str, message: bytes) -> bool:
        """Through the first shard up where ``node`` hears it. A shard that just came back
        may not carry its subscription yet (its listener reconnects with backoff): nobody
        heard the message there, so it was not delivered, and the next shard carries it.
        A send that fails is not repeated elsewhere (it may have been delivered)."""
        for shard in self.messengers(node):
            if await shard.send_node(node, message):
                return True
        return False

    async def broadcast(self, message: bytes) -> int:
        return await self.messenger("").broadcast(message)
