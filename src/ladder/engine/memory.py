"""The embedded engine: channels, history and presence in this process's memory.

Everything is synchronous under the hood, so a subscribe that reads history and starts
listening cannot miss or double a publication. History is bounded by count and age per
channel; a channel's bookkeeping (epoch, offset) is dropped only after it has been idle
with no history and no members for ``idle_ttl`` seconds, and a channel created anew gets a
new epoch, so a client resuming from before that point is told recovery was impossible.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from ..protocol.codec import Payload
from ..protocol.errors import LadderError
from .base import (
    AppliedRecord,
    ChannelOptions,
    EngineSink,
    HistoryResult,
    Member,
    Position,
    Publication,
    token_digest,
)

SWEEP_EVERY: Final = 5.0


_Entry = tuple[int, float, bytes, bytes]
"""A publication in history: offset, time, JSON and msgpack encodings. A tuple of atoms is
untracked by the garbage collector, so a long history adds nothing to its full collections
(keeping ``Publication`` objects with decoded values cost 100-300 ms pauses at 1,000
channels)."""


class _Channel:
    __slots__ = ("epoch", "history", "last_used", "members", "offset")

    def __init__(self, now: float) -> None:
        self.epoch = secrets.token_hex(4)
        self.offset = 0
        self.history: deque[_Entry] = deque()
        self.members: dict[str, tuple[Member, float]] = {}
        self.last_used = now

    def trim(self, now: float, size: int, ttl: float) -> None:
        history = self.history
        while len(history) > size:
            history.popleft()
        while history and now - history[0][1] >= ttl:
            history.popleft()

    def publications(self, name: str, entries: list[_Entry]) -> list[Publication]:
        epoch = self.epoch
        return [Publication(name, o, epoch, Payload.encoded(j, m), t) for o, t, j, m in entries]


class MemoryEngine:
    """One process, no dependencies. The default engine (``memory://``).

    Everything lives in this process's memory: hubs in other processes (and a
    :class:`~ladder.Publisher` there) cannot see it.

    Args:
        idle_ttl: Seconds a channel with no history and no members keeps its epoch and offset.
        clock: The monotonic clock (tests pass a fake one).
    """

    def __init__(self, *, idle_ttl: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.node_id = "local"
        self.healthy = True
        self.idle_ttl = idle_ttl
        self._clock = clock
        self._channels: dict[str, _Channel] = {}
        self._options: dict[str, ChannelOptions] = {}
        self._sink: EngineSink | None = None
        self._last_sweep = clock()
        self._applied: dict[
            str, tuple[bytes, int, dict[int, bytes] | None, tuple[str, ...] | None, float]
        ] = {}
        """Per session: its token's digest, the highest id applied, kept answers, carried
        keys, and when the record is forgotten (atoms only while nothing is kept: small)."""

    async def start(self, sink: EngineSink) -> None:
        self._sink = sink

    async def stop(self) -> None:
        self._sink = None

    def _channel(self, name: str) -> _Channel:
        now = self._clock()
        if now - self._last_sweep >= SWEEP_EVERY:
            self.sweep(now)
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel(now)
        channel.last_used = now
        return channel

    def sweep(self, now: float) -> None:
        """Expire old history, stale presence and idle channels (called as time passes)."""
        self._last_sweep = now
        for name, channel in list(self._channels.items()):
            options = self._options.get(name)
            if options is not None:
                channel.trim(now, options.history_size, options.history_ttl)
            for client, (member, expires) in list(channel.members.items()):
                if expires <= now:
                    del channel.members[client]
                    if self._sink is not None:
                        self._sink.on_presence(name, "leave", member)
            if not channel.history and not channel.members and now - channel.last_used >= self.idle_ttl:
                del self._channels[name]
                self._options.pop(name, None)
        for sid, (*_, expires) in list(self._applied.items()):
            if expires <= now:
                del self._applied[sid]

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    async def publish(self, channel: str, payload: Payload, options: ChannelOptions) -> Publication:
        state = self._channel(channel)
        state.offset += 1
        now = self._clock()
        pub = Publication(channel, state.offset, state.epoch, payload, now)
        if options.history_size > 0:
            self._options[channel] = options
            state.history.append((pub.offset, now, payload.json, payload.msgpack))
            state.trim(now, options.history_size, options.history_ttl)
        if self._sink is not None:
            self._sink.on_publication(pub)
        return pub

    async def listen(self, channel: str) -> None:
        return None

    async def unlisten(self, channel: str) -> None:
        return None

    async def history(
        self, channel: str, *, since: Position | None, limit: int, options: ChannelOptions
    ) -> HistoryResult:
        state = self._channel(channel)
        state.trim(self._clock(), options.history_size, options.history_ttl)
        position = Position(state.epoch, state.offset)
        history = state.history
        if since is None:
            entries = list(history)[-limit:] if limit > 0 else []
            return HistoryResult(state.publications(channel, entries), position, True)
        if since.epoch != state.epoch or since.offset > state.offset:
            return HistoryResult([], position, False)
        missed = state.offset - since.offset
        if missed == 0:
            return HistoryResult([], position, True)
        first = history[0][0] if history else state.offset + 1
        if first > since.offset + 1 or missed > limit:
            return HistoryResult([], position, False)
        start = len(history) - missed
        return HistoryResult(state.publications(channel, list(history)[start:]), position, True)

    async def position(self, channel: str) -> Position:
        state = self._channel(channel)
        return Position(state.epoch, state.offset)

    async def presence_add(self, channel: str, member: Member, ttl: float) -> None:
        state = self._channel(channel)
        fresh = member.client not in state.members
        state.members[member.client] = (member, self._clock() + ttl)
        if fresh and self._sink is not None:
            self._sink.on_presence(channel, "join", member)

    async def presence_remove(self, channel: str, member: Member) -> None:
        state = self._channels.get(channel)
        removed = state is not None and state.members.pop(member.client, None) is not None
        if removed and self._sink is not None:
            self._sink.on_presence(channel, "leave", member)

    async def presence(self, channel: str) -> list[Member]:
        state = self._channels.get(channel)
        if state is None:
            return []
        now = self._clock()
        return [member for member, expires in state.members.values() if expires > now]

    def session_prefix(self) -> str:
        return ""

    async def locate_session(self, sid: str) -> str | None:
        # One process: a session not in the hub's own table does not exist anywhere.
        return None

    async def claim_session(self, sid: str, ttl: float) -> None:
        return None

    async def release_session(self, sid: str) -> None:
        return None

    async def send_node(self, node: str, message: bytes) -> None:
        raise LadderError("unknown_session", "the memory engine has no other nodes")

    async def node_alive(self, node: str) -> bool:
        return node == self.node_id

    async def record_applied(
        self,
        sid: str,
        token: str,
        *,
        done: int,
        reply: tuple[int, bytes] | None,
        forget: Sequence[int],
        origins: Sequence[str] | None,
        ttl: float,
    ) -> None:
        now = self._clock()
        if now - self._last_sweep >= SWEEP_EVERY:
            self.sweep(now)
        kept = self._applied.get(sid)
        digest, replies, keys = (
            (kept[0], kept[2], kept[3]) if kept is not None else (token_digest(token), None, None)
        )
        if forget and replies:
            replies = {number: body for number, body in replies.items() if number not in forget} or None
        if reply is not None:
            replies = {**(replies or {}), reply[0]: reply[1]}
        if origins is not None:
            keys = tuple(origins)
        self._applied[sid] = (digest, done, replies, keys, now + ttl)

    async def applied_record(self, sid: str, token: str) -> AppliedRecord | None:
        kept = self._applied.get(sid)
        if kept is None or kept[4] <= self._clock() or not hmac.compare_digest(kept[0], token_digest(token)):
            return None
        _, done, replies, keys, _ = kept
        return AppliedRecord(done, dict(replies or {}), list(keys or ()))

    async def broadcast(self, message: bytes) -> int:
        return 0  # one process: there is no other node

    def details(self) -> dict[str, Any]:
        return {"engine": "memory", "healthy": True, "channels": len(self._channels)}
