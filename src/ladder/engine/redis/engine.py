"""The Redis engine: several server processes share channels, history, presence and routing.

Layout in Redis (``prefix`` defaults to ``ladder``):

====================================  ===================================================
``{p}:m:{channel}``                   hash: ``e`` epoch, ``o`` last offset (the channel's
                                      position); expires ``meta_ttl`` after its last use
``{p}:s:{channel}``                   stream: history, entry ids ``0-<offset>``, fields
                                      ``t`` (time) and ``d`` (msgpack data); capped at the
                                      channel's ``history_size``, expires after
                                      ``history_ttl`` without publications
``{p}:pm:{channel}``                  hash: presence members (client id -> msgpack)
``{p}:pe:{channel}``                  zset: presence members by expiry
``{p}:d:presence``                    zset: channels with members, by earliest expiry
``{p}:c:{channel}``                   pub/sub: live publications and presence changes
``{p}:n:{node}``                      pub/sub: messages for one node (session routing); a
                                      node is alive while it is subscribed there, or
``{p}:away:{node}``                   string: while its listener reconnects (expires 3 s
                                      after its last refresh)
``{p}:all``                           pub/sub: messages for every node (``send_user``)
``{p}:node:{node}``                   string: a node's trace, refreshed every 30 s while it
                                      runs, expiring ``trace_ttl`` after (a session naming
                                      a node without one was made on another engine)
``{p}:a:{sid}``                       hash: what a session applied (``t`` token digest,
                                      ``i`` highest id, ``r:<id>`` kept answers, ``o``
                                      carried keys); expires ``ttl`` after its last write
``{p}:moved:{sid}``                   where a session went when a node handed it over
``{p}:live:{node}``                   string: a node's lease, ``1`` refreshed every
                                      ``node_lease``/4 with a TTL of ``node_lease``, or
                                      ``dead`` (kept ``trace_ttl``) once another node
                                      declared it dead (``lease.py``)
====================================  ===================================================

Every per-channel key is ``{p}:{kind}:{channel}``: a kind never follows the user-chosen
name, so no two channels share a key (a suffix did: channel ``x:t``'s presence hash was
channel ``x``'s presence sorted set).

Each concern is a part in its own module (``channels``, ``presence``, ``routing``,
``applied``) over one :class:`~.link.RedisLink`; this module adds the lifecycle: the
listener, the heartbeat and the presence sweep, and health. While Redis is unreachable,
publishing raises ``engine_unavailable`` at once, the health check fails, and the listener
reconnects with backoff and catches up by itself when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, RedisClusterException, RedisError

from ...checks import check_node_id, check_positive, check_prefix
from ..base import EngineSink
from ..composed import ComposedEngine
from ..urls import check_scheme, shown
from .applied import RedisAppliedRecords
from .channels import RedisChannels
from .identity import CREDENTIALS, Identity, Refusal, identify, is_a_cluster_node, wrong_scheme
from .link import RedisLink
from .listener import Listener, PubSubListener
from .presence import RedisPresence
from .routing import RedisRouting

log = logging.getLogger("ladder.redis")

HEARTBEAT_EVERY: Final = 1.5
RECHECK_EVERY: Final = 0.25
"""Seconds between heartbeats while Redis does not answer: the first answer wakes the
listener out of its backoff, so this is how long a node stays deaf after Redis is back."""


def heartbeat_error(exc: Exception, where: str) -> str:
    """What a failed heartbeat to ``where`` reports. An error other than Redis's, the
    network's or redis-py's cluster client's (uvloop's RuntimeError for a transport closed
    under redis-py, a bug) is logged with its traceback: the heartbeat counts it as no
    answer and goes on, since it is what makes the node healthy again."""
    if not isinstance(exc, RedisError | OSError | RedisClusterException):
        log.exception("redis heartbeat to %s failed with an unexpected error; counted as no answer", where)
    if isinstance(exc, AuthenticationError):  # (the password changed on a running server)
        return f"{exc}: {CREDENTIALS}"
    return str(exc) or type(exc).__name__


class RedisEngine(ComposedEngine):
    """Channels, history, presence and session routing in Redis (``redis://host:port/db``).

    ``Ladder(engine="redis://...")`` builds one with these defaults; pass
    ``Ladder(engine=RedisEngine(url, ...))`` to change them. Needs ``ladder-rt[redis]``.

    Args:
        url: ``redis://host:port/db``, ``rediss://`` for TLS, or ``unix:///path/to/redis.sock``.
        prefix: Prefix of every key and pub/sub channel (several deployments can share a Redis):
            a non-empty str without braces (a Redis Cluster hashes a key by what is in them).
        connect_timeout: Seconds to open a connection to Redis.
        command_timeout: Seconds a command may take before the engine counts Redis as unreachable.
        meta_ttl: Seconds a channel's epoch and offset are kept after its last publication
            or read (default 24 h; after a publication, its ``history_ttl`` if longer, which a
            later read does not shorten),
            whether or not it has subscribers: after that it starts a new epoch, so a client
            back from before recovers nothing (``rec`` false), and subscribers of a channel
            quiet that long get ``resync`` at its next publication. The memory engine drops
            them 1 h after a channel's last use (``MemoryEngine(idle_ttl=)``), and never
            while it has subscribers, history or members.
        node_id: This process's id among the nodes, 1 to 64 letters, digits, ``-`` or ``_``
            (it begins each of its session ids, before a dot); None: random.
        max_connections: Connections to Redis this process may open at once.
        pool_timeout: Seconds a command waits for a free connection when all are busy.
        sweep_every: Seconds between sweeps for expired presence members (a dead node's),
            whose ``leave`` is announced then.
    """

    schemes: tuple[str, ...] = ("redis", "rediss", "unix")
    """The URL schemes this engine takes (a cluster's, ``redis+cluster``, its subclass's)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ladder",
        connect_timeout: float = 0.5,
        command_timeout: float = 1.0,
        meta_ttl: float = 86_400.0,
        node_id: str | None = None,
        max_connections: int = 100,
        pool_timeout: float = 2.0,
        sweep_every: float = 5.0,
    ) -> None:
        name = type(self).__name__
        check_scheme("engine", url, self.schemes)
        for setting, value in (
            ("connect_timeout", connect_timeout),
            ("command_timeout", command_timeout),
            ("meta_ttl", meta_ttl),
            ("pool_timeout", pool_timeout),
            ("sweep_every", sweep_every),
        ):
            check_positive(f"{name}({setting}=...)", value)
        check_positive(f"{name}(max_connections=...)", max_connections, "int")
        check_prefix(f"{name}(prefix=...)", prefix)
        check_node_id(f"{name}(node_id=...)", node_id)
        self.url = url
        self.prefix = prefix
        self.meta_ttl = meta_ttl
        self.made_with: tuple[str, dict[str, Any]] = (
            url,
            {
                "prefix": prefix,
                "connect_timeout": connect_timeout,
                "command_timeout": command_timeout,
                "meta_ttl": meta_ttl,
                "node_id": node_id,
                "max_connections": max_connections,
                "pool_timeout": pool_timeout,
                "sweep_every": sweep_every,
            },
        )
        """What it was made with (``ladder.engine.remade`` makes another alike, for a forked child)."""
        link = self._link = self._make_link(
            url,
            prefix=prefix,
            node_id=node_id or secrets.token_hex(4),
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            max_connections=max_connections,
            pool_timeout=pool_timeout,
        )
        self._channels = RedisChannels(link, meta_ttl=meta_ttl)
        self._presence = RedisPresence(link, sweep_every=sweep_every)
        self._routing = RedisRouting(link)
        super().__init__(self._channels, self._presence, self._routing, RedisAppliedRecords(link))
        self._listener = self._make_listener()
        self._channels.listener = self._routing.listener = self._listener
        self._tasks: list[asyncio.Task[None]] = []
        self.healthy = False
        """True while this node can reach Redis and its listener is subscribed; it follows
        both ways (see :meth:`_health`), and each change is logged."""
        self._commands_ok = True
        self._listening = False
        """The listener was connected when last heard of (a loss is told to the sink once)."""
        self._was_healthy = False
        self._told = False
        """Being unhealthy was logged (once per outage, from the start too)."""
        self.last_error: str | None = None
        self.serving = "accepting new sessions"
        """What being healthy means, for the log (a shard of several says its own)."""
        self.answers_nodes = True
        """False for a process that answers no other node (a :class:`~ladder.Publisher`): it
        does not listen for messages to every node, so a broadcast neither counts it nor
        waits out its timeout for an answer that never comes. Read by :meth:`start`."""
        self.refusing = "new sessions are refused with engine_unavailable and /health answers 503"
        """What being unhealthy means, for the log."""
        self.identity: Identity | None = None
        """What the server said it is when last asked (see :mod:`.identity`)."""
        self.refused: Refusal | None = None
        """Why the server reached cannot be used (the wrong kind, or listed twice): the node
        stays unhealthy meanwhile, and it is asked again at every heartbeat."""
        self.peers: Callable[[RedisEngine], Refusal | None] = lambda shard: None
        """What the other entries of a list say of this one's server (the sharded engine:
        one server listed under two names)."""
        self.deferring = False
        """Another entry of the list reaches this server and takes the node's messages there
        (:attr:`peers` said so): this one's listener leaves them, or each would arrive twice."""
        self._identified = False
        """The server said what it is once (until then, which entry it is is not known)."""
        self._asked = False
        """The server was asked what it is since it last answered (again after an outage)."""

    @property
    def redis(self) -> aioredis.Redis:
        """The command client."""
        return self._link.redis

    def _make_link(self, url: str, **options: Any) -> RedisLink:
        return RedisLink(url, **options)

    def _make_listener(self) -> PubSubListener:
        return Listener(
            self._link,
            lambda: list(self._channels.listening),
            self._channels.catch_up_all,
            self._dispatch,
            self._heard,
            nodes=self._hears_nodes,
        )

    def _hears_nodes(self) -> bool:
        """Whether the listener takes messages to this node (and to every node): once the
        server said what it is (an entry of a list that answered late may turn out to be
        another's server), and not while another entry takes them there (:attr:`deferring`)."""
        return self._identified and not self.deferring

    @property
    def answered(self) -> bool:
        """The server said what it is since it last answered, and is not refused."""
        return self._asked

    @property
    def routing_part(self) -> RedisRouting:
        """Session routing in this Redis (a sharded engine reads hand-over records here)."""
        return self._routing

    @property
    def trace_ttl(self) -> float:
        """Seconds this node's trace is kept after it stopped (see ``SessionRouting``)."""
        return self._routing.trace_ttl

    @trace_ttl.setter
    def trace_ttl(self, seconds: float) -> None:
        self._routing.trace_ttl = seconds

    @property
    def reconnects(self) -> int:
        """How many times the listener lost its connection."""
        return self._listener.reconnects

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, sink: EngineSink) -> None:
        """Connect; if the server answers and is not one this engine can use (see
        :meth:`_ask`), raise :class:`~ladder.ConfigurationError`. A server that does not
        answer yet is asked when it does."""
        self._link.sink = sink
        self._link.hears_all = self.answers_nodes
        self._link.open()
        answered = True
        try:
            refusal = await self._ask()
        except (RedisError, OSError) as exc:
            refusal, answered = await wrong_scheme(self.url, self._link.connect_timeout), False
            self.last_error = heartbeat_error(exc, shown(self.url))  # (/health says why at once)
        except BaseException:
            await self._link.close()
            raise
        else:
            self._asked = refusal is None
            self._identified = True
        if refusal is not None:
            await self._link.close()
            self._link.sink = None
            raise refusal.error(self.url)
        await self._link.ready()
        if self._asked:  # (known to every node from the start: see ``SessionRouting``)
            await self._routing.keep_trace(asyncio.get_running_loop().time())
        self._channels.scripts()
        self._presence.scripts()
        self._routing.lease.scripts()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listener.run_forever(), name="ladder-redis-listener"),
            loop.create_task(self._heartbeat_forever(), name="ladder-redis-heartbeat"),
            loop.create_task(self._presence.sweep_forever(), name="ladder-redis-presence-sweep"),
            loop.create_task(self._routing.mark_forever(), name="ladder-redis-away-mark"),
        ]
        # Wait briefly for the first subscription so a node that starts healthy is usable
        # at once; if Redis is down (it did not answer just now), keep starting without
        # waiting: the listener retries in the background (a Publisher made per task paid
        # these 2 s before each engine_unavailable).
        if answered:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._listener.subscribed.wait()

    async def stop(self) -> None:
        # Cancel until done: a cancellation landing inside a redis-py command can be
        # swallowed there, and the loop would then go on.
        while pending := [task for task in self._tasks if not task.done()]:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.1)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self._listener.stop()
        await self._routing.unmark()
        await self._link.close()
        self._link.sink = None
        self.healthy = False

    async def _dispatch(self, key: bytes, data: bytes) -> None:
        """Route one pub/sub message to the part it belongs to."""
        link = self._link
        if link.for_nodes(key):
            self._routing.on_message(data)
            return
        channel = link.channel_of(key)
        kind = data[:1]
        if kind == b"P":
            await self._channels.on_message(channel, data)
        elif kind in (b"J", b"L"):
            self._presence.on_message(channel, data)

    # -- health ----------------------------------------------------------------------------

    def _heard(self, error: str | None) -> None:
        """The listener connected (``error`` None) or lost its connection: then answers to
        messages sent through it may be lost with it, and the sink hears it at once."""
        was_listening, self._listening = self._listening, error is None
        self._routing.away(error is not None)  # (other nodes: alive, reconnecting)
        if error is not None:
            self.last_error = error
            if was_listening and self._link.sink is not None:
                self._link.sink.on_route_lost()
        self._health()

    def _health(self) -> None:
        """Combine what the listener and the heartbeat found; log when health changes.

        Health follows both ways: a stall that heals without a connection reset leaves
        the listener connected, and the next answered heartbeat makes the node healthy again.
        """
        healthy = self._healthy_now()
        if healthy == self.healthy and (healthy or self._told or self.last_error is None):
            return  # (a node that starts with Redis down says so once, too)
        self.healthy = healthy
        self._told = not healthy
        if healthy:
            self._listening = True  # (a cluster's listener says nothing when it starts well)
            self.last_error = None
            again, self._was_healthy = self._was_healthy, True
            what = "healthy again" if again else "connected"
            log.info("redis engine %s (%s): %s", what, shown(self.url), self.serving)
        elif self._link.sink is not None:  # not while stopping
            log.warning(
                "redis engine unhealthy (%s): %s; %s until it answers again",
                shown(self.url),
                self.last_error or "no answer",
                self.refusing,
            )

    def _healthy_now(self) -> bool:
        return self._asked and self._listener.ok and self._commands_ok

    def refusal(self) -> str | None:
        """Why the server reached cannot be used, naming it and the fix (None: it can)."""
        refused = self.refused
        return None if refused is None else f"{shown(self.url)} is refused: {refused.text()}"

    async def _ask(self) -> Refusal | None:
        """Ask the server what it is: why this engine cannot use it, or None. Raises a Redis
        or network error when it does not answer."""
        said = await identify(self._link.redis)
        if isinstance(said, Refusal):
            return said
        self.identity = said
        return is_a_cluster_node(self.url) if said and said.cluster else None

    async def _check(self) -> None:
        """Ask again (the server answers after an outage, or was refused), and the other
        entries of a list (at start-up, the sharded engine compares them once all answered):
        a refusal is logged once, at ERROR, and keeps the node unhealthy until it is fixed.
        An entry refused as another's server leaves the node's messages to that one until
        it reaches a server of its own (its name or the network changed): asked at every
        heartbeat meanwhile, it then takes them again."""
        kind = await self._ask()
        self._identified = True
        twin = self.peers(self)
        self.deferring = twin is not None
        refusal = kind or twin
        self._asked = refusal is None
        if refusal != self.refused:
            self.refused = refusal
            if refusal is not None:
                self.healthy, self._told, self.last_error = False, True, refusal.text()
                log.error(
                    "redis engine (%s): %s; until then this node is unhealthy: /health answers 503 and "
                    "new sessions are refused with engine_unavailable",
                    shown(self.url),
                    refusal.text(),
                )
        await self._listener.hear_nodes()

    async def _heartbeat_forever(self) -> None:
        """Check Redis answers commands (the listener checks its own connection).

        Nothing ends it but cancellation: it is what makes the node healthy again.
        """
        while True:
            try:
                await self._link.redis.ping()
                if not self._asked:
                    await self._check()
            except Exception as exc:
                self.last_error = heartbeat_error(exc, shown(self.url))
                self._commands_ok = self._asked = False
                self._routing.retrace()
            else:
                self._commands_ok = True
                self._listener.wake()  # (a no-op while it is listening)
                if self._asked:
                    await self._routing.keep_trace(asyncio.get_running_loop().time())
            self._health()
            await asyncio.sleep(HEARTBEAT_EVERY if self._commands_ok else RECHECK_EVERY)

    def details(self) -> dict[str, Any]:
        """Which half is broken when unhealthy: the listener (``listening``) or the command
        connections (``commands``: the last heartbeat was answered)."""
        return {
            "engine": "redis",
            "healthy": self.healthy,
            "listening": self._listener.ok,
            "commands": self._commands_ok,
            "reconnects": self.reconnects,
            "error": self.last_error,
        }
