"""What each numbered client frame does. Every one is answered exactly once.

Frames arrive here already deduplicated and in order (the session inbox). Each gets a
``reply`` (with a result) or an ``err`` (with a code) in the session's sequenced stream,
except ``emit``, which is fire-and-forget unless its handler fails. The answer is returned
to the hub, which sends it only after the message is recorded as applied. Nothing raised by an
app handler escapes: a :class:`LadderError` becomes that error, anything else a
``handler_error`` (logged here, with its traceback, since it is a server-side bug).
"""

from __future__ import annotations

import logging
from typing import Any

from ..engine.base import HistoryResult, Member, Payload, Position, Publication
from ..protocol.errors import LadderError
from ..protocol.frames import (
    Call,
    Emit,
    HistoryQuery,
    Invalid,
    Numbered,
    OutFrame,
    PresenceQuery,
    Publish,
    Refresh,
    Subscribe,
    Unsubscribe,
    error_frame,
    reply_frame,
)
from .auth import AuthRequest, check_permission, run_authenticate
from .hub import Context, Ladder
from .session import Session

log = logging.getLogger("ladder")


async def apply(hub: Ladder, session: Session, frame: Numbered) -> OutFrame | None:
    """Apply one client frame. Returns its answer, for the hub to send once the frame is
    recorded as applied (None: no answer, or one already sent, as a subscription's)."""
    reply: OutFrame
    try:
        result = await _APPLY[type(frame)](hub, session, frame)
    except LadderError as exc:
        if not isinstance(frame, Invalid):  # invalid frames were counted when refused
            hub.counters.errors[exc.code] += 1
        reply = error_frame(exc, frame.i)
    except Exception:
        log.exception("handler failed for %s from session %s", type(frame).__name__, session.sid[:8])
        hub.counters.errors["handler_error"] += 1
        reply = error_frame(LadderError("handler_error"), frame.i)
    else:
        if isinstance(frame, Emit) or result is _NO_REPLY:
            return None
        try:
            reply = reply_frame(frame.i, result)
        except LadderError as exc:
            log.warning("reply to %s could not be encoded: %s", type(frame).__name__, exc)
            reply = error_frame(LadderError("handler_error", "the result could not be encoded"), frame.i)
    return reply


def _pubs(hub: Ladder, pubs: list[Publication]) -> list[dict[str, Any]]:
    return [{"o": p.offset, "d": p.data} for p in pubs]


async def _subscribe(hub: Ladder, session: Session, frame: Subscribe) -> Any:
    channel = frame.ch
    options = hub.channel_rules.options(channel)
    engine = hub.engine
    if channel in session.subs:
        position = await engine.position(channel)
        return {"ch": channel, "ep": position.epoch, "off": position.offset, "rec": True}
    if len(session.subs) >= hub.limits.max_subscriptions:
        raise LadderError("too_many_subscriptions", f"at most {hub.limits.max_subscriptions} channels")
    await check_permission(hub.permissions, session.identity, "subscribe", channel, options)
    sub, first = hub.add_subscription(session, channel, options)
    try:
        if first:
            await engine.listen(channel)
        history: HistoryResult
        if frame.epoch is not None and frame.offset is not None:
            since = Position(frame.epoch, frame.offset)
            history = await engine.history(channel, since=since, limit=options.history_size, options=options)
        elif frame.recent > 0:
            limit = min(frame.recent, options.history_size)
            history = await engine.history(channel, since=None, limit=limit, options=options)
        else:
            history = HistoryResult([], await engine.position(channel), True)
        if options.presence:
            sub.member = Member(session.client_id, session.user, session.identity.info)
            await engine.presence_add(channel, sub.member, hub.presence_ttl)
    except BaseException:
        await hub.drop_subscription(session, channel)
        raise
    position = history.position
    # The reply, then what was missed, then whatever arrived live meanwhile: in offset order.
    hub.push_reply(
        session,
        reply_frame(
            frame.i,
            {
                "ch": channel,
                "ep": position.epoch,
                "off": position.offset,
                "rec": history.complete,
                "n": len(history.publications),
            },
        ),
    )
    hub.deliver_backlog(sub, history)
    return _NO_REPLY


class _NoReply:
    """Marker: the handler already pushed its reply."""


_NO_REPLY = _NoReply()


async def _unsubscribe(hub: Ladder, session: Session, frame: Unsubscribe) -> Any:
    if not await hub.drop_subscription(session, frame.ch):
        raise LadderError("not_subscribed", f"not subscribed to {frame.ch!r}")
    return {"ch": frame.ch}


async def _publish(hub: Ladder, session: Session, frame: Publish) -> Any:
    options = hub.channel_rules.options(frame.ch)
    await check_permission(hub.permissions, session.identity, "publish", frame.ch, options)
    pub = await hub.engine.publish(frame.ch, Payload.of(frame.d), options)
    return {"ep": pub.epoch, "off": pub.offset}


def _context(hub: Ladder, session: Session, event: str, number: int) -> Context:
    return Context(hub, session.sid, session.client_id, session.identity, event, session.message_key(number))


async def _run_handler(hub: Ladder, session: Session, frame: Emit | Call) -> Any:
    handler = hub.handler(frame.ev)
    if handler is None:
        raise LadderError("unknown_event", f"no handler for {frame.ev!r}")
    return await hub.call_handler(handler, _context(hub, session, frame.ev, frame.i), frame.d)


async def _emit(hub: Ladder, session: Session, frame: Emit) -> Any:
    return await _run_handler(hub, session, frame)


async def _call(hub: Ladder, session: Session, frame: Call) -> Any:
    return await _run_handler(hub, session, frame)


async def _presence(hub: Ladder, session: Session, frame: PresenceQuery) -> Any:
    options = hub.channel_rules.options(frame.ch)
    if not options.presence:
        raise LadderError("presence_disabled", f"presence is off for {frame.ch!r}")
    await check_permission(hub.permissions, session.identity, "presence", frame.ch, options)
    return [member.wire() for member in await hub.engine.presence(frame.ch)]


async def _history(hub: Ladder, session: Session, frame: HistoryQuery) -> Any:
    options = hub.channel_rules.options(frame.ch)
    await check_permission(hub.permissions, session.identity, "history", frame.ch, options)
    since = None if frame.epoch is None or frame.offset is None else Position(frame.epoch, frame.offset)
    limit = min(frame.limit, options.history_size)
    result = await hub.engine.history(frame.ch, since=since, limit=limit, options=options)
    return {
        "ep": result.position.epoch,
        "off": result.position.offset,
        "complete": result.complete,
        "pubs": _pubs(hub, result.publications),
    }


async def _refresh(hub: Ladder, session: Session, frame: Refresh) -> Any:
    """New credentials for a live session (an expiring token), without reconnecting."""
    request = AuthRequest(
        headers={}, cookies={}, token=frame.token, client=None, transport="refresh", address=session.address
    )
    identity = await run_authenticate(hub.authenticate, request)
    if identity.user != session.user:
        raise LadderError("forbidden", "a refreshed token must belong to the same user")
    session.identity = identity
    return {"u": identity.user, "exp": identity.expires}


async def _invalid(hub: Ladder, session: Session, frame: Invalid) -> Any:
    hub.refused("frame", frame.error, session=session)
    raise frame.error


_APPLY: dict[type, Any] = {
    Subscribe: _subscribe,
    Unsubscribe: _unsubscribe,
    Publish: _publish,
    Emit: _emit,
    Call: _call,
    PresenceQuery: _presence,
    HistoryQuery: _history,
    Refresh: _refresh,
    Invalid: _invalid,
}
