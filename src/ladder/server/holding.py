"""Client messages that wait for the Redis server keeping their session's records.

An engine spread over several servers (a sharded engine, a Redis Cluster) may reach every
server but the one holding a session's records. That session's emits and calls cannot be
recorded then (so they are not applied), and no other process can record them either: a
client sent elsewhere gains nothing, and its reconnections interrupt what the healthy
servers deliver. So on a WebSocket the connection is kept and the messages wait in the
session's queue, unapplied and unacknowledged, while deliveries go on; the node's tick
resumes them, in order, once that server answers. A hold is bounded: past ``shard_hold``
seconds, past ``inbox_window`` messages, or once the process loses the whole engine, it
ends as before (the WebSocket closed with 1011 ``engine_unavailable``; the client sends the
messages again after it resumes). HTTP rungs are answered ``503`` at once, as before.
"""

from __future__ import annotations

from typing import Final

from ..engine.base import Engine
from ..protocol.errors import LadderError
from ..protocol.session import Phase
from .refusals import Refusals
from .session import Session
from .sessions import SessionTable

_UNRECORDABLE: Final = "this server cannot reach its engine: messages are not applied here now"


class Holds:
    """The sessions whose next message waits for its records' server, since when."""

    __slots__ = ("engine", "limit", "refused", "since", "window")

    def __init__(self, engine: Engine, limit: float, window: int, refused: Refusals) -> None:
        self.engine = engine
        self.refused = refused
        self.limit = limit
        """``Limits.shard_hold``: the longest a hold lasts (0: none)."""
        self.window = window
        """``Limits.inbox_window``: the most messages waiting in one."""
        self.since: dict[Session, float] = {}

    def admits(self, session: Session, transport: str, now: float) -> bool:
        """Whether a message of ``session`` that its records' server cannot take now may
        wait for it (else it is refused as before): it came on a WebSocket, this process
        reaches its engine, and the session's hold, if any, is within its bounds."""
        if transport != "websocket" or not self.engine.healthy:
            return False
        return self._within(session, now) and self.room(session)

    def room(self, session: Session) -> bool:
        """Whether one more message may wait behind a held one."""
        ready = session.ready
        return ready is None or len(ready) < self.window

    def wait(self, session: Session, now: float) -> None:
        """The next message of ``session`` cannot be recorded now (called between two
        messages, none in a handler): it waits, the client told as its hold begins; or, when
        it may not, everything waiting is given back (:meth:`give_back`)."""
        if not self.engine.healthy:
            self.give_back(session)
        elif session in self.since:
            if not self._within(session, now):
                self.give_back(session)
        elif session.transport != "websocket" or not self.limit:
            self.give_back(session)  # (accepted while the engine answered)
        else:
            self.since[session] = now
            error = held_error(self.engine, session.sid, self.limit)
            self.refused("websocket", error, session=session)
            session.state.send_control({"t": "err", **error.body()})

    def give_back(self, session: Session) -> LadderError:
        """Nothing waiting is applied (called between two messages, none in a handler), and
        the session's transports are ended, so that the client resumes (here or elsewhere)
        and sends it all again."""
        self.since.pop(session, None)
        session.ready = None
        session.state.unaccept()
        error = unrecordable_error(self.engine, session.sid)
        session.state.send_away(error)
        return error

    def _within(self, session: Session, now: float) -> bool:
        started = self.since.get(session)
        return self.limit > 0 if started is None else now - started < self.limit

    def due(self, now: float, sessions: SessionTable) -> tuple[list[Session], list[Session]]:
        """The node's tick: the held sessions whose records' server answers again (to be
        drained) and those held too long or whose process lost its engine (to be refused as
        before). Sessions gone, moved or with nothing waiting any more are let go; one whose
        messages are being applied is left to its drain."""
        engine, since = self.engine, self.since
        resumed: list[Session] = []
        ended: list[Session] = []
        for session, started in list(since.items()):
            if session.draining:
                continue
            state = session.state
            gone = sessions.get(state.sid) is not session or state.phase is Phase.CLOSED
            if gone or session.moving or not session.ready:
                del since[session]
            elif engine.healthy_for(state.sid):
                del since[session]
                resumed.append(session)
            elif not engine.healthy or now - started >= self.limit:
                del since[session]
                ended.append(session)
        return resumed, ended


def unrecordable_error(engine: Engine, sid: str) -> LadderError:
    """Why ``sid``'s messages are not applied now: the node cannot reach its engine, or (it
    can, the engine is spread over several servers) the one holding this session is down."""
    server = _record_server(engine, sid)
    if server is None:
        refused = engine_refusal(engine)
        if refused is not None:
            return LadderError("engine_unavailable", f"messages are not applied here now: {refused}")
        return LadderError("engine_unavailable", _UNRECORDABLE)
    reason = f"shard {server}, which holds this session, is down: its messages are not applied now"
    return LadderError("engine_unavailable", reason)


def held_error(engine: Engine, sid: str, limit: float) -> LadderError:
    """What the client is told (a control ``err``, its connection kept) as its messages
    begin to wait."""
    server = _record_server(engine, sid) or "the server"
    reason = (
        f"shard {server}, which holds this session, is down: its messages wait here for it "
        f"(at most {limit:g} s)"
    )
    return LadderError("engine_unavailable", reason)


def engine_refusal(engine: Engine) -> str | None:
    """Why the engine is refused (a Redis server of the wrong kind, or one listed twice),
    naming the server and the fix, where it says (``refusal()``), else None: the node is
    then unhealthy, but not for want of reaching Redis."""
    said = getattr(engine, "refusal", None)
    return said() if said is not None else None


def _record_server(engine: Engine, sid: str) -> str | None:
    named = getattr(engine, "record_server", None)
    return named(sid) if named is not None and engine.healthy else None
