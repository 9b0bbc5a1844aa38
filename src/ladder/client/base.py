"""What the parts of a client share: its state (set up by :class:`~.client.Client`) and its
events (registered with ``on``, or iterated with ``events()``)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from ..protocol.client import AckPolicy, LongPollHold, ProbeSchedule, StreamProof, UpstreamRetry
from ..protocol.errors import LadderError
from ..protocol.peer import Frame, PeerState
from .events import Event, StateChanged
from .options import check_token_length
from .pacing import Pacer
from .rungs import RungPolicy
from .subscription import Subscription
from .transports.base import Endpoint, Transport, TransportClosed

log = logging.getLogger("ladder.client")


class ClientBase:
    """The state every part of a client reads, and the app's events."""

    url: str
    rungs: list[str]
    _token: str | Callable[[], str | Awaitable[str | None] | None] | None
    endpoint: Endpoint
    stagger: tuple[float, ...]
    open_timeout: float
    verify_timeout: float
    connect_timeout: float | None
    backoff_base: float
    backoff_max: float
    max_attempts: int | None
    probe_delay: float
    probe_max_delay: float
    poll_interval: tuple[float, float]
    max_buffer: int
    ack_every: int
    ack_interval: float
    refresh_margin: float
    _remember: bool
    policy: RungPolicy
    peer: PeerState
    acking: AckPolicy
    state: str
    """``disconnected``, ``connecting``, ``connected`` or ``closed``."""
    transport: str | None
    """The rung in use now (None while disconnected)."""
    session_id: str | None
    _own_http: bool
    _http: httpx.AsyncClient | None
    _conn: Transport | None
    _subs: dict[str, Subscription]
    _waiting: dict[int, Callable[[Frame], None]]
    _callbacks: dict[str, list[Callable[[Any], Any]]]
    _streams: list[deque[Event]]
    _stream_waiters: list[asyncio.Future[None]]
    _run_task: asyncio.Task[None] | None
    _probe_task: asyncio.Task[None] | None
    _probes: ProbeSchedule
    """When to probe the better rungs; lasts across reconnects on one rung."""
    _switch_to: tuple[Transport, str] | None
    _connected: asyncio.Future[None] | None
    _flushing: bool
    _retry: tuple[Transport | None, UpstreamRetry]
    """The failed writes of a transport so far: kept across flushes (a paced flush ends
    between writes, and a count started again at each never grew its pauses)."""
    _ack_timer: asyncio.TimerHandle | None
    """Started by the first unacknowledged frame; acks once nothing was heard for ``ack_interval``."""
    _ack_wanted: bool
    """The next flush must write an ack even with no message to carry it."""
    _last_rung: str | None
    _had_session: bool
    _state_told: bool
    """A ``state`` event was emitted (only the very first ``connecting`` goes unreported)."""
    _background: set[asyncio.Task[Any]]
    _step_reason: str | None
    _pending_loss: str | None
    _closed_by_app: bool
    _expires: float | None
    """When the session's credentials expire (Unix time), if they do."""
    _refreshing: bool
    _refresh_timer: asyncio.TimerHandle | None
    _refresh_due: float | None
    """When (Unix time) ``_refresh_timer`` is due: a timer held back while the machine slept
    is caught up by the next frame that arrives."""
    _last_end: str | None
    """Why the previous connection ended (its category goes in the next hello)."""
    _drained: list[asyncio.Future[None]]
    _subscribing: set[int]
    """Ids of subscribe requests still in flight (renewed, not failed, on a new session)."""
    _limits: dict[str, Any]
    """The server's limits from the last welcome (``lim``: frame and body sizes)."""
    _post_cap: int | None
    """Bytes per ``POST send`` a proxy on the way takes, once a 413 of its showed it (None: the
    server's ``lim.post``)."""
    _pacer: Pacer
    _holding: LongPollHold
    """How long long polls ask to be held (shorter once a proxy cut them: protocol §3.5)."""
    _pace_timer: asyncio.TimerHandle | None
    _heard: float
    """When the current transport last delivered something (loop time)."""
    _watchdog: asyncio.TimerHandle | None
    _pinged: int | None
    """The nonce of a liveness check's ping whose pong has not come yet."""
    _proof: StreamProof | None
    """The checks that the current stream (SSE) is not buffered, while it is one."""
    _proof_timer: asyncio.TimerHandle | None
    _fatal: LadderError | None
    """Why the client gave up for good (later calls raise it instead of ``closed``)."""
    _reasons: dict[str, str]
    """The latest reason each rung failed to open (for ``connect_failed``)."""
    _racing: dict[str, TransportClosed]
    """The failures of the race in progress, as they come."""
    _race_token: asyncio.Future[str | None] | None
    """The token function's answer for the race in progress (asked once, by its first rung)."""

    async def _current_token(self) -> str | None:
        """The client's token: a function's (``async`` or not) answer, checked (bytes or an
        int was sent as it was, and refused as an invalid token in the server's words)."""
        token = self._token
        value: object = token() if callable(token) else token
        if inspect.isawaitable(value):
            value = await value
        if value is not None and not isinstance(value, str):
            raise TypeError(f"the token function returned {type(value).__name__}: return a str (or None)")
        check_token_length(value)
        return value

    def events(self, max_buffer: int = 1000) -> AsyncIterator[Event]:
        """Every event from this call on, as an async stream (ends when the client closes).
        A reader more than ``max_buffer`` events behind loses the oldest ones.

        The stream hears events from this call on, not from its first read: one made before
        ``connect()`` and read after it yields the connection's events (a stream that began
        at its first read missed them)."""
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
            raise ValueError(f"max_buffer must be a whole number >= 1 (default 1000), not {max_buffer!r}")
        queue: deque[Event] = deque(maxlen=max_buffer)
        self._streams.append(queue)
        return self._stream(queue)

    async def _stream(self, queue: deque[Event]) -> AsyncIterator[Event]:
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

    def _emit(self, event: Event) -> None:
        for callback in self._callbacks.get(event.name, ()):
            self._call_back(event.name, callback, event)
        for queue in self._streams:
            queue.append(event)
        for waiter in self._stream_waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _call_back(self, what: str, callback: Callable[[Any], Any], value: Any) -> None:
        """Call an app's callback (an ``async def`` one runs as a task). What it raises is
        logged, not raised: a bug in one callback must not end the connection loop."""
        try:
            result = callback(value)
            if inspect.isawaitable(result):
                self._spawn(self._awaited(what, result))
        except Exception:
            log.exception("callback for %s failed", what)

    @staticmethod
    async def _awaited(what: str, result: Awaitable[Any]) -> None:
        try:
            await result
        except Exception:
            log.exception("callback for %s failed", what)

    def _set_state(self, state: str, reason: str = "", *, tell: bool = True) -> None:
        """Change the connection state; the app hears of it (event ``state``), except of the
        first ``connecting`` (``connect()`` is the app's own call, and the first event a
        client reports is ``connected``, or ``disconnected`` when that race failed).
        ``tell=False``: the caller reports it later."""
        if state != self.state:
            first_race = self.state == "disconnected" and not self._state_told
            self.state = state
            if tell and not (first_race and state == "connecting"):
                self._state_told = True
                self._emit(StateChanged(state, reason))

    def _give_up(self, error: LadderError) -> None:
        """Close the client for good with ``error`` (the connection's layer does it)."""
        raise NotImplementedError

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _in_its_loop(self) -> None:
        """Refuse use from another event loop than the one the client connected in: its
        tasks and futures are that loop's (a call from a second ``asyncio.run()`` timed out
        and ``close()`` raised "Event loop is closed"; from another thread's loop, nothing
        said it was unsafe)."""
        task = self._run_task
        if task is not None and task.get_loop() is not asyncio.get_running_loop():
            raise RuntimeError(
                "this Client works in the event loop it connected in, and this is another one "
                "(each asyncio.run() makes its own; another thread runs its own): use the client "
                "in its loop, or make one per loop (async with Client(url) as client: inside the "
                "coroutine asyncio.run runs)"
            )
