"""Presence in this process's memory: members with an expiry, and their join/leave events."""

from __future__ import annotations

import heapq
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
        self._members: dict[str, dict[str, tuple[Member, float, float]]] = {}
        """Per channel, per client: the member, when it expires, and when the sweep looks
        at it next (its live entry in ``_schedule``; others for it are stale)."""
        self._schedule: list[tuple[float, str, str]] = []
        """A heap of (when, channel, client): a sweep looks only at members whose time came."""
        self._stale = 0
        """Entries of ``_schedule`` whose member left early (see :meth:`_forgot`)."""

    def __contains__(self, channel: object) -> bool:
        """Whether ``channel`` has members (a channel with members keeps its epoch)."""
        return channel in self._members

    def _announce(self, channel: str, kind: str, member: Member) -> None:
        sink = self._sink()
        if sink is not None and channel in self._listening:
            sink.on_presence(channel, kind, member)

    def sweep(self, now: float) -> None:
        """Remove the members whose time ran out and announce that they left (only members
        due are looked at; one refreshed meanwhile is planned again for its new time)."""
        schedule = self._schedule
        later: list[tuple[float, str, str]] = []
        while schedule and schedule[0][0] <= now:
            when, channel, client = heapq.heappop(schedule)
            members = self._members.get(channel)
            entry = None if members is None else members.get(client)
            if members is None or entry is None or entry[2] != when:
                self._stale = max(0, self._stale - 1)
                continue  # removed, or planned again meanwhile
            member, expires, _ = entry
            if expires > now:
                members[client] = (member, expires, expires)
                later.append((expires, channel, client))
                continue
            del members[client]
            self._announce(channel, "leave", member)
            if not members:
                del self._members[channel]
        for planned in later:
            heapq.heappush(schedule, planned)

    def _forgot(self) -> None:
        """A member went before its time: its heap entry is stale. Once most are, the heap
        is made again from the members (so many leaving early do not hold memory until
        their times come)."""
        self._stale += 1
        if self._stale > 64 and 2 * self._stale > len(self._schedule):
            self._schedule = [
                (entry[2], channel, client)
                for channel, members in self._members.items()
                for client, entry in members.items()
            ]
            heapq.heapify(self._schedule)
            self._stale = 0

    async def presence_add(self, channel: str, member: Member, ttl: float) -> None:
        self._touched(channel)
        members = self._members.setdefault(channel, {})
        expires = self._clock() + ttl
        entry = members.get(member.client)
        due = expires if entry is None else min(entry[2], expires)
        if entry is None or due != entry[2]:
            heapq.heappush(self._schedule, (due, channel, member.client))
        members[member.client] = (member, expires, due)
        if entry is None:
            self._announce(channel, "join", member)

    async def presence_remove(self, channel: str, member: Member) -> None:
        members = self._members.get(channel)
        if members is None or members.pop(member.client, None) is None:
            return
        if not members:
            del self._members[channel]
        self._forgot()
        self._announce(channel, "leave", member)

    async def presence(self, channel: str) -> list[Member]:
        members = self._members.get(channel)
        if members is None:
            return []
        now = self._clock()
        return [member for member, expires, _ in members.values() if expires > now]
