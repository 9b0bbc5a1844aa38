"""Client frames on their way in: acks, pings and flow control first, then numbered frames
applied one at a time, in order, each recorded as applied before it is answered."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Iterable, Iterator
from time import monotonic
from typing import cast

from ..engine.base import Engine
from ..protocol.attachment import Attachment
from ..protocol.errors import LadderError
from ..protocol.frames import Ack, Bye, Call, ClientFrame, Emit, Hello, Invalid, Numbered, Publish
from ..protocol.outframes import OutFrame, error_frame
from ..protocol.reliable import OutboxOverflow
from ..protocol.session import Phase
from . import together as publications
from .applied import Answers, kept_answer
from .config import Settings
from .control import ANSWERED, AT_ONCE, answer
from .dispatch import Dispatch, Pending
from .holding import Holds, unrecordable_error
from .lease import Lease
from .metrics import Counters
from .refusals import Refusals
from .session import Session
from .sessions import SessionTable
from .tasks import Tasks
from .throttle import Throttle


class Inbound:
    """Receives batches of client frames for sessions and drains what is ready."""

    __slots__ = (
        "counters", "dispatch", "engine", "holds", "lease", "recording", "records_at_once",
        "refused", "sessions", "settings", "tasks", "throttle", "together",
    )

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        sessions: SessionTable,
        dispatch: Dispatch,
        *,
        tasks: Tasks,
        counters: Counters,
        refused: Refusals,
        lease: Lease,
    ) -> None:
        self.settings = settings
        self.lease = lease
        self.engine = engine
        self.sessions = sessions
        self.dispatch = dispatch
        self.tasks = tasks
        self.counters = counters
        self.refused = refused
        self.throttle = Throttle(settings, sessions, refused)
        self.holds = Holds(engine, settings.limits.shard_hold, settings.limits.inbox_window, refused)
        """WebSocket sessions whose messages wait for the server keeping their records."""
        self.recording = sessions.recording
        self.records_at_once = self.recording.now is not None
        """A plain handler's message is applied as it is read (the engine records at once)."""
        self.together = not self.records_at_once and dispatch.publishes_together
        """A session's consecutive publications are applied together (``together.py``)."""

    async def receive(self, session: Session, att: Attachment | None, frames: Iterable[ClientFrame]) -> None:
        """Apply a batch of client frames that arrived on ``att`` (None: an upstream POST), in
        order. A frame refused without an id (:class:`Refused`, an ack beyond what was sent, a
        second hello) gets an unsequenced ``err`` in its place; the rest of the batch counts."""
        offered = self._offer(session, att, frames)
        if offered is None:
            return
        accepted, unrecordable, _, transport = offered
        if accepted:
            await self.drain(session)
        if unrecordable:
            self._refuse_unrecordable(session, att, transport)

    def _refuse_unrecordable(self, session: Session, att: Attachment | None, transport: str) -> None:
        """A batch held a message the engine could not record now, and that may not wait for
        it: the client sends it again. What the batch had accepted before is given back by
        the drain, between two messages (not here: one may be in a handler now, and must not
        be taken again); what a WebSocket's hold kept (none is in a handler then), here."""
        error = unrecordable_error(self.engine, session.sid)
        if att is None:
            raise error  # the POST fails (logged and counted as its refusal): the client writes it again
        self.refused(transport, error, session=session)
        if session in self.holds.since and not session.draining:
            self.holds.give_back(session)
        else:
            session.state.send_away(error)

    def receive_now(self, session: Session, att: Attachment, frames: list[ClientFrame]) -> bool:
        """Apply a batch at once, in the driver's turn, when nothing in it waits: acks, pings
        and pongs; and, with an engine that records at once, calls and emits whose handlers
        are plain functions. A driver then needs no task for it. False, with nothing done, for
        any other batch (an async handler runs in a task: it may need one of its own)."""
        records_at_once = self.records_at_once
        numbered = False
        for frame in frames:
            if type(frame) in AT_ONCE:
                continue
            if not (records_at_once and isinstance(frame, (Emit, Call)) and self.dispatch.plain(frame.ev)):
                return False
            numbered = True
        fresh = session.ready is None  # (then what the drain takes first is from this batch)
        offered = self._offer(session, att, frames)  # (as receive() does, without its coroutine)
        if offered is not None and numbered:
            accepted, unrecordable, waits, transport = offered
            if accepted:
                self.drain_now(session, checked=fresh and not (unrecordable or waits))
            if unrecordable:
                self._refuse_unrecordable(session, att, transport)
        return True

    def _offer(
        self, session: Session, att: Attachment | None, frames: Iterable[ClientFrame]
    ) -> tuple[bool, bool, bool, str] | None:
        """Take in a batch: (whether messages were accepted for the drain, whether one could
        not be recorded and was refused, whether one could not and waits for it, the
        transport's name), or None when the client said bye."""
        state = session.state
        transport = "send"
        now = self.settings.clock()
        if att is not None:
            att.heard(now)
            transport = att.transport
        accepted = False
        unrecordable = waits = False
        held = self.holds.since
        acked = False
        batch = iter(frames)
        unread: Iterator[ClientFrame] | None = None
        for frame in batch:
            try:
                if not acked and type(frame) is Ack:  # a batch's first ack is free of the rate
                    acked = True
                    state.on_ack(frame.s)
                    continue
                throttled = self.throttle.frame(session, frame, now, transport)
                if throttled is None:
                    unread = batch
                    break  # over the rate (the rest is sent again) or dropped for flooding
                frame = throttled  # noqa: PLW2901 - a message over the limit becomes its refusal
                if type(frame) in ANSWERED:
                    answer(session, att, frame, transport, self.refused)
                elif isinstance(frame, Bye):
                    self.sessions.close(session, None)
                    return None
                elif isinstance(frame, Hello):
                    raise LadderError("bad_frame", "hello is only valid as the first frame")
                else:
                    if isinstance(frame, (Emit, Call)) and not self.engine.healthy_for(session.state.sid):
                        # A handler's effects are outside the engine, and what this node applied
                        # now it could not record: were the session then lost (other nodes
                        # cannot reach this one either), its successor would apply it again.
                        # On a WebSocket it waits for the server (``holding.py``); else it is
                        # not taken: the client sends it again. (Engine requests just fail.)
                        if not self.holds.admits(session, transport, now):
                            unrecordable = True
                            break
                        waits = True
                    elif held and session in held and not self.holds.room(session):
                        unrecordable = True  # (more than inbox_window would wait)
                        break
                    if not isinstance(frame, Invalid):
                        self.counters.tally_in(transport).n += 1
                    ready = state.receive(cast("Numbered", frame))  # (the rest: ANSWERED, Bye, Hello)
                    if ready:
                        if session.ready is None:
                            session.ready = deque(ready)
                        else:
                            session.ready.extend(ready)
                        accepted = True
            except LadderError as exc:
                self.refused(transport, exc, session=session)
                state.send_control({"t": "err", **exc.body()}, att)
        self.throttle.read(session, unread, now, transport)
        return accepted, unrecordable, waits, transport

    def release(self, now: float) -> None:
        """The node's tick, while sessions are held: drain those whose records' server
        answers again; refuse as before those held too long (or whose process lost its
        engine), closing their transports with 1011."""
        resumed, ended = self.holds.due(now, self.sessions)
        for session in resumed:
            self.tasks.spawn(self.drain(session), "ladder-drain")
        for session in ended:
            self.refused(session.transport or "-", self.holds.give_back(session), session=session)

    async def drain(self, session: Session) -> None:
        """Apply queued client frames one at a time, in order (whoever arrives first drains).
        A message counts as done (and may be acknowledged) only once it was applied and
        recorded; a session being moved to another node stops between two messages.
        """
        if session.draining:
            return
        session.draining = True
        dispatch = self.dispatch
        together = self.together
        applying: list[Numbered] = []  # (a list: mypyc read a local set to None as None in finally)
        reply: OutFrame | None = None
        frames: list[Publish] = []
        replies: list[OutFrame | None] = []
        returned = False
        try:
            while (frame := self._take(session)) is not None:
                applying.append(frame)
                returned = False
                if together and type(frame) is Publish and publications.more(session):
                    frames = publications.take(session, frame)
                    replies = await dispatch.publish_all(session, frames)
                    returned = True
                    await self._done_together(session, frames, replies)
                    applying.clear()
                    frames = []
                    continue
                applied, reply = kept_answer(session.inherited, frame)
                if not applied:  # else the lost session applied it: answer it, once more
                    reply = await dispatch.apply(session, frame)
                returned = True
                await self._done(session, frame, reply)
                applying.clear()
        finally:
            if applying:
                # Our driver was cancelled inside a handler: the message went as far as it
                # went. It is finished (answered, never applied twice) before anything after
                # it, by a task of the hub's that keeps the queue (``draining`` stays set).
                current = applying[0]
                if not returned:
                    reply, replies = _interrupted(current.i), [_interrupted(number.i) for number in frames]
                if frames:
                    finishing = self._done_together(session, frames, replies)
                else:
                    finishing = self._done(session, current, reply)
                self.tasks.spawn(self._finish_interrupted(session, finishing), "ladder-drain")
            else:
                self._stopped(session)

    def drain_now(self, session: Session, *, checked: bool = False) -> None:
        """:meth:`drain` in the caller's turn and with no coroutine, for as long as the next
        message is a call or emit whose handler is a plain function on an engine that
        records at once (what :meth:`receive_now` takes). From the first other message on,
        or a plain handler that returned an awaitable, the rest is drained in a task.

        ``checked``: the first message waiting was offered in this turn, and its handler found
        plain and the engine able to record it then; it is taken without asking again."""
        if session.draining:
            return
        session.draining = True
        dispatch = self.dispatch
        try:
            while True:
                ready = session.ready
                if ready and not checked:
                    head = ready[0]
                    if not (isinstance(head, (Emit, Call)) and dispatch.plain(head.ev)):
                        session.draining = False
                        self.tasks.run_now(self.drain(session), "ladder-drain")
                        return
                frame = self._take(session, healthy=checked)
                checked = False  # (a handler runs next: ask again after it)
                if frame is None:
                    break
                assert isinstance(frame, (Emit, Call))
                applied, reply = kept_answer(session.inherited, frame)
                if not applied:
                    answer = dispatch.apply_now(session, frame)
                    if isinstance(answer, Pending):  # (``draining`` stays set for the task)
                        self.tasks.spawn(self._settle(session, frame, answer), "ladder-drain")
                        return
                    reply = answer
                self._done_now(session, frame, reply)
        except BaseException:
            session.draining = False
            raise
        self._stopped(session)

    def _take(self, session: Session, *, healthy: bool = False) -> Numbered | None:
        """The next message to apply; None when there is none, the session is closed or
        moving, the engine cannot record it now (not asked when the caller knows it can:
        ``healthy``), or this node's lease is not certainly held (confirmed first)."""
        ready = session.ready
        state = session.state
        if not ready or state.phase is Phase.CLOSED or session.moving:
            return None
        if not healthy and isinstance(ready[0], (Emit, Call)) and not self.engine.healthy_for(state.sid):
            self.holds.wait(session, self.settings.clock())
            return None
        if self.lease.until <= monotonic():  # (another node may have declared this one dead)
            self.lease.hold(session)  # (drained again once the lease is confirmed)
            return None
        if self.holds.since:
            self.holds.since.pop(session, None)
        return ready.popleft()

    def _stopped(self, session: Session) -> None:
        """A drain ended between two messages."""
        session.draining = False
        if not session.ready:
            session.ready = None
        if (
            session.ready
            and session.state.phase is not Phase.CLOSED
            and not session.moving
            and session not in self.holds.since and session not in self.lease.waiting  # (waiting)
        ):
            # Cancelled between two messages: someone must finish in order.
            self.tasks.spawn(self.drain(session), "ladder-drain")
        else:
            session.drained()

    async def _settle(self, session: Session, frame: Emit | Call, pending: Pending) -> None:
        """A plain handler returned an awaitable (see :meth:`drain_now`): its answer, then
        the rest of the queue, in this task."""
        try:
            reply = await self.dispatch.settle(session, frame, pending)
        except asyncio.CancelledError:
            finishing = self._done(session, frame, _interrupted(frame.i))
            self.tasks.spawn(self._finish_interrupted(session, finishing), "ladder-drain")
            raise
        await self._finish_interrupted(session, self._done(session, frame, reply))

    async def _finish_interrupted(self, session: Session, finishing: Awaitable[None]) -> None:
        """Finish what a drain had applied (``finishing``: its :meth:`_done`), then drain on."""
        try:
            await finishing
        finally:
            session.draining = False
        await self.drain(session)

    async def _done(self, session: Session, frame: Numbered, reply: OutFrame | None) -> None:
        """``frame`` was applied: record it, then send its answer and let it be acknowledged."""
        recording = self.recording
        if recording.now is not None:
            self._done_now(session, frame, reply)
            return
        answers, origins = recording.answers(session)
        pending = recording.one(session, frame, reply, answers, origins)
        if pending is not None:
            await pending
        self._answered(session, frame, reply, answers)

    async def _done_together(
        self, session: Session, frames: list[Publish], replies: list[OutFrame | None]
    ) -> None:
        """Publications applied together: recorded in one write, then answered in order."""
        answers, origins = self.recording.answers(session)
        await self.recording.together(session, frames, replies, answers, origins)
        for frame, reply in zip(frames, replies, strict=True):
            if session.state.phase is Phase.CLOSED:
                break  # (an answer overflowed the outbox: see _answered)
            self._answered(session, frame, reply, answers)

    def _done_now(self, session: Session, frame: Numbered, reply: OutFrame | None) -> None:
        """:meth:`_done` on an engine that records with a plain call (the memory engine)."""
        recording = self.recording
        answers, origins = recording.answers(session)
        if recording.per_message(session):
            recording.one(session, frame, reply, answers, origins)
            self._answered(session, frame, reply, answers)
            return
        # Nothing can read the record before the session ends, which writes it whole.
        answers.delivered(session.state.outbox.acked)  # (what is left is what the end keeps)
        self._answered(session, frame, reply, answers)
        if recording.per_message(session):  # its answer ended it (slow_consumer), unkept
            recording.one(session, frame, reply, answers, origins)

    def _answered(self, session: Session, frame: Numbered, reply: OutFrame | None, answers: Answers) -> None:
        """Recorded: send the answer, and let the message be acknowledged."""
        state = session.state
        if reply is not None:
            try:
                answers.kept(frame.i, state.push(reply))
            except OutboxOverflow:
                self.sessions.overflowed(session)
        if state.finishable(frame.i):  # else the session was discarded meanwhile
            state.finish(frame.i)


def _interrupted(number: int) -> OutFrame:
    return error_frame(LadderError("handler_error", "the handler was interrupted"), number)
