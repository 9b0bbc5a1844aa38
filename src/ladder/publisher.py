"""Publishing from a process that runs no hub: a background worker, a task queue, a cron job.

Such a process shares the hub's engine: its publications land in the same channels, with the
same offsets and history, and reach every subscriber of every hub on that engine. That only
works with an engine several processes share (Redis): the memory engine lives inside one
process, so a publisher in another process would reach nobody, and :class:`Publisher`
refuses ``memory://`` at once rather than publish into the void.

* :class:`Publisher` is for asyncio code (``async with Publisher(url) as p``).
* :class:`BlockingPublisher` is for synchronous code (Flask or Django views, Celery or RQ
  tasks): it runs the same publisher on an event loop in a background thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import threading
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .engine import create_engine, remade
from .engine.base import ChannelOptions, Engine, Member, Position, Publication
from .engine.memory import MemoryEngine
from .engine.urls import shown
from .errors import ConfigurationError
from .protocol.codec import Payload
from .protocol.frames import check_channel, check_event, check_user
from .server.cluster import Cluster, user_end, user_push
from .server.config import ChannelRules
from .server.tasks import Tasks

log = logging.getLogger("ladder")

IN_A_LOOP = (
    "a BlockingPublisher was called inside a running event loop, which it blocks until the "
    "engine answers (every other task of that loop waits): in async code use ladder.Publisher "
    "and await it, or the hub's own publish (logged once per publisher)"
)


def _in_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


__all__ = ["BlockingPublisher", "Publisher"]

_T = TypeVar("_T")


class _Answers:
    """The engine's callbacks, for a process that follows no channel and answers no node:
    only the hubs' answers to its own questions (``send_user``) are heard."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def on_publication(self, pub: Publication) -> None:
        pass

    def on_presence(self, channel: str, kind: str, member: Member) -> None:
        pass

    def on_reset(self, channel: str, position: Position) -> None:
        pass

    def on_node_message(self, message: bytes) -> None:
        self._cluster.on_node_message(message)

    def on_route_lost(self) -> None:
        self._cluster.on_route_lost()


def _publishing_only(engine: Engine) -> None:
    """A publisher has no sessions and no ``/health``: its engine's health lines say what it
    does, and it answers no node, so the hubs' broadcasts (``send_user``) do not wait for it."""
    for part in (engine, *(shard for _, shard in getattr(engine, "shards", ()))):
        if hasattr(part, "refusing"):
            part.serving = "publishing"
            part.answers_nodes = False
            part.refusing = "publish raises engine_unavailable"


def _refuse_memory(engine: str | Engine, name: str) -> None:
    """A publisher on ``memory://`` (or a ``MemoryEngine``) would publish into its own process
    only: refused at once."""
    if isinstance(engine, MemoryEngine) or (isinstance(engine, str) and urlsplit(engine).scheme == "memory"):
        raise ConfigurationError(
            "engine",
            f"a {name} on the memory engine reaches nobody: it lives inside one process, "
            "so hubs in other processes never see what is published here",
            'run the hubs and the publisher on one Redis (Ladder(engine="redis://host:6379/0") and '
            f'{name}("redis://host:6379/0")); in the hub\'s own process use hub.publish()',
        )


class Publisher:
    """Publish to channels without running a hub.

    ``engine`` is the URL the hubs use (``redis://host:6379/0``) or an engine object.
    ``channels`` and ``default_channel`` must be the hubs' own (they decide, for example, how
    much history a channel keeps: a publication trims it to the publisher's ``history_size``,
    and one made with other options than the channel's previous publication is logged at
    WARNING, once per channel). ``memory://`` raises
    :class:`~ladder.errors.ConfigurationError`: in another process it would reach nobody
    (in the hub's own process, call ``hub.publish`` instead).

    The engine connects on the first ``publish`` (or ``start``); ``stop`` (or leaving the
    ``async with`` block) disconnects it. Its connections belong to the event loop it
    started in: used in another one (a second ``asyncio.run()``) before ``stop``, it raises
    ``RuntimeError`` (a publication could be stored twice there); synchronous code takes a
    :class:`BlockingPublisher`.

    Args:
        engine: The hubs' engine URL (``redis://host:6379/0``) or an engine object.
        channels: The hubs' channel options by pattern.
        default_channel: The hubs' options for channels no pattern matches.
    """

    def __init__(
        self,
        engine: str | Engine,
        *,
        channels: Mapping[str, ChannelOptions] | None = None,
        default_channel: ChannelOptions | None = None,
    ) -> None:
        _refuse_memory(engine, "Publisher")
        self.engine = create_engine(engine)
        _publishing_only(self.engine)
        self.channel_rules = ChannelRules(channels, default_channel)
        self._tasks = Tasks()
        self._cluster = Cluster(self.engine, self._tasks)
        """Asks the hubs (every node) and gathers their answers, as a hub asks the others."""
        self._started = False
        self._opened = False
        """``engine.start`` was called: there is something to stop, even if it never ended."""
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The event loop the engine's connections belong to, while they are open."""

    async def start(self) -> None:
        """Connect the engine (done by the first ``publish`` if not before). Idempotent."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError(
                "this Publisher's connections belong to another event loop (each asyncio.run() "
                "makes one, and a publisher used in a second one could store a publication twice): "
                "make and stop it within one loop (async with Publisher(url) as publisher: inside "
                "the coroutine asyncio.run runs), or use BlockingPublisher from synchronous code "
                "(a Flask or Django view, a task queue: rather than async_to_sync)"
            )
        if self._started:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._started:
                if self._opened:  # a start cut short (a caller's timeout): its tasks end first
                    await self.engine.stop()
                self._opened = True
                self._loop = loop
                await self.engine.start(_Answers(self._cluster))
                self._started = True

    @property
    def engine_used(self) -> bool:
        """Whether the engine was started in this process (it then holds connections)."""
        return self._opened

    async def stop(self) -> None:
        """Disconnect the engine (also one whose start was cut short)."""
        await self._tasks.wait(0)
        if self._opened:
            self._started = self._opened = False
            await self.engine.stop()
        self._loop = self._lock = None  # (a later start may be in another loop)

    async def publish(self, channel: str, data: Any) -> Publication:
        """Publish ``data`` to ``channel``, as ``hub.publish`` does; returns the publication
        (its ``offset`` and ``epoch``). Raises ``LadderError("engine_unavailable")`` when the
        engine cannot be reached, or did not answer within its ``command_timeout`` once the
        publication was sent (it may have been stored then); data no encoding can carry raises
        ``TypeError``, a channel name no client can use ``ValueError``."""
        payload = Payload.checked(data)
        await self.start()
        return await self.engine.publish(channel, payload, self.channel_rules.options(check_channel(channel)))

    async def send_user(self, user: str, event: str, data: Any = None) -> int:
        """Push ``event`` to every session of ``user`` on every hub, as ``hub.send_user``
        does (a task that finished the user's export, say). Returns how many sessions it
        was queued for, as the hubs reported within 3 s. Raises
        ``LadderError("engine_unavailable")`` when the engine cannot be reached."""
        check_user(user)
        Payload.checked(data)
        check_event(event)
        return await self._ask_every_hub(user_push(user, event, data))

    async def disconnect_user(self, user: str, reason: str = "disconnected by the server") -> int:
        """End every session of ``user`` on every hub, as ``hub.disconnect_user`` does: from
        the WSGI view that signs the user out, or a task that revoked their access. Returns
        how many sessions were ended, as the hubs reported within 3 s."""
        check_user(user)
        return await self._ask_every_hub(user_end(user, str(reason)))

    async def _ask_every_hub(self, message: dict[str, Any]) -> int:
        await self.start()
        return await self._cluster.count_all(message)

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class BlockingPublisher:
    """A :class:`Publisher` for synchronous code: ``publish`` blocks until the engine stored it.

    It keeps one event loop in a daemon thread, so a WSGI worker or a task-queue worker
    connects once, not per call. Safe to share between threads, and across ``fork``: a
    process forked after it was created (gunicorn ``--preload``, Celery's prefork pool, RQ's
    work horses) gets a thread and connections of its own on its first ``publish`` (from
    an engine object the parent used, an engine of its own with the same settings). Use
    ``with BlockingPublisher(url) as p`` or call ``close``. Not for async code: called in a
    running event loop it blocks that loop until the engine answers (a WARNING says so
    once); await a :class:`Publisher` there.

    Args:
        engine: The hubs' engine URL (``redis://host:6379/0``) or an engine object.
        channels: The hubs' channel options by pattern.
        default_channel: The hubs' options for channels no pattern matches.
        timeout: Seconds ``publish`` waits for the engine before raising ``TimeoutError``.
    """

    def __init__(
        self,
        engine: str | Engine,
        *,
        channels: Mapping[str, ChannelOptions] | None = None,
        default_channel: ChannelOptions | None = None,
        timeout: float = 10.0,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
            raise ConfigurationError(
                "timeout", f"{timeout!r} is not a number of seconds above 0", "pass, e.g., timeout=10.0"
            )
        _refuse_memory(engine, "BlockingPublisher")
        self._engine = engine
        self._channels = channels
        self._default_channel = default_channel
        self.timeout = timeout
        """Seconds ``publish`` waits for the engine before raising ``TimeoutError``."""
        self._closed = False
        self._told = False
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        """A publisher, a loop and its thread for this process (again after a fork, with an
        engine of its own: an engine object the parent used holds the parent's connections)."""
        before: Publisher | None = getattr(self, "_publisher", None)  # (the parent's, after a fork)
        used = before is not None and before.engine_used
        engine = remade(self._engine) if used and not isinstance(self._engine, str) else self._engine
        self._publisher = Publisher(engine, channels=self._channels, default_channel=self._default_channel)
        self._pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ladder-publisher", daemon=True)
        self._thread.start()

    def publish(self, channel: str, data: Any) -> Publication:
        """Publish ``data`` to ``channel`` and wait for the publication."""
        return self._run(lambda p: p.publish(channel, data), f"publishing to {channel!r}", "stored")

    def send_user(self, user: str, event: str, data: Any = None) -> int:
        """:meth:`Publisher.send_user`, waiting for the hubs' count."""
        return self._run(lambda p: p.send_user(user, event, data), f"send_user({user!r})", "queued")

    def disconnect_user(self, user: str, reason: str = "disconnected by the server") -> int:
        """:meth:`Publisher.disconnect_user`, waiting for the hubs' count."""
        return self._run(lambda p: p.disconnect_user(user, reason), f"disconnect_user({user!r})", "done")

    def _run(self, call: Callable[[Publisher], Coroutine[Any, Any, _T]], what: str, done: str) -> _T:
        """Run ``call`` on this process's publisher, in its loop's thread, within ``timeout``."""
        if self._closed:
            raise RuntimeError("this BlockingPublisher was closed")
        if not self._told and _in_a_loop():
            self._told = True
            log.warning(IN_A_LOOP)
        if self._pid != os.getpid():  # forked: the parent's thread did not come along
            with self._lock:
                if self._pid != os.getpid():
                    self._start()
        future = asyncio.run_coroutine_threadsafe(call(self._publisher), self._loop)
        try:
            return future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()  # (not left running behind a caller that moved on)
            engine = shown(self._engine) if isinstance(self._engine, str) else type(self._engine).__name__
            raise TimeoutError(
                f"{what} got no answer from {engine} within {self.timeout:g} s "
                f"(BlockingPublisher(timeout=)); it may or may not have been {done}: retry it where a "
                "duplicate is harmless, as a task queue's retry does"
            ) from None

    def close(self) -> None:
        """Disconnect and end the background thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._pid != os.getpid():
            return  # the loop and its connections belong to the process that made them
        # (a stop past the timeout: its connections go with the loop below, the thread ends anyway)
        with contextlib.suppress(concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(self._publisher.stop(), self._loop).result(self.timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.timeout)
        self._loop.close()

    def __enter__(self) -> BlockingPublisher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
