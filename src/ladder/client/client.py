"""The Python asyncio client: one session kept alive across rungs, reconnects and sessions.

One task per client runs the connection (:mod:`.connection`): it races the rungs, reads
frames (:mod:`.inbound`), reconnects with backoff. A second task exists only while the
client stands on a lower rung, probing the better ones (:mod:`.switching`). Sending
happens in the caller's task (:mod:`.outbound`). Every decision is the sans-I/O client
core's (:mod:`ladder.protocol.client`, and :class:`~ladder.protocol.peer.PeerState` for
delivery and dedupe); this package is its asyncio driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar, overload

import httpx

from ..protocol.client import AckPolicy, LongPollHold, ProbeSchedule, UpstreamRetry
from ..protocol.client.upstream import RETRY_DELAYS
from ..protocol.codec import codec_named
from ..protocol.errors import LadderError
from ..protocol.peer import Frame, PeerState
from . import rungs as rung_memory
from .calls import Calls
from .events import (
    EVENT_NAMES,
    Connected,
    Disconnected,
    Presence,
    ProbeResult,
    Push,
    Resubscribed,
    ResyncNeeded,
    ServerError,
    SessionLost,
    StateChanged,
    TransportChanged,
)
from .options import check_options, check_url, ordered
from .pacing import Pacer
from .rungs import RungPolicy
from .subscription import Publication, SubscribeResult, Subscription
from .transports.base import Endpoint

log = logging.getLogger("ladder.client")

TRANSPORTS = ("websocket", "sse", "longpoll", "poll")

__all__ = ["TRANSPORTS", "Client", "Publication", "SubscribeResult", "Subscription"]

_R = TypeVar("_R")
"""What an event callback returns (ignored; kept so a decorated function keeps its type)."""


SEND_RETRY_DELAYS = tuple(delay / 1000 for delay in RETRY_DELAYS)
"""Seconds before writing a failed upstream POST again (the core's
:class:`~ladder.protocol.client.UpstreamRetry` decides)."""


class Client(Calls):
    """A Ladder client. Use as ``async with Client(url) as c`` or ``connect()``/``close()``.

    Register event callbacks (``on``) before connecting, so the first events are not missed.

    Args:
        url: Where the hub is mounted (``http://host:8000/ladder``; ``https`` for TLS).
        transports: The rungs allowed, any of ``websocket``, ``sse``, ``longpoll``, ``poll``
            (the order does not matter: the ladder is always tried best first). When the
            server offers none of them (its ``transports`` setting), the client gives up at
            once with ``unsupported_transport``, naming the rungs of both.
        token: Credentials for the server's ``authenticate`` hook: a string, or a callable
            returning one, ``async`` or not (called once per race of the rungs, and per
            probe, and before the session's credentials expire to refresh them over the
            live session).
        headers: Extra HTTP headers on every request (a ``Cookie`` for a session cookie).
        encoding: ``msgpack`` or ``json`` on the wire.
        stagger: When each rung of the race starts, in seconds after the first: never going
            down; a shorter sequence than the race repeats its last value.
        open_timeout: Seconds a rung may take to deliver its welcome before it counts as failed.
        verify_timeout: Seconds an SSE stream may take to prove it is not buffered (its pong).
        backoff_base: First reconnect delay in seconds (full jitter, doubling).
        backoff_max: Longest reconnect delay in seconds (not below ``backoff_base``; given
            alone below the default base, it lowers the base with it).
        max_attempts: Reconnect attempts before giving up (None: forever).
        connect_timeout: Seconds the first connection may take (None: no bound); past it the
            client closes and ``connect()`` raises ``connect_failed`` listing each rung's reason.
            Once connected, the client reconnects for as long as it lives.
        stable_after: Seconds a connection must live to not count as cut.
        cut_limit: Connections in a row cut sooner than ``stable_after`` before stepping down a rung.
        probe_delay: First delay before probing a better rung, in seconds (backoff after it).
        probe_max_delay: Longest delay between probes of a better rung (not below
            ``probe_delay``; a ``probe_delay`` given alone above the default raises it).
        poll_interval: Short polling's (fastest, slowest) interval in seconds.
        max_queue: Messages kept while unacknowledged or disconnected; past it sending
            raises ``LadderError("queue_full")``.
        max_buffer: Publications buffered per subscription for ``async for``.
        ack_every: On WebSocket and SSE, acknowledge once about this many frames are
            unacknowledged (a count drawn from ``[ack_every/2, ack_every]``, so that the
            subscribers of a channel do not all ack together; at most half the server's
            ``lim.queue``, or half its ``lim.qbytes`` in bytes)...
        ack_interval: ...or once the stream has been quiet this many seconds (polls carry
            the ack in every request).
        remember: Start at the rung that worked last for this URL and these ``transports`` in
            this process.
        refresh_margin: Seconds before the credentials expire at which a callable ``token``
            is refreshed (for credentials that live less than twice as long: halfway through).
        http_client: An ``httpx.AsyncClient`` to share a connection pool between clients.
        ssl_context: TLS verification for ``https`` URLs (a private CA, for example).
    """

    def __init__(
        self,
        url: str,
        *,
        transports: Sequence[str] = TRANSPORTS,
        token: str | Callable[[], str | Awaitable[str | None] | None] | None = None,
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
        ack_every: int = 512,
        ack_interval: float = 1.0,
        remember: bool = True,
        refresh_margin: float = 60.0,
        http_client: httpx.AsyncClient | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        url = check_url(url)
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise TypeError(f"http_client must be an httpx.AsyncClient, not {type(http_client).__name__}")
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError(
                f"ssl_context must be an ssl.SSLContext (ssl.create_default_context(cafile=...)), "
                f"not {type(ssl_context).__name__}"
            )
        if isinstance(transports, str):
            raise TypeError(f"transports must be a list of rung names, e.g. [{transports!r}], not a str")
        if not isinstance(transports, Sequence) or not all(isinstance(t, str) for t in transports):
            # (an iterator was used up by the check below, and None or 5 was "not iterable")
            raise TypeError(
                f"transports must be a list of rung names, e.g. ['websocket', 'sse'], not {transports!r}"
            )
        if not isinstance(remember, bool):  # (as the browser client's flags: 5 or "no" was taken for True)
            raise TypeError(f"remember must be True or False, not {remember!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"max_queue must be a positive int (default 1000), not {max_queue!r}")
        check_options(
            seconds={
                "open_timeout": open_timeout,
                "verify_timeout": verify_timeout,
                "connect_timeout": connect_timeout,
                "backoff_base": backoff_base,
                "backoff_max": backoff_max,
                "stable_after": stable_after,
                "probe_delay": probe_delay,
                "probe_max_delay": probe_max_delay,
                "ack_interval": ack_interval,
                "refresh_margin": refresh_margin,
            },
            counts={
                "max_attempts": max_attempts,
                "cut_limit": cut_limit,
                "max_buffer": max_buffer,
                "ack_every": ack_every,
            },
            token=token,
            headers=headers,
            stagger=stagger,
            poll_interval=poll_interval,
        )
        unknown = [t for t in transports if t not in TRANSPORTS]
        if unknown or not transports:
            raise ValueError(f"transports must be a non-empty subset of {TRANSPORTS}, not {unknown}")
        self.url = url.rstrip("/")
        self.rungs = [t for t in TRANSPORTS if t in transports]
        self._token = token
        if encoding not in ("msgpack", "json"):
            raise ValueError(f"encoding must be 'msgpack' or 'json', not {encoding!r}")
        self.endpoint = Endpoint(
            self.url, codec_named(encoding), dict(headers or {}), ssl_context
        )
        self.stagger = tuple(stagger)
        self.open_timeout = open_timeout
        self.verify_timeout = verify_timeout
        self.connect_timeout = connect_timeout
        times = {"backoff_base": backoff_base, "backoff_max": backoff_max}
        times |= {"probe_delay": probe_delay, "probe_max_delay": probe_max_delay}
        defaults = {name: p.default for name, p in inspect.signature(Client.__init__).parameters.items()}
        backoff_base, backoff_max = ordered("backoff_base", "backoff_max", times, defaults)
        probe_delay, probe_max_delay = ordered("probe_delay", "probe_max_delay", times, defaults)
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
        start = rung_memory.remembered(self.url, self.rungs) if remember else None
        self.policy = RungPolicy(self.rungs, cut_limit=cut_limit, stable_after=stable_after, start=start)
        self.peer = PeerState(max_queue=max_queue)
        self.acking = AckPolicy(every=ack_every, interval=ack_interval * 1000)
        self.state = "disconnected"
        """``disconnected``, ``connecting``, ``connected`` or ``closed``."""
        self.transport = None
        """The rung in use now (None while disconnected)."""
        self.session_id = None
        self._own_http = http_client is None
        self._http = http_client
        self._conn = None
        self._subs = {}
        self._waiting = {}
        self._callbacks = {}
        self._streams = []
        self._stream_waiters = []
        self._run_task = None
        self._probe_task = None
        self._probes = ProbeSchedule()
        self._switch_to = None
        self._connected = None
        self._flushing = False
        self._retry = (None, UpstreamRetry())
        self._ack_timer = None
        """Started by the first unacknowledged frame; acks once nothing was heard for ``ack_interval``."""
        self._ack_wanted = False
        """The next flush must write an ack even with no message to carry it."""
        self._last_rung = None
        self._had_session = False
        self._state_told = False
        self._background = set()
        self._step_reason = None
        self._pending_loss = None
        self._closed_by_app = False
        self._expires = None
        """When the session's credentials expire (Unix time), if they do."""
        self._refreshing = False
        self._refresh_timer: asyncio.TimerHandle | None = None
        """Fires ``refresh_margin`` before a callable token's credentials expire."""
        self._refresh_due = None
        self._last_end = None
        """Why the previous connection ended (its category goes in the next hello)."""
        self._drained = []
        self._subscribing = set()
        """Ids of subscribe requests still in flight (renewed, not failed, on a new session)."""
        self._limits = {}
        """The server's limits from the last welcome (``lim``: frame and body sizes)."""
        self._post_cap = None
        self._pacer = Pacer()
        self._holding = LongPollHold()
        self._pace_timer = None
        self._heard = 0.0
        """When the current transport last delivered something (loop time)."""
        self._watchdog = None
        self._pinged = None
        """The nonce of a liveness check's ping whose pong has not come yet."""
        self._proof = None
        self._proof_timer = None
        self._fatal = None
        """Why the client gave up for good (later calls raise it instead of ``closed``)."""
        self._reasons = {}
        """The latest reason each rung failed to open (for ``connect_failed``)."""
        self._racing = {}
        """The failures of the race in progress, as they come."""
        self._race_token = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        try:
            await self.connect()
        except BaseException:  # (cancelled too: ``async with`` gives no client to close then)
            await asyncio.shield(self.close())
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """End the session (the server forgets it at once) and release everything.

        Messages not yet acknowledged are dropped, an ``emit`` just queued included (as in
        the browser client): ``await client.flush()`` first to have them applied."""
        if self.state == "closed":
            return
        self._in_its_loop()
        conn = self._conn
        connected = self.state == "connected"
        self._set_state("closed", "the client was closed")
        self._closed_by_app = True  # the server's answer to our bye is not news to the app
        self._cancel_ack_timer()
        self._arm_refresh()  # (closed: it only cancels the timer)
        if conn is not None and connected:
            bye: list[Frame] = [{"t": "bye"}]
            ack = None if conn.implicit_ack else self.peer.ack_frame()
            if ack is not None:
                bye.insert(0, ack)  # the final ack rides with the bye
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await conn.send(bye)
        if conn is not None:
            self._emit(Disconnected(conn.name, "the client was closed"))
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
        for waiter in self._drained:  # (a flush waiting: what it waits for will not come)
            if not waiter.done():
                waiter.set_exception(error)
        self._drained.clear()
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

    # -- API ----------------------------------------------------------------------------------

    # -- outbound plumbing ----------------------------------------------------------------------

    # -- acknowledgements -----------------------------------------------------------------------

    # -- events ---------------------------------------------------------------------------------

    # -- the connection loop ------------------------------------------------------------------

    # -- climbing back up -----------------------------------------------------------------------

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
    @overload
    def on(
        self, name: Literal["probe"], callback: Callable[[ProbeResult], _R]
    ) -> Callable[[ProbeResult], _R]: ...
    @overload
    def on(
        self, name: Literal["probe"], callback: None = None
    ) -> Callable[[Callable[[ProbeResult], _R]], Callable[[ProbeResult], _R]]: ...
    @overload
    def on(
        self, name: Literal["state"], callback: Callable[[StateChanged], _R]
    ) -> Callable[[StateChanged], _R]: ...
    @overload
    def on(
        self, name: Literal["state"], callback: None = None
    ) -> Callable[[Callable[[StateChanged], _R]], Callable[[StateChanged], _R]]: ...
    def on(self, name: str, callback: Callable[[Any], Any] | None = None) -> Any:
        """Call ``callback(event)`` for every event called ``name`` (usable as a decorator).

        Names: ``connected``, ``disconnected``, ``transport``, ``session_lost``,
        ``resubscribed``, ``resync``, ``push``, ``presence``, ``error``, ``probe``,
        ``state`` (the browser client's eleven, protocol §9); the event is the
        matching record of :mod:`ladder.client` (``transport`` gives a
        :class:`~ladder.client.TransportChanged`). An unknown name raises ``ValueError``.
        A callback registered twice for one name is one callback (called once per event), as
        in the browser client.
        """
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown event {name!r}; one of {sorted(EVENT_NAMES)}")

        def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
            callbacks = self._callbacks.setdefault(name, [])
            if fn not in callbacks:
                callbacks.append(fn)
            return fn

        return register if callback is None else register(callback)

    def off(self, name: str, callback: Callable[[Any], Any]) -> bool:
        """Stop calling ``callback`` for ``name``, as the browser client's ``off``; False when
        it was not registered. An unknown name raises ``ValueError``, as in :meth:`on`."""
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown event {name!r}; one of {sorted(EVENT_NAMES)}")
        kept = self._callbacks.get(name, [])
        left = [fn for fn in kept if fn != callback]
        self._callbacks[name] = left
        return len(left) != len(kept)
