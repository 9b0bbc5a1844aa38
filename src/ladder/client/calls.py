"""What an app asks of the server: subscriptions, publications, events, calls, presence,
history. Each is a numbered message through the outbox (:mod:`.outbound`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..protocol.errors import LadderError
from ..protocol.frames import MAX_RECENT
from .connection import Connection
from .options import check_since
from .subscription import Publication, Subscription

log = logging.getLogger("ladder.client")


class Calls(Connection):
    """The client's API calls."""

    def subscribe(
        self,
        channel: str,
        since: tuple[str, int] | None = None,
        *,
        recent: int = 0,
        on_publication: Callable[[Publication], Any] | None = None,
    ) -> Subscription:
        """Follow ``channel``. ``since=(epoch, offset)`` replays what was missed after it;
        ``recent=N`` starts with the newest N publications kept in history (both as far as
        half the server's ``lim.queue`` and ``lim.qbytes`` let it send at once: more missed
        is not ``recovered``, and ``recent`` gets the newest that fit, protocol §6). Where the app's
        permissions keep the channel's history from this client, ``recent`` is refused
        ``forbidden`` and a recovery is not ``recovered`` (a ``resync`` event).

        A channel already followed returns its subscription (``since`` and ``recent`` then do
        nothing), and ``on_publication``, if given, is called too, as in the browser client.
        """
        if self.state == "closed":
            raise self._fatal or LadderError("closed", "this client was closed")
        if isinstance(recent, bool) or not isinstance(recent, int) or not 0 <= recent <= MAX_RECENT:
            raise ValueError(f"recent must be an int from 0 to {MAX_RECENT}, not {recent!r}")
        check_since(since)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # (asyncio's words name no fix)
            raise RuntimeError(
                "subscribe() needs the running event loop the client works in: call it from async "
                "code (a coroutine run by asyncio.run, for example)"
            ) from None
        existing = self._subs.get(channel)
        if existing is not None and existing.active:
            if on_publication is not None:
                existing.listen(on_publication)
            return existing
        sub = Subscription(
            self,
            channel,
            since=since,
            recent=recent,
            on_publication=on_publication,
            max_buffer=self.max_buffer,
        )
        self._subs[channel] = sub
        try:
            self._submit_subscribe(sub)
        except BaseException:
            # Refused before it was sent (queue_full, data or a name that cannot travel): not
            # followed. Kept, it was returned by the next subscribe without ever being sent
            # (ready() waited for ever), or broke the next session's renewals.
            if self._subs.get(channel) is sub:
                del self._subs[channel]
            sub.end(why="the subscription was refused before it was sent")
            raise
        return sub

    async def unsubscribe(self, channel: str) -> None:
        """Stop following ``channel`` (its subscription's ``async for`` ends); nothing to do
        when it is not followed."""
        sub = self._subs.pop(channel, None)
        if sub is None:
            return
        held = not sub.waiting_to_renew  # (a renewal refused for now: the server holds none)
        sub.end(why=f"unsubscribed from {channel!r} before the server confirmed it")
        if not held:
            return
        self._submit({"t": "unsub", "ch": channel}, None)
        await self._flush()

    async def publish(self, channel: str, data: Any, *, timeout: float | None = 10.0) -> tuple[str, int]:
        """Publish to a channel (if the server permits); returns its ``(epoch, offset)``.

        ``timeout`` (seconds, None for none) bounds the wait for the server's answer, as for
        :meth:`call`; a publication queued while disconnected may still be applied later.
        """
        reply = await self._request({"t": "pub", "ch": channel, "d": data}, timeout)
        return str(reply["ep"]), int(reply["off"])

    async def emit(self, event: str, data: Any = None) -> None:
        """Send an event to the server's handler; returns once queued (not written, nor
        acknowledged: :meth:`flush` waits for that; :meth:`close` drops what is not)."""
        self._submit({"t": "emit", "ev": event, "d": data}, None)
        self._spawn(self._flush())

    async def call(self, event: str, data: Any = None, *, timeout: float | None = 10.0) -> Any:
        """Call a server handler and return its result (or raise its error as LadderError).

        No answer within ``timeout`` seconds (None: wait as long as the session lives) raises
        ``LadderError("timeout")`` with the reason ``no reply within 10 s`` (the timeout in
        seconds, as the browser client says it); the call stays queued and may still be
        applied once. The server applies a session's messages one at a time, in order: a
        handler that takes long (or never returns) holds this client's later calls, emits
        and subscriptions until it does.
        """
        return await self._request({"t": "call", "ev": event, "d": data}, timeout)

    async def presence(self, channel: str, *, timeout: float | None = 10.0) -> list[dict[str, Any]]:
        """Who is in ``channel`` (each member: ``c`` client id, ``u`` user, and ``info`` when
        the server attached some)."""
        members: list[dict[str, Any]] = await self._request({"t": "presence", "ch": channel}, timeout)
        return members

    async def history(
        self, channel: str, limit: int = 100, *, timeout: float | None = 10.0
    ) -> list[Publication]:
        """The newest ``limit`` publications the server keeps for ``channel``, oldest first
        (``limit`` from 1 to 10,000; 0 asks for the server's default, 100, as the protocol's
        ``history`` frame does). Fewer when they would take more than half of what the
        session may leave unacknowledged (the server's ``lim.qbytes``, 8 MiB by default):
        then the newest that fit (protocol §4), with nothing else to say it."""
        reply = await self._request({"t": "history", "ch": channel, "limit": limit}, timeout)
        return [Publication(channel, int(p["o"]), p.get("d"), reply.get("ep")) for p in reply["pubs"]]
