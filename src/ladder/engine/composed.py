"""One engine object made of its concern parts (channels, presence, routing, records).

The hub sees a single :class:`~ladder.engine.base.Engine`; each engine builds it from parts
that each implement one concern protocol, so a part can be read, replaced and tested alone.
This class only forwards; the engines add their lifecycle (``start``, ``stop``, health).

A forwarder returns the part's coroutine instead of awaiting it in one of its own: every
call and publication goes through here, and a second coroutine per engine call is pure
overhead on those paths (about 150 ns; S10 could not tell it from noise).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from ..protocol.codec import Payload
from ..protocol.errors import LadderError
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
        self.records_at_once: bool = getattr(applied, "records_at_once", False)
        """Whether ``record_applied`` never waits (see :class:`~ladder.engine.AppliedRecords`)."""
        self.record_applied_now: Callable[..., None] | None = (
            getattr(applied, "record_applied_now", None) if self.records_at_once else None
        )
        """The same as a plain call, where the part has one (see ``AppliedRecords``)."""
        self.records_in_process: bool = self.record_applied_now is not None and getattr(
            applied, "records_in_process", False
        )
        """Whether records live in this process and are written when a session ends."""
        self.record_session_now: Callable[..., None] | None = (
            getattr(applied, "record_session_now", None) if self.records_in_process else None
        )
        """A whole session's record as a plain call, where the part keeps them here."""
        self.publish_many: Callable[..., Coroutine[Any, Any, list[Publication | LadderError]]] | None = (
            getattr(channels, "publish_many", None)
        )
        """Several publications sent together, where the part can (see ``Channels``)."""
        self.node_trace: Callable[[str], Coroutine[Any, Any, bytes | None]] | None = getattr(
            routing, "node_trace", None
        )
        """The trace a node left on this engine lately, where the part can tell (see
        ``SessionRouting``)."""
        self.refresh_lease: Callable[..., Coroutine[Any, Any, bool]] | None = getattr(
            routing, "refresh_lease", None
        )
        """Holds this node's lease, where the part keeps leases (see ``SessionRouting``)."""
        self.declare_dead: Callable[[str], Coroutine[Any, Any, bool]] | None = getattr(
            routing, "declare_dead", None
        )
        """Declares a node whose lease lapsed dead, where the part keeps leases."""

    healthy: bool
    """Set by each engine (it knows what it depends on)."""

    def healthy_for(self, sid: str) -> bool:
        """One backbone for every session: its health is each session's."""
        return self.healthy

    @property
    def trace(self) -> bytes | None:
        """What this node's own trace says (compared with other nodes'), read from the routing
        part that writes it (a sharded engine sets its shards' after building them)."""
        trace: bytes | None = getattr(self.routing, "trace", None)
        return trace

    # -- channels --------------------------------------------------------------------------

    def publish(
        self, channel: str, payload: Payload, options: ChannelOptions
    ) -> Coroutine[Any, Any, Publication]:
        return self.channels.publish(channel, payload, options)

    def listen(self, channel: str) -> Coroutine[Any, Any, None]:
        return self.channels.listen(channel)

    def unlisten(self, channel: str) -> Coroutine[Any, Any, None]:
        return self.channels.unlisten(channel)

    def history(
        self, channel: str, *, since: Position | None, limit: int, options: ChannelOptions
    ) -> Coroutine[Any, Any, HistoryResult]:
        return self.channels.history(channel, since=since, limit=limit, options=options)

    def position(self, channel: str) -> Coroutine[Any, Any, Position]:
        return self.channels.position(channel)

    # -- presence --------------------------------------------------------------------------

    def presence_add(self, channel: str, member: Member, ttl: float) -> Coroutine[Any, Any, None]:
        return self.members.presence_add(channel, member, ttl)

    def presence_remove(self, channel: str, member: Member) -> Coroutine[Any, Any, None]:
        return self.members.presence_remove(channel, member)

    def presence(self, channel: str) -> Coroutine[Any, Any, list[Member]]:
        return self.members.presence(channel)

    # -- session routing -------------------------------------------------------------------

    def session_prefix(self) -> str:
        return self.routing.session_prefix()

    def locate_session(self, sid: str) -> Coroutine[Any, Any, str | None]:
        return self.routing.locate_session(sid)

    def claim_session(self, sid: str, ttl: float) -> Coroutine[Any, Any, None]:
        return self.routing.claim_session(sid, ttl)

    def release_session(self, sid: str) -> Coroutine[Any, Any, None]:
        return self.routing.release_session(sid)

    def send_node(self, node: str, message: bytes) -> Coroutine[Any, Any, bool]:
        return self.routing.send_node(node, message)

    def node_alive(self, node: str) -> Coroutine[Any, Any, bool]:
        return self.routing.node_alive(node)

    def broadcast(self, message: bytes) -> Coroutine[Any, Any, int]:
        return self.routing.broadcast(message)

    # -- what sessions applied -------------------------------------------------------------

    def record_applied(
        self,
        sid: str,
        token: str,
        *,
        done: int,
        replies: Mapping[int, bytes],
        forget: Sequence[int],
        origins: Sequence[str] | None,
        ttl: float,
    ) -> Coroutine[Any, Any, None]:
        return self.applied.record_applied(
            sid, token, done=done, replies=replies, forget=forget, origins=origins, ttl=ttl
        )

    def applied_record(self, sid: str, token: str) -> Coroutine[Any, Any, AppliedRecord | None]:
        return self.applied.applied_record(sid, token)
