"""What transport drivers see of the server: open a link from a hello, find a session for a
request, hand in client frames, report refusals. Drivers import this, never the hub."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from ..protocol.attachment import Attachment
from ..protocol.errors import LadderError
from ..protocol.frames import PROTOCOL_VERSION, ClientFrame, Hello
from .auth import AuthRequest
from .config import TRANSPORTS, Settings
from .inbound import Inbound
from .link import Link
from .metrics import REASONS, Counters
from .ratelimit import Limiter, Rate, told
from .refusals import Refusals
from .routing import Router
from .session import Session


class Serving(Protocol):
    """The node's lifecycle as drivers see it."""

    stopped: bool

    async def serving(self) -> None: ...


class Gateway:
    """The small interface between the drivers and the rest of the server."""

    __slots__ = (
        "_node",
        "address_limiter",
        "counters",
        "inbound",
        "refused",
        "router",
        "settings",
    )

    def __init__(
        self,
        settings: Settings,
        router: Router,
        inbound: Inbound,
        *,
        counters: Counters,
        refused: Refusals,
        node: Serving,
    ) -> None:
        self.settings = settings
        self.router = router
        self.counters = counters
        self.refused = refused
        self.inbound = inbound
        self._node = node
        limits = settings.limits
        self.address_limiter = Limiter(Rate(limits.request_rate, limits.request_burst))

    def receive(
        self, session: Session, att: Attachment | None, frames: Iterable[ClientFrame]
    ) -> Coroutine[Any, Any, None]:
        """Client frames that arrived on ``att`` (None: a POST), applied in order."""
        if att is None:
            return self._receive_posted(session, frames)
        return self.inbound.receive(session, att, frames)

    async def _receive_posted(self, session: Session, frames: Iterable[ClientFrame]) -> None:
        """A POST's request task applies its messages, handlers included: the hub's work
        meanwhile, cancelled with its tasks on stop (uvicorn waited for ever, on SIGTERM,
        for a POST whose handler never returned)."""
        task = asyncio.current_task()
        borrowed = self.inbound.tasks.borrowed
        if task is not None:
            borrowed.add(task)
        try:
            await self.inbound.receive(session, None, frames)
        except asyncio.CancelledError:
            if task is None or not self._node.stopped:
                raise
            task.uncancel()  # (the hub's stop, not the client's going: answered, no traceback)
            raise LadderError("shutting_down", "this server is shutting down") from None
        finally:
            if task is not None:
                borrowed.discard(task)

    def receive_now(self, session: Session, att: Attachment, frames: list[ClientFrame]) -> bool:
        """A batch applied at once when nothing in it waits (False: it may, for
        :meth:`receive` in a task). A method, not the bound one stored: the drivers call it
        for every message, and a compiled call to a compiled method is direct."""
        return self.inbound.receive_now(session, att, frames)

    def admit(self, address: str | None) -> None:
        """Count a request (or WebSocket opening) against its address's rate limit."""
        if address is not None:
            wait = self.address_limiter.take(address, self.settings.clock())
            if wait:
                raise LadderError("rate_limited", "too many requests from this address",
                                  retry_after=told(wait))

    async def route(self, sid: str, token: str | None, *, stream: bool) -> Session:
        """The session a request names (see :meth:`Router.route`)."""
        await self._node.serving()
        return await self.router.route(sid, token, stream=stream)

    async def open(
        self,
        hello: Hello,
        request: AuthRequest,
        transport: str,
        *,
        streaming: bool,
        greet: bool = True,
        wake: Callable[[], None] | None = None,
        hold: float | None = None,
    ) -> Link:
        """Create or resume the session ``hello`` names and attach this transport to it
        (``hold``: a long poll's own bound, seconds)."""
        connects = self.counters.connects
        try:
            refused = self.settings.not_offered((transport,))
            if refused is not None:
                raise refused
            await self._node.serving()
            session, resumed = await self.router.open(hello, request, stream=streaming)
            att = self.attach(
                session,
                transport,
                streaming=streaming,
                ack=hello.ack,
                resumed=resumed,
                greet=greet,
                why=hello.why,
                hold=hold,
            )
        except LadderError:
            if greet:  # (a transport's later polls are not connects, whatever their answer)
                connects[(transport, "refused")] += 1
            raise
        if greet:
            connects[(transport, "accepted")] += 1
        return self.link(session, att, wake)

    def link(self, session: Session, att: Attachment, wake: Callable[[], None] | None = None) -> Link:
        return Link(session, att, self.settings.clock, self.counters.tally_out(att.transport), wake)

    def attach(
        self,
        session: Session,
        transport: str,
        *,
        streaming: bool,
        ack: int,
        resumed: bool,
        greet: bool = True,
        why: str | None = None,
        hold: float | None = None,
    ) -> Attachment:
        """Attach a transport; ``greet`` queues the welcome on it first."""
        state = session.state
        if ack > state.outbox.last:
            raise LadderError("bad_frame", f"ack {ack} is beyond the last frame sent ({state.outbox.last})")
        greeting = self.welcome(session, resumed) if greet else None
        att = state.attach(  # (first: a refused attach changes no rung)
            transport, streaming=streaming, ack=ack, now=self.settings.clock(), greeting=greeting, hold=hold
        )
        previous = session.transport
        if previous is not None and previous != transport:
            down = TRANSPORTS.index(transport) > TRANSPORTS.index(previous)
            reason = why if why in REASONS else ("error" if down else "probe")
            self.counters.rung_changes[(previous, transport, "down" if down else "up", reason)] += 1
        session.transport = transport
        if self._node.stopped:  # opened (or moved in) while stopping: sent elsewhere at once
            self.router.sessions.close(session, LadderError("shutting_down"))
        return att

    def welcome(self, session: Session, resumed: bool) -> dict[str, Any]:
        """The first frame on every transport: what the client needs to run the session."""
        settings = self.settings
        limits = settings.limits
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
            "tr": list(settings.transports),
            "lim": {
                "frame": limits.max_frame_size,
                "post": limits.max_post_size,
                "subs": limits.max_subscriptions,
                "queue": limits.max_queue,
                "qbytes": limits.max_queue_bytes,
            },
        }
