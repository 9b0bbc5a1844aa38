"""The hub: sessions, channels, handlers, and the public server API (:class:`Ladder`).

Transports are thin drivers: they decode frames, hand them to :meth:`Ladder.receive`, and
write what :meth:`SessionState.take` gives them. Everything else happens here or in the
sans-I/O core. Fan-out is a loop that appends one shared, pre-encoded frame to each
subscriber's outbox and wakes its writer: no task and no encoding per recipient.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import inspect
import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

from ..engine import create_engine
from ..engine.base import ChannelOptions, Engine, HistoryResult, Member, Payload, Position, Publication
from ..protocol.errors import LadderError
from ..protocol.frames import (
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Call,
    ClientFrame,
    Emit,
    Hello,
    Invalid,
    Numbered,
    OutFrame,
    Ping,
    Pong,
    Previous,
    error_frame,
    presence_frame,
    pub_frame,
    push_frame,
    resync_frame,
)
from ..protocol.reliable import OutboxOverflow
from ..protocol.session import Attachment, Phase, SessionLimits, SessionState
from .applied import Answers, Inherited, encode_answer
from .auth import (
    Authenticate,
    AuthRequest,
    Identity,
    Permissions,
    default_permissions,
    run_authenticate,
)
from .cluster import SETTLE_TIMEOUT, Cluster, Elsewhere
from .config import TRANSPORTS, ChannelRules, Limits, check_hub_settings
from .logs import make_visible
from .metrics import REASONS, Counters, Metrics
from .ratelimit import Bucket, Limiter, Rate
from .session import Session, Subscription

log = logging.getLogger("ladder")

_MAX_ORIGIN_WARNINGS = 256


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler knows about the client that sent the event (its first argument).

    Attributes:
        hub: The hub that received the event.
        session_id: The sender's session (for ``hub.send(ctx.session_id, ...)``).
        client_id: The sender's connection id, as shown in presence (``c``).
        identity: What ``authenticate`` returned for the session.
        event: The event's name.
    """

    hub: Ladder
    session_id: str
    client_id: str
    identity: Identity
    event: str
    message_key: str | None = None
    """A key for the client message being handled that survives the client carrying it
    over to a new session (``<sid>:<id>`` of the session that first received it): use it
    to make side effects exactly once even if this node dies right after applying it."""

    @property
    def user(self) -> str | None:
        """The authenticated user id (``identity.user``); None for an anonymous client."""
        return self.identity.user


Handler: TypeAlias = Callable[[Context, Any], Any]


class Ladder:
    """A Ladder hub: an ASGI application plus the server-side API.

    Mount it anywhere (``app.mount("/ladder", hub)``) or run it with ``ladder serve``. It
    starts lazily on the first request, or with the app through ``lifespan``. A setting that
    cannot work raises :class:`~ladder.ConfigurationError` here, not at the first request.

    Args:
        engine: ``"memory://"`` (one process), ``"redis://host:6379/0"`` (several processes
            sharing one Redis; needs ``ladder-rt[redis]``), or an engine object.
        allowed_origins: Browser origins allowed to connect (``["https://app.example"]``).
            None allows the hub's own origin only; ``["*"]`` allows any.
        authenticate: Called with an :class:`~ladder.AuthRequest` when a session opens;
            returns an :class:`~ladder.Identity` or a user id string to accept, None or raises
            ``LadderError`` to refuse. Sync or async. ``JWT(key)`` is built in. None: every
            client is anonymous.
        permissions: ``(identity, action, channel, options) -> bool`` (sync or async) for
            ``subscribe``, ``publish``, ``presence`` and ``history``. None: anyone may
            subscribe and read; clients publish only where ``client_publish`` is on.
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
            dead node's members leave after it).
        limits: Bounds on what one client can make the server hold or do (:class:`Limits`).
        sse_padding: Bytes of padding at the start of an SSE stream (pushes the stream
            through proxies that buffer the first kilobytes).
        gzip_min_size: Poll responses at least this large are gzipped when the client accepts it.
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
        limits: Limits | None = None,
        sse_padding: int = 2048,
        gzip_min_size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        timings = {"session_ttl": session_ttl, "heartbeat": heartbeat, "poll_timeout": poll_timeout}
        timings |= {"presence_ttl": presence_ttl, "sse_padding": sse_padding, "gzip_min_size": gzip_min_size}
        offered = check_hub_settings(allowed_origins, transports, timings)
        self.engine = create_engine(engine)
        self.allowed_origins = None if allowed_origins is None else tuple(allowed_origins)
        self.authenticate = authenticate
        self.permissions: Permissions = permissions or default_permissions
        self.channel_rules = ChannelRules(channels, default_channel)
        self.transports = offered
        self.limits = limits or Limits()
        self.presence_ttl = presence_ttl
        self.sse_padding = sse_padding
        self.gzip_min_size = gzip_min_size
        self.clock = clock
        self.session_limits = SessionLimits(
            ttl=session_ttl,
            heartbeat=heartbeat,
            poll_timeout=poll_timeout,
            max_queue=self.limits.max_queue,
            max_queue_bytes=self.limits.max_queue_bytes,
            inbox_window=self.limits.inbox_window,
            batch_frames=self.limits.batch_frames,
        )
        self.sessions: dict[str, Session] = {}
        self._by_user: dict[str, set[Session]] = {}
        self._by_address: Counter[str] = Counter()
        self.message_rate = Rate(self.limits.message_rate, self.limits.message_burst)
        self.address_limiter = Limiter(Rate(self.limits.request_rate, self.limits.request_burst))
        self._channels: dict[str, dict[Session, Subscription]] = {}
        self._positions: dict[str, tuple[str, int]] = {}
        """Per channel with local subscribers: (epoch, offset) of the last publication fanned out."""
        self.moved: dict[str, str] = {}
        """Sessions handed over to another node (sid -> node), kept for a session's lifetime."""
        self.cluster = Cluster(self)
        self.counters = Counters()
        self.metrics = Metrics(self)
        self._handlers: dict[str, Handler] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._start_lock: asyncio.Lock | None = None
        self._started = False
        self._stopped = False
        """Stopped, and not started again explicitly: requests are refused with ``shutting_down``
        (they would otherwise start it again, and a session opened then would hold the
        process open after a SIGTERM)."""
        self._refused_origins: set[str] = set()
        """Origins already warned about (at most ``_MAX_ORIGIN_WARNINGS``)."""
        self._last_presence_refresh = clock()
        self._last_sweep = clock()

    # -- public API -----------------------------------------------------------------------

    def on(self, event: str) -> Callable[[Handler], Handler]:
        """Register a handler for a client event (a decorator).

        The handler is ``handler(ctx, data)``, sync or async: ``ctx`` is a :class:`Context`,
        ``data`` what the client sent. Its return value answers the client's ``call``. Raising
        ``LadderError(code, reason)`` sends that code and reason to the caller; any other
        exception is logged with its traceback and reaches the caller as ``handler_error``.
        An event with no handler is refused with ``unknown_event``.
        """

        def register(handler: Handler) -> Handler:
            self._handlers[event] = handler
            return handler

        return register

    async def publish(self, channel: str, data: Any) -> Publication:
        """Publish ``data`` to ``channel`` (from any server code). Returns the publication.

        Data no encoding can carry (a ``datetime``, a set containing itself) raises
        ``TypeError`` naming its type: a bug of the caller, which a handler reports as
        ``handler_error`` with a logged traceback, not a malformed frame of its client.
        """
        payload, options = Payload.checked(data), self.channel_rules.options(channel)
        await self.start()
        started = time.perf_counter()
        pub = await self.engine.publish(channel, payload, options)
        self.metrics.engine_latency.observe(time.perf_counter() - started)
        return pub

    async def send(self, session_id: str, event: str, data: Any = None) -> bool:
        """Push an event to one session (on whichever node holds it). False when unknown."""
        session = self.sessions.get(session_id)
        if session is None:
            await self.start()
            node = await self.engine.locate_session(session_id)
            if node is None or node == self.engine.node_id:
                return False
            await self.cluster.push(node, session_id, event, data)
            return True
        self._push(session, push_frame(event, data))
        return True

    async def send_user(self, user: str, event: str, data: Any = None) -> int:
        """Push an event to every session of ``user``, on every node.

        Returns how many sessions it was queued for: here, plus those other nodes reported
        within 3 s (a node that does not answer in time is not counted, though it may
        still deliver; with the engine unreachable, only this node's are reached, and a
        WARNING says so). A session whose client is away gets it when the client comes back.
        """
        frame = push_frame(event, data)  # refused here if it cannot be encoded
        reached = self._push_user(user, frame)
        await self.start()
        try:
            answers = await self.cluster.ask_all({"k": "user", "user": user, "ev": event, "d": data})
        except LadderError as exc:  # the engine is down: other nodes cannot be reached now
            log.warning("send_user(%r) reached this node only: %s", user, exc)
            return reached
        return reached + sum(int(answer.get("n", 0)) for answer in answers)

    def send_user_here(self, user: str, event: str, data: Any = None) -> int:
        """Push an event to the sessions of ``user`` held by this node only."""
        return self._push_user(user, push_frame(event, data))

    def _push_user(self, user: str, frame: OutFrame) -> int:
        sessions = list(self._by_user.get(user, ()))
        for session in sessions:
            self._push(session, frame)
        return len(sessions)

    async def presence(self, channel: str) -> list[Member]:
        """Members currently present in ``channel``."""
        await self.start()
        return await self.engine.presence(channel)

    async def history(self, channel: str, limit: int = 100) -> list[Publication]:
        """The newest ``limit`` publications kept for ``channel``."""
        await self.start()
        options = self.channel_rules.options(channel)
        result = await self.engine.history(channel, since=None, limit=limit, options=options)
        return result.publications

    async def disconnect(self, session_id: str, reason: str = "disconnected by the server") -> bool:
        """End a session now; its client is told why and does not resume it."""
        session = self.sessions.get(session_id)
        if session is None:
            return False
        self.close_session(session, LadderError("session_closed", reason))
        return True

    def health(self) -> dict[str, Any]:
        """What ``<mount>/health`` reports; ``ok`` is False while the engine is unhealthy."""
        return {
            "ok": bool(self.engine.healthy),
            "node": self.engine.node_id,
            **self.stats(),
            **self.engine.details(),
            **self.cluster.counters,
        }

    def stats(self) -> dict[str, int]:
        """Counts for tests, health checks and metrics."""
        return {
            "sessions": len(self.sessions),
            "live": sum(1 for s in self.sessions.values() if s.state.phase is Phase.LIVE),
            "channels": len(self._channels),
            "users": len(self._by_user),
        }

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the engine and start the clock. Idempotent; run lazily on first use."""
        self._stopped = False
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            make_visible()
            await self.engine.start(self)
            self._ticker = asyncio.create_task(self._tick_loop(), name="ladder-ticker")
            self._started = True

    async def _serving(self) -> None:
        """Start on a client's first request, but never again once stopped."""
        if self._stopped:
            raise LadderError("shutting_down", "this server is shutting down")
        await self.start()

    async def stop(self) -> None:
        """Close every session (clients are told the server is going away) and the engine."""
        self._stopped = True
        if not self._started:
            return
        self._started = False
        self.cluster.stop()
        for session in list(self.sessions.values()):
            self.close_session(session, LadderError("shutting_down"))
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)
        await self.engine.stop()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """Use as (or inside) a framework lifespan: ``Starlette(lifespan=hub.lifespan)``."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await _layers().handle(self, scope, receive, send)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run background work the hub owns (never per message): kept referenced, logged."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    @property
    def tick_interval(self) -> float:
        limits = self.session_limits
        return max(0.02, min(1.0, limits.heartbeat / 4, limits.poll_timeout / 4, limits.ttl / 4))

    async def _tick_loop(self) -> None:
        interval = self.tick_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tick(self.clock())
            except Exception:  # pragma: no cover - a bug must not stop the clock
                log.exception("tick failed")

    async def tick(self, now: float) -> None:
        """Advance every session's deadlines; reap the expired ones; end sessions whose
        credentials expired without a refresh."""
        wall = time.time()
        for session in list(self.sessions.values()):
            expires = session.identity.expires
            if expires is not None and wall >= expires:
                self.close_session(session, LadderError("token_expired"))
            if session.state.tick(now) or session.state.phase is Phase.CLOSED:
                await self.forget(session)
        if now - self._last_sweep >= 10.0:
            self._last_sweep = now
            self.address_limiter.sweep(now)
        if now - self._last_presence_refresh >= self.presence_ttl / 3:
            self._last_presence_refresh = now
            for session in list(self.sessions.values()):
                for sub in list(session.subs.values()):
                    if sub.member is not None:
                        await self.engine.presence_add(sub.channel, sub.member, self.presence_ttl)

    # -- sessions -------------------------------------------------------------------------

    async def open_session(
        self, hello: Hello, request: AuthRequest, *, stream: bool = True
    ) -> tuple[Session, bool]:
        """Create a session, or find the one ``hello`` resumes. Returns (session, resumed).

        Resuming a session another node holds moves it here for a stream (``stream``), and
        raises :class:`Elsewhere` for a single request, which the caller forwards.
        """
        await self._serving()
        if hello.sid is None:
            if not self.engine.healthy:
                # A session opened here could neither subscribe nor be reached by other nodes;
                # refusing lets a balancer (or the client's retry) pick a healthy node.
                raise LadderError("engine_unavailable", "this node cannot reach its engine")
            limits = self.limits
            if len(self.sessions) >= limits.max_sessions:
                raise LadderError("too_many_sessions", "this server holds its maximum of sessions")
            address = request.address
            if address is not None and self._by_address[address] >= limits.max_sessions_per_address:
                raise LadderError(
                    "too_many_sessions", f"at most {limits.max_sessions_per_address} per address"
                )
            identity = await run_authenticate(self.authenticate, request)
            if (
                identity.user is not None
                and len(self._by_user.get(identity.user, ())) >= limits.max_sessions_per_user
            ):
                raise LadderError("too_many_sessions", f"at most {limits.max_sessions_per_user} per user")
            session = self._new_session(identity, address)
            if hello.prev is not None:
                try:
                    session.inherited = await self._inherit(hello.prev)
                except BaseException:
                    await self.forget(session)
                    raise
            return session, False
        return await self.route(hello.sid, hello.rt, stream=stream), True

    async def route(self, sid: str, token: str | None, *, stream: bool, forwarded: bool = False) -> Session:
        """The session ``sid`` if ``token`` is its resume token, wherever it lives.

        Local sessions are returned; a session on another node is moved here (``stream``)
        or reported as :class:`Elsewhere`; ``forwarded`` requests never look further.
        """
        await self._serving()
        session = self.sessions.get(sid)
        if session is None:
            # A hand-over to this node may be under way: wait for it rather than say "unknown".
            await self.cluster.arrival(sid)
            session = self.sessions.get(sid)
        if session is not None and session.state.phase is not Phase.CLOSED:
            if token is None or not hmac.compare_digest(session.state.token.encode(), token.encode()):
                raise LadderError("bad_resume_token")
            return session
        if token is None:
            raise LadderError("bad_resume_token")
        unknown = LadderError("unknown_session", f"session {sid[:8]}… is unknown or expired")
        if forwarded:
            moved = self.moved.get(sid)
            if moved is not None:
                raise Elsewhere(moved)  # the asking node follows it there
            raise unknown
        node = await self.engine.locate_session(sid)
        if node is None or node == self.engine.node_id:
            raise unknown
        if stream:
            return await self.cluster.migrate(node, sid, token)
        raise Elsewhere(node)

    async def _inherit(self, prev: Previous) -> Inherited:
        """Take over what the lost session ``prev`` applied (nothing without its token)."""
        old = self.sessions.get(prev.sid)
        if old is not None:  # ended here but perhaps still finishing a message
            await old.settle(SETTLE_TIMEOUT)
        record = await self.engine.applied_record(prev.sid, prev.rt)
        if record is None:
            log.info("new session names lost session %s: no record (expired, or not its token)", prev.sid[:8])
        return Inherited.of(prev, record)

    def _new_session(self, identity: Identity, address: str | None = None) -> Session:
        sid = self.engine.session_prefix() + secrets.token_urlsafe(16)
        state = SessionState(sid, secrets.token_urlsafe(24), self.clock(), self.session_limits)
        session = Session(state, identity, secrets.token_urlsafe(9))
        session.address = address
        self.adopt(session)
        return session

    def adopt(self, session: Session) -> None:
        """Put a session (new, or moved here from another node) in the tables."""
        self.sessions[session.sid] = session
        self.moved.pop(session.sid, None)
        if session.address is not None:
            self._by_address[session.address] += 1
        if session.user is not None:
            self._by_user.setdefault(session.user, set()).add(session)

    async def hand_over(self, session: Session, node: str) -> None:
        """Give a session to another node: forget it here without ending it for the client.

        Its transports here are closed with ``session_moved`` (the client resumes wherever
        its next request lands); its presence entries stay (the new node refreshes them).
        """
        for sub in session.subs.values():
            sub.member = None
        self.moved[session.sid] = node
        session.state.close(LadderError("session_moved"), bye=False)
        await self.forget(session)

    def welcome(self, session: Session, resumed: bool) -> dict[str, Any]:
        """The first frame on every transport: what the client needs to run the session."""
        limits = self.limits
        state = session.state
        return {
            "t": "welcome",
            "v": PROTOCOL_VERSION,
            "sid": state.sid,
            "rt": state.token,
            "cid": session.client_id,
            "u": session.user,
            "exp": session.identity.expires,
            "resumed": resumed,
            "ack": state.inbox.done,
            "seq": state.outbox.last,
            "hb": round(state.limits.heartbeat * 1000),
            "ttl": round(state.limits.ttl * 1000),
            "poll": round(state.limits.poll_timeout * 1000),
            "tr": list(self.transports),
            "lim": {
                "frame": limits.max_frame_size,
                "post": limits.max_post_size,
                "subs": limits.max_subscriptions,
                "queue": limits.max_queue,
            },
        }

    def attach(
        self,
        session: Session,
        kind: str,
        *,
        streaming: bool,
        ack: int,
        resumed: bool,
        greet: bool = True,
        why: str | None = None,
    ) -> Attachment:
        """Attach a transport; ``greet`` queues the welcome on it first."""
        state = session.state
        if ack > state.outbox.last:
            raise LadderError("bad_frame", f"ack {ack} is beyond the last frame sent ({state.outbox.last})")
        if session.rung is not None and session.rung != kind:
            down = TRANSPORTS.index(kind) > TRANSPORTS.index(session.rung)
            reason = why if why in REASONS else ("error" if down else "probe")
            self.counters.rung_changes[(session.rung, kind, "down" if down else "up", reason)] += 1
        session.rung = kind
        greeting = self.welcome(session, resumed) if greet else None
        att = state.attach(kind, streaming=streaming, ack=ack, now=self.clock(), greeting=greeting)
        if self._stopped:  # opened (or moved in) while stopping: sent elsewhere at once
            self.close_session(session, LadderError("shutting_down"))
        return att

    def detach(self, session: Session, att: Attachment) -> None:
        session.state.detach(att, self.clock())

    def close_session(self, session: Session, error: LadderError | None) -> None:
        """End a session now: drivers get a ``bye``; cleanup runs in the background."""
        if session.state.phase is Phase.CLOSED:
            return
        session.state.close(error)
        if error is not None and error.code not in ("session_closed", "shutting_down"):
            log.info("session %s closed: %s", session.sid[:8], error)
        self.spawn(self.forget(session), "ladder-forget")

    async def forget(self, session: Session) -> None:
        """Remove a closed or expired session from every table; its memory is returned."""
        if self.sessions.get(session.sid) is not session:
            return
        del self.sessions[session.sid]
        if session.address is not None:
            self._by_address[session.address] -= 1
            if self._by_address[session.address] <= 0:
                del self._by_address[session.address]
        if session.user is not None:
            peers = self._by_user.get(session.user)
            if peers is not None:
                peers.discard(session)
                if not peers:
                    del self._by_user[session.user]
        for channel in list(session.subs):
            await self.drop_subscription(session, channel)
        session.ready.clear()
        session.state.discard()
        if session.sid not in self.moved:  # it ended here rather than moving on
            with contextlib.suppress(LadderError):
                await self.engine.release_session(session.sid)

    # -- channels -------------------------------------------------------------------------

    def add_subscription(
        self, session: Session, channel: str, options: ChannelOptions
    ) -> tuple[Subscription, bool]:
        """Register a (pending) local subscription. Returns it and whether it is the node's first."""
        sub = Subscription(channel, session, options)
        session.subs[channel] = sub
        local = self._channels.get(channel)
        first = local is None
        if local is None:
            local = self._channels[channel] = {}
        local[session] = sub
        return sub, first

    async def drop_subscription(self, session: Session, channel: str) -> bool:
        sub = session.subs.pop(channel, None)
        if sub is None:
            return False
        local = self._channels.get(channel)
        if local is not None:
            local.pop(session, None)
            if not local:
                del self._channels[channel]
                self._positions.pop(channel, None)
                await self.engine.unlisten(channel)
        if sub.member is not None:
            await self.engine.presence_remove(channel, sub.member)
        return True

    def frame_of(self, pub: Publication) -> OutFrame:
        """The publication's wire frame, built once and cached on it."""
        frame = pub.frame
        if frame is None:
            frame = pub.frame = pub_frame(pub.channel, pub.offset, pub.payload)
        assert isinstance(frame, OutFrame)
        return frame

    def deliver_backlog(self, sub: Subscription, history: HistoryResult) -> None:
        """Finish a subscription that was catching up: history first, then what arrived live
        meanwhile (only what is newer), then live delivery."""
        session = sub.session
        position = history.position
        last = history.publications[-1].offset if history.publications else position.offset
        for pub in history.publications:
            self._push(session, self.frame_of(pub))
        pending, sub.pending = sub.pending or [], None
        for pub in pending:
            if pub.offset > last and pub.epoch == position.epoch:
                self._push(session, self.frame_of(pub))
                last = pub.offset
        sub.epoch, sub.offset = position.epoch, last

    def position_of(self, sub: Subscription) -> tuple[str | None, int]:
        """Where a subscription stands: the last publication queued for its session."""
        channel = self._positions.get(sub.channel)
        if (
            sub.pending is None
            and channel is not None
            and channel[0] == sub.epoch
            and channel[1] > sub.offset
        ):
            return channel
        return sub.epoch, sub.offset

    # -- engine sink ----------------------------------------------------------------------

    def on_publication(self, pub: Publication) -> None:
        """Fan-out: one shared frame appended to every local subscriber's outbox."""
        local = self._channels.get(pub.channel)
        if not local:
            return
        self._positions[pub.channel] = (pub.epoch, pub.offset)
        frame = self.frame_of(pub)
        overflowed: list[Session] = []
        for session, sub in local.items():
            pending = sub.pending
            if pending is not None:
                pending.append(pub)
                continue
            try:
                session.state.push(frame)
            except OutboxOverflow:
                overflowed.append(session)
        for session in overflowed:
            self.close_session(session, LadderError("slow_consumer"))

    def on_presence(self, channel: str, kind: str, member: Member) -> None:
        local = self._channels.get(channel)
        if not local:
            return
        options = self.channel_rules.options(channel)
        if not options.join_leave:
            return
        frame = presence_frame(kind, channel, member.wire())
        for session, sub in list(local.items()):
            if sub.pending is None:
                self._push(session, frame)

    def on_reset(self, channel: str, position: Position) -> None:
        local = self._channels.get(channel)
        if not local:
            return
        frame = resync_frame(channel, position.epoch, position.offset)
        self._positions[channel] = (position.epoch, position.offset)
        for session, sub in list(local.items()):
            sub.epoch, sub.offset = position.epoch, position.offset
            self._push(session, frame)

    def on_node_message(self, message: bytes) -> None:
        self.cluster.on_node_message(message)

    def _push(self, session: Session, frame: OutFrame) -> None:
        try:
            session.state.push(frame)
        except OutboxOverflow:
            self.close_session(session, LadderError("slow_consumer"))
        except LadderError:
            pass  # closed meanwhile

    # -- inbound --------------------------------------------------------------------------

    async def receive(self, session: Session, att: Attachment | None, frames: Iterable[ClientFrame]) -> None:
        """Apply a batch of client frames that arrived on ``att`` (None: an upstream POST).

        A frame the core refuses (an ack beyond what was sent, an id too far ahead, a second
        hello) gets an unsequenced ``err``; the rest of the batch still counts.
        """
        state = session.state
        transport = "send"
        now = self.clock()
        if att is not None:
            att.last_heard = now
            transport = att.kind
        accepted = False
        unrecordable = False
        for frame in frames:
            try:
                throttled = self._throttle(session, frame, now, transport)
                if throttled is None:
                    break  # over the rate (the rest is sent again) or dropped for flooding
                frame = throttled  # noqa: PLW2901 - a message over the limit becomes its refusal
                if isinstance(frame, Ack):
                    state.on_ack(frame.s)
                elif isinstance(frame, Ping):
                    pong: dict[str, Any] = {"t": "pong"} if frame.n is None else {"t": "pong", "n": frame.n}
                    if att is not None:
                        state.send_control(pong, att)  # answered on the socket that asked
                    else:
                        state.send_everywhere(pong)
                elif isinstance(frame, Pong):
                    pass
                elif isinstance(frame, Bye):
                    self.close_session(session, None)
                    return
                elif isinstance(frame, Hello):
                    raise LadderError("bad_frame", "hello is only valid as the first frame")
                else:
                    if isinstance(frame, Emit | Call) and not self.engine.healthy:
                        # A handler's effects are outside the engine, and what this node applied
                        # now it could not record: were the session then lost (other nodes
                        # cannot reach this one either), its successor would apply it again.
                        # Not taken: the client sends it again. (Engine requests just fail.)
                        unrecordable = True
                        break
                    if not isinstance(frame, Invalid):
                        self.counters.frames_in[transport] += 1
                    ready = state.receive(frame)
                    if ready:
                        session.ready.extend(ready)
                        accepted = True
            except LadderError as exc:
                self.refused(transport, exc, session=session)
                state.send_control({"t": "err", **exc.body()})
        if accepted:
            await self.drain(session)
        if unrecordable:
            # What this batch had accepted before is given back by the drain, between two
            # messages (not here: one may be in a handler now, and must not be taken again).
            error = LadderError(
                "engine_unavailable", "this server cannot reach its engine: messages are not applied here now"
            )
            self.refused(transport, error, session=session)
            if att is None:
                raise error  # the POST fails: the client writes it again
            session.state.send_away(error)

    def _unrecordable(self, session: Session) -> None:
        """The engine cannot record what would be applied now (called between two messages,
        none in a handler): nothing waiting is applied, and the session's transports are
        ended, so that the client resumes (here or elsewhere) and sends it all again."""
        session.ready.clear()
        session.state.unaccept()
        error = LadderError(
            "engine_unavailable", "this server cannot reach its engine: messages are not applied here now"
        )
        session.state.send_away(error)

    def admit(self, address: str | None) -> None:
        """Count a request (or WebSocket opening) against its address's rate limit."""
        if address is not None:
            wait = self.address_limiter.take(address, self.clock())
            if wait:
                raise LadderError(
                    "rate_limited", "too many requests from this address", retry_after=round(wait, 3)
                )

    def _throttle(
        self, session: Session, frame: ClientFrame, now: float, transport: str
    ) -> ClientFrame | None:
        """Apply the session's message rate. Returns the frame, or None to stop reading the
        batch.

        A rate limit never consumes a reliable message: a numbered message over the limit is
        not applied, not acknowledged and its id not used up. It is answered with an
        unsequenced ``err`` ``rate_limited`` naming it (``re``) and ``retry_after``; the rest
        of its batch is not read (the client sends it all again, from that id, once it waited).
        A session that keeps sending while told to wait is dropped (None as well).
        """
        rate = self.message_rate
        if not rate.enabled or isinstance(frame, Ack):
            return frame
        bucket = session.bucket
        if bucket is None:
            bucket = session.bucket = Bucket(rate, now)
        wait = bucket.take(rate, now)
        if not wait:
            return frame
        if bucket.abusive(rate, now, self.limits.flood_patience):
            flooding = LadderError("rate_limited", "persistent flooding")
            self.refused(transport, flooding, session=session)
            self.close_session(session, flooding)
            return None
        retry_after = max(0.001, round(wait, 3))
        if isinstance(frame, Numbered):
            limited = LadderError(
                "rate_limited", f"message {frame.i} not applied: send it again", retry_after=retry_after
            )
            self.refused(transport, limited, session=session)
            session.state.send_control({"t": "err", **limited.body(), "re": frame.i})
            return None
        raise LadderError("rate_limited", retry_after=retry_after)

    def refused(
        self,
        transport: str,
        error: LadderError,
        *,
        session: Session | None = None,
        client: str | None = None,
        origin: str | None = None,
    ) -> None:
        """Log a refusal once, briefly (never a traceback: bad input is not a server fault).

        A refused ``origin`` is also a WARNING, once per origin: it is more often a page of
        the application's own that ``allowed_origins`` forgot than an attack.
        """
        self.counters.errors[error.code] += 1
        who = session.sid[:8] if session is not None else (client or "-")
        log.info("refused on %s (%s): %s", transport, who, error)
        if origin is not None and error.code == "origin_not_allowed":
            self._warn_origin(origin)

    def _warn_origin(self, origin: str) -> None:
        seen = self._refused_origins
        if origin in seen or len(seen) > _MAX_ORIGIN_WARNINGS:
            return
        seen.add(origin)
        if len(seen) > _MAX_ORIGIN_WARNINGS:
            log.warning("refused over %d origins: the others are logged at INFO only", _MAX_ORIGIN_WARNINGS)
            return
        now = "same-origin only" if self.allowed_origins is None else list(self.allowed_origins)
        log.warning(
            "refused origin %s (origin_not_allowed): if that page is yours, add it to "
            "Ladder(allowed_origins=[...]) (now: %s)",
            origin[:200],
            now,
        )

    async def drain(self, session: Session) -> None:
        """Apply queued client frames one at a time, in order (whoever arrives first drains).

        A message counts as done (and may be acknowledged) only once it was applied and
        recorded; a session being moved to another node stops between two messages.
        """
        if session.draining:
            return
        session.draining = True
        apply = _layers().apply
        state = session.state
        frame: Numbered | None = None
        reply: OutFrame | None = None
        returned = False
        try:
            while session.ready and state.phase is not Phase.CLOSED and not session.moving:
                if isinstance(session.ready[0], Emit | Call) and not self.engine.healthy:
                    self._unrecordable(session)  # accepted while the engine answered
                    break
                frame, returned = session.ready.popleft(), False
                inherited = session.inherited
                applied, reply = inherited.applied(frame.i) if inherited is not None else (False, None)
                if not applied:  # else the lost session applied it: answer it, once more
                    reply = await apply(self, session, frame)
                returned = True
                await self._done(session, frame, reply)
                frame = None
        finally:
            if frame is not None:
                # Our driver was cancelled inside a handler: the message went as far as it
                # went. It is finished (answered, never applied twice) before anything after
                # it, by a task of the hub's that keeps the queue (``draining`` stays set).
                if not returned:
                    reply = error_frame(LadderError("handler_error", "the handler was interrupted"), frame.i)
                self.spawn(self._finish_interrupted(session, frame, reply), "ladder-drain")
            else:
                session.draining = False
                if session.ready and state.phase is not Phase.CLOSED and not session.moving:
                    # Cancelled between two messages: someone must finish in order.
                    self.spawn(self.drain(session), "ladder-drain")
                else:
                    session.drained()

    async def _finish_interrupted(self, session: Session, frame: Numbered, reply: OutFrame | None) -> None:
        try:
            await self._done(session, frame, reply)
        finally:
            session.draining = False
        await self.drain(session)

    async def _done(self, session: Session, frame: Numbered, reply: OutFrame | None) -> None:
        """``frame`` was applied: record it, then send its answer and let it be acknowledged."""
        state = session.state
        answers = session.answers
        if answers is None:
            answers = session.answers = Answers(self.limits.inbox_window)
            inherited = session.inherited
            origins = inherited.keys() if inherited is not None and inherited.ids else None
        else:
            origins = None
        try:
            await self.engine.record_applied(
                state.sid,
                state.token,
                done=frame.i,
                reply=None if reply is None else (frame.i, encode_answer(reply)),
                forget=answers.delivered(state.outbox.acked),
                origins=origins,
                ttl=state.limits.ttl * 2,
            )
        except LadderError as exc:
            # Applied all the same; only if this node died now could a resend apply it again.
            log.warning("session %s: message %d applied but not recorded (%s)", state.sid[:8], frame.i, exc)
        if reply is not None:
            try:
                answers.kept(frame.i, state.push(reply))
            except OutboxOverflow:
                self.close_session(session, LadderError("slow_consumer"))
        inbox = state.inbox
        if inbox.done + 1 == frame.i <= inbox.accepted:  # else the session was discarded meanwhile
            state.finish(frame.i)

    def handler(self, event: str) -> Handler | None:
        return self._handlers.get(event)

    @staticmethod
    async def call_handler(handler: Handler, ctx: Context, data: Any) -> Any:
        result = handler(ctx, data)
        if inspect.isawaitable(result):
            result = await result
        return result

    def push_reply(self, session: Session, frame: OutFrame) -> None:
        self._push(session, frame)


class _Layers(NamedTuple):
    handle: Callable[[Ladder, Any, Any, Any], Awaitable[None]]
    apply: Callable[[Ladder, Session, Any], Awaitable[Any]]


@functools.cache
def _layers() -> _Layers:
    """The ASGI layer and the dispatcher import the hub, so the hub binds them on first use
    (once: an import statement on every request and message shows up in profiles)."""
    from ..asgi import handle  # noqa: PLC0415
    from .dispatch import apply  # noqa: PLC0415

    return _Layers(handle, apply)
