"""A session packed up by one node and rebuilt by another (when a stream lands elsewhere).

The owner packs the core's snapshot (sequence counters, unacknowledged frames, inbox
position) with who the session is and where each subscription stands, then forgets it;
the new node rebuilds it and resubscribes from those positions, so history covers anything
published during the move. Neither side writes the core's fields: the core snapshots and
restores itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import msgpack

from ..engine.base import Member, Position
from ..protocol.errors import LadderError
from ..protocol.outframes import resync_frame
from ..protocol.session import SessionState
from ..protocol.sids import label
from .applied import Answers, Inherited
from .auth import Identity, sees_members
from .channels import ChannelTable
from .config import Settings
from .session import Session
from .sessions import SessionTable
from .tasks import Tasks

log = logging.getLogger("ladder.cluster")


def pack(session: Session, channels: ChannelTable) -> dict[str, Any]:
    """The session as another node rebuilds it: the core's snapshot plus who it is."""
    identity = session.identity
    try:
        claims = msgpack.unpackb(msgpack.packb(dict(identity.claims)), raw=False)
    except (TypeError, ValueError):
        claims = {}
    return {
        "addr": session.address,
        "exp": identity.expires,
        "cid": session.client_id,
        "user": identity.user,
        "info": identity.info,
        "claims": claims,
        "state": session.state.snapshot(),
        "inh": None if session.inherited is None else session.inherited.pack(),
        "ans": None if session.answers is None else session.answers.pack(),
        "subs": _subscriptions(session, channels),
    }


def _subscriptions(session: Session, channels: ChannelTable) -> list[list[Any]]:
    """Where each subscription stands; one it brought here and does not follow yet (it moves
    on before settling in) stands where it stood when it came."""
    unsettled = {entry[0]: list(entry) for entry in session.unsettled}
    subs = [
        [sub.channel, *channels.position_of(sub), sub.member is not None]
        for sub in session.subs.values()
        if sub.channel not in unsettled
    ]
    return subs + list(unsettled.values())


async def restore(
    packed: dict[str, Any], settings: Settings, sessions: SessionTable, tasks: Tasks
) -> Session:
    """Rebuild a packed session here, in the table, following its channels again."""
    state = SessionState.restore(packed["state"], settings.clock(), settings.session_limits)
    identity = Identity(
        user=packed["user"],
        info=packed["info"],
        claims=packed.get("claims") or {},
        expires=packed.get("exp"),
    )
    session = Session(state, identity, packed["cid"])
    session.address = packed.get("addr")
    if packed.get("inh") is not None:
        session.inherited = Inherited.unpack(packed["inh"])
    if packed.get("ans") is not None:
        session.answers = Answers(settings.limits.inbox_window)
        session.answers.unpack(packed["ans"])
    brought = [(str(ch), ep, int(off), bool(present)) for ch, ep, off, present in packed["subs"]]
    session.unsettled = brought or ()
    sessions.adopt(session)
    try:
        await _settle_in(session, settings, sessions)
    except LadderError as exc:
        # The session is here now (its old owner forgot it): a failed step must not leave
        # it unclaimed or a subscription pending for good, which silently lost every
        # publication after the move. Finished in the background as the engine comes back.
        log.warning(
            "session %s moved in, %s; its move finishes when the engine answers", label(state.sid), exc
        )
        tasks.spawn(_settle_later(session, settings, sessions), "ladder-settle-in")
    return session


async def _settle_in(session: Session, settings: Settings, sessions: SessionTable) -> None:
    """Claim a session that moved here (again, if tried again: it is idempotent) and follow
    its channels; ``session.unsettled`` shrinks as each is done. Stops when the session
    leaves meanwhile (moved on, or ended): what is left went with it."""
    await sessions.engine.claim_session(session.sid, settings.session_limits.ttl * 2)
    while session.unsettled and sessions.get(session.sid) is session:
        entry = session.unsettled[0]
        channel, epoch, offset, present = entry
        await _resubscribe(
            session, settings, sessions.channels, channel, epoch=epoch, offset=offset, present=present
        )
        if sessions.get(session.sid) is not session:
            return  # it left during the step: the step's subscription went with it (or ended)
        session.settled(entry)  # (gone already if the client unsubscribed meanwhile)


async def _settle_later(session: Session, settings: Settings, sessions: SessionTable) -> None:
    delay = 0.1
    while sessions.get(session.sid) is session:
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        try:
            await _settle_in(session, settings, sessions)
            return
        except LadderError:
            delay = min(delay * 2, 2.0)


async def _resubscribe(
    session: Session,
    settings: Settings,
    channels: ChannelTable,
    channel: str,
    *,
    epoch: str | None,
    offset: int,
    present: bool,
) -> None:
    """Follow ``channel`` here from where the session was, filling the move's gap from history.
    Tried again after a failure: the pending subscription made by the first try is kept."""
    engine = channels.engine
    options = settings.channel_rules.options(channel)
    sub = session.subs.get(channel)
    if sub is None:
        # Made at once (an unsubscribe meanwhile finds it), then the hook is asked again here:
        # the answer is kept with each node's subscription (pending, it hears nothing yet).
        sub, first = channels.add(session, channel, options, join_leave=False)
        with contextlib.suppress(LadderError):  # a failing hook (logged): no frame it did not allow
            sub.join_leave = await sees_members(settings.permissions, session.identity, channel, options)
        if first:
            await engine.listen(channel)
    if present:
        member = Member(session.client_id, session.user, session.identity.info)
        channels.join(sub, member)
        await engine.presence_add(channel, member, settings.presence_ttl)
    since = Position(epoch, offset) if epoch is not None else None
    history = await engine.history(channel, since=since, limit=options.history_size, options=options)
    if session.subs.get(channel) is not sub:
        return  # unsubscribed, moved on or ended meanwhile: nothing to deliver here
    if since is not None and not history.complete:
        channels.push(session, resync_frame(channel, history.position.epoch, history.position.offset))
    channels.deliver_backlog(sub, history)
