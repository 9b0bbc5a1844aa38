"""A channel subscription on the client: an async iterator of publications with a position."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..protocol.client import Renewal
from ..protocol.errors import LadderError

log = logging.getLogger("ladder.client")


class Unsubscriber(Protocol):
    """What a subscription needs of its client (the client imports this module, not the
    other way round)."""

    async def unsubscribe(self, channel: str) -> None: ...

    def _call_back(self, what: str, callback: Callable[[Any], Any], value: Any) -> None: ...

    _run_task: asyncio.Task[None] | None
    _subs: dict[str, Subscription]


@dataclass(frozen=True, slots=True)
class Publication:
    """One message in a channel, as the client receives it."""

    channel: str
    offset: int
    data: Any
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """How a (re)subscription went: the channel's position and whether a gap was covered."""

    channel: str
    epoch: str
    offset: int
    recovered: bool
    missed: int


class Subscription:
    """Follow a channel. ``async for pub in sub`` yields publications in offset order.

    The subscription remembers the ``(epoch, offset)`` of the last publication it
    delivered; after a reconnect that needed a new session, the client resubscribes from
    there, so missed publications arrive first and none twice. When the server's history
    cannot cover the gap (or the app's permissions keep its history from this client),
    ``recovered`` turns False and a ``resync`` event is emitted.

    Publications are buffered for the iterator up to ``max_buffer``; an app that stops
    reading gets an error from the iterator (``queue_full``, after what it holds) rather than
    unbounded memory, and the subscription ends. Pass
    ``on_publication`` to handle each one in a callback instead (no buffering at all:
    iterating such a subscription yields nothing, and ends, or raises, when the subscription
    does). Subscribing again to the channel returns the same subscription, and its
    ``on_publication`` is called too (:meth:`listen`).
    """

    def __init__(
        self,
        client: Unsubscriber,
        channel: str,
        *,
        since: tuple[str, int] | None,
        recent: int,
        on_publication: Callable[[Publication], Any] | None,
        max_buffer: int,
    ) -> None:
        self.client = client
        self.channel = channel
        self.epoch: str | None = since[0] if since else None
        self.offset: int = since[1] if since else 0
        self.recent = recent
        self.recovered = True
        self.active = True
        self._callbacks: list[Callable[[Publication], Any]] = [on_publication] if on_publication else []
        self._iterable = on_publication is None
        """Made without a callback: publications are buffered for ``async for``."""
        self._max_buffer = max_buffer
        self._ending: asyncio.Task[None] | None = None
        """Unsubscribing after the buffer overflowed."""
        self._buffer: deque[Publication] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._ready: asyncio.Future[SubscribeResult] = asyncio.get_running_loop().create_future()
        self.subscribed_once = False
        self._told = False
        self.renewal: Renewal | None = None
        """The core's count of this subscription's renewals refused in a row (made at the first)."""
        self._retry: asyncio.TimerHandle | None = None
        """A renewal the server refused for now, to be sent again when it fires."""

    def __repr__(self) -> str:
        return f"<Subscription {self.channel!r} epoch={self.epoch} offset={self.offset}>"

    # -- app side ---------------------------------------------------------------------------

    async def ready(self) -> SubscribeResult:
        """Wait until the server confirmed the subscription (raises its refusal)."""
        self._unstarted("sub.ready()")
        return await asyncio.shield(self._ready)

    def _unstarted(self, what: str) -> None:
        """Say once that this waits on a client nothing connects yet: forgetting ``connect()``
        is a silent wait otherwise (the client may still be connected by another task)."""
        if self.client._run_task is None and not self._told:
            self._told = True
            log.warning(
                "%s on %r waits for a client that was never connected: call `await client.connect()` "
                "(or use `async with Client(...)`)",
                what,
                self.channel,
            )

    @property
    def position(self) -> tuple[str, int] | None:
        """``(epoch, offset)`` of the last publication the app has had (handed to its
        callback, or yielded by ``async for``), to resume from later. Publications still
        buffered, not read yet, do not count (they did: an app that saved the position after
        reading one of three buffered lost the other two when it resumed from it)."""
        first = self._buffer[0] if self._buffer else None
        if first is not None and first.epoch is not None:
            return first.epoch, first.offset - 1
        return None if self.epoch is None else (self.epoch, self.offset)

    async def unsubscribe(self) -> None:
        """Stop following the channel (``async for`` ends). A subscription that already ended
        (unsubscribed, refused) leaves the channel's newer subscription alone."""
        if self.client._subs.get(self.channel) is self:
            await self.client.unsubscribe(self.channel)
        else:
            self.end()

    def listen(self, on_publication: Callable[[Publication], Any]) -> Callable[[], None]:
        """Call ``on_publication`` with every publication from now on, too; returns a function
        that stops it (as the browser client's ``listen`` does)."""
        self._callbacks.append(on_publication)

        def stop() -> None:
            kept = list(self._callbacks)  # (a new list: a delivery going through the old goes on)
            if on_publication in kept:
                kept.remove(on_publication)
                self._callbacks = kept

        return stop

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Publication:
        if not self._buffer and self.active and self._error is None:
            self._unstarted("async for")
        while not self._buffer:
            if self._error is not None:
                raise self._error
            if not self.active:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._buffer.popleft()

    # -- client side ------------------------------------------------------------------------

    def subscribe_frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"t": "sub", "ch": self.channel}
        if self.epoch is not None:
            frame["ep"] = self.epoch
            frame["off"] = self.offset
        elif self.recent:
            frame["recent"] = self.recent
        return frame

    def confirmed(self, reply: dict[str, Any]) -> SubscribeResult:
        asked_from = self.epoch
        result = SubscribeResult(
            channel=self.channel,
            epoch=str(reply["ep"]),
            offset=int(reply["off"]),
            recovered=bool(reply.get("rec", True)),
            missed=int(reply.get("n", 0)),
        )
        self.recovered = result.recovered
        if asked_from is None or not result.recovered:
            # Fresh start (or a gap nobody can fill): continue from the channel's position now.
            self.epoch = result.epoch
            if result.missed == 0:
                self.offset = result.offset
            else:
                self.offset = result.offset - result.missed
        if not self._ready.done():
            self._ready.set_result(result)
        self.subscribed_once = True
        return result

    def retry_later(self, delay: float, renew: Callable[[], None]) -> None:
        """Call ``renew`` in ``delay`` seconds (a renewal refused for now), unless it ends first."""
        self.cancel_retry()
        self._retry = asyncio.get_running_loop().call_later(delay, renew)

    @property
    def waiting_to_renew(self) -> bool:
        """A renewal was refused for now and waits to be sent again: no ``sub`` of this
        session is in flight, and the server holds none for it."""
        return self._retry is not None and not self._retry.cancelled()

    def cancel_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def refused(self, error: LadderError) -> None:
        self.active = False
        self.cancel_retry()
        if not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # mark retrieved: a refusal is also surfaced by the iterator
        self._fail(error)

    def deliver(self, offset: int, data: Any) -> None:
        if offset <= self.offset or self._error is not None:
            return  # already delivered (a recovery overlapping what we had), or ended
        if self._iterable and len(self._buffer) >= self._max_buffer:
            # The subscription ends here (not half-alive, dropping what comes next): the
            # iterator yields what it holds, then raises; ``position`` is the last it holds,
            # so subscribing again from it loses nothing.
            self._fail(
                LadderError(
                    "queue_full",
                    f"{self.channel}: {self._max_buffer} publications buffered and not read (max_buffer): "
                    "the subscription ended; subscribe again, e.g. from sub.position, or read faster",
                )
            )
            self._ending = asyncio.get_running_loop().create_task(self.client.unsubscribe(self.channel))
            return
        self.offset = offset
        pub = Publication(self.channel, offset, data, self.epoch)
        for callback in self._callbacks:  # (a failing one is logged: the others still run)
            self.client._call_back(f"publication on {self.channel}", callback, pub)
        if self._iterable:
            self._buffer.append(pub)
            self._wake()

    def resync(self, epoch: str, offset: int) -> None:
        self.epoch = epoch
        self.offset = offset
        self.recovered = False

    def end(self, error: BaseException | None = None, *, why: str | None = None) -> None:
        """Stop: ``error`` ends ``async for`` with it; ``why`` is what a ``ready()`` still
        waiting hears otherwise (``closed``, the client's own words by default)."""
        self.active = False
        self.cancel_retry()
        if error is not None:
            self._fail(error)
        if not self._ready.done():
            self._ready.set_exception(error or (LadderError("closed", why) if why else LadderError("closed")))
            self._ready.exception()
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
