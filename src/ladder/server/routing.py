"""Where a session lives: opening sessions, finding them on any node, moving them here.

Session ids name the node that made them and the engine records hand-overs, so any node
can find a session's owner (``Engine.locate_session``). A poll or an upstream POST landing
on another node is **forwarded** (the owner serves it and sends back the encoded answer);
a WebSocket or SSE stream landing elsewhere **moves** the session here (:mod:`.moving`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable
from typing import Any

from ..engine.base import Engine
from ..protocol.codec import codec_named
from ..protocol.errors import LadderError
from ..protocol.frames import Hello, Previous
from ..protocol.session import Phase
from ..protocol.sids import label
from .applied import Inherited
from .auth import AuthRequest, run_authenticate
from .channels import ChannelTable
from .cluster import (
    REQUEST_TIMEOUT,
    SEND_TIMEOUT,
    SETTLE_TIMEOUT,
    Asked,
    Cluster,
    Elsewhere,
    HandedHere,
    lost_moving,
)
from .config import Settings
from .foreign import ForeignNodes
from .holding import engine_refusal
from .inbound import Inbound
from .moving import pack, restore
from .session import Session
from .sessions import SessionTable

log = logging.getLogger("ladder.cluster")


class Router:
    """Opens sessions and finds them, here or on another node (pushes: :mod:`.pushing`)."""

    __slots__ = (
        "_arriving", "_late", "channels", "cluster", "engine", "foreign", "inbound", "sessions", "settings"
    )

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        sessions: SessionTable,
        cluster: Cluster,
        inbound: Inbound,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions = sessions
        self.channels: ChannelTable = sessions.channels
        self.cluster = cluster
        self.inbound = inbound
        self.foreign = ForeignNodes(engine, cluster.counters)
        """Tells of sessions made by nodes on another engine."""
        self._arriving: dict[str, asyncio.Future[None]] = {}
        """Sessions being moved to this node right now."""
        self._late: dict[str, asyncio.Future[None]] = {}
        """Sessions whose owner says it handed them here, awaited by a move (see _handed_late)."""
        cluster.serve("migrate", self._serve_migrate)
        cluster.adopt_late = self._adopt_late
        cluster.handed_on = sessions.moved.get

    # -- opening and finding -------------------------------------------------------------------

    async def open(self, hello: Hello, request: AuthRequest, *, stream: bool = True) -> tuple[Session, bool]:
        """Create a session, or find the one ``hello`` resumes. Returns (session, resumed).

        Resuming a session another node holds moves it here for a stream (``stream``), and
        raises :class:`Elsewhere` for a single request, which the caller forwards.
        """
        if hello.sid is not None:
            return await self.route(hello.sid, hello.rt, stream=stream), True
        if not self.engine.healthy:
            # A session opened here could neither subscribe nor be reached by other nodes;
            # refusing lets a balancer (or the client's retry) pick a healthy node.
            refused = engine_refusal(self.engine)
            if refused is not None:
                raise LadderError("engine_unavailable", f"this node cannot use its engine: {refused}")
            raise LadderError("engine_unavailable", "this node cannot reach its engine")
        limits, sessions = self.settings.limits, self.sessions
        if len(sessions) >= limits.max_sessions:
            raise too_many("this server holds its maximum of sessions", "max_sessions")
        address = request.address
        if address is not None and sessions.of_address(address) >= limits.max_sessions_per_address:
            most = limits.max_sessions_per_address
            raise too_many(f"at most {most} per address", "max_sessions_per_address")
        identity = await run_authenticate(self.settings.authenticate, request)
        if identity.user is not None and sessions.of_user(identity.user) >= limits.max_sessions_per_user:
            raise too_many(f"at most {limits.max_sessions_per_user} per user", "max_sessions_per_user")
        session = sessions.new(identity, address)
        if hello.prev is not None:
            try:
                session.inherited = await self._inherit(hello.prev, identity.user)
            except BaseException:
                await sessions.forget(session)
                raise
        return session, False

    async def route(self, sid: str, token: str | None, *, stream: bool, forwarded: bool = False) -> Session:
        """The session ``sid`` if ``token`` is its resume token, wherever it lives.

        Local sessions are returned; a session on another node is moved here (``stream``)
        or reported as :class:`Elsewhere`; ``forwarded`` requests never look further.
        """
        session = self.sessions.get(sid)
        if session is None:
            # A hand-over to this node may be under way: wait for it rather than say "unknown".
            await self._arrival(sid)
            session = self.sessions.get(sid)
        if session is not None and session.state.phase is not Phase.CLOSED:
            if token is None or not hmac.compare_digest(session.state.token.encode(), token.encode()):
                raise LadderError("bad_resume_token")
            return session
        if token is None:
            raise LadderError("bad_resume_token")
        ended = self.sessions.ended.get(sid)
        if ended is not None and hmac.compare_digest(ended[1].encode(), token.encode()):
            raise LadderError(ended[0].code, ended[0].reason)  # why it ended, not "unknown"
        unknown = LadderError("unknown_session", f"session {label(sid)}… is unknown or expired")
        if forwarded:
            moved = self.sessions.moved.get(sid)
            if moved is not None:
                raise Elsewhere(moved)  # the asking node follows it there
            raise unknown
        await self.foreign.check(sid)
        node = await self.engine.locate_session(sid)
        if node == self.engine.node_id:
            # The engine's record of its hand-over expired or was lost (Redis restarted
            # without persistence): where this node handed it is the record left.
            node = self.sessions.moved.get(sid)
        if node is None:
            raise unknown
        if stream:
            return await self._migrate(node, sid, token)
        raise Elsewhere(node)

    async def _inherit(self, prev: Previous, user: str | None) -> Inherited:
        """Take over what the lost session ``prev`` applied (nothing without its token), for
        a new session of ``user``.

        The named session may still be alive (a page reloaded before its session ended, on
        this node or another): it is ended first where it lives (its transports hear ``bye``
        ``session_closed``), and a message it is applying finishes, so that a late request of
        the old page cannot apply a carried message there as well. Only with its resume token.
        If it was another user's (the page signed in as someone else), the carried messages
        are refused rather than applied as the new user's: where the session is known, by
        its user; else (expired, or its process gone) by the user the client says it was
        (``pu``), which can only refuse what the client carries.
        """
        old = self.sessions.get(prev.sid) or self.sessions.settling.get(prev.sid)
        owner: tuple[str | None] | None = None  # (the lost session's user, where known)
        if old is None:
            await self.foreign.check(prev.sid)
            node = await self.engine.locate_session(prev.sid)
            if node is not None and node != self.engine.node_id:
                message = {"k": "migrate", "sid": prev.sid, "rt": prev.rt, "end": True}
                with contextlib.suppress(LadderError):  # gone meanwhile, or not its token
                    ended = await self._ask_owner(node, message, REQUEST_TIMEOUT)  # (once settled)
                    if "u" in ended:
                        owner = (None if ended["u"] is None else str(ended["u"]),)
        if old is not None:
            if hmac.compare_digest(old.state.token.encode(), prev.rt.encode()):
                owner = (old.user,)
            await self._replace(old, prev.rt)
        record = await self.engine.applied_record(prev.sid, prev.rt)
        if record is None:
            why = "no record (expired, or not its token)"
            log.info("new session names lost session %s: %s", label(prev.sid), why)
        said = prev.user is not None and prev.user != (user or "")  # ('': anonymous)
        if said or (owner is not None and owner[0] != user):
            log.info("new session names lost session %s of another user: refused", label(prev.sid))
            return Inherited.of(prev, record, "written in a session of another user: not applied")
        return Inherited.of(prev, record)

    async def _replace(self, old: Session, token: str) -> None:
        """End ``old`` for the new session of its client (with its token), once settled."""
        its_token = hmac.compare_digest(old.state.token.encode(), token.encode())
        if its_token and old.state.phase is not Phase.CLOSED:
            self.sessions.close(old, LadderError("session_closed", "replaced by a new session of its client"))
        await old.settle(SETTLE_TIMEOUT)  # ended, but perhaps still finishing a message

    async def _arrival(self, sid: str) -> None:
        """Wait (briefly) for a hand-over of ``sid`` to this node that is under way."""
        arriving = self._arriving.get(sid)
        if arriving is not None:
            with contextlib.suppress(TimeoutError, LadderError):
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    await asyncio.shield(arriving)

    async def _migrate(self, node: str, sid: str, token: str) -> Session:
        """Move session ``sid`` from ``node`` to this node, and return it."""
        arriving = self._arriving.get(sid)
        if arriving is not None:  # another request of the same client is already moving it
            await self._arrival(sid)
            return await self._arrived(sid, token)
        arriving = self._arriving[sid] = asyncio.get_running_loop().create_future()
        try:
            try:
                message = {"k": "migrate", "sid": sid, "rt": token}
                reply = await self._ask_owner(node, message, REQUEST_TIMEOUT)
            except LadderError:
                if sid in self.sessions:  # an earlier move's late answer brought it here
                    return await self._arrived(sid, token)
                raise
            session = await restore(reply["state"], self.settings, self.sessions, self.inbound.tasks)
            self.cluster.counters["moved_in"] += 1
            return session
        finally:
            del self._arriving[sid]
            arriving.set_result(None)

    async def _ask_owner(
        self, node: str, message: dict[str, Any], timeout: float, asked: Asked | None = None
    ) -> dict[str, Any]:
        """Ask the owner of session ``message["sid"]``, and tell a late hand-over from a lost one.

        The owner may say it handed the session here: it arrives late (its answer may trail
        the owner's "moved"), and the client's next request finds it here; or it was lost on
        the way (this node's link to the engine broke in between), and then every node says
        "moved" to another. Lost: say so, and the client starts a new session carrying its
        unacknowledged messages, rather than retry until the session expires.
        """
        try:
            return await self.cluster.ask_owner(node, message, timeout, asked)
        except HandedHere:
            sid = str(message["sid"])
            if await self._handed_late(sid):
                raise
            log.warning("session %s was lost while being handed to this node", label(sid))
            raise lost_moving(sid) from None

    async def _handed_late(self, sid: str) -> bool:
        """Wait (at most ``REQUEST_TIMEOUT``) for a late hand-over of ``sid``; True if it came."""
        if sid in self.sessions:
            return True
        late = self._late.setdefault(sid, asyncio.get_running_loop().create_future())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REQUEST_TIMEOUT):
                await asyncio.shield(late)
        if self._late.get(sid) is late and not late.done():
            del self._late[sid]
        return sid in self.sessions

    async def _arrived(self, sid: str, token: str) -> Session:
        """The session another move brought here (checking the token), or a retryable refusal."""
        if sid not in self.sessions:
            why = f"moving session {label(sid)}… here did not finish; retry"
            raise LadderError("engine_unavailable", why)
        return await self.route(sid, token, stream=True, forwarded=True)

    async def _adopt_late(self, packed: dict[str, Any]) -> None:
        """A session handed over after this node stopped waiting for it (the owner heard the
        request late, after a stall): its old owner forgot it, so it lives here now rather
        than nowhere."""
        try:
            session = await restore(packed, self.settings, self.sessions, self.inbound.tasks)
        except Exception:
            log.exception("a session handed over late could not be taken in")
            return
        self.cluster.counters["moved_in"] += 1
        log.warning("session %s was handed over after its move timed out; it lives here", label(session.sid))
        late = self._late.pop(session.sid, None)
        if late is not None and not late.done():
            late.set_result(None)

    async def _serve_migrate(self, message: dict[str, Any]) -> dict[str, Any]:
        sid = str(message["sid"])
        sessions = self.sessions
        ended = sessions.settling.get(sid)
        if ended is not None and sid not in sessions:
            # Ended here, its last message still applied: answer once it is recorded (the
            # asker is a successor about to read that record).
            await ended.settle(SETTLE_TIMEOUT)
            raise LadderError("unknown_session", f"session {label(sid)}… ended")
        moved = sessions.moved.get(sid)
        if moved is not None and sid not in sessions:
            return {"moved": moved}
        session = await self.route(sid, message["rt"], stream=False, forwarded=True)
        if message.get("end"):  # a new session of its client replaces it (see _inherit)
            await self._replace(session, str(message["rt"]))
            return {"u": session.user}  # (whose it was: another user's messages are refused)
        # Stop applying, and let a handler still running finish: the session moves with
        # exactly what was applied (what was only accepted is the client's to resend).
        session.moving = True
        if not await session.settle(SETTLE_TIMEOUT):
            session.moving = False
            self.inbound.tasks.spawn(self.inbound.drain(session), "ladder-drain")
            why = f"session {label(sid)}… is busy applying a message; retry"
            raise LadderError("engine_unavailable", why)
        if sessions.get(sid) is not session:  # it ended or moved while we waited
            raise LadderError("unknown_session", f"session {label(sid)}… ended")
        state = pack(session, self.channels)
        await sessions.hand_over(session, str(message["from"]))
        self.cluster.counters["moved_out"] += 1
        return {"state": state}

    # -- forwarding ----------------------------------------------------------------------------

    async def forward_send(
        self, node: str, sid: str, token: str, body: bytes, content_type: str | None
    ) -> None:
        message = {"k": "send", "sid": sid, "rt": token, "body": body, "ct": content_type or ""}
        await self._ask_owner(node, message, SEND_TIMEOUT)

    async def forward_poll(
        self,
        node: str,
        sid: str,
        token: str,
        *,
        transport: str,
        ack: int,
        greet: bool,
        encoding: str,
        disconnected: Awaitable[None],
        hold: float | None = None,
    ) -> bytes:
        """Have ``node`` serve one poll; returns the encoded batch for the HTTP client
        (``hold``: the long poll's own bound, seconds, when its client asked for one)."""
        held = transport == "longpoll"
        timeout = (self.settings.session_limits.poll_timeout if held else 0) + REQUEST_TIMEOUT
        message = {"k": "poll", "sid": sid, "rt": token, "kind": transport, "ack": ack, "greet": greet}
        message["enc"] = encoding
        if hold is not None:
            message["hold"] = hold
        cluster = self.cluster
        asked = Asked(node, 0)
        asking = asyncio.ensure_future(self._ask_owner(node, message, timeout, asked))
        watching = asyncio.ensure_future(disconnected)
        stopping = asyncio.ensure_future(cluster.stopping.wait())
        try:
            done, _ = await asyncio.wait({asking, watching, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if asking in done:
                return bytes(asking.result()["body"])
            # Our HTTP client went away, or this node is: the owner must stop holding the poll.
            if asked.rid:  # (asked already: the request is with that node, under that id)
                with contextlib.suppress(LadderError):
                    cancel = {"k": "cancel", "from": self.engine.node_id, "of": asked.rid}
                    await cluster.tell(asked.node, cancel)
            if watching in done:
                raise ConnectionResetError("client went away")
            # Held here, this poll would keep this process alive up to poll_timeout after a
            # SIGTERM; the session lives on: the client polls again, elsewhere, at once.
            codec = codec_named(encoding)
            return codec.join([codec.encode({"t": "bye", **LadderError("shutting_down").body()})])
        finally:
            for task in (asking, watching, stopping):
                task.cancel()


def too_many(problem: str, setting: str) -> LadderError:
    """A session refused for a limit, naming the setting an operator raises."""
    return LadderError("too_many_sessions", f"{problem} (Limits({setting}=...) on the hub)")
