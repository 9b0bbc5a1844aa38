"""Keys and clients of the Redis Cluster engine.

Every key of one channel (position, history, presence) and its pub/sub channel carry the
same hash tag, the channel name in braces, so a publication's script touches one slot and
publishes there with ``SPUBLISH`` (sharded pub/sub: only that shard carries it). A name
that has braces, starts with ``#`` or is empty is tagged by a digest instead:
``{prefix}:{kind}:{#<16 hex>}<name>``. Commands go through redis-py's
:class:`~redis.asyncio.cluster.RedisCluster`, which follows slots, redirections and failovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from typing import Any, Final, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis._parsers.commands import AsyncCommandsParser
from redis.asyncio.cluster import ClusterNode, NodesManager, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.cluster import PRIMARY
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    MaxConnectionsError,
    RedisClusterException,
    RedisClusterUnreachableError,
    RedisError,
    SlotNotCoveredError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import ConfigurationError
from ..redis.identity import Identity, identify
from ..redis.link import RedisLink
from ..urls import check_query, shown

__all__ = ["SPREAD_TRIES", "ClusterLink", "seeds"]

SPREAD_TRIES: Final = 256
"""Keys tried per node to find one on every primary (enough for dozens of primaries)."""


def seeds(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """``redis+cluster://[user:password@]h1:p1,h2:p2`` -> seed nodes and connection options."""
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    found: list[tuple[str, int]] = []
    for host in hosts.split(","):
        name, _, port = host.strip().rpartition(":")
        if not name or not port.isdigit():
            raise ConfigurationError(
                "engine",
                f"{shown(url)!r}: {host!r} is not host:port",
                'name seed nodes as host:port: "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"',
            )
        found.append((name, int(port)))
    options: dict[str, Any] = {}
    if auth:
        user, _, password = auth.partition(":")
        options.update(username=user or None, password=password or None)
    if parts.scheme.startswith("rediss"):
        options["ssl"] = True
    if parts.path.strip("/") not in ("", "0"):
        raise ConfigurationError(
            "engine",
            f"{shown(url)!r} names database {parts.path.strip('/')}",
            "a cluster has only database 0: drop it",
        )
    check_query(url)  # (none: a cluster's URL takes no options)
    return found, options


def tag(name: str) -> str:
    """The hash tag (with braces) that keeps ``name``'s keys in one slot."""
    if not name or "{" in name or "}" in name or name.startswith("#"):
        return "{#" + hashlib.blake2b(name.encode(), digest_size=8).hexdigest() + "}" + name
    return "{" + name + "}"


def untag(rest: str) -> str:
    """The name inside a :func:`tag`."""
    end = rest.index("}")
    inner = rest[1:end]
    return rest[end + 1 :] if inner.startswith("#") else inner


class _Checked:
    """A cluster connection checked before each command, as the single-Redis engine's pool
    checks one before handing it out: one its server closed (a restarted primary,
    ``CLIENT KILL``, an idle ``timeout``), or with an answer left unread, is opened again
    first. redis-py's cluster pools hand out idle connections unchecked, so the first
    command on each fails after a restart, and a publication, never repeated, is refused.
    (Not while connecting: the handshake sends commands before reading their answers.)"""

    _opening = False

    async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        self._opening = True
        try:
            await super().connect_check_health(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._opening = False

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        connection = cast(Connection, self)
        if connection.is_connected and not self._opening:
            try:
                stale = await connection.can_read()
            except (RedisConnectionError, OSError):  # closed by the server
                stale = True
            if stale:
                await connection.disconnect()
        await super().send_packed_command(command, check_health)  # type: ignore[misc]


class _CheckedConnection(_Checked, Connection):
    pass


class _CheckedSSLConnection(_Checked, SSLConnection):
    pass


class _AnyNodeCommands(AsyncCommandsParser):
    """The command table (``COMMAND``), read from the node redis-py asks (the first primary)
    or, while that one does not answer, from any other: redis-py asks only the first, so a
    client started while that primary was down never started, whichever nodes were up.
    The node that answered serves the commands that name no key."""

    def __init__(self, nodes: NodesManager) -> None:
        super().__init__()
        self._nodes = nodes

    async def initialize(self, node: ClusterNode | None = None) -> None:
        first = node or self._nodes.default_node
        # (primaries first: one that answers becomes the default node)
        others = sorted(self._nodes.nodes_cache.values(), key=lambda n: n.server_type != PRIMARY)
        error: BaseException | None = None
        for candidate in [first, *(n for n in others if n is not first)]:
            if candidate is None:
                continue
            try:
                await super().initialize(candidate)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                error = error or exc
                continue
            if candidate is not first and candidate.server_type == PRIMARY:
                self._nodes.default_node = candidate
            return
        raise error or RedisConnectionError("no cluster node known to ask")


class _GatedCluster(RedisCluster):
    """A cluster client whose commands wait (up to ``pool_timeout``) for one of
    ``max_connections`` slots, as the single-Redis engine's blocking pool does: redis-py's
    async cluster client refuses a command at once when a node's pool is full, so a burst
    (every client resubscribing after a restart) would be refused instead of queued."""

    def __init__(self, *args: Any, gate: int, wait: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (the nodes found later are made with these options; the seeds were made already)
        checked = _CheckedSSLConnection if kwargs.get("ssl") else _CheckedConnection
        self.connection_kwargs["connection_class"] = checked
        for node in self.nodes_manager.startup_nodes.values():
            node.connection_class = checked
        self.commands_parser = _AnyNodeCommands(self.nodes_manager)
        self._gate = asyncio.Semaphore(gate)
        self._wait = wait

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        """Read the topology if needed. No node answering (or none in cluster mode) is a
        ``ConnectionError``, as an unreachable Redis is to the single-Redis engine: redis-py
        raises its own ``RedisClusterException``, which no caller expects from a command."""
        try:
            return await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            raise RedisConnectionError(str(exc)) from exc

    async def script_load(self, script: Any) -> Any:
        """Load a script on every primary that answers (redis-py loads it on all of them
        or fails: while one shard was down, no script could run on the others). A primary
        that did not get it loads it when a script finds it missing there."""
        await self.initialize()
        primaries = self.get_primaries()
        answers = await asyncio.gather(
            *(self.execute_command("SCRIPT LOAD", script, target_nodes=node) for node in primaries),
            return_exceptions=True,
        )
        for answer in answers:
            if not isinstance(answer, BaseException):
                return answer
        raise next(answer for answer in answers if isinstance(answer, BaseException))

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(self._wait):
                await self._gate.acquire()
        except TimeoutError:
            raise MaxConnectionsError(f"no free connection in {self._wait:g} s") from None
        try:
            return await super().execute_command(*args, **kwargs)
        except (RedisClusterUnreachableError, SlotNotCoveredError) as exc:  # an outage, not a bug
            raise RedisConnectionError(str(exc)) from exc
        finally:
            self._gate.release()


class ClusterLink(RedisLink):
    """:class:`~ladder.engine.redis.link.RedisLink` over a Redis Cluster."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.seeds, self.auth = seeds(url)
        self._cluster: RedisCluster | None = None
        self.primary_ok: Callable[[str], bool] = lambda name: True
        """Whether primary ``name`` is up (set by the engine from its heartbeat and listener)."""
        self._cluster_writer: RedisCluster | None = None

    pipelined_scripts = False

    def k(self, kind: str, name: str) -> str:
        return f"{self.prefix}:{kind}:{tag(name)}"

    def channel_of(self, key: bytes) -> str:
        return untag(key.decode()[len(self.prefix) + 3 :])

    # Messages between nodes: a node listens on one key per primary (``{p}:n:{<node>/<i>}``,
    # the first ``i`` whose slot that primary serves), so a message to it can travel through
    # any primary that is up, not only the one a single key would hash to.

    def _spread(self, base: str) -> list[tuple[str, str]]:
        """(primary, key) for each primary: the first ``base/<i>`` key it serves, by ``i``."""
        cluster = self._cluster
        if cluster is None or not cluster.nodes_manager.slots_cache:
            return [("", self.k("n", f"{base}/0"))]
        primaries = len(cluster.get_primaries())
        found: dict[str, str] = {}
        for i in range(SPREAD_TRIES):
            key = self.k("n", f"{base}/{i}")
            node = cluster.get_node_from_key(key)
            if node is not None and node.name not in found:
                found[node.name] = key
                if len(found) == primaries:
                    break
        return list(found.items())

    def node_keys(self) -> list[str]:
        bases = (self.node_id, "*") if self.hears_all else (self.node_id,)
        return [key for base in bases for _, key in self._spread(base)]

    def node_key(self, node: str) -> str:
        """The key of the first primary (by ``i``) that is up, as far as this node knows."""
        return self.node_keys_of(node)[0]

    def node_keys_of(self, node: str) -> list[str]:
        """The keys of every primary that is up, in ``i`` order (the first is
        :meth:`node_key`): a primary that took over another's slots after a failover may
        not carry ``node``'s subscription yet, and a message tries the next key then."""
        spread = self._spread(node)
        return [key for name, key in spread if self.primary_ok(name)] or [spread[0][1]]

    def for_nodes(self, key: bytes) -> bool:
        text = key.decode()
        return text.startswith((f"{self.prefix}:n:{{{self.node_id}/", f"{self.prefix}:n:{{*/"))

    def script(self, text: str) -> str:
        return text.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")

    @property
    def cluster(self) -> RedisCluster:
        if self._cluster is None:
            return cast(RedisCluster, self.redis)  # raises engine_unavailable: not started
        return self._cluster

    def _make(self, *, retries: int) -> RedisCluster:
        return _GatedCluster(
            gate=self.max_connections,
            wait=self.pool_timeout,
            startup_nodes=[ClusterNode(host, port) for host, port in self.seeds],
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.command_timeout,
            max_connections=self.max_connections,
            retry=Retry(NoBackoff(), retries, supported_errors=(RedisConnectionError, RedisTimeoutError)),
            health_check_interval=0,
            **self.auth,
        )

    def open(self) -> None:
        """The command clients: reads may be repeated once (on another node after a
        failover); publications never (see :meth:`RedisLink.open`)."""
        self._cluster = self._make(retries=1)
        self._cluster_writer = self._make(retries=0)
        # The parts use the command methods RedisCluster shares with Redis.
        self._redis = cast(aioredis.Redis, self._cluster)
        self._writer = cast(aioredis.Redis, self._cluster_writer)

    async def read_topology(self, *, again: bool) -> None:
        """Read the cluster's topology if it is not known yet (``again``: even if it is).
        Fails with a ``ConnectionError`` while no node answers."""
        cluster = self.cluster
        try:
            if again:
                await cluster.nodes_manager.initialize()
            elif not cluster.nodes_manager.slots_cache:
                await cluster.initialize()
        except RedisClusterException as exc:
            raise RedisConnectionError(str(exc)) from exc

    async def identify(self, host: str, port: int) -> Identity | None:
        """Ask one node what it is, on a connection of its own (see :mod:`..redis.identity`)."""
        client = aioredis.Redis(
            host=host,
            port=port,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.command_timeout,
            retry=Retry(NoBackoff(), 0),
            **self.auth,
        )
        try:
            said = await identify(client)
            return said if isinstance(said, Identity) else None  # (a cluster has database 0 only)
        finally:
            await client.aclose()

    async def ready(self) -> None:
        """Read the topology once, before the first commands: redis-py's clients read it on
        first use, and commands racing that first read can have their connections closed
        under them. If no seed answers, the first commands read it instead."""
        for client in (self._cluster, self._cluster_writer):
            if client is not None:
                with contextlib.suppress(RedisError, OSError):
                    await client.initialize()

    def node_client(self, host: str, port: int) -> aioredis.Redis:
        """A pub/sub connection to one cluster node; it never reconnects by itself (the
        listener resubscribes and catches up instead)."""
        return aioredis.Redis(
            host=host,
            port=port,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=None,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            **self.auth,
        )

    async def publish(self, key: str, data: bytes) -> int:
        return int(await self.cluster.spublish(key, data))

    async def subscribers(self, key: str) -> int:
        node = self.cluster.get_node_from_key(key)
        answer = await self.cluster.execute_command("PUBSUB SHARDNUMSUB", key, target_nodes=node)
        return int(dict(answer).get(key.encode(), 0)) if isinstance(answer, list) else 0

    async def uptime(self, key: str) -> int:
        node = self.cluster.get_node_from_key(key)
        info = await self.cluster.info("server", target_nodes=node)
        return int(info.get("uptime_in_seconds", 0))

    async def close(self) -> None:
        for client in (self._cluster, self._cluster_writer):
            if client is not None:
                await client.aclose()
        self._cluster = self._cluster_writer = self._redis = self._writer = None
