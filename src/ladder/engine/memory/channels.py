"""Channels in this process's memory: offsets, epochs, history and the live stream.

Everything is synchronous under the hood, so a subscribe that reads history and starts
listening cannot miss or double a publication. History is bounded by count and age per
channel; a channel's bookkeeping (epoch, offset) is dropped only after it has been idle
with no subscribers here, no history and no members for ``idle_ttl`` seconds, and a
channel created anew gets a new epoch, so a client resuming from before that point is told
recovery was impossible.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Container

from ...protocol.codec import Payload
from .. import recovery
from ..base import ChannelOptions, EngineSink, HistoryResult, Position, Publication
from ..schedule import Schedule

_Entry = tuple[int, float, bytes, bytes]
"""A publication in history: offset, time, JSON and msgpack encodings. A tuple of atoms is
untracked by the garbage collector, so a long history adds nothing to its full collections
(keeping ``Publication`` objects with decoded values cost 100-300 ms pauses at 1,000
channels)."""


class _Channel:
    __slots__ = ("epoch", "history", "last_used", "offset")

    def __init__(self, now: float) -> None:
        self.epoch = secrets.token_hex(4)
        self.offset = 0
        self.history: deque[_Entry] | tuple[()] = ()
        """What is kept of its publications, oldest first: an empty tuple while there is
        none (an empty deque is 624 bytes, and a channel followed by one idle session, as
        with a channel per user, may never have any)."""
        self.last_used = now

    def keep(self, entry: _Entry) -> None:
        history = self.history
        if not isinstance(history, deque):
            history = self.history = deque()
        history.append(entry)

    def oldest(self) -> float | None:
        """When the oldest publication kept was made (None: none is)."""
        history = self.history
        return history[0][1] if isinstance(history, deque) and history else None

    def trim(self, now: float, size: int, ttl: float) -> None:
        """Drop what is past ``size`` or ``ttl`` old; it may drop everything (a ``ttl`` of 0
        takes a publication out as it goes in: it is still delivered live)."""
        history = self.history
        if not isinstance(history, deque):
            return
        while len(history) > size:
            history.popleft()
        while history and now - history[0][1] >= ttl:
            history.popleft()
        if not history:
            self.history = ()

    def publications(self, name: str, entries: list[_Entry]) -> list[Publication]:
        epoch = self.epoch
        return [Publication(name, o, epoch, Payload.encoded(j, m), t) for o, t, j, m in entries]


class MemoryChannels:
    """Publishing and history for one process (the :class:`~ladder.engine.base.Channels` part).

    Args:
        clock: The monotonic clock.
        idle_ttl: Seconds an unused channel keeps its epoch and offset (see :meth:`sweep`).
        sink: Where publications go (None before the engine starts).
        touched: Called on every use, so the engine can sweep as time passes.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        idle_ttl: float,
        sink: Callable[[], EngineSink | None],
        touched: Callable[[float], None],
    ) -> None:
        self._clock = clock
        self.idle_ttl = idle_ttl
        self._sink = sink
        self._touched = touched
        self._channels: dict[str, _Channel] = {}
        self._options: dict[str, ChannelOptions] = {}
        self._schedule = Schedule()
        """When the sweep looks at each channel next: it looks only at what is due, whatever
        the number of channels."""
        self.listening: set[str] = set()
        """Channels with local subscribers: only their publications are delivered."""

    def channel(self, name: str) -> _Channel:
        """The channel's state, made on first use (with a new epoch), marked as used now."""
        now = self._clock()
        self._touched(now)
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel(now)
            self._schedule.at(name, now + self.idle_ttl)
        channel.last_used = now
        return channel

    def sweep(self, now: float, occupied: Container[str]) -> None:
        """Expire old history and forget idle channels: not listened to (a live subscriber
        must never be handed a publication of a new epoch unannounced), not ``occupied`` by
        members, with no history. Only channels whose time came are looked at."""
        schedule, channels = self._schedule, self._channels
        for name in schedule.due(now):
            channel = channels.get(name)
            if channel is None:
                continue
            options = self._options.get(name)
            if options is not None:
                channel.trim(now, options.history_size, options.history_ttl)
            idle_until = channel.last_used + self.idle_ttl
            oldest = channel.oldest()
            if oldest is not None:  # not forgotten before its history expires
                assert options is not None  # (history is kept only with options)
                due = oldest + options.history_ttl
            elif now < idle_until:
                due = idle_until
            elif name in occupied or name in self.listening:
                due = now + self.idle_ttl  # looked at again later (cheap: once per idle_ttl)
            else:
                del channels[name]
                self._options.pop(name, None)
                continue
            schedule.at(name, due)  # (after it was taken: a channel due again at once waits)

    def __len__(self) -> int:
        return len(self._channels)

    async def publish(self, channel: str, payload: Payload, options: ChannelOptions) -> Publication:
        state = self.channel(channel)
        state.offset += 1
        now = self._clock()
        pub = Publication(channel, state.offset, state.epoch, payload, now)
        if options.history_size > 0:
            self._options[channel] = options
            state.keep((pub.offset, now, payload.json, payload.msgpack))
            state.trim(now, options.history_size, options.history_ttl)
            oldest = state.oldest()
            if oldest is not None:  # (else the channel is on the schedule already, since it was made)
                self._schedule.at(channel, oldest + options.history_ttl)
        sink = self._sink()
        if sink is not None and channel in self.listening:
            sink.on_publication(pub)
        return pub

    async def listen(self, channel: str) -> None:
        self.listening.add(channel)

    async def unlisten(self, channel: str) -> None:
        self.listening.discard(channel)

    async def history(
        self, channel: str, *, since: Position | None, limit: int, options: ChannelOptions
    ) -> HistoryResult:
        state = self.channel(channel)
        now = self._clock()
        state.trim(now, options.history_size, options.history_ttl)
        position = Position(state.epoch, state.offset)
        history = state.history
        oldest = now - options.history_ttl
        if since is None:
            entries = list(history)[-limit:] if limit > 0 else []
            return recovery.latest(position, state.publications(channel, entries), limit, oldest=oldest)
        want = recovery.missed(since, position, limit)
        if isinstance(want, HistoryResult):
            return want
        # Offsets in history are consecutive and end at the newest: the missed ones are its tail.
        count = want.last - want.first + 1
        entries = list(history)[-count:]
        return recovery.recovered(want, position, state.publications(channel, entries), oldest=oldest)

    async def position(self, channel: str) -> Position:
        state = self.channel(channel)
        return Position(state.epoch, state.offset)
