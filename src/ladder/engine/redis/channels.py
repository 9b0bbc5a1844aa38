"""Channels in Redis: offsets and epochs in a hash, history in a stream, live via pub/sub.

A publication is one Lua script: take the next offset, append to the stream, publish to
the channel. Every node (the publisher's included) delivers from pub/sub, checking that
offsets follow each other: a gap (a message lost while the listener reconnected) is filled
from the stream, and a changed epoch (Redis lost the data) is reported so clients resync.
A stream that went back within its epoch, or whose history holds another publication at
an offset this node delivered (a replica promoted before the newest publications reached
it, which then gives their offsets to new ones), is a fork: the channel moves to a new
epoch, so every node and client resyncs. Nothing is dropped or delivered twice silently.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from redis.exceptions import RedisError

from ...protocol.codec import Payload
from ...protocol.errors import LadderError
from .. import recovery
from ..base import ChannelOptions, HistoryResult, Position, Publication
from .link import RedisLink, unavailable
from .listener import PubSubListener
from .pipelined import PipelinedScript, outcome

log = logging.getLogger("ladder.redis")

_OTHER_STREAM: Final = """
local function other(stream)
  local kind = redis.call('TYPE', stream)['ok']
  if kind ~= 'none' and kind ~= 'stream' then
    return redis.error_reply('WRONGTYPE ' .. stream .. ' holds a ' .. kind .. ', not a stream')
  end
end
"""
"""Lua: a channel starting an epoch deletes what its stream key holds (the history of a lost
position), but not another program's value: a key of another type is answered ``WRONGTYPE``
(``internal``, logged) before anything is written, as every other command on it is."""

_PUBLISH: Final = _OTHER_STREAM + """
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  local refused = other(KEYS[2])
  if refused then return refused end
  e = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', e)
  redis.call('DEL', KEYS[2])
end
local h = redis.call('HGET', KEYS[1], 'h')
if h ~= ARGV[8] then
  redis.call('HSET', KEYS[1], 'h', ARGV[8])
end
local o = redis.call('HINCRBY', KEYS[1], 'o', 1)
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '0-' .. o, 't', ARGV[6], 'd', ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[7], 'P' .. e .. ' ' .. o .. ' ' .. ARGV[6] .. ' ' .. ARGV[2])
return {e, o, h}
"""
"""Lua: also keeps the history options of the channel's last publication (``h``, "<size>
<ttl>") and returns those of the one before, so that a process publishing with other
options (a ``Publisher`` given no ``channels=``) is noticed: the history is cut by
whichever publishes."""

MISMATCHES_KEPT: Final = 1000
"""Channels whose differing history options were logged (once each; then forgotten)."""

_POSITION: Final = _OTHER_STREAM + """
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  local refused = other(KEYS[2])
  if refused then return refused end
  e = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', e, 'o', 0)
  redis.call('DEL', KEYS[2])
end
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return {e, tonumber(redis.call('HGET', KEYS[1], 'o') or 0)}
"""
"""A read extends the position's life to ``meta_ttl`` and never shortens it: a publication
kept it as long as its history (``history_ttl``, when longer), and a position dropped
before its history would start a new epoch over publications still there."""


_NEW_EPOCH: Final = _OTHER_STREAM + """
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  local refused = other(KEYS[2])
  if refused then return refused end
  e = ARGV[2]
  redis.call('HSET', KEYS[1], 'e', e, 'o', 0)
  redis.call('DEL', KEYS[2])
elseif e == ARGV[1] then
  e = ARGV[2]
  redis.call('HSET', KEYS[1], 'e', e)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {e, tonumber(redis.call('HGET', KEYS[1], 'o') or 0)}
"""


def whole_seconds(seconds: float) -> int:
    """A key's ``EXPIRE``: rounded up, never down (1.9 s of history was kept 1 s, and a
    ``meta_ttl`` of 0.5 s expired the position at once: every read started a new epoch).
    What a read returns is filtered by the exact time; the key only has to outlive it."""
    return max(1, math.ceil(seconds))


def _entries(raw: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Stream entries as redis-py returns them (typed loosely there)."""
    return list(raw or [])


@dataclass(slots=True)
class _Listening:
    epoch: str | None = None
    last: int = 0
    newest: Publication | None = None
    """The last publication delivered (history must still hold it, see ``anchor``)."""
    anchor: Publication | None = None
    """The last publication delivered before the connection carrying the channel changed:
    until a catch-up finds it in history, live messages on the new connection cannot be
    trusted to continue the same stream."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One catch-up at a time: two interleaved could each judge the other's deliveries."""


class RedisChannels:
    """The :class:`~ladder.engine.base.Channels` part of the Redis engine."""

    def __init__(self, link: RedisLink, *, meta_ttl: float) -> None:
        self._link = link
        self.meta_ttl = meta_ttl
        self.listening: dict[str, _Listening] = {}
        self.listener: PubSubListener | None = None
        """Set by the engine: listening to a channel subscribes to it there."""
        self._mismatched: set[str] = set()

    def scripts(self) -> None:
        """Register the scripts on the clients (after they are opened)."""
        link = self._link
        script = link.writer.register_script(link.script(_PUBLISH))
        pipelined = link.pipelined_scripts
        self._publish: Any = PipelinedScript(script, lambda: link.writer) if pipelined else script
        self._position = self._link.redis.register_script(_POSITION)
        self._new_epoch = self._link.redis.register_script(_NEW_EPOCH)

    def _entry(self, channel: str, epoch: str, entry: tuple[bytes, dict[bytes, bytes]]) -> Publication:
        entry_id, fields = entry
        offset = int(entry_id.split(b"-")[1])
        return Publication(channel, offset, epoch, Payload.from_msgpack(fields[b"d"]), float(fields[b"t"]))

    # -- the live stream -------------------------------------------------------------------

    async def on_message(self, channel: str, data: bytes) -> None:
        """A ``P`` message from pub/sub: ``P<epoch> <offset> <time> <msgpack>``."""
        epoch, offset, stamp, packed = data[1:].split(b" ", 3)
        pub = Publication(channel, int(offset), epoch.decode(), Payload.from_msgpack(packed), float(stamp))
        await self._deliver(pub)

    async def _deliver(self, pub: Publication) -> None:
        """Hand a live publication on, filling any gap before it from history first."""
        state = self.listening.get(pub.channel)
        sink = self._link.sink
        if state is None or sink is None:
            return
        if state.epoch is not None and pub.epoch != state.epoch:
            await self._catch_up(pub.channel, state)
            return
        if pub.offset <= state.last:
            return  # already delivered (catch-up and live overlapped)
        if pub.offset > state.last + 1:
            await self._catch_up(pub.channel, state)
            return
        self._hand_on(state, pub)

    def _hand_on(self, state: _Listening, pub: Publication) -> None:
        state.epoch, state.last, state.newest = pub.epoch, pub.offset, pub
        sink = self._link.sink
        if sink is not None:
            sink.on_publication(pub)

    def moving(self, channels: Iterable[str]) -> None:
        """The connection carrying ``channels`` changed (a listener is about to subscribe
        them on another one): the next catch-up checks history still holds what was
        delivered before, whatever the new connection delivers first."""
        for channel in channels:
            state = self.listening.get(channel)
            if state is not None and state.anchor is None:
                state.anchor = state.newest

    async def catch_up_all(self) -> None:
        await self.catch_up(list(self.listening))

    async def catch_up(self, channels: Iterable[str]) -> None:
        """Deliver what this node missed in ``channels`` (those it still listens to)."""
        for channel in channels:
            state = self.listening.get(channel)
            if state is not None:
                await self._catch_up(channel, state)

    async def _catch_up(self, channel: str, state: _Listening) -> None:
        """Deliver what this node missed in ``channel``; report a lost stream as a reset."""
        async with state.lock:
            if self.listening.get(channel) is state:
                await self._catch_up_now(channel, state)

    async def _catch_up_now(self, channel: str, state: _Listening) -> None:
        # What was delivered *before* the position is read: live messages delivered while
        # the read is on its way are newer than the position it returns.
        delivered = None if state.epoch is None else Position(state.epoch, state.last)
        anchor = state.anchor or state.newest
        position = await self._read_position(channel)
        if delivered is None:
            if state.epoch is None:  # the baseline: live messages after it count
                state.epoch, state.last = position.epoch, position.offset
            return
        step = recovery.catch_up(delivered, position)
        if isinstance(step, recovery.Resync):
            await self._resync(channel, state, position, fork=step.fork)
            return
        if anchor is not None and anchor.epoch != position.epoch:
            anchor = None
        if step is None and anchor is None:
            return
        first = anchor.offset if anchor is not None else delivered.offset + 1
        stream = self._link.k("s", channel)
        entries = _entries(await self._link.redis.xrange(stream, f"0-{first}", "+"))
        held = [self._entry(channel, position.epoch, entry) for entry in entries]
        if anchor is not None:
            found = next((p for p in held if p.offset == anchor.offset), None)
            if recovery.same(anchor, found) is False:
                await self._resync(channel, state, position, fork=True)
                return
            state.anchor = None
        if position.offset <= state.last:
            return  # (live messages delivered meanwhile reached it)
        if not any(p.offset == state.last + 1 for p in held):
            await self._resync(channel, state, position, fork=False)
            return
        for pub in held:
            if pub.offset == state.last + 1:
                self._hand_on(state, pub)

    async def _resync(self, channel: str, state: _Listening, position: Position, *, fork: bool) -> None:
        """Tell this node's subscribers to resync at ``position``. A fork first moves the
        channel to a new epoch in Redis (unless another node did), so that every node
        resyncs and no client recovers across it from a position taken before."""
        if fork:
            went_back = position.offset < state.last
            position = await self._fork(channel, position.epoch)
            log.warning(
                "channel %s: Redis %s (a replica promoted before the newest publications "
                "reached it?); new epoch %s, subscribers resync",
                channel,
                f"went back below offset {state.last}"
                if went_back
                else "holds another publication at an offset delivered",
                position.epoch,
            )
        elif position.epoch != state.epoch:
            log.warning(
                "channel %s: epoch changed (%s -> %s); subscribers resync",
                channel,
                state.epoch,
                position.epoch,
            )
        else:
            log.warning(
                "channel %s: history no longer covers offsets after %d; subscribers resync",
                channel,
                state.last,
            )
        state.epoch, state.last = position.epoch, position.offset
        state.newest = state.anchor = None
        sink = self._link.sink
        if sink is not None:
            sink.on_reset(channel, position)

    async def _fork(self, channel: str, epoch: str) -> Position:
        """Move the channel from ``epoch`` to a new one (if still there): its position."""
        link = self._link
        new, offset = await self._new_epoch(
            keys=[link.k("m", channel), link.k("s", channel)],
            args=[epoch, secrets.token_hex(4), whole_seconds(self.meta_ttl)],
        )
        return Position(new.decode(), int(offset))

    # -- the Channels protocol -------------------------------------------------------------

    async def publish(self, channel: str, payload: Payload, options: ChannelOptions) -> Publication:
        now = time.time()
        keys, args = self._call(channel, payload, options, now)
        try:
            answer = await self._publish(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise unavailable(exc, keys) from exc
        return self._published(channel, payload, answer, args[-1], now)

    def _published(
        self, channel: str, payload: Payload, answer: Any, history: bytes, now: float
    ) -> Publication:
        """The publication the script's answer places; a channel whose previous publication
        had other history options is logged (once per channel)."""
        epoch, offset, before = answer
        if before is not None and before != history and channel not in self._mismatched:
            if len(self._mismatched) >= MISMATCHES_KEPT:
                self._mismatched.clear()
            self._mismatched.add(channel)
            log.warning(
                "channel %s: its previous publication was made with other history options "
                "(history_size, history_ttl: %s there, %s here): the history is cut by whichever "
                "process publishes, so a client may recover less than a node keeps; give every "
                "Ladder and Publisher on this engine the same channels=",
                channel,
                before.decode().replace(" ", ", "),
                history.decode().replace(" ", ", "),
            )
        return Publication(channel, int(offset), epoch.decode(), payload, now)

    async def publish_many(
        self, items: Sequence[tuple[str, Payload, ChannelOptions]]
    ) -> list[Publication | LadderError]:
        """Publications in this order, as one pipeline (see ``Channels.publish``'s note on
        ``publish_many``): every node gets them together, and fans them out in one flush."""
        now = time.time()
        calls = [self._call(channel, payload, options, now) for channel, payload, options in items]
        script = self._publish
        if isinstance(script, PipelinedScript):
            answers = await script.many(calls)
        else:  # (a cluster: one call after the other)
            answers = [await outcome(script(keys=keys, args=args)) for keys, args in calls]
        outcomes: list[Publication | LadderError] = []
        for (channel, payload, _), (keys, args), answer in zip(items, calls, answers, strict=True):
            if isinstance(answer, LadderError):  # (refused for itself: the others still count)
                outcomes.append(answer)
            elif isinstance(answer, (RedisError, OSError)):
                outcomes.append(unavailable(answer, keys))
            elif isinstance(answer, BaseException):
                raise answer
            else:
                outcomes.append(self._published(channel, payload, answer, args[-1], now))
        return outcomes

    def _call(
        self, channel: str, payload: Payload, options: ChannelOptions, now: float
    ) -> tuple[list[str], list[Any]]:
        """The publish script's keys and arguments."""
        link = self._link
        keys = [link.k("m", channel), link.k("s", channel)]
        return keys, [
            f"{random.getrandbits(32):08x}",  # the epoch if this starts the channel (every call)
            payload.msgpack,
            options.history_size,
            whole_seconds(options.history_ttl),
            whole_seconds(max(self.meta_ttl, options.history_ttl)),
            repr(now),
            link.k("c", channel),
            # (last: _published compares it with the answer's, as bytes)
            f"{options.history_size} {whole_seconds(options.history_ttl)}".encode(),
        ]

    async def listen(self, channel: str) -> None:
        if channel in self.listening:
            return
        state = self.listening[channel] = _Listening()
        try:
            # (subscribed only while the listener is connected, not while `healthy`: commands
            # may be stalled while it is connected, and it subscribes only on reconnect)
            if self.listener is not None:
                await self.listener.subscribe(self._link.k("c", channel))
            await self._catch_up(channel, state)  # the baseline: live messages after it count
        except (RedisError, OSError) as exc:
            # The listener will subscribe and catch up when it reconnects.
            log.warning("listen %s: %s", channel, exc)

    async def unlisten(self, channel: str) -> None:
        if self.listening.pop(channel, None) is None:
            return
        if self.listener is not None:
            await self.listener.unsubscribe(self._link.k("c", channel))

    async def _read_position(self, channel: str) -> Position:
        link = self._link
        epoch, offset = await self._position(
            keys=[link.k("m", channel), link.k("s", channel)],
            args=[secrets.token_hex(4), whole_seconds(self.meta_ttl)],
        )
        return Position(epoch.decode(), int(offset))

    async def position(self, channel: str) -> Position:
        try:
            return await self._read_position(channel)
        except (RedisError, OSError) as exc:
            raise unavailable(exc, [self._link.k("m", channel), self._link.k("s", channel)]) from exc

    async def history(
        self, channel: str, *, since: Position | None, limit: int, options: ChannelOptions
    ) -> HistoryResult:
        redis, stream = self._link.redis, self._link.k("s", channel)
        try:
            position = await self._read_position(channel)
            if since is None:
                raw = await redis.xrevrange(stream, "+", "-", count=limit) if limit > 0 else []
                newest = [self._entry(channel, position.epoch, e) for e in reversed(_entries(raw))]
                return recovery.latest(position, newest, limit, oldest=time.time() - options.history_ttl)
            want = recovery.missed(since, position, limit)
            if isinstance(want, HistoryResult):
                return want
            raw = await redis.xrange(stream, f"0-{want.first}", f"0-{want.last}")
        except (RedisError, OSError) as exc:
            raise unavailable(exc, [self._link.k("m", channel), stream]) from exc
        held = [self._entry(channel, position.epoch, e) for e in _entries(raw)]
        return recovery.recovered(want, position, held, oldest=time.time() - options.history_ttl)
