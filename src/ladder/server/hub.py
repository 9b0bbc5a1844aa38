"""The public server API: :class:`Ladder` (the :class:`~ladder.Context` its handlers receive
is in ``context.py``, compiled with the path that makes one per event).

The hub is a thin front: what it does happens in its :class:`~.node.Node` (session and
channel tables, dispatch, cluster, the drivers' gateway), which it builds from its settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from ..engine import create_engine
from ..engine.base import ChannelOptions, Engine, Member, Payload, Publication
from ..errors import ConfigurationError
from ..protocol.frames import MAX_HISTORY_LIMIT, check_channel, check_event, check_session_id, check_user
from ..protocol.session import SessionLimits
from .auth import Authenticate, Permissions, default_permissions
from .config import OPEN_ORIGINS, TRANSPORTS, ChannelRules, Limits, Settings, check_hub_settings
from .dispatch import Handler
from .gateway import Gateway
from .jwt import JWT
from .node import Node
from .routes import handle

log = logging.getLogger("ladder")


class Ladder:
    """A Ladder hub: an ASGI application plus the server-side API.

    Mount it anywhere (``app.mount("/ladder", hub)``) or run it with ``ladder serve``. It
    starts lazily on the first request, or with the app through ``lifespan``. A setting that
    cannot work raises :class:`~ladder.ConfigurationError` here, not at the first request.

    Args:
        engine: ``"memory://"`` (one process), ``"redis://host:6379/0"`` (several processes
            sharing one Redis; needs ``ladder-rt[redis]``), or an engine object.
        allowed_origins: Browser origins allowed to connect (``["https://app.example"]``).
            None allows the hub's own origin only; ``["*"]`` allows any (never with a hook
            that accepts users by cookie: docs/security.md; a WARNING). A list replaces the
            same-origin rule: list the hub's own origin too when its pages use it. Entries
            are whole origins, not patterns: one with a ``*`` inside it
            (``"https://*.example"``), or an empty list, raises ``ConfigurationError``.
        authenticate: Called with an :class:`~ladder.AuthRequest` when a session opens;
            returns an :class:`~ladder.Identity` or a user id string to accept, None or raises
            ``LadderError`` to refuse. Sync or async. ``JWT(key)`` is built in. None: every
            client is anonymous. Anything else it returns, or any other exception, is a bug
            in the app: the client gets ``internal`` ("the authenticate hook failed (see the
            server log)"; HTTP 500, an ``err`` frame and close 1011 on a WebSocket, an ``err``
            answer to a live ``refresh``, whose session goes on) and the log has a line at
            ERROR naming the hook, with the traceback or what it returned. The server puts no time
            limit on the hook: bound its own calls (a user database, an identity provider).
        permissions: ``(identity, action, channel, options) -> bool`` (sync or async) for
            ``subscribe``, ``publish``, ``presence`` and ``history``: ``True`` allows,
            ``False`` refuses (``forbidden``), and a ``LadderError`` it raises refuses with
            that code and reason. ``history`` covers a subscription's past too: refused, a
            ``sub`` with ``recent`` is refused, and a recovery from a position gets none of
            what it missed but ``recovered`` false (its client resyncs). ``presence`` covers
            the ``join``/``leave`` frames too: refused, a subscriber gets none (asked once,
            when it subscribes). None: anyone may subscribe and read; clients publish only
            where ``client_publish`` is on. Any other exception, or an answer that is not a
            bool (``"yes"``, ``None``, ``1``), is a bug in the app: the client gets
            ``internal`` ("the permissions hook failed for publish", or "returned str for
            publish, not True or False") and the log has a line at ERROR naming the hook,
            the action and the channel, with the traceback or what it returned.
        channels: Channel options by glob pattern, ``{"room:*": ChannelOptions(...)}``; the
            first matching pattern wins.
        default_channel: Options of channels no pattern matches (None: ``ChannelOptions()``).
        transports: The rungs offered, any of ``websocket``, ``sse``, ``longpoll``, ``poll``.
        session_ttl: Seconds a session outlives its last connection; a client back within it
            resumes with nothing lost.
        heartbeat: Seconds between server pings on WebSocket and SSE; set it below the idle
            timeout of any proxy on the way.
        poll_timeout: Seconds a long poll is held open when there is nothing to send.
        presence_ttl: Seconds a presence entry lives after its node last refreshed it (a
            dead node's members leave after it; a client that vanished leaves when its
            session ends, ``session_ttl`` after its transport is noticed gone). These four
            timings are from 0.05 s to an hour (``presence_ttl`` a day, ``session_ttl`` 30
            days).
        node_lease: Seconds (0.5 to 3600) a node of several (the Redis engine) may go
            without refreshing its lease before another node, finding it silent, may declare
            it dead: its sessions are then lost (their clients start successors elsewhere),
            and the node ends them itself when it wakes. A paused process or an event loop
            blocked that long loses its sessions; no lease with the memory engine.
        limits: Bounds on what one client can make the server hold or do (:class:`Limits`).
        sse_padding: Bytes of padding at the start of an SSE stream (pushes the stream
            through proxies that buffer the first kilobytes): an int from 0 to 65536.
        gzip_min_size: Poll responses at least this many bytes are gzipped when the client
            accepts it: an int from 0 (every response) to 1048576.
        clock: The monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        engine: str | Engine = "memory://",
        *,
        allowed_origins: Sequence[str] | None = None,
        authenticate: Authenticate | None = None,
        permissions: Permissions | None = None,
        channels: Mapping[str, ChannelOptions] | None = None,
        default_channel: ChannelOptions | None = None,
        transports: Sequence[str] = TRANSPORTS,
        session_ttl: float = 120.0,
        heartbeat: float = 20.0,
        poll_timeout: float = 25.0,
        presence_ttl: float = 60.0,
        node_lease: float = 10.0,
        limits: Limits | None = None,
        sse_padding: int = 2048,
        gzip_min_size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        timings = {"session_ttl": session_ttl, "heartbeat": heartbeat, "poll_timeout": poll_timeout}
        timings |= {"presence_ttl": presence_ttl, "sse_padding": sse_padding, "gzip_min_size": gzip_min_size}
        timings["node_lease"] = node_lease
        offered = check_hub_settings(
            allowed_origins, transports, timings,
            authenticate=authenticate, permissions=permissions, limits=limits,
        )
        if not callable(clock):  # (5 was the hub's TypeError: 'int' object is not callable)
            fix = "pass a function returning seconds, like time.monotonic (the default)"
            raise ConfigurationError("clock", f"got {clock!r}, not a function", fix)
        if allowed_origins and "*" in allowed_origins and not isinstance(authenticate, JWT | None):
            log.warning(OPEN_ORIGINS)  # (cookies reach a hook from any site's pages)
        limits = limits or Limits()
        self._settings = Settings(
            allowed_origins=None if allowed_origins is None else tuple(allowed_origins),
            transports=offered,
            limits=limits,
            channel_rules=ChannelRules(channels, default_channel),
            session_limits=SessionLimits(
                ttl=session_ttl,
                heartbeat=heartbeat,
                poll_timeout=poll_timeout,
                max_queue=limits.max_queue,
                max_queue_bytes=limits.max_queue_bytes,
                inbox_window=limits.inbox_window,
                batch_frames=limits.batch_frames,
            ),
            authenticate=authenticate,
            permissions=permissions or default_permissions,
            presence_ttl=presence_ttl,
            sse_padding=sse_padding,
            gzip_min_size=gzip_min_size,
            clock=clock,
            node_lease=node_lease,
        )
        self._handlers: dict[str, Handler] = {}
        self._node = Node(
            self._settings, create_engine(engine), self._handlers, self
        )

    # -- settings ---------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The engine (settable before the hub starts, as ``ladder serve --engine`` does)."""
        return self._node.engine

    @engine.setter
    def engine(self, engine: str | Engine) -> None:
        if self._node.started:
            raise RuntimeError("the engine of a started hub cannot be replaced")
        self._node = Node(
            self._settings, create_engine(engine), self._handlers, self
        )

    @property
    def node_lease(self) -> float:
        """Seconds of silence after which this node may be declared dead (settable before
        the hub starts, as ``ladder serve --node-lease`` does)."""
        return self._settings.node_lease

    @node_lease.setter
    def node_lease(self, seconds: float) -> None:
        if self._node.started:
            raise RuntimeError("the node lease of a started hub cannot be changed")
        check_hub_settings(None, self.transports, {"node_lease": seconds})
        self._settings = dataclasses.replace(self._settings, node_lease=seconds)
        self._node = Node(self._settings, self._node.engine, self._handlers, self)

    @property
    def allowed_origins(self) -> tuple[str, ...] | None:
        """The browser origins allowed to connect (``None``: the hub's own origin only)."""
        return self._settings.allowed_origins

    @property
    def transports(self) -> tuple[str, ...]:
        """The rungs offered, best first."""
        return self._settings.transports

    @property
    def limits(self) -> Limits:
        """The bounds this hub keeps (the ``limits`` it was given, or the defaults)."""
        return self._settings.limits

    # -- public API -----------------------------------------------------------------------

    def on(self, event: str) -> Callable[[Handler], Handler]:
        """Register a handler for a client event (a decorator).

        The handler is ``handler(ctx, data)``, sync or async: ``ctx`` is a :class:`~ladder.Context`,
        ``data`` what the client sent. Its return value answers the client's ``call``. Raising
        ``LadderError(code, reason)`` sends that code and reason to the caller; any other
        exception is logged with its traceback and reaches the caller as ``handler_error``.
        An event with no handler is refused with ``unknown_event``; an event has one handler
        (registering another for it raises ``ConfigurationError``).

        A plain function is the cheaper kind for a handler that only computes: on the memory
        engine, behind ``ladder serve``'s WebSocket driver, it is applied as its message is
        read, with no task. A handler that waits for anything (I/O, ``hub.publish``) is
        ``async def`` and runs in a task of its own, which ``asyncio.timeout`` and the
        libraries built on it need.

        A session's messages are applied one after the other, in order: while a handler
        runs, its client's later messages wait for it (its acks, pings and ``bye`` do not;
        other clients are never held). A handler that may wait long bounds its wait
        (``asyncio.timeout``), or starts the work in a task of its own and answers at once
        (telling the client later with :meth:`send`). A handler is not cancelled when its
        client leaves; its answer then goes nowhere.
        """

        if callable(event):  # ``@hub.on`` with no name: the function would replace the handler
            name = getattr(event, "__name__", "handler")
            raise TypeError(f'@hub.on needs the event\'s name: write @hub.on("{name}") above {name}')
        check_event(event)

        def register(handler: Handler) -> Handler:
            if not callable(handler):
                raise TypeError(f"hub.on({event!r}) registers a function, not {type(handler).__name__}")
            registered = self._handlers.get(event)
            if registered is not None and registered is not handler:
                raise ConfigurationError(
                    f"hub.on({event!r})",
                    f"{_named(registered)} handles {event!r} already, and {_named(handler)} would "
                    "replace it without a word",
                    "give one of them another event name (an event has one handler)",
                )
            self._handlers[event] = handler
            return handler

        return register

    async def publish(self, channel: str, data: Any) -> Publication:
        """Publish ``data`` to ``channel`` (from any server code). Returns the publication.

        Data no encoding can carry (a ``datetime``, a set containing itself) raises
        ``TypeError`` naming its type, and a channel name no client can use ``ValueError``:
        bugs of the caller, which a handler reports as ``handler_error`` with a logged
        traceback, not a malformed frame of its client.
        """
        payload, options = Payload.checked(data), self._settings.channel_rules.options(check_channel(channel))
        node = self._node
        await node.serving()
        started = time.perf_counter()
        pub = await node.engine.publish(channel, payload, options)
        node.metrics.engine_latency.observe(time.perf_counter() - started)
        return pub

    async def send(self, session_id: str, event: str, data: Any = None) -> bool:
        """Push an event to one session (on whichever node holds it). False when unknown.

        Data no encoding can carry raises ``TypeError``, as for :meth:`publish`, and so does a
        ``session_id`` that is not a ``str``.
        """
        check_session_id(session_id)
        Payload.checked(data)
        check_event(event)
        await self._node.serving()
        return await self._node.pusher.send(session_id, event, data)

    async def send_user(self, user: str, event: str, data: Any = None) -> int:
        """Push an event to every session of ``user``, on every node.

        Returns how many sessions it was queued for: here, plus those other nodes reported
        within 3 s (a node that does not answer in time is not counted, though it may
        still deliver; with the engine unreachable, only this node's are reached, and a
        WARNING says so). A session whose client is away gets it when the client comes back.
        A ``user`` that is not a ``str`` raises ``TypeError``, as for :meth:`disconnect_user`.
        """
        check_user(user)
        Payload.checked(data)
        check_event(event)
        await self._node.serving()
        return await self._node.pusher.send_user(user, event, data)

    async def presence(self, channel: str) -> list[Member]:
        """Members currently present in ``channel`` (none in a channel without
        ``presence=True``, where a client's query is refused with ``presence_disabled``)."""
        check_channel(channel)
        await self._node.serving()
        return await self._node.engine.presence(channel)

    async def history(self, channel: str, limit: int = 100) -> list[Publication]:
        """The newest ``limit`` publications kept for ``channel`` (1 to 10,000, as for a
        client's query; ``ValueError`` otherwise, and for a channel no client can name)."""
        check_channel(channel)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_HISTORY_LIMIT:
            raise ValueError(f"limit must be an int from 1 to {MAX_HISTORY_LIMIT}, not {limit!r}")
        node = self._node
        await node.serving()
        options = self._settings.channel_rules.options(channel)
        result = await node.engine.history(channel, since=None, limit=limit, options=options)
        return result.publications

    async def disconnect(self, session_id: str, reason: str = "disconnected by the server") -> bool:
        """End a session now, on whichever node holds it; its client is told why (a ``bye``
        ``session_closed`` with ``reason``) and does not resume it. False when unknown
        (``TypeError`` for a ``session_id`` that is not a ``str``)."""
        check_session_id(session_id)
        await self._node.serving()
        return await self._node.pusher.disconnect(session_id, reason)

    async def disconnect_user(self, user: str, reason: str = "disconnected by the server") -> int:
        """End every session of ``user``, on every node (at sign-out, or when the user's rights
        change: a live session is not authenticated again). Each client is told why (a
        ``bye`` ``session_closed`` with ``reason``) and does not resume. Returns how many
        sessions were ended: here, plus those other nodes reported within 3 s (as
        :meth:`send_user`)."""
        check_user(user)
        await self._node.serving()
        return await self._node.pusher.disconnect_user(user, reason)

    def health(self) -> dict[str, Any]:
        """What ``<mount>/health`` reports; ``ok`` is False while the engine is unhealthy."""
        return self._node.health()

    def stats(self) -> dict[str, int]:
        """Counts for tests, health checks and metrics."""
        return self._node.stats()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the engine and start the clock. Idempotent; run lazily on first use (but
        only this starts a stopped hub again: ``publish`` and the rest then raise
        ``shutting_down``)."""
        await self._node.start()

    async def stop(self) -> None:
        """Close every session (clients are told the server is going away) and the engine."""
        await self._node.stop()

    def lifespan(self, app: Any = None) -> contextlib.AbstractAsyncContextManager[None]:
        """An async context manager that starts the hub on entry and stops it on exit: a
        framework's lifespan (``Starlette(lifespan=hub.lifespan)``) or ``async with
        hub.lifespan():`` inside one of your own. Not a coroutine: nothing to await."""
        return self._running()

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await handle(self._node, scope, receive, send)


def internals(hub: Ladder) -> Node:
    """A hub's server side (for its own drivers and tests; not an API)."""
    return hub._node


def gateway_of(hub: Ladder) -> Gateway:
    """What a driver outside the ASGI path (``ladder serve``'s native WebSocket) talks to."""
    return hub._node.gateway


def _named(handler: Handler) -> str:
    """A handler as an error names it: where it is defined."""
    module = getattr(handler, "__module__", None)
    name = getattr(handler, "__qualname__", None) or type(handler).__name__
    return f"{module}.{name}" if module else name
