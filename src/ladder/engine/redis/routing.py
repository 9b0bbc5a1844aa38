"""Session routing through Redis: where a session lives, and messages between nodes.

A session id starts with the id of the node that made it; a hand-over is recorded under
``{prefix}:moved:{sid}``. A node is alive while its listener is subscribed to its own
pub/sub key ``{prefix}:n:{node}`` (a killed process's subscription ends with its
connection), or while it says its listener is reconnecting: ``{prefix}:away:{node}``, set
over its command connection as soon as the listener's link broke, refreshed until it is
back, expiring ``AWAY_TTL`` after the last refresh (a process killed meanwhile).
``{prefix}:all`` reaches every node. Each node leaves a trace of itself,
``{prefix}:node:{node}``, refreshed by the engine's heartbeat and kept ``trace_ttl`` after
it stopped: a session naming a node without one was made on another engine. A node
holds a lease, ``{prefix}:live:{node}`` (:mod:`.lease`): one silent past it may be declared
dead (a tombstone there).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Final

from redis.exceptions import RedisClusterException, RedisError

from .lease import RedisLease
from .link import RedisLink, cancelled_meanwhile, unavailable
from .listener import PubSubListener

log = logging.getLogger("ladder.redis")

AWAY_TTL: Final = 3.0
"""Seconds a node's "reconnecting" mark lives after its last refresh: how long a process
killed while its listener was reconnecting still counts as alive."""

AWAY_REFRESH: Final = 1.0
"""Seconds between refreshes of the mark (and between tries while Redis does not take it:
``AWAY_RETRY``)."""

AWAY_RETRY: Final = 0.2

RECHECK_AFTER: Final = 0.15
"""Seconds to wait before asking again about a node neither subscribed nor marked: a
listener whose link just broke marks its node within a few ms of noticing (on one round
trip to Redis); a dead node's sessions must be known gone within a few tenths of a second."""

RESUBSCRIBE_GRACE: Final = 3.0
"""Seconds after Redis (re)started that live nodes get to subscribe again: until then
:meth:`RedisRouting.node_alive` keeps asking rather than declare a node without a
subscription dead (its sessions would be lost, and with them, without persistence, the
record of what they applied)."""


TRACE_TTL: Final = 600.0
"""Seconds a node's trace outlives its last refresh, at least (the hub raises it to twice
its ``session_ttl``)."""

TRACE_REFRESH: Final = 30.0
"""Seconds between refreshes of a node's trace (from the engine's heartbeat)."""


class RedisRouting:
    """The :class:`~ladder.engine.base.SessionRouting` part of the Redis engine."""

    resubscribe_grace = RESUBSCRIBE_GRACE

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self.node_id = link.node_id
        self.listener: PubSubListener | None = None
        """Set by the engine: whether this node hears its own broadcasts."""
        self._away = False
        self._marked = False
        """A mark of this node may be in Redis (set, or its removal failed)."""
        self._changed = asyncio.Event()
        self.trace_ttl = TRACE_TTL
        """Seconds this node's trace is kept after it stopped (see :meth:`node_trace`)."""
        self.trace = b"1"
        """What this node's trace says of it: ``1``, or the servers a sharded engine lists
        (nodes sharing a server must list the same ones)."""
        self._traced_at: float | None = None
        """When the trace was last written (monotonic), None until it is."""
        self.lease = RedisLease(link)

    async def refresh_lease(self, seconds: float, *, take: bool = False) -> bool:
        """Hold this node's lease ``seconds`` more; False if it was declared dead."""
        return await self.lease.refresh(self.node_id, seconds, take=take)

    async def declare_dead(self, node: str) -> bool:
        """Declare ``node`` dead if its lease lapsed (see :mod:`.lease`); the tombstone is
        kept as long as traces are, longer than any of its sessions."""
        return await self.lease.declare_dead(node, self.trace_ttl)

    def away(self, away: bool) -> None:
        """This node's listener lost its link (True) or is subscribed again (False)."""
        if away != self._away:
            self._away = away
            self._changed.set()

    async def mark_forever(self) -> None:
        """Keep ``{prefix}:away:{node}`` in Redis while this node's listener is away.

        It goes over the command connections, which do not depend on the pub/sub link: other
        nodes then answer a request for this node's sessions with a retryable
        ``engine_unavailable`` instead of calling them lost, however long the listener's
        backoff (up to 5 s) or Redis's uptime. One task makes every write, each with the
        state read just before it, so a late write never undoes a newer state.
        """
        key = self._link.k("away", self.node_id)
        while True:
            self._changed.clear()
            wait: float | None = AWAY_REFRESH if self._away else None
            try:
                if self._away:
                    self._marked = True
                    await self._link.redis.set(key, b"1", px=int(AWAY_TTL * 1000))
                elif self._marked:
                    await self._link.redis.delete(key)
                    self._marked = False
            except Exception as exc:  # Redis down, or a transport closed under redis-py
                if not isinstance(exc, RedisError | OSError | RuntimeError):
                    log.exception("marking this node as reconnecting failed")
                wait = AWAY_RETRY
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait()

    async def unmark(self) -> None:
        """This node stops: drop its mark, so its sessions are known gone at once."""
        if self._marked:
            with contextlib.suppress(Exception):
                await self._link.redis.delete(self._link.k("away", self.node_id))
            self._marked = False

    async def keep_trace(self, now: float) -> None:
        """Write this node's trace if it was not written within ``TRACE_REFRESH`` (called
        by the engine's heartbeat once Redis answered; a failure is tried at the next).
        A process that answers no node (a ``Publisher``) makes no session and leaves none:
        a short-lived publisher per request left a key for 10 minutes each."""
        if not self._link.hears_all:
            return
        if self._traced_at is not None and now - self._traced_at < TRACE_REFRESH:
            return
        try:
            key = self._link.k("node", self.node_id)
            await self._link.redis.set(key, self.trace, px=int(self.trace_ttl * 1000))
        except (RedisError, OSError, RedisClusterException) as exc:
            log.debug("writing this node's trace failed: %s", exc)
            return
        self._traced_at = now

    def retrace(self) -> None:
        """Redis did not answer: it may come back without its data (restarted without
        persistence), so the trace is written again at the next heartbeat answered."""
        self._traced_at = None

    async def node_trace(self, node: str) -> bytes | None:
        """The trace ``node`` left here (None: it did not run here within ``trace_ttl``).

        Only the trace counts, not a subscription: pub/sub is one for every database of a
        server, so a node on another database would look like one of this engine's."""
        try:
            trace = await self._link.redis.get(self._link.k("node", node))
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc
        return trace.encode() if isinstance(trace, str) else trace

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
        """Whether ``node``'s listener is subscribed to (one of) its own keys, or ``node``
        says it is reconnecting it (its mark: see :meth:`mark_forever`).

        The answer must come fast: a client resuming a session of a dead node waits for it,
        and a connection cut meanwhile would leave it resuming forever. A killed process's
        subscription ends with it and it leaves no mark (or one that expires within
        ``AWAY_TTL``); a live one whose link just broke is marked within moments of
        noticing, so a node neither subscribed nor marked is asked again after
        ``RECHECK_AFTER``, and then only while Redis has been up less than
        ``resubscribe_grace`` (it just restarted, without the marks if not persistent:
        every node is marking itself and subscribing again). A node declared dead (see
        :mod:`.lease`) that is still subscribed answers True: its lease is not read here,
        so that finding a node asks nothing of the server keeping its lease (down, it
        would stall every lookup); a request to it goes unanswered, and ``declare_dead``
        then says it is dead at once.
        """
        try:
            for attempt in itertools.count():
                if await self.listening(node) or await self._link.redis.exists(self._link.k("away", node)):
                    return True
                if attempt and await self._link.uptime(self._link.node_key(node)) >= self.resubscribe_grace:
                    return False
                cancelled_meanwhile()  # (its caller gave up: asked again for nobody)
                await asyncio.sleep(RECHECK_AFTER if attempt == 0 else 0.25)
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
        listener = self.listener
        hears_itself = self._link.hears_all and listener is not None and listener.subscribed.is_set()
        return max(0, receivers - 1) if hears_itself else receivers
