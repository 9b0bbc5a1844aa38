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
import math
import os
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from .engine import create_engine
from .engine.base import ChannelOptions, Engine, Member, Position, Publication
from .engine.urls import shown
from .errors import ConfigurationError
from .protocol.codec import Payload
from .protocol.frames import check_channel
from .server.config import ChannelRules

__all__ = ["BlockingPublisher", "Publisher"]


class _Deaf:
    """The engine's callbacks, for a process that follows no channel: nothing to do."""

    def on_publication(self, pub: Publication) -> None:
        pass

    def on_presence(self, channel: str, kind: str, member: Member) -> None:
        pass

    def on_reset(self, channel: str, position: Position) -> None:
        pass

    def on_node_message(self, message: bytes) -> None:
        pass

    def on_route_lost(self) -> None:
        pass


def _publishing_only(engine: Engine) -> None:
    """A publisher has no sessions and no ``/health``: its engine's health lines say what it
    does, and it answers no node, so the hubs' broadcasts (``send_user``) do not wait for it."""
    for part in (engine, *(shard for _, shard in getattr(engine, "shards", ()))):
        if hasattr(part, "refusing"):
            part.serving = "publishing"
            part.answers_nodes = False
            part.refusing = "publish raises engine_unavailable"


def _refuse_memory(engine: str | Engine, name: str) -> None:
    """A publisher on ``memory://`` would publish into its own process only: refused at once."""
    if isinstance(engine, str) and urlsplit(engine).scheme == "memory":
        raise ConfigurationError(
            "engine",
            f"a {name} on memory:// reaches nobody: the memory engine lives inside one process, "
            "so hubs in other processes never see what is published here",
            'run the hubs and the publisher on one Redis (Ladder(engine="redis://host:6379/0") and '
            f'{name}("redis://host:6379/0")); in the hub\'s own process use hub.publish()',
        )


class Publisher:
    """Publish to channels without running a hub.

    ``engine`` is the URL the hubs use (``redis://host:6379/0``) or an engine object.
    ``channels`` and ``default_channel`` must be the hubs' own (they decide, for example, how
    much history a channel keeps). ``memory://`` raises
    :class:`~ladder.errors.ConfigurationError`: in another process it would reach nobody
    (in the hub's own process, call ``hub.publish`` instead).

    The engine connects on the first ``publish`` (or ``start``); ``stop`` (or leaving the
    ``async with`` block) disconnects it.

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
        self._started = False
        self._opened = False
        """``engine.start`` was called: there is something to stop, even if it never ended."""
        self._lock: asyncio.Lock | None = None

    async def start(self) -> None:
        """Connect the engine (done by the first ``publish`` if not before). Idempotent."""
        if self._started:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._started:
                if self._opened:  # a start cut short (a caller's timeout): its tasks end first
                    await self.engine.stop()
                self._opened = True
                await self.engine.start(_Deaf())
                self._started = True

    async def stop(self) -> None:
        """Disconnect the engine (also one whose start was cut short)."""
        if self._opened:
            self._started = self._opened = False
            await self.engine.stop()

    async def publish(self, channel: str, data: Any) -> Publication:
        """Publish ``data`` to ``channel``, as ``hub.publish`` does; returns the publication
        (its ``offset`` and ``epoch``). Raises ``LadderError("engine_unavailable")`` when the
        engine cannot be reached, or did not answer within its ``command_timeout`` once the
        publication was sent (it may have been stored then); data no encoding can carry raises
        ``TypeError``, a channel name no client can use ``ValueError``."""
        payload = Payload.checked(data)
        await self.start()
        return await self.engine.publish(channel, payload, self.channel_rules.options(check_channel(channel)))

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
    work horses) gets a thread and connections of its own on its first ``publish``. Use
    ``with BlockingPublisher(url) as p`` or call ``close``.

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
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        """A publisher, a loop and its thread for this process (again after a fork)."""
        self._publisher = Publisher(
            self._engine, channels=self._channels, default_channel=self._default_channel
        )
        self._pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ladder-publisher", daemon=True)
        self._thread.start()

    def publish(self, channel: str, data: Any) -> Publication:
        """Publish ``data`` to ``channel`` and wait for the publication."""
        if self._closed:
            raise RuntimeError("this BlockingPublisher was closed")
        if self._pid != os.getpid():  # forked: the parent's thread did not come along
            with self._lock:
                if self._pid != os.getpid():
                    self._start()
        future = asyncio.run_coroutine_threadsafe(self._publisher.publish(channel, data), self._loop)
        try:
            return future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()  # (not left running behind a caller that moved on)
            engine = shown(self._engine) if isinstance(self._engine, str) else type(self._engine).__name__
            raise TimeoutError(
                f"publishing to {channel!r} got no answer from {engine} within {self.timeout:g} s "
                "(BlockingPublisher(timeout=)); it may or may not have been stored: retry it where a "
                "duplicate is harmless, as a task queue's retry does"
            ) from None

    def close(self) -> None:
        """Disconnect and end the background thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._pid != os.getpid():
            return  # the loop and its connections belong to the process that made them
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
