"""The server side of a session, as a state machine with no I/O.

A session outlives its transports. It owns the outbound :class:`Outbox` (frames numbered
``s``, kept until the client acknowledges them) and the inbound :class:`Inbox` (client
messages numbered ``i``, applied once, in order). Transports come and go as
*attachments*:

* the most recently attached transport is **active**: it alone receives new frames;
* an attachment starts from the client's acknowledgement, so a new transport first
  replays everything the client has not confirmed, then continues;
* an older streaming attachment stays as a standby until it closes; if the active one
  goes away first, the standby takes over from where the client's acknowledgements are;
* a poll attachment (one HTTP request) is released the moment a newer attachment arrives.

Because the client drops any ``s`` it already has, these rules lose nothing and double
nothing whatever order transports open and close in. Time is passed in; the I/O layer
calls :meth:`SessionState.tick` and reacts to what changed. ``wake`` callbacks are how
the core tells a driver "you have something to write" without knowing how it waits.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from .attachment import Attachment
from .errors import LadderError
from .frames import Numbered
from .lifecycle import TRANSITIONS, Event, Phase, SessionLimits
from .outframes import OutFrame
from .reliable import Inbox, Outbox

__all__ = ["PARKED_CONTROL", "TRANSITIONS", "Event", "Phase", "SessionLimits", "SessionState"]

PARKED_CONTROL: Final = 32
"""Most control frames kept for a session between two transports (the oldest go first)."""


class SessionState:
    """Sequence numbers, replay buffer, acks, dedupe and deadlines of one session."""

    __slots__ = (
        "ack_written",
        "ack_written_at",
        "active",
        "attachments",
        "close_error",
        "created",
        "detached_since",
        "done",
        "inbox",
        "limits",
        "on_due",
        "outbox",
        "parked",
        "phase",
        "sent_away",
        "sid",
        "token",
    )

    def __init__(self, sid: str, token: str, now: float, limits: SessionLimits) -> None:
        # (What a publication and a write read come first: the compiled class lays its
        # fields out in this order, near the header, and a fan-out reaches thousands.)
        self.outbox: Outbox[OutFrame] = Outbox(max_items=limits.max_queue, max_bytes=limits.max_queue_bytes)
        self.active: Attachment | None = None
        """The attachment that receives new frames: the newest one still open (the last of
        ``attachments``, kept in a field: every publication and every write asks for it,
        and the list is one more object to reach per subscriber)."""
        self.inbox: Inbox[Numbered] = Inbox(window=limits.inbox_window)
        self.done = 0
        """``inbox.done`` (every client message up to it applied), kept here too: every write
        compares it with what its transport was last told, and a subscriber's inbox is
        otherwise untouched for as long as its client only listens."""
        self.limits = limits
        self.ack_written = 0
        """The highest client message id acknowledged in anything written (any transport)."""
        self.ack_written_at = now
        self.attachments: list[Attachment] = []
        self.sid = sid
        self.token = token
        self.created = now
        self.phase = Phase.DETACHED
        self.detached_since: float | None = now
        self.close_error: LadderError | None = None
        self.on_due: Callable[[SessionState], None] | None = None
        """Called when :meth:`due` may have moved earlier (a transport attached, or the last
        one detached): the driver's timers look at the session again."""
        self.parked: deque[dict[str, Any]] | None = None
        """Control frames (errors) for a session with no transport attached at that moment
        (between two polls): the next attachment writes them. A deque only while there are
        some: most sessions never have any."""
        self.sent_away: LadderError | None = None
        """Why the transports were sent away (:meth:`send_away`), until the client resumes
        (a transport attached with a welcome): every poll and ``POST send`` is refused with
        it meanwhile. A client between two polls has no transport to end, and it must hear
        that it has to resume and write again what was given back."""

    # -- lifecycle --------------------------------------------------------------------

    def _move(self, event: Event) -> None:
        try:
            self.phase = TRANSITIONS[(self.phase, event)]
        except KeyError:
            raise RuntimeError(f"session {self.sid}: {event.value} while {self.phase.value}") from None

    def attach(
        self,
        transport: str,
        *,
        streaming: bool,
        ack: int,
        now: float,
        greeting: dict[str, Any] | None = None,
        hold: float | None = None,
    ) -> Attachment:
        """Attach a transport that has seen everything up to ``ack`` (``hold``: a long poll
        held at most that many seconds, when less than ``poll_timeout``).

        ``greeting`` (the welcome frame) is queued first on the new attachment. A closed
        session refuses with the error it ended with, as its ``bye`` said: a request that
        waited while its server stopped hears ``shutting_down`` (go elsewhere), not the
        ``session_closed`` of a session ended on purpose (give up).
        """
        if self.phase is Phase.CLOSED:
            ended = self.close_error
            raise LadderError.of(ended.body()) if ended is not None else LadderError("session_closed")
        if greeting is None:
            self.check_resumed()
        else:
            self.sent_away = None
        self.outbox.ack(ack)
        previous = self.active
        att = Attachment(transport, streaming=streaming, cursor=ack, now=now)
        if hold is not None and hold < self.limits.poll_timeout:
            att.hold = hold
        if greeting is not None:
            att.queue(greeting)  # the welcome carries the ack
        if self.parked is not None:
            for body in self.parked:
                att.queue(body)
            self.parked = None
        if greeting is not None:
            att.ack_sent = self.ack_written = self.done
            self.ack_written_at = now
        else:
            # Each poll is a new attachment: an ack the client was already sent is no news
            # and must not complete a held long poll (or every poll would return at once).
            att.ack_sent = self.ack_written
        self.attachments.append(att)
        self.active = att
        self._move(Event.ATTACH)
        self.detached_since = None
        if previous is not None and not previous.streaming:
            self._release(previous, None)
        att.wake()
        if self.on_due is not None:
            self.on_due(self)
        return att

    def detach(self, att: Attachment, now: float) -> None:
        """A transport went away (or its request ended)."""
        att.closed = True
        if att not in self.attachments:
            return
        was_active = att is self.active
        self.attachments.remove(att)
        self.active = self.attachments[-1] if self.attachments else None
        if self.phase is Phase.CLOSED:
            return
        if self.attachments:
            self._move(Event.DETACH)
            if was_active:
                # The standby takes over; it replays from the client's acknowledgement.
                successor = self.attachments[-1]
                successor.cursor = max(successor.cursor, self.outbox.acked)
                successor.wake()
        else:
            self._move(Event.DETACH_LAST)
            self.detached_since = now
            if self.on_due is not None:
                self.on_due(self)

    def close(self, error: LadderError | None, *, bye: bool = True) -> None:
        """End the session here. Every attachment is woken and, with ``bye``, told why.

        Without ``bye`` (the session moved to another process) transports just close, and
        the client resumes the session wherever it reconnects.
        """
        if self.phase is Phase.CLOSED:
            return
        self._move(Event.CLOSE)
        if self.on_due is not None:
            self.on_due(self)
        self.close_error = error
        for att in list(self.attachments):
            self._release(att, error, bye=bye)
        self.attachments.clear()
        self.active = None

    def discard(self) -> None:
        """Drop every frame kept for a session that is gone for good (its memory returns
        even if something still holds a reference to the session)."""
        self.outbox.renumber()
        self.inbox.reset()
        self.done = 0

    def unaccept(self) -> None:
        """Forget the messages accepted but not applied (never acknowledged): the client
        sends them again, and they are accepted then."""
        self.inbox.restore(self.inbox.done)

    def send_away(self, error: LadderError) -> None:
        """End every transport without a ``bye``, keeping the session: the client resumes it
        (here or on another process) and sends again what was not acknowledged. A poll or
        ``POST send`` before it resumes is refused with ``error`` (:attr:`sent_away`)."""
        self.sent_away = error
        for att in list(self.attachments):
            self._release(att, error)

    def check_resumed(self) -> None:
        """Refuse a request that continues the session (a poll, a ``POST send``) while its
        transports are sent away and its client has not resumed (:attr:`sent_away`)."""
        away = self.sent_away
        if away is not None:
            raise LadderError(
                away.code,
                f"{away.reason}; the session's transports were ended: resume it (a hello with its "
                "sid) and send again every message after the welcome's ack",
            )

    def _release(self, att: Attachment, error: LadderError | None, *, bye: bool = False) -> None:
        if bye:
            body = {"t": "bye", **(error.body() if error else {"code": "session_closed", "reason": "closed"})}
            att.queue(body)
        att.closed = True
        att.close_error = error
        att.wake()

    # -- outbound -----------------------------------------------------------------------

    def push(self, frame: OutFrame) -> int:
        """Queue a sequenced frame; raises ``OutboxOverflow`` when the client is too far behind."""
        seq = self.outbox.push(frame, frame.size)
        active = self.active
        if active is not None:
            active.wake()
        return seq

    def send_control(self, body: dict[str, Any], att: Attachment | None = None) -> None:
        """Queue an unsequenced frame (pong, error) on ``att``, or on the active transport.

        At most ``max_queue`` wait on one transport: past it the client is not reading what
        it is sent (a flood of junk, with no message rate to end it, answered frame by frame
        into a socket nobody read grew without bound), and more are dropped, as they would
        be with its connection."""
        target = att or self.active
        if target is not None and not target.closed:
            waiting = target.control
            if waiting is not None and len(waiting) >= self.limits.max_queue:
                return
            target.queue(body)
            target.wake()
        elif att is None:
            if self.parked is None:
                self.parked = deque(maxlen=PARKED_CONTROL)
            self.parked.append(body)

    def send_everywhere(self, body: dict[str, Any]) -> None:
        """Queue an unsequenced frame on every attached transport.

        A pong for a ping POSTed upstream goes everywhere: the client may be proving a new
        stream (a probe) while an older rung is still the newest attachment. With none
        attached (short polling between two polls) it is kept for the next, as an error is.
        """
        live = [att for att in self.attachments if not att.closed]
        if not live:
            self.send_control(body)
        for att in live:
            self.send_control(body, att)

    def take(
        self, att: Attachment, now: float
    ) -> tuple[Sequence[dict[str, Any]], Sequence[tuple[int, OutFrame]]]:
        """What ``att`` should write now: control frames, then sequenced frames in order
        (empty ones are a shared empty tuple: most takes of a fan-out have no control frame)."""
        control: Sequence[dict[str, Any]] = att.control or ()
        att.control = None
        frames: Sequence[tuple[int, OutFrame]] = ()
        active = att is self.active
        if att.close_error is None and (active or (att.closed and not att.streaming)):
            if active:
                outbox = self.outbox
                if outbox.last > att.cursor:
                    frames = outbox.after(att.cursor, self.limits.batch_frames)
                    if frames:
                        att.cursor = frames[-1][0]
            applied = self.done
            if (active and applied > att.ack_sent) or (
                # A poll answer can be lost on the way: a long poll released empty (by its
                # timeout, or by a newer poll that took its place), and a short poll once per
                # poll_timeout, repeat the ack so the client learns it.
                not att.streaming
                and applied > 0
                and (att.closed or now - self.ack_written_at >= self.limits.poll_timeout)
            ):
                control = [*control, {"t": "ack", "i": applied}]
                att.ack_sent = self.ack_written = applied
                self.ack_written_at = now
        if control or frames:
            att.last_sent = now
        return control, frames

    def has_output(self, att: Attachment) -> bool:
        """Whether :meth:`take` would return anything for ``att`` right now."""
        if att.control:
            return True
        if att is not self.active:
            return False
        return self.outbox.pending(att.cursor) > 0 or self.done > att.ack_sent

    # -- inbound ------------------------------------------------------------------------

    def on_ack(self, upto: int) -> None:
        """The client confirmed every frame up to ``upto``."""
        if upto > self.outbox.acked:
            self.outbox.ack(upto)

    def receive(self, frame: Numbered) -> list[Numbered]:
        """Offer a numbered client frame; returns the frames now ready to apply, in order.

        Nothing is acknowledged yet: the client learns of a message only once it is done
        (:meth:`finish`), so a message lost before it was applied is still the client's to resend.
        """
        return self.inbox.offer(frame.i, frame)

    def finishable(self, number: int) -> bool:
        """Whether ``number`` is the next accepted message to finish (False once the session
        was discarded while it was being applied)."""
        inbox = self.inbox
        return inbox.done + 1 == number <= inbox.accepted

    def finish(self, number: int) -> None:
        """Client message ``number`` has been applied: it may now be acknowledged."""
        self.inbox.finish(number)
        self.done = number
        active = self.active
        if active is not None:
            # The client learns about the new cumulative ack on its next write.
            active.wake()

    # -- moving to another process ------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What another process needs to continue this session: its identity, the frames
        the client has not acknowledged, and how many client messages were *applied*.

        Messages accepted but not done are left out on purpose: they were never
        acknowledged, so the client writes them again to wherever the session goes.
        """
        outbox = self.outbox
        return {
            "sid": self.sid,
            "rt": self.token,
            "acked": outbox.acked,
            "frames": [[f.kind, f.fields, *f.tails, size] for f, size in outbox.kept()],
            "done": self.inbox.done,
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any], now: float, limits: SessionLimits) -> SessionState:
        """A detached session continuing from :meth:`snapshot` (taken in another process)."""
        state = cls(str(snapshot["sid"]), str(snapshot["rt"]), now, limits)
        items = [
            (OutFrame(str(kind), int(fields), bytes(json_tail), bytes(msgpack_tail)), int(size))
            for kind, fields, json_tail, msgpack_tail, size in snapshot["frames"]
        ]
        state.outbox.restore(int(snapshot["acked"]), items)
        state.inbox.restore(int(snapshot["done"]))
        state.done = state.inbox.done
        return state

    # -- time ---------------------------------------------------------------------------

    def due(self) -> float | None:
        """When :meth:`tick` next has something to do (None: nothing; at once once closed,
        to be reaped). Lets a driver tick only the sessions that are due: it moves later as
        frames are written and heard, earlier only when a transport attaches, the last one
        detaches or the session closes, which :attr:`on_due` reports."""
        if self.phase is Phase.CLOSED:
            return -math.inf
        limits = self.limits
        if self.phase is Phase.DETACHED:
            assert self.detached_since is not None
            return self.detached_since + limits.ttl
        due = math.inf
        for att in self.attachments:
            if att.pinged:
                due = min(due, att.last_heard + limits.dead_after)
        active = self.active
        if active is not None and not active.closed:
            if active.streaming:
                due = min(due, active.last_sent + limits.heartbeat)
                if active.pinged:
                    due = min(due, max(active.last_heard, active.ping_sent) + limits.heartbeat)
            else:
                due = min(due, active.opened + (limits.poll_timeout if active.hold is None else active.hold))
        return None if due == math.inf else due

    def tick(self, now: float, silent: Callable[[SessionState, Attachment], None] | None = None) -> bool:
        """Advance deadlines to ``now``. Returns True when the session just expired.

        Pings the active stream when it has been quiet for a heartbeat (a WebSocket also
        when its client has not been heard from for one), drops WebSocket
        attachments that stopped answering (telling ``silent`` of each), and releases long
        polls at ``poll_timeout``.
        """
        if self.phase is Phase.DETACHED:
            assert self.detached_since is not None
            if now - self.detached_since >= self.limits.ttl:
                self._move(Event.EXPIRE)
                return True
            return False
        if self.phase is Phase.CLOSED:
            return False
        limits = self.limits
        for att in list(self.attachments):
            if att.pinged and now - att.last_heard >= limits.dead_after:
                self._release(att, LadderError("heartbeat_timeout"))
                if silent is not None:
                    silent(self, att)
        att_active = self.active
        if att_active is None or att_active.closed:
            return False
        if att_active.streaming:
            heartbeat = limits.heartbeat
            # A stream written to steadily is pinged too when its client was not heard from
            # for a heartbeat: else a client that only acks now and then would go silent
            # past ``dead_after`` and be dropped while both sides were fine.
            if now - att_active.last_sent >= heartbeat or (
                att_active.pinged and now - max(att_active.last_heard, att_active.ping_sent) >= heartbeat
            ):
                att_active.queue({"t": "ping"})
                att_active.last_sent = att_active.ping_sent = now
                att_active.wake()
        elif now - att_active.opened >= (limits.poll_timeout if att_active.hold is None else att_active.hold):
            self._release(att_active, None)
        return False
