"""Presence in Redis: a hash of members and a sorted set of their expiry, per channel.

Their keys are ``{prefix}:pm:{channel}`` and ``{prefix}:pe:{channel}``: the kind before the
name, as every per-channel key, never a suffix after it (a suffix made channel ``x:t``'s
hash the key of channel ``x``'s sorted set: ``WRONGTYPE`` for both).

``join`` and ``leave`` travel on the channel's pub/sub key (``J``/``L`` + msgpack member).
A member whose node died is not refreshed: a sweep removes it once its time ran out and
announces its ``leave`` exactly once (whichever node sweeps first, in one atomic script per
channel), so nodes still listening hear it without anyone asking who is present.

What a sweep visits is what fell due. One sorted set, ``{prefix}:d:presence``, holds every
channel with members, scored by its earliest member expiry: the scripts that add, refresh,
remove and sweep members score the channel again (or drop it with its last member), in the
same atomic step. Every ``sweep_every`` seconds a node reads the channels whose score passed
and sweeps only those: while every node refreshes its members, nothing is ever due, and a
sweep is one ``ZRANGEBYSCORE``; a dead node's members make their channels due once.

A Redis Cluster cannot: a channel's keys and that set lie in different slots, and a script
touches one. There each node keeps its own schedule of the channels it saw members in,
each at the expiry its last sweep found next (a :class:`~ladder.engine.schedule.Schedule`),
and sweeps those that came:
a channel whose members stay is swept by every node each time its earliest member's
expiry passes (every 20-60 s with the default ``presence_ttl``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

import msgpack
from redis.exceptions import RedisError

from ..base import Member
from ..schedule import Schedule
from .link import RedisLink, unavailable

log = logging.getLogger("ladder.redis")

SWEEP_BATCH: Final = 500
"""Channels swept per pipeline (one round trip each)."""

_RESCORE: Final = """
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if KEYS[3] then
  if first[2] then
    redis.call('ZADD', KEYS[3], first[2], ARGV[#ARGV])
  else
    redis.call('ZREM', KEYS[3], ARGV[#ARGV])
  end
end
"""
"""In each script below: ``first``, the earliest member and its expiry; with a third key (the
due set), the channel (the last argument) is scored there by it, or dropped with its last
member."""

_ADD: Final = """
local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
""" + _RESCORE + """
return added
"""
"""Add or refresh a member (``client``, ``packed``, expiry, keys' lifetime, channel): 1 if new."""

_REMOVE: Final = """
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
""" + _RESCORE + """
return removed
"""
"""Remove a member (``client``, channel): 1 if it was there."""

_SWEEP: Final = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, client in ipairs(gone) do
  local packed = redis.call('HGET', KEYS[1], client)
  redis.call('ZREM', KEYS[2], client)
  redis.call('HDEL', KEYS[1], client)
  if packed then
    redis.call('PUBLISH', ARGV[2], 'L' .. packed)
  end
end
""" + _RESCORE + """
return first[2]
"""
"""Remove a channel's expired members (now, pub/sub key, channel), announcing each
``leave``: the next expiry, or nil when no member is left."""


def _pack(member: Member) -> bytes:
    packed: bytes = msgpack.packb([member.client, member.user, member.info])
    return packed


class RedisPresence:
    """The :class:`~ladder.engine.base.Presence` part of the Redis engine.

    Args:
        link: The engine's shared keys and clients.
        sweep_every: Seconds between sweeps for expired members.
    """

    def __init__(self, link: RedisLink, *, sweep_every: float) -> None:
        self._link = link
        self.sweep_every = sweep_every
        self.due_key = link.k("d", "presence")
        """The sorted set of channels with members, by earliest expiry (not in a cluster)."""
        self.looks = Schedule()
        """In a cluster: when this node next sweeps each channel it saw members in."""

    def scripts(self) -> None:
        """Register the scripts on the command client (after it is opened)."""
        redis = self._link.redis
        self._sweep = redis.register_script(self._link.script(_SWEEP))
        self._add = redis.register_script(_ADD)
        self._remove = redis.register_script(_REMOVE)

    def _keys(self, channel: str) -> list[str]:
        """The members hash, the expiry sorted set and (not in a cluster) the due set."""
        link = self._link
        keys = [link.k("pm", channel), link.k("pe", channel)]
        if link.pipelined_scripts:
            keys.append(self.due_key)
        return keys

    def _args(self, now: float, channel: str) -> list[Any]:
        return [now, self._link.k("c", channel), channel]

    def on_message(self, channel: str, data: bytes) -> None:
        """A ``J`` or ``L`` message from pub/sub."""
        sink = self._link.sink
        client, user, info = msgpack.unpackb(data[1:], raw=False)
        if data[:1] == b"J" and not self._link.pipelined_scripts:
            self.looks.at(channel, time.time())  # its expiry is not in the message: look next sweep
        if sink is not None:
            sink.on_presence(channel, "join" if data[:1] == b"J" else "leave", Member(client, user, info))

    async def sweep(self) -> None:
        """Remove expired members, announcing their ``leave``: of the channels that fell due."""
        now = time.time()
        if not self._link.pipelined_scripts:
            due = self.looks.due(now)
            try:
                found = await self._sweep_each(due, now)
            except BaseException:
                for channel in due:  # looked at again next time
                    self.looks.at(channel, now)
                raise
            for channel, expires in found:
                if expires is not None:
                    self.looks.at(channel, float(expires))
            return
        redis = self._link.redis
        # Each channel swept leaves the due range (scored later, or dropped), so this ends;
        # the bound is for a clock gone wrong.
        for _ in range(1000):
            channels: list[bytes] = await redis.zrangebyscore(  # type: ignore[assignment]
                self.due_key, "-inf", now, start=0, num=SWEEP_BATCH
            )
            if not channels:
                return
            await self._sweep_each([channel.decode() for channel in channels], now)
            if len(channels) < SWEEP_BATCH:
                return

    async def _sweep_each(self, channels: Sequence[str], now: float) -> list[tuple[str, bytes | None]]:
        """Sweep ``channels`` (pipelined, 500 per round trip): each with its next expiry."""
        found: list[tuple[str, bytes | None]] = []
        for start in range(0, len(channels), SWEEP_BATCH):
            batch = channels[start : start + SWEEP_BATCH]
            left: list[Any]
            if self._link.pipelined_scripts:
                async with self._link.redis.pipeline(transaction=False) as pipe:
                    for ch in batch:
                        await self._sweep(keys=self._keys(ch), args=self._args(now, ch), client=pipe)
                    left = await pipe.execute()
            else:  # (a cluster runs no scripts in pipelines: one call per channel, together)
                left = await asyncio.gather(
                    *(self._sweep(keys=self._keys(ch), args=self._args(now, ch)) for ch in batch)
                )
            found.extend(zip(batch, left, strict=True))
        return found

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_every)
            try:
                await self.sweep()
            except (RedisError, OSError) as exc:  # Redis unreachable: health reports it already
                log.debug("presence sweep: %s (retried in %g s)", exc, self.sweep_every)
            except Exception:  # a bug: say so, and keep sweeping
                log.exception("presence sweep failed")

    async def presence_add(self, channel: str, member: Member, ttl: float) -> None:
        packed = _pack(member)
        # The keys outlive the members by two sweeps, so a sweep announces the leave of the
        # last one before Redis drops the keys.
        lifetime = int(ttl + 2 * self.sweep_every) + 1
        try:
            expires = time.time() + ttl
            added = await self._add(
                keys=self._keys(channel), args=[member.client, packed, expires, lifetime, channel]
            )
            if not self._link.pipelined_scripts:
                self.looks.at(channel, expires)
            if added:
                await self._link.publish(self._link.k("c", channel), b"J" + packed)
        except (RedisError, OSError) as exc:
            raise unavailable(exc, self._keys(channel)[:2]) from exc

    async def presence_remove(self, channel: str, member: Member) -> None:
        try:
            if await self._remove(keys=self._keys(channel), args=[member.client, channel]):
                await self._link.publish(self._link.k("c", channel), b"L" + _pack(member))
        except (RedisError, OSError) as exc:
            log.warning("presence_remove %s: %s (it expires by itself)", channel, exc)

    async def presence(self, channel: str) -> list[Member]:
        keys = self._keys(channel)
        try:
            # The expired go first (and their leave is announced), as the sweep would.
            await self._sweep(keys=keys, args=self._args(time.time(), channel))
            values: dict[bytes, bytes] = await self._link.redis.hgetall(keys[0])  # type: ignore[assignment]
        except (RedisError, OSError) as exc:
            raise unavailable(exc, keys[:2]) from exc
        return [Member(*msgpack.unpackb(packed, raw=False)) for packed in values.values()]
