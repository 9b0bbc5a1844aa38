"""Several independent Redis servers as one engine: ``redis://h1:6379,h2:6380,h3:6381/0``.

Each server is a shard and a complete single-Redis engine (:class:`~ladder.engine.redis.
RedisEngine`) for what it holds; rendezvous hashing (:mod:`.placement`) places each channel
(with its history and presence) and each session's records on one shard. A shard down costs
only its share: its channels' publishes are refused with ``engine_unavailable``, their
subscribers catch up or resync when it is back (as with one Redis), and its sessions'
messages wait for it (on a WebSocket, for a while) or are refused until then; channels and
sessions on the other shards keep flowing. Every shard reconnects on its own.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ...checks import check_node_id, check_prefix
from ...errors import ConfigurationError
from ..base import EngineSink
from ..composed import ComposedEngine
from ..redis import RedisEngine
from ..redis.identity import Refusal
from ..urls import check_redis_url, check_scheme, hosts_of, shown
from .parts import ShardedApplied, ShardedChannels, ShardedPresence
from .placement import Placement
from .routing import ShardedRouting

__all__ = ["ShardedEngine", "split_url"]


def split_url(url: str) -> list[tuple[str, str]]:
    """``redis://[auth@]h1:p1,h2:p2/db?query`` -> ``[(name, single-server URL), ...]``, where
    ``name`` (``h1:p1``) is what placement hashes: renaming a server moves its keys,
    reordering the list does not."""
    check_redis_url(url)  # (one server listed twice, with or without its default port: refused)
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    names = hosts_of(url)
    if len(names) < 2:
        raise ConfigurationError(
            "engine",
            f"{shown(url)!r} does not list several servers",
            'list them separated by commas: "redis://10.0.0.1:6379,10.0.0.2:6379/0"',
        )
    prefix = f"{auth}@" if auth else ""
    return [(name, urlunsplit((parts.scheme, prefix + name, parts.path, parts.query, ""))) for name in names]


class ShardedEngine(ComposedEngine):
    """Channels, history, presence and sessions spread over several Redis servers.

    Args:
        url: ``redis://h1:6379,h2:6380/0`` (``rediss://`` for TLS); credentials, database
            and query apply to every server.
        **options: As for :class:`~ladder.engine.redis.RedisEngine` (``prefix``,
            ``command_timeout``, ``max_connections`` per server, ...), for every shard.
    """

    def __init__(self, url: str, *, node_id: str | None = None, **options: Any) -> None:
        check_scheme("engine", url, ("redis", "rediss"))
        check_node_id("ShardedEngine(node_id=...)", node_id)
        if "prefix" in options:
            check_prefix("ShardedEngine(prefix=...)", options["prefix"])
        self.url = url
        self.made_with: tuple[str, dict[str, Any]] = (url, {"node_id": node_id, **options})
        """What it was made with (``ladder.engine.remade`` makes another alike, for a forked child)."""
        node = node_id or secrets.token_hex(4)
        self.shards = [
            (name, RedisEngine(single, node_id=node, **options)) for name, single in split_url(url)
        ]
        # Each node's trace names the servers it lists (not their order, which places nothing):
        # a node sharing a server with another that lists others is told of (server/foreign.py).
        trace = ("servers " + ",".join(sorted(name for name, _ in self.shards))).encode()
        for _, shard in self.shards:
            shard.routing_part.trace = trace
            shard.peers = self._twin
            shard.serving = "its channels and sessions are served"
            shard.refusing = (
                "publishes to its channels are refused with engine_unavailable, and messages "
                "of its sessions wait for it (WebSocket, up to Limits.shard_hold) or are refused "
                "(the node stays healthy while another shard answers)"
            )
        self._twins: dict[RedisEngine, tuple[RedisEngine, Refusal]] = {}
        """Each entry refused as another's server -> the entry that takes the node's
        messages there, and the refusal (see :meth:`_twin`)."""
        placement = self.placement = Placement(self.shards)
        super().__init__(
            ShardedChannels(placement),
            ShardedPresence(placement),
            ShardedRouting(placement, node, trace),
            ShardedApplied(placement),
        )

    @property
    def healthy(self) -> bool:
        """True while at least one shard answers: this node still serves the channels and
        sessions held there (``/health`` lists each shard). False while any shard is
        refused (one server listed under two names, or the wrong kind of Redis)."""
        shards = [shard for _, shard in self.shards]
        return any(shard.healthy for shard in shards) and not any(shard.refused for shard in shards)

    @healthy.setter
    def healthy(self, value: bool) -> None:
        raise AttributeError("a sharded engine's health follows its shards'")

    @property
    def trace_ttl(self) -> float:
        """Seconds this node's trace is kept after it stopped (on every shard)."""
        return max(shard.trace_ttl for _, shard in self.shards)

    @trace_ttl.setter
    def trace_ttl(self, seconds: float) -> None:
        for _, shard in self.shards:
            shard.trace_ttl = seconds

    def healthy_for(self, sid: str) -> bool:
        return self.placement.of(sid).healthy and not any(shard.refused for _, shard in self.shards)

    def refusal(self) -> str | None:
        """Why a server of the list cannot be used (the first refused), or None."""
        return next((said for _, shard in self.shards if (said := shard.refusal()) is not None), None)

    def record_server(self, sid: str) -> str:
        """The server holding ``sid``'s records (``host:port``), named when it is down."""
        return self.placement.name_of(sid)

    async def start(self, sink: EngineSink) -> None:
        """Start every shard; refuse (``ConfigurationError``) a list in which two entries
        reached one server: every message to a node would come to it twice, once through
        each. Entries that do not answer yet are compared when they do."""
        shards = [shard for _, shard in self.shards]
        self._twins.clear()
        started = await asyncio.gather(*(shard.start(sink) for shard in shards), return_exceptions=True)
        failed = [outcome for outcome in started if isinstance(outcome, BaseException)]
        if not failed:
            failed = [refusal.error(self.url) for shard in shards if (refusal := self._twin(shard))]
        if failed:  # (a shard that started is not left running)
            await self.stop()
            raise failed[0]

    def _twin(self, shard: RedisEngine) -> Refusal | None:
        """Why ``shard`` is refused when another entry of the list reached the server it
        reached (the same ``run_id``), or None. Of the entries that reach one server, the
        first to say so keeps taking the node's messages there and the others are refused
        (each leaves them to it, see :attr:`RedisEngine.deferring`). A refused entry stays so
        until the one it deferred to answers again, and then only if that one is still the
        same server: after a restart of that server, the first entry to answer must not
        take the messages while the other still does."""
        deferred = self._twins.pop(shard, None)
        if deferred is not None and not deferred[0].answered:
            self._twins[shard] = deferred
            return deferred[1]
        mine = shard.identity
        if mine is None or not mine.run_id:
            return None
        for _, other in self.shards:
            if other is not shard and other.identity == mine and other not in self._twins:
                pair = [n for n, entry in self.shards if entry in (shard, other)]  # (in list order)
                refusal = Refusal(
                    f"{pair[0]!r} and {pair[1]!r} are one Redis server (run_id {mine.run_id})",
                    "list each server once: every message between nodes would arrive twice",
                )
                self._twins[shard] = (other, refusal)
                return refusal
        return None

    async def stop(self) -> None:
        await asyncio.gather(*(shard.stop() for _, shard in self.shards))

    def details(self) -> dict[str, Any]:
        shards = [{"shard": name, **shard.details()} for name, shard in self.shards]
        for entry in shards:
            entry.pop("engine", None)
        return {
            "engine": "redis-shards",
            "healthy": self.healthy,
            "shards_healthy": sum(1 for _, shard in self.shards if shard.healthy),
            "shards": shards,
        }
