"""A session as the hub holds it: the sans-I/O state plus who it is and what it follows."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING

from ..protocol.frames import Numbered
from ..protocol.session import SessionState
from ..protocol.sids import label
from .applied import Answers, Inherited
from .auth import Identity
from .ratelimit import Bucket

if TYPE_CHECKING:
    from ..engine.base import ChannelOptions, Member, Publication


class Waker:
    """Lets one driver sleep until the core has something for it to write.

    Installed as an attachment's ``wake`` callback. Waking before the driver sleeps is
    remembered, so no wake-up is ever lost; waking many times costs one future.
    """

    __slots__ = ("_future", "_pending")

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None
        self._pending = False

    def __call__(self) -> None:
        self._pending = True
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def clear(self) -> None:
        """Everything woken for so far was taken: the next :meth:`wait` sleeps."""
        self._pending = False

    async def wait(self) -> None:
        if not self._pending:
            self._future = asyncio.get_running_loop().create_future()
            try:
                await self._future
            finally:
                self._future = None
        self._pending = False


class Subscription:
    """One session following one channel on this node.

    While ``pending`` is a list the subscription is catching up from history: live
    publications wait there so none is missed or doubled between history and live.
    """

    __slots__ = (
        "channel",
        "epoch",
        "join_leave",
        "member",
        "offset",
        "options",
        "pending",
        "session",
        "state",
    )

    def __init__(self, channel: str, session: Session, options: ChannelOptions, *, join_leave: bool) -> None:
        # (What a publication reads comes first: the compiled class lays its fields out in
        # this order.)
        self.pending: list[Publication] | None = []
        self.state = session.state
        """The session's core state, which a publication is queued on (reached from here,
        the fan-out does not touch the session's record for each subscriber)."""
        self.channel = channel
        self.session = session
        self.options = options
        self.member: Member | None = None
        self.epoch: str | None = None
        self.offset = 0
        """Position of the last publication queued for the session when it went live; live
        publications after it are tracked per channel by the hub (not per recipient)."""
        self.join_leave = join_leave
        """Whether the channel's ``join``/``leave`` frames go to it: the permissions hook's
        ``presence`` answer, asked when it was made (see ``auth.sees_members``)."""


Unsettled = tuple[str, str | None, int, bool]
"""A subscription a moved session brought: channel, epoch, offset, whether in presence."""


class Session:
    """The hub's record of a session: core state, identity, subscriptions, inbound queue."""

    __slots__ = (
        "address",
        "answers",
        "bucket",
        "client_id",
        "draining",
        "identity",
        "idle",
        "inherited",
        "logged_at",
        "moving",
        "ready",
        "state",
        "subs",
        "transport",
        "unlogged",
        "unsettled",
    )

    def __init__(self, state: SessionState, identity: Identity, client_id: str) -> None:
        self.state = state
        self.identity = identity
        self.client_id = client_id
        """Public id of this connection (shown in presence); unlike ``sid`` it grants nothing."""
        self.subs: dict[str, Subscription] = {}
        self.unsettled: list[Unsettled] | tuple[()] = ()
        """Subscriptions it brought when it moved here and not yet followed here (in order);
        packed with it if it moves on first, so none is left behind. A list only while
        there are some."""
        self.ready: deque[Numbered] | None = None
        """Client frames accepted in order and waiting to be applied (a deque only while
        some wait)."""
        self.draining = False
        """Whether a task is applying ``ready`` right now (one at a time, in order)."""
        self.moving = False
        """The session is being packed for another node: nothing more is applied here."""
        self.idle: asyncio.Future[None] | None = None
        """Made by :meth:`settle` while a message is being applied; done when it is."""
        self.transport: str | None = None
        """The transport attached most recently (to count rung changes)."""
        self.address: str | None = None
        """The client address that opened the session (for per-address limits)."""
        self.bucket: Bucket | None = None
        """Its message rate limit (made on first use)."""
        self.inherited: Inherited | None = None
        """The lost session this one took over from (its client named it in the hello)."""
        self.answers: Answers | None = None
        """Answers recorded in the engine and not yet acknowledged (made on first use)."""
        self.logged_at = -1.0e9
        """When a refusal of this session was last logged (``Refusals``)."""
        self.unlogged = 0
        """Refusals of this session not logged since then."""

    def settled(self, entry: Unsettled) -> None:
        """A subscription it brought is followed here now, or dropped: forget it."""
        unsettled = self.unsettled
        if isinstance(unsettled, list):
            with contextlib.suppress(ValueError):  # gone already (the client unsubscribed)
                unsettled.remove(entry)
            if not unsettled:
                self.unsettled = ()

    async def settle(self, timeout: float) -> bool:
        """Wait until no message is being applied (at most ``timeout`` s). True if none is."""
        if not self.draining:
            return True
        if self.idle is None or self.idle.done():
            self.idle = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self.idle)
        except TimeoutError:
            return False
        return True

    def drained(self) -> None:
        """The applying task stopped: wake whoever waits in :meth:`settle`."""
        idle, self.idle = self.idle, None
        if idle is not None and not idle.done():
            idle.set_result(None)

    def message_key(self, number: int) -> str:
        """A key for client message ``number`` that stays the same when the client carries
        the message over to a new session after losing this one (for idempotent handlers)."""
        inherited = self.inherited
        key = inherited.key(number) if inherited is not None else None
        return key if key is not None else f"{self.state.sid}:{number}"

    @property
    def sid(self) -> str:
        return self.state.sid

    @property
    def user(self) -> str | None:
        return self.identity.user

    def __repr__(self) -> str:
        return f"<Session {label(self.sid)} user={self.user!r} {self.state.phase.value}>"
