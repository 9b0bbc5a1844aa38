"""What each numbered client frame does. Every one is answered exactly once.

Frames arrive here already deduplicated and in order (the session inbox). Each gets a
``reply`` (with a result) or an ``err`` (with a code) in the session's sequenced stream,
except ``emit``, which is fire-and-forget unless its handler fails. The answer is returned
to the caller (:mod:`.inbound`), which sends it only after the message is recorded as
applied. Nothing an app handler raises escapes but cancellation and the process's exits: a
:class:`LadderError` becomes that error, anything else ``handler_error`` (logged, traceback)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import Any, Final, TypeAlias

from ..engine.base import ChannelOptions, Engine, HistoryResult, Member, Payload, Position, Publication
from ..protocol.codec import unencodable
from ..protocol.errors import LadderError
from ..protocol.frames import (
    Call,
    Emit,
    HistoryQuery,
    Invalid,
    Numbered,
    PresenceQuery,
    Publish,
    Refresh,
    Subscribe,
    Unsubscribe,
)
from ..protocol.outframes import OutFrame, error_frame, reply_frame
from ..protocol.sids import label
from .auth import AuthRequest, check_permission, permitted, run_authenticate, sees_members
from .channels import ChannelTable
from .config import Settings
from .context import Context
from .metrics import Counters
from .refusals import Refusals
from .session import Session
from .tasks import Tasks

log = logging.getLogger("ladder")

Handler: TypeAlias = Callable[[Any, Any], Any]
"""An app's event handler: ``handler(ctx, data)``, sync or async."""


_VALUES: Final = frozenset({type(None), bool, int, float, str, bytes, list, dict, tuple})
"""What a plain handler returns, none of it awaitable: ``inspect.isawaitable`` (interpreted)
is asked only about anything else."""


class _NoReply:
    """Marker: the handler already pushed its reply."""


_NO_REPLY = _NoReply()

_FAILURES: Final = (Exception, GeneratorExit)  # a handler's failures (GeneratorExit went past, unanswered)


def _awaitable(result: Any) -> bool:
    kind = type(result)
    return kind is CoroutineType or (kind not in _VALUES and inspect.isawaitable(result))


class Pending:
    """What a plain handler returned that must be awaited (see :meth:`Dispatch.apply_now`)."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


class Dispatch:
    """Applies numbered client frames with what they need, and nothing that calls back up."""

    __slots__ = (
        "_kinds",
        "_publish_many",
        "channels",
        "counters",
        "engine",
        "handlers",
        "hub",
        "refused",
        "settings",
        "tasks",
    )

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        channels: ChannelTable,
        *,
        handlers: dict[str, Handler],
        hub: Any,
        counters: Counters,
        refused: Refusals,
        tasks: Tasks,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.channels = channels
        self.handlers = handlers
        self.hub = hub
        """The hub, for each handler's :class:`Context` (not used here otherwise)."""
        self.counters = counters
        self.refused = refused
        self.tasks = tasks
        self._kinds: dict[str, tuple[Handler, bool]] = {}
        """Per event, its handler when last seen and whether it is a plain function."""
        self._publish_many: Callable[..., Awaitable[list[Publication | LadderError]]] | None = getattr(
            engine, "publish_many", None
        )
        """The engine's ``publish_many``, where it has one (see ``Channels``)."""

    @property
    def publishes_together(self) -> bool:
        """Whether :meth:`publish_all` sends publications together (the engine can)."""
        return self._publish_many is not None

    def plain(self, event: str) -> bool:
        """Whether applying ``event`` calls no coroutine function: a plain function's handler
        (or none: ``unknown_event``) finishes without waiting."""
        handler = self.handlers.get(event)
        if handler is None:
            return True
        kind = self._kinds.get(event)
        if kind is not None and kind[0] is handler:
            return kind[1]
        call = getattr(handler, "__call__", None)  # noqa: B004 - an instance with an async __call__
        plain = not (inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call))
        self._kinds[event] = (handler, plain)
        return plain

    async def apply(self, session: Session, frame: Numbered) -> OutFrame | None:
        """Apply one client frame. Returns its answer, to be sent once the frame is recorded
        as applied (None: no answer, or one already sent, as a subscription's)."""
        try:
            if isinstance(frame, (Call, Emit)):  # the common case, with one coroutine fewer
                result = self._run_handler(session, frame)
                if _awaitable(result):
                    if self.tasks.now:
                        # Applied at once so far (a plain function returned an awaitable, or a
                        # call queued before was drained with this one): the awaitable runs in
                        # a task, which it may need.
                        await asyncio.sleep(0)
                    result = await result
            else:
                if self.tasks.now:
                    await asyncio.sleep(0)  # (the same: permissions and auth run in a task)
                result = await _APPLY[type(frame)](self, session, frame)
        except _FAILURES as exc:
            return self._failed(session, frame, exc)
        return self._answer(frame, result)

    def apply_now(self, session: Session, frame: Emit | Call) -> OutFrame | Pending | None:
        """:meth:`apply` for a call or emit whose handler is a plain function, as a plain
        call; :class:`Pending` if the handler returned an awaitable after all (for
        :meth:`settle`, in a task)."""
        try:
            result = self._run_handler(session, frame)
            if _awaitable(result):
                return Pending(result)
        except _FAILURES as exc:
            return self._failed(session, frame, exc)
        return self._answer(frame, result)

    async def settle(self, session: Session, frame: Emit | Call, pending: Pending) -> OutFrame | None:
        """The answer of a frame :meth:`apply_now` left pending, once its awaitable is done."""
        try:
            result = await pending.awaitable
        except _FAILURES as exc:
            return self._failed(session, frame, exc)
        return self._answer(frame, result)

    def _answer(self, frame: Numbered, result: Any) -> OutFrame | None:
        if isinstance(frame, Emit) or result is _NO_REPLY:
            return None
        try:
            return reply_frame(frame.i, result)
        except LadderError as exc:
            log.warning("reply to %s could not be encoded: %s", _named(frame), exc)
            why = exc.reason.removeprefix("data cannot be encoded: ")
            refusal = LadderError("handler_error", f"the result could not be encoded: {why}")
            return error_frame(refusal, frame.i)

    def _failed(self, session: Session, frame: Numbered, exc: Exception | GeneratorExit) -> OutFrame:
        """The answer to a frame whose application raised ``exc``."""
        if isinstance(exc, LadderError):
            if not isinstance(frame, Invalid):  # invalid frames were counted when refused
                self.counters.errors[exc.code] += 1
            try:
                return error_frame(exc, frame.i)
            except LadderError:  # a handler's details no encoding carries (the session goes on)
                why = f"the handler's error {exc.code!r} could not be encoded: {unencodable(exc.details)}"
                log.warning("%s from session %s: %s", _named(frame), label(session.sid), why)
                return error_frame(LadderError("handler_error", why), frame.i)
        if isinstance(frame, Call | Emit):  # the app's event handler
            log.error(
                "handler failed for %s from session %s",
                _named(frame),
                label(session.sid),
                exc_info=(type(exc), exc, exc.__traceback__),
            )
            self.counters.errors["handler_error"] += 1
            return error_frame(LadderError("handler_error"), frame.i)
        # No handler of the app's ran: a bug of the server's (or of an engine's), not the
        # client's either. The session goes on; the log has the traceback.
        kind = type(frame).__name__
        log.error(
            "applying %s from session %s failed; answered internal",
            kind,
            label(session.sid),
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        self.counters.errors["internal"] += 1
        why = f"the server failed to apply this {kind} frame (see its log)"
        return error_frame(LadderError("internal", why), frame.i)

    async def _subscribe(self, session: Session, frame: Subscribe) -> Any:
        channel = frame.ch
        settings = self.settings
        options = settings.channel_rules.options(channel)
        engine = self.engine
        if channel in session.subs:
            position = await engine.position(channel)
            return {"ch": channel, "ep": position.epoch, "off": position.offset, "rec": True, "n": 0}
        most = settings.limits.max_subscriptions
        if len(session.subs) >= most:
            raise LadderError("too_many_subscriptions", f"at most {most} channels")
        hook, identity = settings.permissions, session.identity
        await check_permission(hook, identity, "subscribe", channel, options)
        since = None if frame.epoch is None or frame.offset is None else Position(frame.epoch, frame.offset)
        recent = 0 if since is not None else min(frame.recent, options.history_size)
        if recent:  # the newest publications are history: asked before anything is read
            fix = ": subscribe without recent"
            await check_permission(hook, identity, "history", channel, options, fix=fix)
        join_leave = await sees_members(hook, identity, channel, options)
        channels = self.channels
        sub, first = channels.add(session, channel, options, join_leave=join_leave)
        try:
            if first:
                await engine.listen(channel)
            history: HistoryResult
            if since is not None:
                kept = options.history_size
                history = await engine.history(channel, since=since, limit=kept, options=options)
                if history.publications and not await permitted(hook, identity, "history", channel, options):
                    # What it missed is history it may not read: told it missed something,
                    # as when history is gone, it resyncs.
                    history = HistoryResult([], history.position, False)
            elif recent:
                history = await engine.history(channel, since=None, limit=recent, options=options)
            else:
                history = HistoryResult([], await engine.position(channel), True)
            if options.presence:
                member = Member(session.client_id, session.user, session.identity.info)
                channels.join(sub, member)
                await engine.presence_add(channel, member, settings.presence_ttl)
        except BaseException:
            await channels.drop(session, channel)
            raise
        history = channels.fitted(session, history, recovering=since is not None)
        position = history.position
        # The reply, then what was missed, then whatever arrived live meanwhile: in offset order.
        answer = {
            "ch": channel,
            "ep": position.epoch,
            "off": position.offset,
            "rec": history.complete,
            "n": len(history.publications),
        }
        channels.push(session, reply_frame(frame.i, answer))
        channels.deliver_backlog(sub, history)
        return _NO_REPLY

    async def _unsubscribe(self, session: Session, frame: Unsubscribe) -> Any:
        if not await self.channels.drop(session, frame.ch):
            raise LadderError("not_subscribed", f"not subscribed to {frame.ch!r}")
        return {"ch": frame.ch}

    async def _publish(self, session: Session, frame: Publish) -> Any:
        channel, payload, options = await self._allowed(session, frame)
        return _published(await self.engine.publish(channel, payload, options))

    async def _allowed(self, session: Session, frame: Publish) -> tuple[str, Payload, ChannelOptions]:
        """What ``frame`` publishes, once the session may (else its refusal is raised)."""
        settings = self.settings
        options = settings.channel_rules.options(frame.ch)
        await check_permission(settings.permissions, session.identity, "publish", frame.ch, options)
        return frame.ch, Payload.of(frame.d), options

    async def publish_all(self, session: Session, frames: list[Publish]) -> list[OutFrame | None]:
        """Apply a session's consecutive publications together: each checked, in order, then
        all handed to the engine at once (``publish_many``). Each gets the answer it would
        have had alone; one that fails does not stop the others."""
        if self.tasks.now:
            await asyncio.sleep(0)  # (as in apply: permissions run in a task)
        answers: list[OutFrame | None] = [None] * len(frames)
        items: list[tuple[str, Payload, ChannelOptions]] = []
        sent: list[int] = []
        for n, frame in enumerate(frames):
            try:
                items.append(await self._allowed(session, frame))
            except Exception as exc:
                answers[n] = self._failed(session, frame, exc)
            else:
                sent.append(n)
        assert self._publish_many is not None
        try:
            outcomes: list[Publication | Exception] = [*await self._publish_many(items)] if items else []
        except Exception as exc:  # (not one outcome each: the engine failed them all)
            outcomes = [exc] * len(items)
        for n, outcome in zip(sent, outcomes, strict=True):
            if isinstance(outcome, Publication):
                answers[n] = self._answer(frames[n], _published(outcome))
            else:
                answers[n] = self._failed(session, frames[n], outcome)
        return answers

    def _run_handler(self, session: Session, frame: Emit | Call) -> Any:
        """Call the app's handler: its result, or the awaitable an async handler returned."""
        event = frame.ev
        handler = self.handlers.get(event)
        if handler is None:
            raise LadderError("unknown_event", f"no handler for {event!r}")
        return handler(Context.of(self.hub, session, event, frame.i), frame.d)

    async def _presence(self, session: Session, frame: PresenceQuery) -> Any:
        settings = self.settings
        options = settings.channel_rules.options(frame.ch)
        if not options.presence:
            raise LadderError("presence_disabled", f"presence is off for {frame.ch!r}")
        await check_permission(settings.permissions, session.identity, "presence", frame.ch, options)
        return [member.wire() for member in await self.engine.presence(frame.ch)]

    async def _history(self, session: Session, frame: HistoryQuery) -> Any:
        settings = self.settings
        options = settings.channel_rules.options(frame.ch)
        await check_permission(settings.permissions, session.identity, "history", frame.ch, options)
        since = None if frame.epoch is None or frame.offset is None else Position(frame.epoch, frame.offset)
        limit = min(frame.limit, options.history_size)
        result = await self.engine.history(frame.ch, since=since, limit=limit, options=options)
        result = self.channels.fitted(session, result, recovering=since is not None, one_frame=True)
        return {
            "ep": result.position.epoch,
            "off": result.position.offset,
            "complete": result.complete,
            "pubs": [{"o": p.offset, "d": p.data} for p in result.publications],
        }

    async def _refresh(self, session: Session, frame: Refresh) -> Any:
        """New credentials for a live session (an expiring token), without reconnecting."""
        request = AuthRequest(
            headers={},
            cookies={},
            token=frame.token,
            client=None,
            transport="refresh",
            address=session.address,
        )
        identity = await run_authenticate(self.settings.authenticate, request)
        if identity.user != session.user:
            raise LadderError("forbidden", "a refreshed token must belong to the same user")
        session.identity = identity
        return {"u": identity.user, "exp": identity.expires}

    async def _invalid(self, session: Session, frame: Invalid) -> Any:
        # (the session's rung: a frame drained here no longer says what carried it)
        self.refused(session.transport or "send", frame.error, session=session)
        raise frame.error


def _published(pub: Publication) -> dict[str, Any]:
    """A publication's answer to its client: where it landed."""
    return {"ep": pub.epoch, "off": pub.offset}


_APPLY: dict[type, Callable[[Dispatch, Session, Any], Awaitable[Any]]] = {
    Subscribe: Dispatch._subscribe,
    Unsubscribe: Dispatch._unsubscribe,
    Publish: Dispatch._publish,
    PresenceQuery: Dispatch._presence,
    HistoryQuery: Dispatch._history,
    Refresh: Dispatch._refresh,
    Invalid: Dispatch._invalid,
}


def _named(frame: Numbered) -> str:
    """A frame as the log names it: ``Call 'checkout'`` (its event, where it has one)."""
    event = getattr(frame, "ev", None)
    return type(frame).__name__ if event is None else f"{type(frame).__name__} {event!r}"
