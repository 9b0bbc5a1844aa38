"""Presence in this process's memory: members with an expiry, and their join/leave events."""

from __future__ import annotations

from collections.abc import Callable, Container

from ..base import EngineSink, Member


class MemoryPresence:
    """The :class:`~ladder.engine.base.Presence` part of the memory engine.

    Events go to the sink only for channels in ``listening`` (as with a shared engine, a
    node hears only the channels it has subscribers to). A member not refreshed in time is
    removed, and its ``leave`` announced, by :meth:`sweep`.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        sink: Callable[[], EngineSink | None],
        listening: Container[str],
        touched: Callable[[str], object],
    ) -> None:
        self._clock = clock
        self._sink = sink
        self._listening = listening
        self._touched = touched
        self._members: dict[str, dict[str, tuple[Member, float]]] = {}

    def __contains__(self, channel: object) -> bool:
        """Whether ``channel`` has members (a channel with members keeps its epoch)."""
        return channel in self._members

    def _announce(self, channel: str, kind: str, member: Member) -> None:
        sink = self._sink()
        if sink is not None and channel in self._listening:
            sink.on_presence(channel, kind, member)

    def sweep(self, now: float) -> None:
        """Remove the members whose time ran out and announce that they left."""
        for channel, members in list(self._members.items()):
            for client, (member, expires) in list(members.items()):
                if expires <= now:
                    del members[client]
                    self._announce(channel, "leave", member)
            if not members:
                del self._members[channel]

    async def presence_add(self, channel: str, member: Member, ttl: float) -> None:
        self._touched(channel)
        members = self._members.setdefault(channel, {})
        fresh = member.client not in members
        members[member.client] = (member, self._clock() + ttl)
        if fresh:
            self._announce(channel, "join", member)

    async def presence_remove(self, channel: str, member: Member) -> None:
        members = self._members.get(channel)
        if members is None or members.pop(member.client, None) is None:
            return
        if not members:
            del self._members[channel]
        self._announce(channel, "leave", member)

    async def presence(self, channel: str) -> list[Member]:
        members = self._members.get(channel)
        if members is None:
            return []
        now = self._clock()
        return [member for member, expires in members.values() if expires > now]
