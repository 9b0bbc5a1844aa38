"""The channel table: which local sessions follow which channel, and the engine's callbacks.

The engine calls this table (it is the :class:`~ladder.engine.base.EngineSink`). Fan-out is
a loop that appends one shared, pre-encoded frame to each subscriber's outbox and wakes its
writer: no task, no encoding and no extra call per recipient.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from itertools import accumulate, takewhile
from time import monotonic
from typing import Final

from ..engine.base import ChannelOptions, Engine, HistoryResult, Member, Position, Publication
from ..protocol.errors import LadderError
from ..protocol.outframes import OutFrame, presence_frame, pub_frame, resync_frame
from ..protocol.reliable import OutboxOverflow
from ..protocol.sids import label
from .config import ChannelRules
from .flusher import Flusher, flusher_of
from .session import Session, Subscription

log = logging.getLogger("ladder")


def _flusher() -> Flusher | None:
    """This loop's flusher, told while a publication is queued so that native WebSocket
    connections are written as the fan-out reaches them."""
    try:
        return flusher_of(asyncio.get_running_loop())
    except RuntimeError:
        return None


BUSY_GAP: Final = 0.002
"""A channel published to again within this many seconds of its last fan-out is busy: its
subscribers' connections are written in the flusher's batches (several publications a
write) rather than as the fan-out reaches them (see :meth:`ChannelTable.on_publication`)."""


REPLY_BYTES: Final = 256
"""More than a subscription's reply takes, but for its channel's name (4 bytes a character)."""
BURST_SHARE: Final = 0.5
"""What a burst of the server's own making (a recovery, ``recent``, a history answer) may
take of what the session may still leave unacknowledged (see ``Outbox.room``)."""


def _unwired(_: object) -> None:
    raise RuntimeError("not wired")


class ChannelTable:
    """Local subscriptions by channel, and where each channel's stream stands."""

    __slots__ = (
        "_channels",
        "_fanned",
        "_positions",
        "engine",
        "node_message",
        "overflowed",
        "present",
        "route_lost",
        "rules",
    )

    def __init__(self, engine: Engine, rules: ChannelRules) -> None:
        self.engine = engine
        self.rules = rules
        self._channels: dict[str, dict[Session, Subscription]] = {}
        self._positions: dict[str, tuple[str, int]] = {}
        """Per channel with local subscribers: (epoch, offset) of the last publication fanned out."""
        self._fanned: dict[str, float] = {}
        """Per channel with local subscribers: when its last fan-out ended (monotonic)."""
        self.present: dict[Subscription, None] = {}
        """The subscriptions with a presence entry (refreshed by the node's clock: only
        they are walked, not every session)."""
        self.overflowed: Callable[[Session], None] = _unwired
        """Ends a session that cannot keep up, as a refusal (wired to the session table)."""
        self.node_message: Callable[[bytes], None] = _unwired
        """Where messages from other nodes go (wired to the cluster)."""
        self.route_lost: Callable[[], None] = lambda: None
        """Who hears that a link between nodes broke (wired to the cluster)."""

    def __len__(self) -> int:
        return len(self._channels)

    def push(self, session: Session, frame: OutFrame) -> None:
        """Queue ``frame`` for ``session``; a session that cannot keep up is ended."""
        try:
            session.state.push(frame)
        except OutboxOverflow:
            self.overflowed(session)
        except LadderError:
            pass  # closed meanwhile

    # -- subscriptions ---------------------------------------------------------------------

    def add(
        self, session: Session, channel: str, options: ChannelOptions, *, join_leave: bool
    ) -> tuple[Subscription, bool]:
        """Register a (pending) local subscription, which gets ``join``/``leave`` frames if
        ``join_leave``. Returns it and whether it is the node's first."""
        sub = Subscription(channel, session, options, join_leave=join_leave)
        session.subs[channel] = sub
        local = self._channels.get(channel)
        first = local is None
        if local is None:
            local = self._channels[channel] = {}
        local[session] = sub
        return sub, first

    def join(self, sub: Subscription, member: Member) -> None:
        """``sub``'s session is present in its channel as ``member`` (kept fresh from now on)."""
        sub.member = member
        self.present[sub] = None

    def present_ids(self) -> list[tuple[str, str]]:
        """(session id, channel) of every subscription with a presence entry (ids: a list
        kept for a while does not hold ended sessions)."""
        return [(sub.session.sid, sub.channel) for sub in self.present]

    def unjoin(self, sub: Subscription) -> None:
        """No longer kept fresh here (the entry itself stays until removed or expired)."""
        sub.member = None
        present = self.present
        present.pop(sub, None)
        if not present:
            self.present = {}  # (an emptied dict keeps the size it grew to: let it go)

    async def drop(self, session: Session, channel: str) -> bool:
        """Remove a subscription (and the node's listening, if it was the last one), or one
        the session brought when it moved here and does not follow yet."""
        unsettled = [entry for entry in session.unsettled if entry[0] == channel]
        for entry in unsettled:
            session.settled(entry)
        sub = session.subs.pop(channel, None)
        if sub is None:
            return bool(unsettled)
        local = self._channels.get(channel)
        if local is not None:
            local.pop(session, None)
            if not local:
                del self._channels[channel]
                self._positions.pop(channel, None)
                self._fanned.pop(channel, None)
                await self.engine.unlisten(channel)
        if sub.member is not None:
            member = sub.member
            self.unjoin(sub)
            await self.engine.presence_remove(channel, member)
        return True

    @staticmethod
    def frame_of(pub: Publication) -> OutFrame:
        """The publication's wire frame, built once and cached on it."""
        frame = pub.frame
        if frame is None:
            frame = pub.frame = pub_frame(pub.channel, pub.offset, pub.payload)
        assert isinstance(frame, OutFrame)
        return frame

    def fitted(
        self, session: Session, history: HistoryResult, *, recovering: bool, one_frame: bool = False
    ) -> HistoryResult:
        """What of ``history`` the session's outbox can take at once, within half of what it
        may still leave unacknowledged (:data:`BURST_SHARE`): a subscription's past after its
        reply (a frame each), or a ``history`` answer (``one_frame``). From a position all of
        it or none (``rec``/``complete`` false: the client resyncs), else the newest that fit.
        Sent past ``lim.queue`` or ``lim.qbytes``, a recovery ended the session as a slow
        consumer before its reply, and its successor's, as large, ended that too; an answer
        over ``lim.qbytes`` was kept alone, and the next frame ended it; filling them, the
        next live publication did."""
        pubs = history.publications
        if not pubs:
            return history
        outbox = session.state.outbox
        newest = [self.frame_of(pub).size for pub in reversed(pubs)]
        if one_frame:

            def fits(publications: int) -> bool:  # (their bytes, with the answer's own)
                return outbox.room([REPLY_BYTES + publications], share=BURST_SHARE) == 1

            fitting = sum(1 for _ in takewhile(fits, accumulate(newest)))
        else:
            reply = REPLY_BYTES + 4 * len(pubs[0].channel)
            fitting = outbox.room(newest, reserve=1, reserve_bytes=reply, share=BURST_SHARE)
        if fitting == len(pubs):
            return history
        if not recovering:
            return HistoryResult(pubs[len(pubs) - fitting :], history.position, True)
        if not one_frame:
            log.info(
                "session %s: the %d publications of %s it missed do not fit in what it may "
                "leave unacknowledged (Limits.max_queue %d, max_queue_bytes %d, %d waiting): "
                "not recovered, its client resyncs",
                label(session.sid), len(pubs), pubs[0].channel, outbox.max_items, outbox.max_bytes,
                len(outbox),
            )
        return HistoryResult([], history.position, False)

    def deliver_backlog(self, sub: Subscription, history: HistoryResult) -> None:
        """Finish a subscription that was catching up: history first, then what arrived live
        meanwhile (only what is newer), then live delivery."""
        session = sub.session
        position = history.position
        last = history.publications[-1].offset if history.publications else position.offset
        for pub in history.publications:
            self.push(session, self.frame_of(pub))
        pending, sub.pending = sub.pending or [], None
        for pub in pending:
            if pub.offset > last and pub.epoch == position.epoch:
                self.push(session, self.frame_of(pub))
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

    # -- the engine's callbacks ------------------------------------------------------------

    def on_publication(self, pub: Publication) -> None:
        """Fan-out: one shared frame appended to every local subscriber's outbox.

        Native WebSocket connections are written as the loop reaches them (the flusher's
        ``fanning``), unless the channel is busy (published to again within
        :data:`BUSY_GAP` of its last fan-out): then they are written in the flusher's batches,
        with the loop reading between them, so that what a lone publisher sends meanwhile
        (each publication waiting for the one before, as a handler awaiting ``publish`` on
        the Redis engine does) shares their writes instead of costing a write per
        subscriber each."""
        channel = pub.channel
        local = self._channels.get(channel)
        if not local:
            return
        self._positions[channel] = (pub.epoch, pub.offset)
        frame = self.frame_of(pub)
        overflowed: list[Session] = []
        fanned = self._fanned
        flusher = _flusher() if monotonic() - fanned.get(channel, 0.0) >= BUSY_GAP else None
        if flusher is not None:
            flusher.fanning = True
        try:
            for sub in local.values():
                pending = sub.pending
                if pending is not None:
                    pending.append(pub)
                    continue
                try:
                    sub.state.push(frame)
                except OutboxOverflow:
                    overflowed.append(sub.session)
        finally:
            if flusher is not None:
                flusher.fanning = False
            fanned[channel] = monotonic()
        for session in overflowed:
            self.overflowed(session)

    def on_presence(self, channel: str, kind: str, member: Member) -> None:
        """``join``/``leave`` to the subscribers that may see the channel's members, but the
        member's own session: it knows (its ``sub`` reply), and whether it heard itself
        depended on the engine's timing (memory: announced before its subscription was
        confirmed; Redis: after, so an own ``join``)."""
        local = self._channels.get(channel)
        if not local or not self.rules.options(channel).join_leave:
            return
        frame = presence_frame(kind, channel, member.wire())
        client = member.client
        for session, sub in list(local.items()):
            if sub.join_leave and sub.pending is None and session.client_id != client:
                self.push(session, frame)

    def on_reset(self, channel: str, position: Position) -> None:
        local = self._channels.get(channel)
        if not local:
            return
        frame = resync_frame(channel, position.epoch, position.offset)
        self._positions[channel] = (position.epoch, position.offset)
        for session, sub in list(local.items()):
            sub.epoch, sub.offset = position.epoch, position.offset
            self.push(session, frame)

    def on_node_message(self, message: bytes) -> None:
        self.node_message(message)

    def on_route_lost(self) -> None:
        self.route_lost()
