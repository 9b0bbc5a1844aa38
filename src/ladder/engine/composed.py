"""One engine object made of its concern parts (channels, presence, routing, records).

The hub sees a single :class:`~ladder.engine.base.Engine`; each engine builds it from parts
that each implement one concern protocol, so a part can be read, replaced and tested alone.
This class only forwards; the engines add their lifecycle (``start``, ``stop``, health).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..protocol.codec import Payload
from .base import (
    AppliedRecord,
    AppliedRecords,
    ChannelOptions,
    Channels,
    HistoryResult,
    Member,
    Position,
    Presence,
    Publication,
    SessionRouting,
)

__all__ = ["ComposedEngine"]


class ComposedEngine:
    """Forwards each engine method to the part that owns its concern."""

    def __init__(
        self, channels: Channels, presence: Presence, routing: SessionRouting, applied: AppliedRecords
    ) -> None:
        self.channels = channels
        self.members = presence
        self.routing = routing
        self.applied = applied
        self.node_id = routing.node_id

    healthy: bool
    """Set by each engine (it knows what it depends on)."""

    def healthy_for(self, sid: str) -> bool:
        """One backbone for every session: its health is each session's."""
        return self.healthy

    # -- channels --------------------------------------------------------------------------

    async def publish(self, channel: str, payload: Payload, options: ChannelOptions) -> Publication:
        return await self.channels.publish(channel, payload, options)

    async def listen(self, channel: str) -> None:
        await self.channels.listen(channel)

    async def unlisten(self, channel: str) -> None:
        await self.channels.unlisten(channel)

    async def history(
        self, channel: str, *, since: Position | None, limit: int, options: ChannelOptions
    ) -> HistoryResult:
        return await self.channels.history(channel, since=since, limit=limit, options=options)

    async def position(self, channel: str) -> Position:
        return await self.channels.position(channel)

    # -- presence --------------------------------------------------------------------------

    async def presence_add(self, channel: str, member: Member, ttl: float) -> None:
        await self.members.presence_add(channel, member, ttl)

    async def presence_remove(self, channel: str, member: Member) -> None:
        await self.members.presence_remove(channel, member)

    async def presence(self, channel: str) -> list[Member]:
        return await self.members.presence(channel)

    # -- session routing -------------------------------------------------------------------

    def session_prefix(self) -> str:
        return self.routing.session_prefix()

    async def locate_session(self, sid: str) -> str | None:
        return await self.routing.locate_session(sid)

    async def claim_session(self, sid: str, ttl: float) -> None:
        await self.routing.claim_session(sid, ttl)

    async def release_session(self, sid: str) -> None:
        await self.routing.release_session(sid)

    async def send_node(self, node: str, message: bytes) -> bool:
        return await self.routing.send_node(node, message)

    async def node_alive(self, node: str) -> bool:
        return await self.routing.node_alive(node)

    async def broadcast(self, message: bytes) -> int:
        return await self.routing.broadcast(message)

    # -- what sessions applied -------------------------------------------------------------

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
        await self.applied.record_applied(
            sid, token, done=done, reply=reply, forget=forget, origins=origins, ttl=ttl
        )

    async def applied_record(self, sid: str, token: str) -> AppliedRecord | None:
        return await self.applied.applied_record(sid, token)
