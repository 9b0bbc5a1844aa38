"""The Python asyncio client: one session kept alive across rungs, reconnects and sessions.

One task per client runs the connection: it races the rungs, reads frames, reconnects
with backoff. A second task exists only while the client stands on a lower rung, probing
the better ones. Sending happens in the caller's task. Delivery and dedupe are the
sans-I/O :class:`~ladder.protocol.peer.PeerState`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal, TypeVar, overload

import httpx

from ..protocol.codec import codec_named, encode_message
from ..protocol.errors import LadderError
from ..protocol.peer import Frame, PeerState
from . import rungs as rung_memory
from .backoff import reconnect_delay
from .events import (
    EVENT_NAMES,
    Connected,
    Disconnected,
    Event,
    Presence,
    Push,
    Resubscribed,
    ResyncNeeded,
    ServerError,
    SessionLost,
    TransportChanged,
)
from .pacing import Pacer
from .race import AllRungsFailed, race
from .rungs import RungPolicy
from .subscription import Publication, SubscribeResult, Subscription
from .transports.base import Endpoint, Transport, TransportClosed
from .transports.polling import PollingTransport
from .transports.sse import SSETransport
from .transports.websocket import WebSocketTransport

log = logging.getLogger("ladder.client")

TRANSPORTS = ("websocket", "sse", "longpoll", "poll")

__all__ = ["TRANSPORTS", "Client", "Publication", "SubscribeResult", "Subscription"]


_R = TypeVar("_R")
"""What an event callback returns (ignored; kept so a decorated function keeps its type)."""

_FATAL = frozenset({"unauthorized", "origin_not_allowed", "unsupported_version"})
"""Refusals that retrying cannot fix, on any request (opening a rung, a poll, an upstream
POST): the client closes, ``connect()``, pending and later calls raise them, and an
``error`` event says so."""

HEADROOM = 64
"""Bytes kept free in every batch under the server's limits (for the ack that rides along)."""

_SESSION_GONE = frozenset({"unknown_session", "session_closed", "slow_consumer", "bad_resume_token"})
"""Refusals meaning the server no longer has our session: reconnecting starts a new one."""

SEND_RETRY_DELAYS = (0.1, 0.4, 1.0)
"""Pauses before writing a failed upstream POST again on the same transport. After the last
one the rung counts as broken and the client reconnects (which resends everything
unacknowledged). The server drops repeated message ids, so writing twice is safe."""


def _carried(frame: Frame) -> bool:
    """Subscriptions are renewed by the client itself on a new session; the rest is carried."""
    return frame.get("t") not in ("sub", "unsub")


class _SessionEnded(Exception):
    def __init__(self, error: LadderError) -> None:
        super().__init__(error.reason)
        self.error = error


class Client:
    """A Ladder client. Use as ``async with Client(url) as c`` or ``connect()``/``close()``.

    Register event callbacks (``on``) before connecting, so the first events are not missed.

    Args:
        url: Where the hub is mounted (``http://host:8000/ladder``; ``https`` for TLS).
        transports: The rungs allowed, any of ``websocket``, ``sse``, ``longpoll``, ``poll``
            (the order does not matter: the ladder is always tried best first).
        token: Credentials for the server's ``authenticate`` hook: a string, or a callable
            returning one (called at every connect, and before the session's credentials
            expire to refresh them over the live session).
        headers: Extra HTTP headers on every request (a ``Cookie`` for a session cookie).
        encoding: ``msgpack`` or ``json`` on the wire.
        stagger: When each rung of the race starts, in seconds after the first.
        open_timeout: Seconds a rung may take to deliver its welcome before it counts as failed.
        verify_timeout: Seconds an SSE stream may take to prove it is not buffered (its pong).
        backoff_base: First reconnect delay in seconds (full jitter, doubling).
        backoff_max: Longest reconnect delay in seconds.
        max_attempts: Reconnect attempts before giving up (None: forever).
        connect_timeout: Seconds the first connection may take (None: no bound); past it the
            client closes and ``connect()`` raises ``connect_failed`` listing each rung's reason.
            Once connected, the client reconnects for as long as it lives.
        stable_after: Seconds a connection must live to not count as cut.
        cut_limit: Connections in a row cut sooner than ``stable_after`` before stepping down a rung.
        probe_delay: First delay before probing a better rung, in seconds (backoff after it).
        probe_max_delay: Longest delay between probes of a better rung.
        poll_interval: Short polling's (fastest, slowest) interval in seconds.
        max_queue: Messages kept while unacknowledged or disconnected; past it sending
            raises ``LadderError("queue_full")``.
        max_buffer: Publications buffered per subscription for ``async for``.
        ack_every: On WebSocket and SSE, acknowledge once this many frames are unacknowledged...
        ack_interval: ...or this many seconds after the first of them arrived (polls carry
            the ack in every request).
        remember: Start at the rung that worked last for this URL in this process.
        refresh_margin: Seconds before the credentials expire at which a callable ``token``
            is refreshed.
        http_client: An ``httpx.AsyncClient`` to share a connection pool between clients.
        ssl_context: TLS verification for ``https`` URLs (a private CA, for example).
    """

    def __init__(
        self,
        url: str,
        *,
        transports: Sequence[str] = TRANSPORTS,
        token: str | Callable[[], str | None] | None = None,
        headers: dict[str, str] | None = None,
        encoding: str = "msgpack",
        stagger: Sequence[float] = (0.0, 0.3, 1.0, 2.0),
        open_timeout: float = 10.0,
        verify_timeout: float = 2.5,
        connect_timeout: float | None = 15.0,
        backoff_base: float = 0.5,
        backoff_max: float = 5.0,
        max_attempts: int | None = None,
        stable_after: float = 10.0,
        cut_limit: int = 3,
        probe_delay: float = 2.0,
        probe_max_delay: float = 30.0,
        poll_interval: tuple[float, float] = (0.05, 2.0),
        max_queue: int = 1000,
        max_buffer: int = 10_000,
        ack_every: int = 32,
        ack_interval: float = 1.0,
        remember: bool = True,
        refresh_margin: float = 60.0,
        http_client: httpx.AsyncClient | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        unknown = [t for t in transports if t not in TRANSPORTS]
        if unknown or not transports:
            raise ValueError(f"transports must be a non-empty subset of {TRANSPORTS}, not {unknown}")
        self.url = url.rstrip("/")
        self.rungs = [t for t in TRANSPORTS if t in transports]
        self._token = token
        self.endpoint = Endpoint(
            self.url, codec_named(encoding), dict(headers or {}), self._current_token, ssl_context
        )
        self.stagger = tuple(stagger)
        self.open_timeout = open_timeout
        self.verify_timeout = verify_timeout
        self.connect_timeout = connect_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_attempts = max_attempts
        self.probe_delay = probe_delay
        self.probe_max_delay = probe_max_delay
        self.poll_interval = poll_interval
        self.max_buffer = max_buffer
        self.ack_every = ack_every
        self.ack_interval = ack_interval
        self.refresh_margin = refresh_margin
        self._remember = remember
        start = rung_memory.remembered(self.url) if remember else None
        self.policy = RungPolicy(self.rungs, cut_limit=cut_limit, stable_after=stable_after, start=start)
        self.peer = PeerState(max_queue=max_queue, carry=_carried)
        self.state = "disconnected"
        """``disconnected``, ``connecting``, ``connected`` or ``closed``."""
        self.transport: str | None = None
        """The rung in use now (None while disconnected)."""
        self.session_id: str | None = None
        self._own_http = http_client is None
        self._http = http_client
        self._conn: Transport | None = None
        self._subs: dict[str, Subscription] = {}
        self._waiting: dict[int, Callable[[Frame], None]] = {}
        self._callbacks: dict[str, list[Callable[[Any], Any]]] = {}
        self._streams: list[deque[Event]] = []
        self._stream_waiters: list[asyncio.Future[None]] = []
        self._run_task: asyncio.Task[None] | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._switch_to: tuple[Transport, str] | None = None
        self._connected: asyncio.Future[None] | None = None
        self._flushing = False
        self._ack_timer: asyncio.TimerHandle | None = None
        """Fires ``ack_interval`` after the first frame not yet acknowledged arrived."""
        self._ack_wanted = False
        """The next flush must write an ack even with no message to carry it."""
        self._last_rung: str | None = None
        self._had_session = False
        self._background: set[asyncio.Task[Any]] = set()
        self._step_reason: str | None = None
        self._pending_loss: str | None = None
        self._closed_by_app = False
        self._expires: float | None = None
        """When the session's credentials expire (Unix time), if they do."""
        self._refreshing = False
        self._last_end: str | None = None
        """Why the previous connection ended (its category goes in the next hello)."""
        self._drained: list[asyncio.Future[None]] = []
        self._subscribing: set[int] = set()
        """Ids of subscribe requests still in flight (renewed, not failed, on a new session)."""
        self._limits: dict[str, Any] = {}
        """The server's limits from the last welcome (``lim``: frame and body sizes)."""
        self._pacer = Pacer()
        self._pace_timer: asyncio.TimerHandle | None = None
        self._fatal: LadderError | None = None
        """Why the client gave up for good (later calls raise it instead of ``closed``)."""
        self._reconnect_now = False
        """The server is shutting down: resume elsewhere at once, without backoff."""
        self._reasons: dict[str, str] = {}
        """The latest reason each rung failed to open (for ``connect_failed``)."""
        self._racing: dict[str, TransportClosed] = {}
        """The failures of the race in progress, as they come."""

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, timeout: float | None = None) -> None:
        """Start connecting; return once connected.

        Raises ``connect_failed`` (listing each rung's reason) when the first connection
        could not be made within ``connect_timeout``, or not within ``timeout`` seconds (the
        client then keeps trying until ``connect_timeout``; ``close()`` it to stop), the
        server's refusal when retrying cannot help (``unauthorized``,
        ``origin_not_allowed``), ``timeout`` once ``max_attempts`` ran out.
        """
        if self.state == "closed":
            raise self._fatal or LadderError("closed", "this client was closed")
        loop = asyncio.get_running_loop()
        if self._run_task is None:
            # No HTTP client yet: the race starts with the WebSocket at once, and the HTTP
            # client (~50 ms of imports, plus the CA bundle for https) is built when the
            # first HTTP rung is due, if one ever is.
            self._connected = loop.create_future()
            self._run_task = loop.create_task(self._run(), name="ladder-client")
        assert self._connected is not None
        if self.state != "connected":
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._connected)
            except TimeoutError:
                if self._connected.done():
                    raise
                raise self._unreachable(f"within {timeout:g} s") from None

    async def close(self) -> None:
        """End the session (the server forgets it at once) and release everything."""
        if self.state == "closed":
            return
        conn = self._conn
        connected = self.state == "connected"
        self.state = "closed"
        self._closed_by_app = True  # the server's answer to our bye is not news to the app
        self._cancel_ack_timer()
        if conn is not None and connected:
            bye: list[Frame] = [{"t": "bye"}]
            ack = None if conn.implicit_ack else self.peer.ack_frame()
            if ack is not None:
                bye.insert(0, ack)  # the final ack rides with the bye
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await conn.send(bye)
        if conn is not None:
            self._emit(Disconnected(conn.name, "closed by the client"))
        for task in (self._probe_task, self._run_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        self.transport = None
        error = LadderError("closed", "the client was closed")
        for callback in list(self._waiting.values()):
            callback({"t": "err", **error.body()})
        self._waiting.clear()
        for sub in self._subs.values():
            sub.end()
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(error)
            self._connected.exception()
        if self._own_http and self._http is not None:
            await self._http.aclose()
        for waiter in self._stream_waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _current_token(self) -> str | None:
        token = self._token
        return token() if callable(token) else token

    # -- API ----------------------------------------------------------------------------------

    def subscribe(
        self,
        channel: str,
        since: tuple[str, int] | None = None,
        *,
        recent: int = 0,
        on_publication: Callable[[Publication], Any] | None = None,
    ) -> Subscription:
        """Follow ``channel``. ``since=(epoch, offset)`` replays what was missed after it;
        ``recent=N`` starts with the newest N publications kept in history.
        """
        if self.state == "closed":
            raise LadderError("closed", "this client was closed")
        existing = self._subs.get(channel)
        if existing is not None and existing.active:
            return existing
        sub = Subscription(
            self,
            channel,
            since=since,
            recent=recent,
            on_publication=on_publication,
            max_buffer=self.max_buffer,
        )
        self._subs[channel] = sub
        self._submit_subscribe(sub)
        return sub

    async def unsubscribe(self, channel: str) -> None:
        """Stop following ``channel`` (its subscription's ``async for`` ends)."""
        sub = self._subs.pop(channel, None)
        if sub is None:
            return
        sub.end()
        self._submit({"t": "unsub", "ch": channel}, None)
        await self._flush()

    async def publish(self, channel: str, data: Any, *, timeout: float | None = None) -> tuple[str, int]:
        """Publish to a channel (if the server permits); returns its ``(epoch, offset)``."""
        reply = await self._request({"t": "pub", "ch": channel, "d": data}, timeout)
        return str(reply["ep"]), int(reply["off"])

    async def emit(self, event: str, data: Any = None) -> None:
        """Send an event to the server's handler; returns once queued (not acknowledged)."""
        self._submit({"t": "emit", "ev": event, "d": data}, None)
        await self._flush()

    async def call(self, event: str, data: Any = None, *, timeout: float | None = 10.0) -> Any:
        """Call a server handler and return its result (or raise its error as LadderError)."""
        return await self._request({"t": "call", "ev": event, "d": data}, timeout)

    async def presence(self, channel: str, *, timeout: float | None = 10.0) -> list[dict[str, Any]]:
        """Who is in ``channel`` (each member: ``c`` client id, ``u`` user, ``info``)."""
        members: list[dict[str, Any]] = await self._request({"t": "presence", "ch": channel}, timeout)
        return members

    async def history(
        self, channel: str, limit: int = 100, *, timeout: float | None = 10.0
    ) -> list[Publication]:
        """The newest ``limit`` publications the server keeps for ``channel``, oldest first."""
        reply = await self._request({"t": "history", "ch": channel, "limit": limit}, timeout)
        return [Publication(channel, int(p["o"]), p.get("d"), reply.get("ep")) for p in reply["pubs"]]

    async def refresh(self, token: str | None = None, *, timeout: float | None = 10.0) -> None:
        """Give the server new credentials for this session without reconnecting.

        With no ``token``, the client's own ``token`` (a callable is called) is sent. A client
        whose ``token`` is a callable does this by itself shortly before the old one expires.
        """
        if token is not None and not callable(self._token):
            self._token = token
        fresh = token or self._current_token()
        if not fresh:
            raise LadderError("unauthorized", "no token to refresh with")
        reply = await self._request({"t": "refresh", "tok": fresh}, timeout)
        self._expires = reply.get("exp") if isinstance(reply, dict) else None

    def _maybe_refresh(self) -> None:
        """Refresh an expiring token in time (only when ``token`` is a callable)."""
        expires = self._expires
        if expires is None or self._refreshing or not callable(self._token):
            return
        if time.time() >= expires - self.refresh_margin:
            self._refreshing = True

            async def run() -> None:
                try:
                    await self.refresh()
                except LadderError as exc:
                    log.warning("token refresh failed: %s", exc)
                finally:
                    self._refreshing = False

            self._spawn(run())

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until the server has acknowledged every message sent or queued so far.

        A pending ack of ours goes out at once too, rather than when its timer fires.
        """
        conn = self._conn
        if (
            conn is not None
            and not conn.implicit_ack
            and self.state == "connected"
            and self.peer.inbox.applied > self.peer.acked_out
        ):
            self._ack_now()
        if len(self.peer.outbox) == 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drained.append(waiter)
        async with asyncio.timeout(timeout):
            await waiter

    def _acked(self) -> None:
        if len(self.peer.outbox) == 0:
            self._pacer.drained()
        if len(self.peer.outbox) == 0 and self._drained:
            for waiter in self._drained:
                if not waiter.done():
                    waiter.set_result(None)
            self._drained.clear()

    @overload
    def on(
        self, name: Literal["connected"], callback: Callable[[Connected], _R]
    ) -> Callable[[Connected], _R]: ...
    @overload
    def on(
        self, name: Literal["connected"], callback: None = None
    ) -> Callable[[Callable[[Connected], _R]], Callable[[Connected], _R]]: ...
    @overload
    def on(
        self, name: Literal["disconnected"], callback: Callable[[Disconnected], _R]
    ) -> Callable[[Disconnected], _R]: ...
    @overload
    def on(
        self, name: Literal["disconnected"], callback: None = None
    ) -> Callable[[Callable[[Disconnected], _R]], Callable[[Disconnected], _R]]: ...
    @overload
    def on(
        self, name: Literal["transport"], callback: Callable[[TransportChanged], _R]
    ) -> Callable[[TransportChanged], _R]: ...
    @overload
    def on(
        self, name: Literal["transport"], callback: None = None
    ) -> Callable[[Callable[[TransportChanged], _R]], Callable[[TransportChanged], _R]]: ...
    @overload
    def on(
        self, name: Literal["session_lost"], callback: Callable[[SessionLost], _R]
    ) -> Callable[[SessionLost], _R]: ...
    @overload
    def on(
        self, name: Literal["session_lost"], callback: None = None
    ) -> Callable[[Callable[[SessionLost], _R]], Callable[[SessionLost], _R]]: ...
    @overload
    def on(
        self, name: Literal["resubscribed"], callback: Callable[[Resubscribed], _R]
    ) -> Callable[[Resubscribed], _R]: ...
    @overload
    def on(
        self, name: Literal["resubscribed"], callback: None = None
    ) -> Callable[[Callable[[Resubscribed], _R]], Callable[[Resubscribed], _R]]: ...
    @overload
    def on(
        self, name: Literal["resync"], callback: Callable[[ResyncNeeded], _R]
    ) -> Callable[[ResyncNeeded], _R]: ...
    @overload
    def on(
        self, name: Literal["resync"], callback: None = None
    ) -> Callable[[Callable[[ResyncNeeded], _R]], Callable[[ResyncNeeded], _R]]: ...
    @overload
    def on(self, name: Literal["push"], callback: Callable[[Push], _R]) -> Callable[[Push], _R]: ...
    @overload
    def on(
        self, name: Literal["push"], callback: None = None
    ) -> Callable[[Callable[[Push], _R]], Callable[[Push], _R]]: ...
    @overload
    def on(
        self, name: Literal["presence"], callback: Callable[[Presence], _R]
    ) -> Callable[[Presence], _R]: ...
    @overload
    def on(
        self, name: Literal["presence"], callback: None = None
    ) -> Callable[[Callable[[Presence], _R]], Callable[[Presence], _R]]: ...
    @overload
    def on(
        self, name: Literal["error"], callback: Callable[[ServerError], _R]
    ) -> Callable[[ServerError], _R]: ...
    @overload
    def on(
        self, name: Literal["error"], callback: None = None
    ) -> Callable[[Callable[[ServerError], _R]], Callable[[ServerError], _R]]: ...
    def on(self, name: str, callback: Callable[[Any], Any] | None = None) -> Any:
        """Call ``callback(event)`` for every event called ``name`` (usable as a decorator).

        Names: ``connected``, ``disconnected``, ``transport``, ``session_lost``,
        ``resubscribed``, ``resync``, ``push``, ``presence``, ``error``; the event is the
        matching record of :mod:`ladder.client` (``transport`` gives a
        :class:`~ladder.client.TransportChanged`). An unknown name raises ``ValueError``.
        """
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown event {name!r}; one of {sorted(EVENT_NAMES)}")

        def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
            self._callbacks.setdefault(name, []).append(fn)
            return fn

        return register if callback is None else register(callback)

    async def events(self, max_buffer: int = 1000) -> AsyncIterator[Event]:
        """Every event, as an async stream (ends when the client closes)."""
        queue: deque[Event] = deque(maxlen=max_buffer)
        self._streams.append(queue)
        try:
            while self.state != "closed" or queue:
                if queue:
                    yield queue.popleft()
                    continue
                waiter = asyncio.get_running_loop().create_future()
                self._stream_waiters.append(waiter)
                try:
                    await waiter
                finally:
                    self._stream_waiters.remove(waiter)
        finally:
            self._streams.remove(queue)

    # -- outbound plumbing ----------------------------------------------------------------------

    def _submit(self, frame: Frame, on_reply: Callable[[Frame], None] | None) -> int:
        """Number a message and queue it. A message that cannot travel is refused here, before
        it takes an id: a numbered message the server cannot read would never be applied, and
        every message after it would wait for it forever."""
        if self.state == "closed":
            raise self._fatal or LadderError("closed", "this client was closed")
        too_large = self._too_large({**frame, "i": self.peer.outbox.last + 1}, self._limits)
        if too_large is not None:
            raise too_large
        msg_id = self.peer.submit(frame)
        if on_reply is not None:
            self._waiting[msg_id] = on_reply
        return msg_id

    def _too_large(self, frame: Frame, limits: dict[str, Any]) -> LadderError | None:
        """``frame_too_large`` when the encoded message exceeds the server's ``lim.frame``
        (less :data:`HEADROOM`); ``TypeError`` when it cannot be encoded at all."""
        size = len(encode_message(self.endpoint.codec, frame))
        limit = limits.get("frame")
        if isinstance(limit, int) and size > limit - HEADROOM:
            return LadderError(
                "frame_too_large",
                f"this {frame.get('t')} is {size} bytes encoded; the server takes frames of at most {limit}",
            )
        return None

    async def _request(self, frame: Frame, timeout: float | None) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def settle(reply: Frame) -> None:
            if future.done():
                return
            if reply.get("t") == "err":
                future.set_exception(LadderError(str(reply.get("code")), str(reply.get("reason", ""))))
            else:
                future.set_result(reply.get("d"))

        msg_id = self._submit(frame, settle)
        await self._flush()
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise LadderError("timeout", f"no reply within {timeout:g} s") from None
        finally:
            if self._waiting.get(msg_id) is settle and future.done():
                self._waiting.pop(msg_id, None)

    def _submit_subscribe(self, sub: Subscription) -> None:
        def settle(reply: Frame) -> None:
            self._subscribing.discard(msg_id)
            if reply.get("t") == "err":
                self._subs.pop(sub.channel, None)
                sub.refused(LadderError(str(reply.get("code")), str(reply.get("reason", ""))))
                return
            again = sub.subscribed_once
            result = sub.confirmed(reply.get("d") or {})
            if again:
                self._emit(Resubscribed(sub.channel, result.recovered))
            if not result.recovered:
                self._emit(ResyncNeeded(sub.channel, result.epoch))

        msg_id = self._submit(sub.subscribe_frame(), settle)
        self._subscribing.add(msg_id)
        self._spawn(self._flush())

    async def _flush(self) -> None:
        """Write every queued message (and a due ack) on the current transport.

        One writer at a time; a flush asked for meanwhile is done by the running one's loop.
        A write that fails is taken back (the cursor rewinds to its first message) and tried
        again: over POST the downstream may well be alive, so nothing else would notice
        (a WebSocket's reader does). A transport that keeps failing is interrupted, so the
        client reconnects and resends everything the server has not acknowledged.
        """
        if self._flushing:
            return
        self._flushing = True
        failures = 0
        failing: Transport | None = None
        loop = asyncio.get_running_loop()
        try:
            while self.state == "connected" and self._conn is not None:
                conn = self._conn
                allowed, wait = self._pacer.allowance(loop.time())
                frames = self._batch(conn, allowed)
                self._pacer.wrote(len(frames))
                if wait > 0 and self.peer.outbox.pending(self.peer.cursor) > 0:
                    self._flush_later(wait)
                acked_before = self.peer.acked_out
                ack = None
                if not conn.implicit_ack and (frames or self._ack_wanted):
                    ack = self.peer.ack_frame()  # piggy-backed on messages, or due by the timer
                    if ack is not None:
                        # First: a server that stops reading a batch (a message over its rate)
                        # has read the ack.
                        frames.insert(0, ack)
                self._ack_wanted = False
                if not frames:
                    break
                try:
                    await conn.send(frames)
                except TransportClosed as exc:
                    if self._conn is not conn:
                        continue  # a newer transport took over; its welcome rewound the cursor
                    self._take_back(frames, acked_before if ack is not None else None)
                    failures = failures + 1 if failing is conn else 1
                    failing = conn
                    error = exc.error
                    if (
                        not conn.separate_upstream
                        or (error is not None and (error.code in _SESSION_GONE or error.code in _FATAL))
                        or failures > len(SEND_RETRY_DELAYS)
                    ):
                        log.info("%s; the transport is given up", exc.reason)
                        conn.interrupt(f"{exc.reason} (after {failures} attempts)", error)
                        break
                    log.debug("%s; writing it again (attempt %d)", exc.reason, failures + 1)
                    await asyncio.sleep(SEND_RETRY_DELAYS[failures - 1] * random.uniform(0.75, 1.0))
                else:
                    failures = 0
                    if ack is not None:
                        self._acks_sent()
        finally:
            self._flushing = False

    def _batch(self, conn: Transport, allowed: int | None) -> list[Frame]:
        """The next messages to write: at most ``allowed`` (pacing), and no more bytes than
        the server takes in one WebSocket message (``lim.frame``) or one POST (``lim.post``),
        so a long offline queue goes out in several writes instead of being refused whole."""
        items = self.peer.outbox.after(self.peer.cursor, allowed)
        if not items:
            return []
        limit = self._limits.get("post" if conn.separate_upstream else "frame")
        budget = (int(limit) if isinstance(limit, int) else 65_536) - HEADROOM
        codec = self.endpoint.codec
        batch: list[Frame] = []
        size = 0
        for msg_id, frame in items:
            if len(items) > 1:
                size += len(codec.encode(frame)) + 1
                if batch and size > budget:
                    break
            batch.append(frame)
            self.peer.cursor = msg_id
        return batch

    def _flush_later(self, delay: float) -> None:
        """Flush again once pacing lets the next message go."""
        if self._pace_timer is None:

            def due() -> None:
                self._pace_timer = None
                self._spawn(self._flush())

            self._pace_timer = asyncio.get_running_loop().call_later(delay, due)

    def _rate_limited(self, msg_id: int, retry_after: float) -> None:
        """The server refused message ``msg_id`` for its rate without applying it (nor any
        message after it in that batch): write it again after ``retry_after``, paced."""
        if msg_id <= self.peer.outbox.acked:
            return  # stale: applied since
        self.peer.cursor = min(self.peer.cursor, msg_id - 1)
        self._pacer.refused(retry_after, asyncio.get_running_loop().time())
        log.debug("message %d refused for its rate; paced, again in %g s", msg_id, retry_after)
        self._flush_later(retry_after)

    def _take_back(self, frames: list[Frame], acked_before: int | None) -> None:
        """A write of ``frames`` failed: its messages (and ack, if any) count as unwritten."""
        first = next((int(frame["i"]) for frame in frames if "i" in frame), None)
        if first is not None:
            self.peer.cursor = min(self.peer.cursor, first - 1)
        if acked_before is not None:
            self.peer.acked_out = min(self.peer.acked_out, acked_before)
            self._ack_wanted = True

    # -- acknowledgements -----------------------------------------------------------------------

    def _ack_received(self, conn: Transport) -> None:
        """Frames were delivered: ack at once past ``ack_every``, else ~``ack_interval`` after
        the first unacknowledged one (one timer, not one per frame), so a quiet subscriber
        acks about once a second instead of once per message (protocol §3.4)."""
        if conn.implicit_ack:
            return  # every poll's query carries the ack
        unacked = self.peer.inbox.applied - self.peer.acked_out
        if unacked <= 0:
            return
        if unacked >= self.ack_every:
            self._ack_now()
        elif self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(self.ack_interval, self._ack_now)

    def _ack_now(self) -> None:
        self._cancel_ack_timer()
        self._ack_wanted = True
        self._spawn(self._flush())

    def _acks_sent(self) -> None:
        """An ack went out: the timer is needed again only for frames that came after it."""
        if self.peer.acked_out >= self.peer.inbox.applied:
            self._cancel_ack_timer()

    def _cancel_ack_timer(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- events ---------------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        for callback in self._callbacks.get(event.name, ()):
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    self._spawn(result)
            except Exception:
                log.exception("callback for %s failed", event.name)
        for queue in self._streams:
            queue.append(event)
        for waiter in self._stream_waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- the connection loop ------------------------------------------------------------------

    def _http_client(self) -> httpx.AsyncClient:
        """The HTTP client of the HTTP rungs, built on first use (see :meth:`connect`)."""
        if self._http is None:
            # A non-bool ``verify`` reaches httpcore unchanged, and httpcore makes a TLS
            # context only for an https request: for http:// (None) none is ever built.
            verify: Any = self.endpoint.tls()
            self._http = httpx.AsyncClient(
                verify=verify,
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
                timeout=httpx.Timeout(10.0),
            )
        return self._http

    def _make(self, rung: str) -> Transport:
        applied = self._applied
        if rung == "websocket":
            return WebSocketTransport(self.endpoint, applied)
        if rung == "sse":
            return SSETransport(self.endpoint, applied, self._http_client())
        low, high = self.poll_interval
        return PollingTransport(
            self.endpoint,
            applied,
            self._http_client(),
            hold=rung == "longpoll",
            min_interval=low,
            max_interval=high,
        )

    def _applied(self) -> int:
        return self.peer.inbox.applied

    async def _open(self, rung: str, why: str | None = None) -> Transport:
        transport = self._make(rung)
        try:
            async with asyncio.timeout(self.open_timeout):
                await transport.open(self.peer.hello(self._current_token(), why), self.verify_timeout)
        except TimeoutError:
            await transport.close()
            raise TransportClosed(f"{rung}: no welcome within {self.open_timeout:g} s") from None
        except BaseException:
            await transport.close()
            raise
        return transport

    async def _reopen(self, rung: str) -> Transport:
        """Open ``rung`` telling the server (in one word) why the last connection ended."""
        why = rung_memory.reason_category(self._last_end) if self._last_end else None
        return await self._open(rung, why)

    async def _discard(self, transport: Transport) -> None:
        """Close a transport that lost a race; end the session it created, if it made one."""
        if self.peer.sid is None or transport.welcome.get("sid") != self.peer.sid:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await transport.send([{"t": "bye"}])
        await transport.close()

    async def _run(self) -> None:
        try:
            await self._connection_loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not leave callers waiting forever
            log.exception("the connection loop failed")
            self._give_up(LadderError("internal", f"the client's connection loop failed: {exc!r}"))
        if self.state == "closed" and not self._closed_by_app and self._own_http and self._http is not None:
            # Given up (nobody may call close() after a failed ``async with``): release the pool.
            http, self._http = self._http, None
            await http.aclose()

    async def _connection_loop(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0  # races failed since the last welcome
        attempts = 0  # races failed in a row, for max_attempts
        deadline = None if self.connect_timeout is None else loop.time() + self.connect_timeout
        while self.state != "closed":
            self.state = "connecting"
            refusals: dict[str, TransportClosed] = {}
            self._racing = refusals
            first = not self._had_session
            try:
                async with asyncio.timeout_at(deadline if first else None):
                    conn, failed = await race(
                        self.policy.candidates(),
                        self._reopen,
                        self.stagger,
                        on_loser=self._discard,
                        failures=refusals,
                    )
            except TimeoutError:
                self._note(refusals)
                self._give_up(self._unreachable(f"within {self.connect_timeout:g} s"))
                return
            except AllRungsFailed as exc:
                self._note(exc.failures)
                if self._fatal_refusal(exc.errors()):
                    return
                if self._session_refused(exc):
                    continue
                failures += 1
                attempts += 1
                log.warning("connecting to %s failed (attempt %d): %s", self.url, attempts, exc)
                if self.max_attempts is not None and attempts >= self.max_attempts:
                    self._give_up(
                        LadderError("timeout", f"could not connect after {attempts} attempts: {exc}")
                    )
                    return
                delay = reconnect_delay(failures, self.backoff_base, self.backoff_max)
                if first and deadline is not None and loop.time() + delay >= deadline:
                    await asyncio.sleep(max(0.0, deadline - loop.time()))
                    self._give_up(self._unreachable(f"within {self.connect_timeout:g} s"))
                    return
                await asyncio.sleep(delay)
                continue
            if self._fatal_refusal([e.error for e in refusals.values() if e.error is not None]):
                await self._discard(conn)
                return
            failures = attempts = 0  # any welcome forgives: the next node may be a good one
            reason = "; ".join(failed.get(rung, "") for rung in self.policy.candidates() if rung in failed)
            started = time.monotonic()
            self._adopt(conn, reason or "connected")
            ended = await self._pump(conn)
            lived = time.monotonic() - started
            rung = conn.name
            await self._lost(conn, ended)
            if self.state == "closed":
                return
            if self._reconnect_now:  # the server is going away: resume elsewhere, now
                self._reconnect_now = False
                self._last_end = ended
                continue
            step_down = self.policy.dropped(rung, lived, ended)
            if step_down is not None:
                self._step_reason = step_down
            self._last_end = step_down or ended
            await asyncio.sleep(reconnect_delay(0, self.backoff_base, self.backoff_max))

    def _note(self, failures: dict[str, TransportClosed]) -> None:
        """Remember why each rung failed, for the error of a first connect that gives up."""
        for rung, exc in failures.items():
            self._reasons[rung] = exc.reason

    def _unreachable(self, within: str) -> LadderError:
        """``connect_failed``: the first connection could not be made, with every rung's reason."""
        latest = {**self._reasons, **{rung: exc.reason for rung, exc in self._racing.items()}}
        reasons = [latest.get(rung) or f"{rung}: no answer" for rung in self.policy.candidates()]
        return LadderError(
            "connect_failed", f"could not connect to {self.url} {within}: {'; '.join(reasons)}"
        )

    def _fatal_refusal(self, errors: Sequence[LadderError]) -> bool:
        """Give up when a refusal cannot be fixed by retrying (on any rung, even one that lost
        the race: a page's own GETs may carry no Origin while its POSTs are refused)."""
        fatal = next((e for e in errors if e.code in _FATAL), None)
        if fatal is None and not callable(self._token):
            # A fixed token that expired will not get better by retrying.
            fatal = next((e for e in errors if e.code == "token_expired"), None)
        if fatal is None:
            return False
        self._give_up(fatal)
        return True

    def _session_refused(self, exc: AllRungsFailed) -> bool:
        """The server no longer knows our session: start a new one straight away."""
        for error in exc.errors():
            if error.code in ("unknown_session", "bad_resume_token", "session_closed", "slow_consumer"):
                self._session_gone(f"{error.code}: {error.reason}")
                return True
        return False

    def _session_gone(self, reason: str) -> None:
        if self.peer.sid is not None:
            log.info("session %s lost: %s", self.peer.sid[:8], reason)
            self.peer.forget_session()
            self._pending_loss = reason

    def _give_up(self, error: LadderError) -> None:
        if error.code == "origin_not_allowed":
            origin = next((v for k, v in self.endpoint.headers.items() if k.lower() == "origin"), None)
            error = LadderError(
                error.code,
                f"the server at {self.url} does not allow the Origin {origin!r} this client sends: "
                f"add it to the server's allowed_origins (or send no Origin) [{error.reason}]",
            )
        if error.code in _FATAL or error.code in ("connect_failed", "token_expired"):
            self._fatal = error
            log.warning("%s: giving up: %s", self.url, error)
            self._emit(ServerError(error.code, error.reason))
        self.state = "closed"
        if self._pace_timer is not None:
            self._pace_timer.cancel()
            self._pace_timer = None
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(error)
        for callback in list(self._waiting.values()):
            callback({"t": "err", **error.body()})
        self._waiting.clear()
        for sub in self._subs.values():
            sub.end(error)

    def _adopt(self, conn: Transport, reason: str) -> None:
        """A transport won: take over its welcome, carry messages over, resubscribe."""
        welcome = conn.welcome
        limits = dict(welcome.get("lim") or {})
        oversize: dict[int, LadderError] = {}
        named = self.peer.lost is not None  # the hello named the carried ids: keep exactly those

        def keep(frame: Frame) -> bool:
            if not self.peer.carry(frame):
                return False  # subscriptions are renewed below
            too_large = None if named else self._too_large(frame, limits)
            if too_large is not None:  # queued before the limit was known: it could never pass
                oversize[int(frame["i"])] = too_large
                return False
            return True

        moved = self.peer.welcome(welcome, keep=keep)
        new_session = moved is not None
        if moved is not None:
            rekeyed: dict[int, Callable[[Frame], None]] = {}
            for old, new in moved:
                callback = self._waiting.pop(old, None)
                if callback is not None:
                    rekeyed[new] = callback
            lost = LadderError("session_closed", "the session ended before the reply arrived")
            for msg_id, callback in self._waiting.items():
                if msg_id not in self._subscribing:  # subscriptions are renewed just below
                    callback({"t": "err", **oversize.get(msg_id, lost).body()})
            for msg_id, error in oversize.items():
                if msg_id not in self._waiting:  # an emit: nobody waits for it
                    self._emit(ServerError(error.code, error.reason))
            self._waiting = rekeyed
            self._subscribing.clear()
        self._acked()
        self._conn = conn
        self._limits = limits
        self.session_id = str(welcome["sid"])
        expires = welcome.get("exp")
        self._expires = float(expires) if isinstance(expires, int | float) else None
        old_rung, self.transport = self._last_rung, conn.name
        self._last_rung = conn.name
        self.state = "connected"
        self._cancel_ack_timer()  # the hello told the server what was delivered
        if self._remember:
            rung_memory.remember(self.url, conn.name)
        self.policy.won(conn.name)
        if new_session and self._had_session:
            self._emit(SessionLost(self._pending_loss or "the server started a new session"))
        self._pending_loss = None
        if new_session:
            for sub in list(self._subs.values()):
                if sub.active:
                    self._submit_subscribe(sub)
        self._had_session = True
        self._emit(Connected(conn.name, self.session_id, not new_session))
        if old_rung != conn.name:
            why = self._step_reason or reason
            self._emit(TransportChanged(old_rung, conn.name, why))
        self._step_reason = None
        if self._connected is not None and not self._connected.done():
            self._connected.set_result(None)
        self._spawn(self._flush())
        if self.policy.above(conn.name):
            self._start_probe()

    async def _lost(self, conn: Transport, reason: str) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._probe_task
            self._probe_task = None
        await conn.close()
        if self._conn is conn:
            self._conn = None
        self._cancel_ack_timer()  # the next hello carries the ack
        self.transport = None
        if self.state != "closed":
            self.state = "disconnected"
        if not self._closed_by_app:
            self._emit(Disconnected(conn.name, reason))

    async def _pump(self, conn: Transport) -> str:
        """Read frames until the transport fails; switch transports when a probe wins."""
        while True:
            try:
                await self._read(conn)
            except TimeoutError:
                return f"{conn.name}: nothing received for {self._liveness(conn):g} s (heartbeat timeout)"
            except TransportClosed as exc:
                switch, self._switch_to = self._switch_to, None
                if switch is None or self.state == "closed":
                    error = exc.error
                    if error is not None and error.code in _SESSION_GONE:
                        self._session_gone(f"{error.code}: {error.reason}")
                    elif error is not None and error.code == "shutting_down":
                        self._reconnect_now = True
                    elif error is not None:
                        self._fatal_refusal([error])
                    return exc.reason
                new, reason = switch
                await conn.close()
                old = conn.name
                conn = new
                self._conn = conn
                self.transport = conn.name
                self._last_rung = conn.name
                self.policy.won(conn.name)
                if self._remember:
                    rung_memory.remember(self.url, conn.name)
                self.peer.welcome(conn.welcome)
                self._cancel_ack_timer()  # the new transport's hello carried the ack
                self._emit(TransportChanged(old, conn.name, reason))
                self._spawn(self._flush())
                if self.policy.above(conn.name):
                    self._start_probe()
            except _SessionEnded as ended:
                reason = (
                    f"{conn.name}: session ended by the server ({ended.error.code}: {ended.error.reason})"
                )
                if ended.error.code == "session_closed":
                    # The server ended it on purpose (hub.disconnect): do not come back uninvited.
                    self._give_up(ended.error)
                    return reason
                if ended.error.code == "shutting_down":
                    # Not our session's end: this server is going away. Resume it elsewhere now.
                    self._reconnect_now = True
                    return reason
                self._session_gone(f"{ended.error.code}: {ended.error.reason}")
                return reason

    def _liveness(self, conn: Transport) -> float:
        welcome = conn.welcome
        heartbeat = float(welcome.get("hb", 20_000)) / 1000
        if conn.streaming:
            return heartbeat * 1.5 + 1.0
        if conn.name == "longpoll":
            return float(welcome.get("poll", 25_000)) / 1000 + heartbeat / 2 + 5.0
        return self.poll_interval[1] + 15.0

    async def _read(self, conn: Transport) -> None:
        deadline = self._liveness(conn)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(deadline) as watchdog:
            while True:
                frames = await conn.recv()
                watchdog.reschedule(loop.time() + deadline)
                for frame in frames:
                    self._handle(frame, conn)
                self._maybe_refresh()
                self._ack_received(conn)

    def _handle(self, frame: Frame, conn: Transport) -> None:
        if "s" in frame:
            for ready in self.peer.receive(frame):
                self._deliver(ready)
            return
        kind = frame.get("t")
        if kind == "ack":
            self.peer.on_ack(int(frame["i"]))
            self._acked()
        elif kind == "ping":
            if conn.pongs:  # on SSE a pong would cost a POST per heartbeat, for nothing
                self._spawn(self._pong(conn))
        elif kind == "bye":
            raise _SessionEnded(
                LadderError(str(frame.get("code", "session_closed")), str(frame.get("reason", "")))
            )
        elif kind == "err":
            if frame.get("code") == "rate_limited" and isinstance(frame.get("re"), int):
                retry_after = frame.get("retry_after")
                self._rate_limited(int(frame["re"]), float(retry_after) if retry_after else 0.0)
                return
            self._emit(ServerError(str(frame.get("code")), str(frame.get("reason", ""))))

    async def _pong(self, conn: Transport) -> None:
        """Answer a WebSocket ping; a pending ack goes with it instead of waiting its timer."""
        frames: list[Frame] = [{"t": "pong"}]
        ack = self.peer.ack_frame()
        if ack is not None:
            frames.append(ack)
            self._acks_sent()
        with contextlib.suppress(TransportClosed):  # the reader notices a dead socket
            await conn.send(frames)

    def _deliver(self, frame: Frame) -> None:
        kind = frame.get("t")
        if kind == "pub":
            sub = self._subs.get(frame["ch"])
            if sub is not None:
                sub.deliver(int(frame["o"]), frame.get("d"))
        elif kind in ("reply", "err"):
            msg_id = frame.get("re")
            callback = self._waiting.pop(msg_id, None) if isinstance(msg_id, int) else None
            if callback is not None:
                callback(frame)
            elif kind == "err":
                self._emit(ServerError(str(frame.get("code")), str(frame.get("reason", ""))))
        elif kind == "push":
            self._emit(Push(str(frame.get("ev")), frame.get("d")))
        elif kind in ("join", "leave"):
            self._emit(Presence(str(kind), str(frame.get("ch")), dict(frame.get("m") or {})))
        elif kind == "resync":
            sub = self._subs.get(frame["ch"])
            if sub is not None:
                sub.resync(str(frame["ep"]), int(frame["off"]))
            self._emit(ResyncNeeded(str(frame["ch"]), str(frame["ep"])))
        elif kind == "unsubd":
            sub = self._subs.pop(frame["ch"], None)
            if sub is not None:
                sub.end(LadderError(str(frame.get("code")), str(frame.get("reason", ""))))

    # -- climbing back up -----------------------------------------------------------------------

    def _start_probe(self) -> None:
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.get_running_loop().create_task(self._probe(), name="ladder-probe")

    async def _probe(self) -> None:
        """While on a lower rung, try the better ones with backoff; hand over on success."""
        delay = self.probe_delay
        while self.state == "connected" and self._conn is not None:
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            current = self._conn
            if current is None or self.state != "connected":
                return
            for rung in self.policy.above(current.name):
                try:
                    candidate = await self._open(rung, "probe")
                except TransportClosed as exc:
                    log.debug("probe of %s failed: %s", rung, exc.reason)
                    continue
                if self._conn is not current or self.state != "connected":
                    await candidate.close()
                    return
                if not candidate.welcome.get("resumed"):
                    await self._discard(candidate)  # our session is gone there; the pump will learn
                    continue
                self._switch_to = (candidate, f"{rung} works again (probe succeeded)")
                current.interrupt("switching to a better rung")
                return
            delay = min(delay * 2, self.probe_max_delay)
