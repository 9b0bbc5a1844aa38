"""When what a session applied is written to the engine (exactly once: see ``applied.py``).

On Redis a node can die between applying a message and acknowledging it, and a successor
on another node reads the record, so every message is recorded before its answer or its
``ack`` can go out (:meth:`Recording.one`). Records kept in this process's memory (the
memory engine, ``records_in_process``) are read only by a successor of a session that
ended here, and die with the process: nothing can read one before its session ends, so a
session's record is written once, whole, when it ends (:meth:`Recording.at_end`, called by
the session table), and a message is recorded on its own only if it finishes after that.
That takes the record off every call (about 8,400 of 67,600 instructions of a plain JSON
call in ``bench/call_cost.py``) and off every live session's memory.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from ..engine.base import Engine
from ..protocol.errors import LadderError
from ..protocol.frames import Numbered
from ..protocol.outframes import OutFrame
from ..protocol.session import Phase
from ..protocol.sids import label
from .applied import Answers, encode_answer
from .session import Session

log = logging.getLogger("ladder")


class Recording:
    """The hub's side of :class:`~ladder.engine.base.AppliedRecords`."""

    __slots__ = ("engine", "now", "whole", "window")

    def __init__(self, engine: Engine, window: int) -> None:
        self.engine = engine
        self.window = window
        """``inbox_window``: at most this many unacknowledged answers are kept per session."""
        at_once = getattr(engine, "records_at_once", False)
        self.now: Callable[..., None] | None = (
            getattr(engine, "record_applied_now", None) if at_once else None
        )
        """The engine's plain-call ``record_applied``, where it has one (no coroutine)."""
        in_process = self.now is not None and getattr(engine, "records_in_process", False)
        self.whole: Callable[..., None] | None = (
            getattr(engine, "record_session_now", None) if in_process else None
        )
        """The engine's ``record_session_now`` where records live in this process: then a
        session's record is written when it ends."""

    def per_message(self, session: Session) -> bool:
        """Whether the message ``session`` just applied must be recorded on its own now."""
        return self.whole is None or session.state.phase is Phase.CLOSED

    def answers(self, session: Session) -> tuple[Answers, list[str] | None]:
        """The session's unacknowledged answers, and (at its first message only) the keys of
        the messages it carried over from a lost session, for the record."""
        answers = session.answers
        if answers is not None:
            return answers, None
        answers = session.answers = Answers(self.window)
        return answers, _carried_keys(session)

    def one(
        self,
        session: Session,
        frame: Numbered,
        reply: OutFrame | None,
        answers: Answers,
        origins: list[str] | None,
    ) -> Coroutine[Any, Any, None] | None:
        """Record ``frame``, applied, with its answer: with the engine's plain call where it
        has one (None: done), else the coroutine to await (the engine may wait: Redis)."""
        kept = {} if reply is None else {frame.i: encode_answer(reply)}
        state, fields = session.state, _fields(session, frame.i, kept, answers, origins)
        if self.now is None:
            return _awaited(session, frame, self.engine.record_applied(state.sid, state.token, **fields))
        try:
            self.now(state.sid, state.token, **fields)
        except LadderError as exc:
            _not_recorded(session, frame, exc)
        return None

    async def together(
        self,
        session: Session,
        frames: Sequence[Numbered],
        replies: Sequence[OutFrame | None],
        answers: Answers,
        origins: list[str] | None,
    ) -> None:
        """Record messages applied together (a session's consecutive publications, on an
        engine whose records wait: see ``Inbound.drain``) in one write, answers and all."""
        state = session.state
        pairs = zip(frames, replies, strict=True)
        kept = {frame.i: encode_answer(reply) for frame, reply in pairs if reply is not None}
        fields = _fields(session, frames[-1].i, kept, answers, origins)
        await _awaited(session, frames[-1], self.engine.record_applied(state.sid, state.token, **fields))

    def at_end(self, session: Session) -> None:
        """Write what ``session`` applied, as it ends here, where records live in this
        process: its highest applied id, its unacknowledged answers (their frames are still
        in its outbox) and the keys of the messages it carried over (the engine merges it
        with what a message still being applied recorded, and ``done`` never moves back)."""
        write = self.whole
        state = session.state
        if write is None or not state.inbox.done:
            return  # (nothing applied: nothing to record)
        replies: dict[int, bytes] = {}
        answers = session.answers
        kept = answers.pack() if answers is not None else []
        outbox = state.outbox
        for number, seq in kept:
            found = outbox.after(seq - 1, 1)  # (one item; none once acknowledged)
            if found and found[0][0] == seq:
                replies[number] = encode_answer(found[0][1])
        origins, ttl = _carried_keys(session), state.limits.ttl * 2
        write(state.sid, state.token, done=state.inbox.done, replies=replies, origins=origins, ttl=ttl)


def _fields(
    session: Session, done: int, replies: dict[int, bytes], answers: Answers, origins: list[str] | None
) -> dict[str, Any]:
    """``record_applied``'s keyword arguments: applied up to ``done``, with ``replies``."""
    state = session.state
    return {
        "done": done,
        "replies": replies,
        "forget": answers.delivered(state.outbox.acked),
        "origins": origins,
        "ttl": state.limits.ttl * 2,
    }


async def _awaited(session: Session, frame: Numbered, recording: Awaitable[None]) -> None:
    try:
        await recording
    except LadderError as exc:
        _not_recorded(session, frame, exc)


def _carried_keys(session: Session) -> list[str] | None:
    inherited = session.inherited
    return inherited.keys() if inherited is not None and inherited.ids else None


def _not_recorded(session: Session, frame: Numbered, exc: LadderError) -> None:
    # Applied all the same; only if this node died now could a resend apply it again.
    log.warning("session %s: message %d applied but not recorded (%s)", label(session.sid), frame.i, exc)
