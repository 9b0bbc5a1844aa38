"""The Redis Cluster engine: ``redis+cluster://host:port,host:port`` (seed nodes).

The single-Redis engine's parts, over :class:`.link.ClusterLink` (hash-tagged keys,
``SPUBLISH``, redis-py's cluster client) and :class:`.listener.ClusterListener` (one pub/sub
connection per primary). Each primary is a shard: while one is down (until its replica takes
over) its channels' publishes are refused with ``engine_unavailable``, its sessions' messages
wait for it (on a WebSocket, for a while) or are refused, and its subscribers catch up or
resync afterwards; the other shards keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio.cluster import ClusterNode
from redis.exceptions import RedisClusterException, RedisError

from ..redis.engine import HEARTBEAT_EVERY, RECHECK_EVERY, RedisEngine, heartbeat_error
from ..redis.identity import Identity, Refusal, is_no_cluster
from ..redis.link import RedisLink
from ..redis.listener import PubSubListener
from .link import ClusterLink
from .listener import ClusterListener
from .needs import check_redis_py

__all__ = ["RedisClusterEngine"]


class RedisClusterEngine(RedisEngine):
    """Channels, history, presence and sessions in a Redis Cluster (Redis 7 or newer; redis-py
    8.0 or newer, else :class:`~ladder.ConfigurationError` here).

    Args:
        url: ``redis+cluster://[user:password@]host:port[,host:port...]`` (some nodes of the
            cluster; the rest are discovered), ``rediss+cluster://`` for TLS.
        **options: As for :class:`~ladder.engine.redis.RedisEngine`.
    """

    schemes = ("redis+cluster", "rediss+cluster")

    def __init__(self, url: str, **options: Any) -> None:
        check_redis_py()
        self._primaries: dict[str, bool] = {}
        """Each primary's name -> whether it answered the last heartbeat."""
        super().__init__(url, **options)

    def _make_link(self, url: str, **options: Any) -> RedisLink:
        return ClusterLink(url, **options)

    def _make_listener(self) -> PubSubListener:
        link = self._link
        assert isinstance(link, ClusterLink)
        link.primary_ok = self._primary_ok
        self._cluster_listener = ClusterListener(
            link,
            lambda: list(self._channels.listening),
            self._channels.catch_up,
            self._dispatch,
            self._heard,
            moving=self._channels.moving,
        )
        self._cluster_listener.primary_lost = self._primary_lost
        return self._cluster_listener

    def _primary_lost(self, name: str) -> None:
        """The listener's connection to primary ``name`` failed: down from now until a
        heartbeat finds it taking commands again (a primary restarting takes subscriptions
        before it takes writes)."""
        self._primaries[name] = False

    @property
    def _cluster(self) -> ClusterLink:
        link = self._link
        assert isinstance(link, ClusterLink)
        return link

    def _healthy_now(self) -> bool:
        """This node hears messages to it (on some primary that is up), and to every node
        unless it answers none (a :class:`~ladder.Publisher`), and some primary answers
        (each shard's own health is :meth:`healthy_for` and ``details``)."""
        return self._cluster_listener.hears_its_nodes() and self._commands_ok and self.refused is None

    async def _ask(self) -> Refusal | None:
        """Ask the seed nodes: one that answers without cluster mode is refused (redis-py's
        client would fail at every topology read). Raises when no seed answers."""
        link = self._cluster
        seeds = link.seeds
        found = await asyncio.gather(*(link.identify(*seed) for seed in seeds), return_exceptions=True)
        for (host, port), answer in zip(seeds, found, strict=True):
            if isinstance(answer, Identity) and not answer.cluster:
                return is_no_cluster(self.url, host, port)
        if any(answer is None or isinstance(answer, Identity) for answer in found):
            return None  # (None: a seed that answered but would not say)
        raise next(answer for answer in found if isinstance(answer, BaseException))

    def _primary_ok(self, name: str) -> bool:
        """Answered the last heartbeat, and this node's connection to it (if any) works."""
        return self._primaries.get(name, True) and self._cluster_listener.reader_ok(name) is not False

    def _shard_ok(self, key: str) -> bool:
        try:
            node = self._cluster.cluster.get_node_from_key(key)
        except (RedisError, RedisClusterException, OSError, IndexError):
            return False
        # (the listener's connection too: a primary killed is noticed there at once, by the
        # heartbeat only at its next round, and a message meanwhile was applied unrecorded)
        return node is not None and self._primary_ok(node.name)

    def healthy_for(self, sid: str) -> bool:
        """Whether the primary holding ``sid``'s record answered the last heartbeat."""
        return self.healthy and self._shard_ok(self._link.k("a", sid))

    def record_server(self, sid: str) -> str | None:
        """The primary holding ``sid``'s record (``host:port``), named when it is down;
        None while the topology does not say."""
        try:
            node = self._cluster.cluster.get_node_from_key(self._link.k("a", sid))
        except (RedisError, OSError, IndexError):
            return None
        return None if node is None else str(node.name)

    async def _ping(self, node: ClusterNode) -> bool:
        """Whether primary ``node`` takes commands: it answers and says the cluster is ok
        (one that restarted, or cannot reach most primaries, answers ``PING`` but refuses
        every command with ``CLUSTERDOWN``)."""
        try:
            info = await self._cluster.cluster.execute_command("CLUSTER INFO", target_nodes=node)
        except Exception as exc:
            self.last_error = f"{node.name}: {heartbeat_error(exc, node.name)}"
            return False
        state = info.get("cluster_state") if isinstance(info, dict) else None
        if state != "ok":
            self.last_error = f"{node.name}: cluster_state is {state}: it refuses commands (CLUSTERDOWN)"
            return False
        return True

    async def _heartbeat_forever(self) -> None:
        """Ping every primary; a silent one makes the topology be read again (a replica
        may have taken over)."""
        link = self._cluster
        while True:
            try:
                if not self._asked:  # (seeds that do not answer leave the topology to tell)
                    with contextlib.suppress(RedisError, OSError):
                        await self._check()
                if self.refused is None:
                    await link.read_topology(again=False)
                    primaries = link.cluster.get_primaries()
                    answers = await asyncio.gather(*(self._ping(node) for node in primaries))
                    self._primaries = {node.name: ok for node, ok in zip(primaries, answers, strict=True)}
                    self._commands_ok = any(answers)
                    if all(answers) and self._cluster_listener.ok:
                        self.last_error = None  # (a shard's failure told while the node was up: over)
                    if self._commands_ok:
                        await self._routing.keep_trace(asyncio.get_running_loop().time())
                    if not all(answers):
                        with contextlib.suppress(RedisError, OSError):
                            await link.read_topology(again=True)
            except Exception as exc:
                self.last_error = heartbeat_error(exc, "the cluster")
                self._commands_ok = False
            if not self._commands_ok:
                self._asked = False
                self._routing.retrace()
            self._health()
            await asyncio.sleep(HEARTBEAT_EVERY if self._commands_ok else RECHECK_EVERY)

    def details(self) -> dict[str, Any]:
        listener = self._cluster_listener
        return {
            "engine": "redis-cluster",
            "healthy": self.healthy,
            "reconnects": self.reconnects,
            "error": self.last_error,
            "shards_healthy": sum(self._primary_ok(name) for name in self._primaries),
            "shards": [
                {"shard": name, "healthy": self._primary_ok(name), "listening": listener.reader_ok(name)}
                for name in sorted(self._primaries)
            ],
        }
