"""The session table: every session this node holds, by id, user and address."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Final, Generic, TypeVar

from ..engine.base import Engine
from ..protocol.errors import LadderError
from ..protocol.outframes import OutFrame
from ..protocol.session import Phase, SessionLimits, SessionState
from ..protocol.sids import label
from .auth import Identity
from .channels import ChannelTable
from .recording import Recording
from .session import Session
from .tasks import Tasks
from .timers import Timers

log = logging.getLogger("ladder")

T = TypeVar("T")

ID_DRAWS: Final = 16
"""Session ids drawn at most for one new session, looking for one whose records the engine
can write now (see :meth:`SessionTable.new`)."""

SETTLING_LIMIT: Final = 60.0
"""Seconds an ended session stays findable while a handler of its last message runs."""


class Expiring(Generic[T]):
    """Values by session id, each kept ``keep`` seconds after it was put (then swept).

    Used for where this node handed sessions (``SessionTable.moved``) and why it ended some
    (``SessionTable.ended``): both must outlive the session here, and neither may grow for
    the node's whole life (without sticky sessions, nearly every reconnect hands one over).
    """

    __slots__ = ("_order", "_values", "keep")

    def __init__(self, keep: float) -> None:
        self.keep = keep
        self._values: dict[str, tuple[T, float]] = {}
        """sid -> (value, until when it is kept)."""
        self._order: deque[tuple[float, str]] = deque()
        """(until, sid) in the order they were put: what to forget first."""

    def add(self, sid: str, value: T, now: float) -> None:
        until = now + self.keep
        self._values[sid] = (value, until)
        self._order.append((until, sid))

    def get(self, sid: str) -> T | None:
        entry = self._values.get(sid)
        return None if entry is None else entry[0]

    def discard(self, sid: str) -> None:
        self._values.pop(sid, None)  # (its entry in the order goes when it is due)

    def __contains__(self, sid: str) -> bool:
        return sid in self._values

    def __len__(self) -> int:
        return len(self._values)

    def sweep(self, now: float) -> None:
        """Forget what is due (a sid put again since is kept until its new time)."""
        order, values = self._order, self._values
        while order and order[0][0] <= now:
            until, sid = order.popleft()
            entry = values.get(sid)
            if entry is not None and entry[1] == until:
                del values[sid]


TOLD_AFTER: Final = frozenset({"slow_consumer"})
"""Why the server ended a session that a request for it still hears afterwards (instead of
``unknown_session``): a polling client is rarely there for the ``bye``. Only codes after
which a client starts a new session at once (protocol §9), as after ``unknown_session``,
and ``hub.disconnect``'s ``session_closed``: a client resumes after ``token_expired`` or
``rate_limited``, and would be refused the same way for as long as it is remembered."""


class SessionTable:
    """Sessions by id (with indexes by user and address); ends and forgets them."""

    __slots__ = (
        "_by_address",
        "_by_id",
        "_by_user",
        "_due",
        "channels",
        "clock",
        "ended",
        "engine",
        "limits",
        "moved",
        "recording",
        "refused",
        "settling",
        "tasks",
        "timers",
    )

    def __init__(
        self,
        engine: Engine,
        channels: ChannelTable,
        tasks: Tasks,
        limits: SessionLimits,
        clock: Callable[[], float],
        *,
        inbox_window: int = 1024,
    ) -> None:
        self.engine = engine
        self.channels = channels
        self.tasks = tasks
        self.limits = limits
        self.clock = clock
        self._by_id: dict[str, Session] = {}
        self._by_user: dict[str, set[Session]] = {}
        self._by_address: Counter[str] = Counter()
        self.timers = Timers()
        """When each session next needs the clock (the node's tick visits only those)."""
        self.moved: Expiring[str] = Expiring(limits.ttl * 2)
        """Sessions handed over to another node (sid -> node), for as long as the engine's
        record of a hand-over lasts: the node holding a session claims it again well within
        that (``Node.tick``), so this is for when the engine lost it (its data was lost, and
        the holder has not claimed the session again yet)."""
        self.ended: Expiring[tuple[LadderError, str]] = Expiring(limits.ttl)
        """Sessions the server ended for a reason in :data:`TOLD_AFTER` (or ``hub.disconnect``):
        sid -> (the error, the resume token)."""
        self.settling: dict[str, Session] = {}
        """Sessions ended while a message of theirs was still being applied, until it was
        applied and recorded: a successor naming one waits for that before it reads the
        record (else it would apply the message again)."""
        self.recording = Recording(engine, inbox_window)
        """When what sessions applied is written to the engine (whole, as one ends, where
        records live in this process)."""
        self._due = self._on_due
        self.refused: Callable[..., None] = lambda *args, **kwargs: None
        """Counts and logs a refusal (wired to the node's ``Refusals``)."""
        channels.overflowed = self.overflowed

    def get(self, sid: str) -> Session | None:
        return self._by_id.get(sid)

    def __contains__(self, sid: str) -> bool:
        return sid in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_id.values()))

    def ids(self) -> list[str]:
        """Every session's id, now (a copy made in C: a millisecond at 100,000)."""
        return list(self._by_id)

    def moved_in(self) -> list[str]:
        """The ids of the sessions here that another node made (each moved here)."""
        made_here = self.engine.session_prefix()
        return [sid for sid in self._by_id if not sid.startswith(made_here)]

    def of_user(self, user: str) -> int:
        return len(self._by_user.get(user, ()))

    def of_address(self, address: str) -> int:
        return self._by_address[address]

    @property
    def users(self) -> int:
        return len(self._by_user)

    def new(self, identity: Identity, address: str | None) -> Session:
        """A new session for ``identity``, in the table.

        The id decides where an engine spread over several servers keeps the session's
        records (a sharded engine's rendezvous hashing): an id whose server is down now is
        drawn again, or the session would be cut at its first message. With one server down
        of three, 16 draws all land on it once in 43 million sessions; such a session is placed
        there all the same (as before), and the node refuses new sessions when no server
        answers."""
        prefix, healthy_for = self.engine.session_prefix(), self.engine.healthy_for
        sid = prefix + secrets.token_urlsafe(16)
        for _ in range(ID_DRAWS - 1):
            if healthy_for(sid):
                break
            sid = prefix + secrets.token_urlsafe(16)
        state = SessionState(sid, secrets.token_urlsafe(24), self.clock(), self.limits)
        session = Session(state, identity, secrets.token_urlsafe(9))
        session.address = address
        self.adopt(session)
        return session

    def adopt(self, session: Session) -> None:
        """Put a session (new, or moved here from another node) in the table."""
        self._by_id[session.sid] = session
        session.state.on_due = self._due  # one callable for all: none made per session
        self.schedule(session)
        self.moved.discard(session.sid)
        if session.address is not None:
            self._by_address[session.address] += 1
        if session.user is not None:
            self._by_user.setdefault(session.user, set()).add(session)

    def _on_due(self, state: SessionState) -> None:
        session = self._by_id.get(state.sid)
        if session is not None and session.state is state:
            self.schedule(session)

    def schedule(self, session: Session) -> None:
        """Have the node's tick look at ``session`` when its core or its credentials are due."""
        expires = session.identity.expires
        extra = None if expires is None else self.clock() + (expires - time.time())
        self.timers.schedule(session, extra)

    def push_user(self, user: str, frame: OutFrame) -> int:
        """Queue ``frame`` for every local session of ``user``; returns how many."""
        sessions = list(self._by_user.get(user, ()))
        for session in sessions:
            self.channels.push(session, frame)
        return len(sessions)

    def end_user(self, user: str, error: LadderError) -> int:
        """End every local session of ``user`` now, telling its clients why (polling ones
        too); returns how many."""
        sessions = list(self._by_user.get(user, ()))
        for session in sessions:
            self.remember_end(session, error)
            self.close(session, error)
        return len(sessions)

    def close(self, session: Session, error: LadderError | None) -> None:
        """End a session now: drivers get a ``bye``; cleanup runs in the background."""
        if session.state.phase is Phase.CLOSED:
            return
        self.recording.at_end(session)  # (now: a successor replacing it reads it next)
        session.state.close(error)
        if error is not None and error.code in TOLD_AFTER:
            self.remember_end(session, error)
        if error is not None and error.code not in ("session_closed", "shutting_down"):
            log.info("session %s closed: %s", label(session.sid), error)
        self.tasks.spawn(self.forget(session), "ladder-forget")

    def overflowed(self, session: Session) -> None:
        """End a session that cannot keep up (its outbox is full): a refusal that ends it,
        counted and logged as a flood's is, once, on the transport it had last."""
        if session.state.phase is Phase.CLOSED:
            return
        error = LadderError("slow_consumer")
        self.refused(session.transport or "-", error, session=session, ending=True)
        self.close(session, error)

    def remember_end(self, session: Session, error: LadderError) -> None:
        """A later request for ``session`` (with its resume token) hears ``error``."""
        self.ended.add(session.sid, (error, session.state.token), self.clock())

    async def hand_over(self, session: Session, node: str) -> None:
        """Give a session to another node: forget it here without ending it for the client.

        Its transports here are closed with ``session_moved`` (the client resumes wherever
        its next request lands); its presence entries stay (the new node refreshes them).
        """
        for sub in session.subs.values():
            self.channels.unjoin(sub)
        self.moved.add(session.sid, node, self.clock())
        session.state.close(LadderError("session_moved"), bye=False)
        await self.forget(session)

    async def forget(self, session: Session, *, expired: bool = False) -> None:
        """Remove a closed or ``expired`` session from every table; its memory is returned.

        An expired session ended without :meth:`close`, so its record is written here."""
        if self._by_id.get(session.sid) is not session:
            return
        del self._by_id[session.sid]
        self.timers.forget(session)
        session.state.on_due = None
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
            await self.channels.drop(session, channel)
        if expired:
            self.recording.at_end(session)
        session.ready = None
        session.state.discard()
        if session.sid in self.moved:
            return  # it moved on rather than ended here
        if session.draining:
            # Still findable (here, and through its hand-over record) until its message is done.
            self.settling[session.sid] = session
            self.tasks.spawn(self._settled(session), "ladder-settling")
            return
        with contextlib.suppress(LadderError):
            await self.engine.release_session(session.sid)

    async def _settled(self, session: Session) -> None:
        try:
            await session.settle(SETTLING_LIMIT)
        finally:
            if self.settling.get(session.sid) is session:
                del self.settling[session.sid]
        with contextlib.suppress(LadderError):
            await self.engine.release_session(session.sid)
