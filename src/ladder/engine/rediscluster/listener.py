"""The cluster engine's pub/sub reader: one connection per primary, each failing alone.

A key is subscribed (``SSUBSCRIBE``) on the primary that serves its slot. When one primary's
connection fails (the node died, a failover demoted it, a slot moved away), only the keys it
carried are moved: the topology is read again, they are subscribed on the slots' primaries
now, and their channels catch up from history (or report a reset) before they flow again.
Keys on the other primaries keep flowing meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from ..redis.listener import LISTENER_PONG_WAIT
from .link import ClusterLink

log = logging.getLogger("ladder.redis")


class _Reader:
    """One primary's pub/sub connection and the keys subscribed on it."""

    def __init__(self, owner: ClusterListener, node: ClusterNode) -> None:
        self.name = node.name
        self.keys: set[str] = set()
        self.ok = True
        self._owner = owner
        self._client: aioredis.Redis = owner.link.node_client(node.host, int(node.port))
        self._pubsub: PubSub = self._client.pubsub()
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, keys: list[str]) -> None:
        """Subscribe ``keys`` (one ``SSUBSCRIBE`` per slot: it takes one slot at a time)."""
        by_slot: dict[int, list[str]] = defaultdict(list)
        for key in keys:
            by_slot[self._owner.link.cluster.keyslot(key)].append(key)
        for group in by_slot.values():
            await self._pubsub.ssubscribe(*group)
            self.keys.update(group)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._read(), name=f"ladder-redis-{self.name}"
            )

    async def unsubscribe(self, key: str) -> None:
        self.keys.discard(key)
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.sunsubscribe(key)

    async def _read(self) -> None:
        idle = 0.0
        pinged: float | None = None
        try:
            while True:
                message = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
                if message is None:
                    idle += 1.0
                    if pinged is not None and time.monotonic() - pinged > LISTENER_PONG_WAIT:
                        raise RedisConnectionError(f"no answer to a ping in {LISTENER_PONG_WAIT:g} s")
                    if idle >= 3.0 and pinged is None:
                        await self._pubsub.ping()
                        pinged, idle = time.monotonic(), 0.0
                    continue
                idle = 0.0
                kind = message["type"]
                if kind == "smessage":
                    await self._owner.dispatch(message["channel"], message["data"])
                elif kind == "pong":
                    pinged = None
                elif kind == "sunsubscribe":
                    key = message["channel"].decode()
                    if key in self.keys:  # not ours: the slot moved away from this node
                        self.keys.discard(key)
                        self._owner.wake()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # RedisError, OSError, or a bug: this primary's keys move
            self.ok = False
            self._owner.lost(self, exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis-py 8
        with contextlib.suppress(Exception):
            await self._client.aclose()


class ClusterListener:
    """A :class:`~ladder.engine.redis.listener.PubSubListener` over every primary.

    Args:
        link: The engine's keys and cluster client.
        channels: The channels listened to now.
        caught_up: Deliver what was missed in some channels while they were not subscribed.
        dispatch: Handle one message (pub/sub key, data).
        health: Called when every key is subscribed (None) or a primary's connection failed.
        moving: Called with channels just before they are subscribed on another
            connection (whose first messages may arrive before ``caught_up`` runs).
    """

    def __init__(
        self,
        link: ClusterLink,
        channels: Callable[[], Iterable[str]],
        caught_up: Callable[[Iterable[str]], Awaitable[None]],
        dispatch: Callable[[bytes, bytes], Awaitable[None]],
        health: Callable[[str | None], None],
        *,
        moving: Callable[[Iterable[str]], None],
    ) -> None:
        self.link = link
        self.primary_lost: Callable[[str], None] = lambda name: None
        """Told at once when a primary's connection fails (the heartbeat would tell later)."""
        self._channels = channels
        self._caught_up = caught_up
        self._moving = moving
        self.dispatch = dispatch
        self._health = health
        self._readers: dict[str, _Reader] = {}
        self._down: set[str] = set()
        """Primaries whose connection failed and has not subscribed again since."""
        self._wake = asyncio.Event()
        self._refresh = False
        self.ok = False
        """Every wanted key is subscribed."""
        self.subscribed = asyncio.Event()
        """Set while this node's own keys are subscribed (it hears messages to it)."""
        self.reconnects = 0

    def reader_ok(self, name: str) -> bool | None:
        """Whether the connection to primary ``name`` works: False from a failure until a
        new connection subscribed there, None if this node never needed one."""
        if name in self._down:
            return False
        reader = self._readers.get(name)
        return None if reader is None else reader.ok

    def hears(self, key: str) -> bool:
        """Whether ``key`` is subscribed on a live connection now."""
        return any(reader.ok and key in reader.keys for reader in self._readers.values())

    def hears_node(self, node: str) -> bool:
        """Whether messages to ``node`` (this one, or ``"*"``) reach it now: its key on the
        first primary up for ``"*"`` (where broadcasts go), any of its keys for itself
        (a sender tries them in turn, see :meth:`ClusterLink.node_keys_of`)."""
        link = self.link
        if node == "*":
            return self.hears(link.node_key(node))
        return any(self.hears(key) for key in link.node_keys_of(node))

    def hears_its_nodes(self) -> bool:
        """Whether messages to this node reach it now, and those to every node unless it
        answers none (a :class:`~ladder.Publisher` does not listen for them)."""
        link = self.link
        return self.hears_node(link.node_id) and (not link.hears_all or self.hears_node("*"))

    def wake(self) -> None:
        self._wake.set()

    async def hear_nodes(self) -> None:
        """Always heard: a cluster is one entry, never one of a list."""

    def lost(self, reader: _Reader, exc: BaseException) -> None:
        """A primary's connection failed: its keys move on the next round."""
        self.reconnects += 1
        self._refresh = True
        again = reader.name in self._down  # (said once per outage; the attempts at DEBUG)
        self._down.add(reader.name)
        self.primary_lost(reader.name)
        self._set_ok(False, f"{reader.name}: {exc or type(exc).__name__}")
        if isinstance(exc, RedisError | OSError):
            (log.debug if again else log.warning)(
                "redis cluster listener lost %s (%s); moving its keys", reader.name, exc
            )
        else:
            log.error("redis cluster listener on %s failed", reader.name, exc_info=exc)
        self._wake.set()

    def _wanted(self) -> set[str]:
        link = self.link
        return {*link.node_keys(), *(link.k("c", ch) for ch in self._channels())}

    async def subscribe(self, key: str) -> None:
        """Subscribe now on the key's primary (connecting to it if this node had no key
        there yet); if that fails, the next round does it (and catches up)."""
        try:
            node = self.link.cluster.get_node_from_key(key)
        except (RedisError, RedisClusterException, OSError):  # topology unknown yet
            node = None
        if node is None or not self.link.cluster.nodes_manager.slots_cache:
            self._wake.set()
            return
        reader = self._readers.get(node.name) or self._readers.setdefault(node.name, _Reader(self, node))
        if not reader.ok:
            self._wake.set()
            return
        try:
            await reader.subscribe([key])
        except (RedisError, OSError) as exc:
            reader.ok = False
            self.lost(reader, exc)

    async def unsubscribe(self, key: str) -> None:
        for reader in list(self._readers.values()):
            if key in reader.keys:
                await reader.unsubscribe(key)

    def _hearing(self) -> bool:
        """Set :attr:`subscribed` while this node hears messages to it, also while some
        primary is down (every round then is incomplete); whether it just began to."""
        was = self.subscribed.is_set()
        if self.hears_its_nodes():
            self.subscribed.set()
        else:
            self.subscribed.clear()
        return self.subscribed.is_set() and not was

    def _set_ok(self, ok: bool, error: str | None = None) -> None:
        was = self.ok
        self.ok = ok
        self._hearing()
        if ok != was or error is not None:
            self._health(None if ok else error or "not every key is subscribed")

    async def run_forever(self) -> None:
        """Rounds: move the keys of failed primaries, subscribe what is missing; then wait
        for a failure or a new key (or a second). Backs off while rounds fail."""
        delay = 0.1
        while True:
            try:
                complete = await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a round that could not finish: try again
                complete = False
                if not isinstance(exc, RedisError | OSError):
                    log.exception("redis cluster listener round failed")
                self._set_ok(False, str(exc) or type(exc).__name__)
            if complete:
                self._set_ok(True)
                delay, wait = 0.1, 1.0
            else:
                if self._hearing():  # (through the primaries that are up: the node is usable)
                    self._health(None)
                wait, delay = delay * random.uniform(0.5, 1.0), min(delay * 2, 1.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()

    async def _round(self) -> bool:
        cluster = self.link.cluster
        for name, reader in list(self._readers.items()):
            if not reader.ok:
                del self._readers[name]
                await reader.close()
        again, self._refresh = self._refresh, False
        await self.link.read_topology(again=again)
        wanted = self._wanted()
        owners: dict[str, ClusterNode] = {}
        by_owner: dict[str, list[str]] = defaultdict(list)
        for key in wanted:
            node = cluster.get_node_from_key(key)
            if node is None:
                raise RedisConnectionError(f"no primary serves the slot of {key}")
            owners[node.name] = node
            by_owner[node.name].append(key)
        for name, reader in self._readers.items():  # keys whose slot moved to another primary
            for key in [key for key in reader.keys if key in wanted and key not in by_owner.get(name, ())]:
                await reader.unsubscribe(key)
        complete = True
        for name, keys in by_owner.items():
            held = self._readers.get(name)
            missing = [key for key in keys if held is None or key not in held.keys]
            if not missing:
                continue
            reader = held or self._readers.setdefault(name, _Reader(self, owners[name]))
            channel_keys = [key for key in missing if key.startswith(f"{self.link.prefix}:c:")]
            channels = [self.link.channel_of(key.encode()) for key in channel_keys]
            self._moving(channels)
            try:
                await reader.subscribe(missing)
                await self._caught_up(channels)
            except (RedisError, OSError) as exc:
                complete = False
                self._refresh = True
                reader.ok = False
                (log.debug if name in self._down else log.warning)(
                    "redis cluster listener: %s not subscribed yet (%s)", name, exc
                )
                self._down.add(name)
                self.primary_lost(name)
            else:
                if name in self._down:
                    log.info("redis cluster listener: %s subscribed again", name)
                self._down.discard(name)
        return complete

    async def stop(self) -> None:
        for reader in list(self._readers.values()):
            await reader.close()
        self._readers.clear()
        self.ok = False
        self.subscribed.clear()
