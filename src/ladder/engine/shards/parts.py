"""Channels, presence and applied records over several shards: each call goes, whole, to
the shard that holds its key (the channel, or the session id). A shard is a complete
single-Redis engine for what it holds, so every rule of that engine (offsets, history,
recovery, catch-up, refusals) holds per shard unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from ...protocol.codec import Payload
from ...protocol.errors import LadderError
from ..base import AppliedRecord, ChannelOptions, HistoryResult, Member, Position, Publication
from ..redis import RedisEngine
from .placement import Placement


class ShardedChannels:
    """The :class:`~ladder.engine.base.Channels` part: a channel lives on one shard."""

    def __init__(self, placement: Placement[RedisEngine]) -> None:
        self._of = placement.of

    async def publish(self, channel: str, payload: Payload, options: ChannelOptions) -> Publication:
        return await self._of(channel).publish(channel, payload, options)

    async def publish_many(
        self, items: Sequence[tuple[str, Payload, ChannelOptions]]
    ) -> list[Publication | LadderError]:
        """Each shard's share in one pipeline to it, all shards at once (a channel lives on
        one shard, so every channel's publications keep their order)."""
        shares: dict[RedisEngine, list[int]] = {}
        for n, (channel, _, _) in enumerate(items):
            shares.setdefault(self._of(channel), []).append(n)
        outcomes: list[Publication | LadderError | None] = [None] * len(items)

        async def send(shard: RedisEngine, numbers: list[int]) -> None:
            assert shard.publish_many is not None
            done = await shard.publish_many([items[n] for n in numbers])
            for n, outcome in zip(numbers, done, strict=True):
                outcomes[n] = outcome

        await asyncio.gather(*(send(shard, numbers) for shard, numbers in shares.items()))
        return [outcome for outcome in outcomes if outcome is not None]

    async def listen(self, channel: str) -> None:
        await self._of(channel).listen(channel)

    async def unlisten(self, channel: str) -> None:
        await self._of(channel).unlisten(channel)

    async def history(
        self, channel: str, *, since: Position | None, limit: int, options: ChannelOptions
    ) -> HistoryResult:
        return await self._of(channel).history(channel, since=since, limit=limit, options=options)

    async def position(self, channel: str) -> Position:
        return await self._of(channel).position(channel)


class ShardedPresence:
    """The :class:`~ladder.engine.base.Presence` part: members live with their channel."""

    def __init__(self, placement: Placement[RedisEngine]) -> None:
        self._of = placement.of

    async def presence_add(self, channel: str, member: Member, ttl: float) -> None:
        await self._of(channel).presence_add(channel, member, ttl)

    async def presence_remove(self, channel: str, member: Member) -> None:
        await self._of(channel).presence_remove(channel, member)

    async def presence(self, channel: str) -> list[Member]:
        return await self._of(channel).presence(channel)


class ShardedApplied:
    """The :class:`~ladder.engine.base.AppliedRecords` part: a record lives by session id."""

    records_at_once = False

    def __init__(self, placement: Placement[RedisEngine]) -> None:
        self._of = placement.of

    async def record_applied(
        self,
        sid: str,
        token: str,
        *,
        done: int,
        replies: Mapping[int, bytes],
        forget: Sequence[int],
        origins: Sequence[str] | None,
        ttl: float,
    ) -> None:
        await self._of(sid).record_applied(
            sid, token, done=done, replies=replies, forget=forget, origins=origins, ttl=ttl
        )

    async def applied_record(self, sid: str, token: str) -> AppliedRecord | None:
        return await self._of(sid).applied_record(sid, token)
