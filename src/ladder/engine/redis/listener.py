"""The Redis engine's pub/sub reader: one connection, restarted whenever it fails."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .link import RedisLink

log = logging.getLogger("ladder.redis")

LISTENER_PONG_WAIT: Final = 5.0
"""Seconds the listener waits for the answer to its ping before it reconnects (a connection
that silently stopped carrying anything)."""


class PubSubListener(Protocol):
    """What the engine's parts need of a pub/sub reader (one connection to a Redis server,
    or one per cluster primary)."""

    ok: bool
    """Every wanted key is subscribed on a live connection."""
    subscribed: asyncio.Event
    """Set while ``ok``: this node hears its own messages."""
    reconnects: int

    def wake(self) -> None:
        """Redis answers commands again: stop waiting out a reconnect backoff."""

    async def hear_nodes(self) -> None:
        """Take messages to this node (and to every node), or leave them, as the engine
        says now (a shard of a list whose server another entry reaches leaves them)."""

    async def subscribe(self, key: str) -> None: ...

    async def unsubscribe(self, key: str) -> None: ...

    async def run_forever(self) -> None: ...

    async def stop(self) -> None: ...


class Listener:
    """Subscribes to this node's channel, the all-nodes channel and every listened channel;
    after each (re)connection, ``caught_up`` fills what was missed before messages flow.

    Args:
        link: The engine's shared keys and clients.
        channels: The channels listened to now (subscribed on every connection).
        caught_up: Deliver what was missed while not subscribed.
        dispatch: Handle one message (pub/sub key, data).
        health: Called when the listener connected (None) or lost its connection (the error).
        nodes: Whether to subscribe to the node's own keys now (see :meth:`hear_nodes`).
    """

    def __init__(
        self,
        link: RedisLink,
        channels: Callable[[], Iterable[str]],
        caught_up: Callable[[], Awaitable[None]],
        dispatch: Callable[[bytes, bytes], Awaitable[None]],
        health: Callable[[str | None], None],
        *,
        nodes: Callable[[], bool] = lambda: True,
    ) -> None:
        self._link = link
        self._channels = channels
        self._nodes = nodes
        self._hearing = False
        """The node's keys are subscribed on this connection."""
        self._caught_up = caught_up
        self._dispatch = dispatch
        self._health = health
        self.pubsub: PubSub | None = None
        self.ok = False
        """Connected and subscribed (commands on the other clients may still stall)."""
        self.subscribed = asyncio.Event()
        self.reconnects = 0
        self._client: aioredis.Redis | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Cut a reconnect backoff short (the heartbeat heard Redis answer again): the
        backoff is for a Redis that is down, and every second waited after it is back is a
        second of publications this node does not deliver (see docs/ops.md, "Persistence")."""
        if not self.ok:
            self._wake.set()

    async def hear_nodes(self) -> None:
        """Subscribe to the node's keys, or leave them, as ``nodes()`` says now (a connection
        being set up asks it itself). Left, they are not heard here at all, rather than
        heard and dropped: a sender's publish counts only the listeners that take it."""
        pubsub = self.pubsub
        wanted = self._nodes()
        if pubsub is None or not self.ok or wanted == self._hearing:
            return
        keys = self._link.node_keys()
        if wanted:
            await pubsub.subscribe(*keys)
        else:
            await pubsub.unsubscribe(*keys)
        self._hearing = wanted

    def _keys(self) -> list[str]:
        nodes = self._link.node_keys() if self._nodes() else []
        return [*nodes, *(self._link.k("c", ch) for ch in self._channels())]

    async def subscribe(self, key: str) -> None:
        """Subscribe now if connected; otherwise the next connection does."""
        if self.pubsub is not None and self.ok:
            await self.pubsub.subscribe(key)

    async def unsubscribe(self, key: str) -> None:
        if self.pubsub is not None and self.ok:
            with contextlib.suppress(RedisError, OSError):
                await self.pubsub.unsubscribe(key)

    async def run_forever(self) -> None:
        """Never left deaf: reconnect with backoff after any failure."""
        delay = 0.1
        while True:
            started = time.monotonic()
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # RedisError, OSError, or a bug: log, reconnect
                was_ok, self.ok = self.ok, False
                self.subscribed.clear()
                self._health(str(exc) or type(exc).__name__)
                self.reconnects += 1
                if isinstance(exc, RedisError | OSError):  # (once an outage, not every attempt)
                    (log.warning if was_ok else log.debug)(
                        "redis listener lost its connection (%s); reconnecting", exc
                    )
                else:
                    log.exception("redis listener failed; restarting it")
            await self.close()
            if time.monotonic() - started > 10.0:
                delay = 0.1  # it had been working: come back quickly
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay * random.uniform(0.5, 1.0)):
                    await self._wake.wait()
            delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        if self.pubsub is not None:
            with contextlib.suppress(Exception):
                await self.pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis-py 8
            self.pubsub = None

    async def _listen_once(self) -> None:
        link = self._link
        if self._client is None:
            self._client = link.listener_client()
        pubsub = self.pubsub = self._client.pubsub()
        # Connected before anything is subscribed: a shard that leaves the node's keys (see
        # hear_nodes) may have nothing to subscribe to, and is still read and pinged.
        await pubsub.connect()  # type: ignore[no-untyped-call]
        subscribed: set[str] = set()
        while True:
            # A channel listened (or left) while this connection was being set up (which can
            # take as long as a stall) is not (un)subscribed by ``subscribe`` (not ok yet):
            # here it is, and so are the node's keys, as ``hear_nodes`` would. No await
            # between the last check and ``ok = True``, so none slips through.
            keys = self._keys()
            missing = [key for key in keys if key not in subscribed]
            gone = subscribed.difference(keys)
            if not missing and not gone:
                break
            if gone:
                await pubsub.unsubscribe(*gone)
                subscribed -= gone
            if missing:
                await pubsub.subscribe(*missing)
                subscribed.update(missing)
                await self._caught_up()
        self._hearing = subscribed.issuperset(link.node_keys())
        self.ok = True
        self._health(None)
        self.subscribed.set()
        idle = 0.0
        pinged: float | None = None
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                idle += 1.0
                if pinged is not None and time.monotonic() - pinged > LISTENER_PONG_WAIT:
                    raise RedisConnectionError(f"no answer to a ping in {LISTENER_PONG_WAIT:g} s")
                if idle >= 3.0 and pinged is None:  # quiet for a while: prove the connection answers
                    await pubsub.ping()
                    pinged = time.monotonic()
                    idle = 0.0
                continue
            idle = 0.0
            if message.get("type") == "pong":
                pinged = None
                continue
            await self._dispatch(message["channel"], message["data"])

    async def stop(self) -> None:
        await self.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self.ok = False
