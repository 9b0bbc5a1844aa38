"""Presence in Redis: a hash of members and a sorted set of their expiry, per channel.

``join`` and ``leave`` travel on the channel's pub/sub key (``J``/``L`` + msgpack member).
A member whose node died is not refreshed; every node sweeps the channels it knows to
have presence every ``sweep_every`` seconds with one atomic script per channel, which
removes the expired members and announces their ``leave`` exactly once (whichever node
sweeps first), so nodes still listening hear it without anyone asking who is present.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

import msgpack
from redis.exceptions import RedisError

from ..base import Member
from .link import RedisLink, unavailable

log = logging.getLogger("ladder.redis")

SWEEP_BATCH: Final = 500
"""Channels swept per pipeline (one round trip each)."""

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
return redis.call('ZCARD', KEYS[2])
"""


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
        self.known: set[str] = set()
        """Channels this node saw members in (added here, or a ``join`` heard): swept until
        they have none left."""

    def scripts(self) -> None:
        """Register the sweep script on the command client (after it is opened)."""
        self._sweep = self._link.redis.register_script(self._link.script(_SWEEP))

    def _keys(self, channel: str) -> list[str]:
        key = self._link.k("p", channel)
        return [key, key + ":t"]

    def on_message(self, channel: str, data: bytes) -> None:
        """A ``J`` or ``L`` message from pub/sub."""
        sink = self._link.sink
        client, user, info = msgpack.unpackb(data[1:], raw=False)
        if data[:1] == b"J":
            self.known.add(channel)
        if sink is not None:
            sink.on_presence(channel, "join" if data[:1] == b"J" else "leave", Member(client, user, info))

    async def sweep(self) -> None:
        """Remove expired members of every known channel, announcing their ``leave``."""
        now = time.time()
        channels = list(self.known)
        for start in range(0, len(channels), SWEEP_BATCH):
            batch = channels[start : start + SWEEP_BATCH]
            left: list[Any]
            if self._link.pipelined_scripts:
                async with self._link.redis.pipeline(transaction=False) as pipe:
                    for channel in batch:
                        await self._sweep(
                            keys=self._keys(channel), args=[now, self._link.k("c", channel)], client=pipe
                        )
                    left = await pipe.execute()
            else:  # (a cluster runs no scripts in pipelines: one call per channel, together)
                left = await asyncio.gather(
                    *(self._sweep(keys=self._keys(ch), args=[now, self._link.k("c", ch)]) for ch in batch)
                )
            for channel, count in zip(batch, left, strict=True):
                if not count:
                    self.known.discard(channel)

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
        key, times = self._keys(channel)
        redis = self._link.redis
        try:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, member.client, packed)
                pipe.zadd(times, {member.client: time.time() + ttl})
                # The keys outlive the members by two sweeps, so a sweep announces the leave
                # of the last one before Redis drops the keys.
                lifetime = int(ttl + 2 * self.sweep_every) + 1
                pipe.expire(key, lifetime)
                pipe.expire(times, lifetime)
                added, *_ = await pipe.execute()
            self.known.add(channel)
            if added:
                await self._link.publish(self._link.k("c", channel), b"J" + packed)
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc

    async def presence_remove(self, channel: str, member: Member) -> None:
        key, times = self._keys(channel)
        redis = self._link.redis
        try:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.hdel(key, member.client)
                pipe.zrem(times, member.client)
                removed, _ = await pipe.execute()
            if removed:
                await self._link.publish(self._link.k("c", channel), b"L" + _pack(member))
        except (RedisError, OSError) as exc:
            log.warning("presence_remove %s: %s (it expires by itself)", channel, exc)

    async def presence(self, channel: str) -> list[Member]:
        keys = self._keys(channel)
        try:
            # The expired go first (and their leave is announced), as the sweep would.
            await self._sweep(keys=keys, args=[time.time(), self._link.k("c", channel)])
            values: dict[bytes, bytes] = await self._link.redis.hgetall(keys[0])  # type: ignore[assignment]
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc
        return [Member(*msgpack.unpackb(packed, raw=False)) for packed in values.values()]
