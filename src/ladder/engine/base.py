"""The engine seam: what a hub needs from the message backbone, and nothing more.

One process uses :class:`~ladder.engine.memory.MemoryEngine`; several processes share a
Redis engine. The hub never assumes which: every publication, history read, presence change
and session lookup goes through this protocol, so a session's requests may land on any
process that shares the engine.

The seam is cut by concern: :class:`Channels` (publishing, history, the live stream),
:class:`Presence`, :class:`SessionRouting` (with node messages) and :class:`AppliedRecords`;
:class:`Engine` is all four behind one object, as the hub sees it.

Data crosses the seam already encoded (:class:`Payload`): a publication is serialised once
where it is published, and every node builds its wire frames from those bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

from ..checks import check_number
from ..errors import ConfigurationError
from ..protocol.codec import Payload

__all__ = [
    "AppliedRecord",
    "AppliedRecords",
    "ChannelOptions",
    "Channels",
    "Engine",
    "EngineSink",
    "HistoryResult",
    "Member",
    "Payload",
    "Position",
    "Presence",
    "Publication",
    "SessionRouting",
]


@dataclass(slots=True)
class Publication:
    """One message in a channel: where it sits (``epoch``, ``offset``) and its data."""

    channel: str
    offset: int
    epoch: str
    payload: Payload
    time: float = 0.0
    """When it was published, in its engine's clock, for aging its history: the memory
    engine's is ``time.monotonic()`` (seconds since an arbitrary point, this process only),
    Redis's Unix time. Not a timestamp to show: put one in the data."""
    frame: Any = field(default=None, repr=False, compare=False)
    """The hub caches the publication's encoded wire frame here (built once, shared)."""

    @property
    def data(self) -> Any:
        """The published value, decoded."""
        return self.payload.value


@dataclass(frozen=True, slots=True)
class Position:
    """Where a channel stands: the stream's identity (``epoch``) and its newest offset."""

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """Publications after a position, and whether they cover everything missed."""

    publications: list[Publication]
    position: Position
    complete: bool
    """False when the epoch changed or the history no longer reaches back far enough."""


@dataclass(frozen=True, slots=True)
class Member:
    """One presence entry: a connection (``client``) of a user, with optional info."""

    client: str
    user: str | None
    info: Any = None

    def wire(self) -> dict[str, Any]:
        """The member as presence frames carry it (``c``, ``u`` and, when set, ``info``)."""
        out: dict[str, Any] = {"c": self.client, "u": self.user}
        if self.info is not None:
            out["info"] = self.info
        return out


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """Per-channel behaviour, chosen by the first matching channel pattern.

    A value of the wrong type, a negative one, or a ``history_ttl`` of 0 raises
    :class:`~ladder.ConfigurationError` when ``ChannelOptions(...)`` is made.
    """

    def __post_init__(self) -> None:
        for spec in fields(self):
            check_number(f"ChannelOptions({spec.name}=...)", getattr(self, spec.name), spec.type)
        if not self.history_ttl:
            raise ConfigurationError(
                "ChannelOptions(history_ttl=...)",
                "0 cannot work: every publication would leave the history as it is published, "
                "and no subscriber could recover",
                "pass a number of seconds above 0 (the default is 600), or history_size=0 to keep "
                "no history",
            )

    history_size: int = 100
    """Publications kept for recovery (0 turns history and recovery off)."""
    history_ttl: float = 600.0
    """Seconds a publication stays in history (above 0; ``history_size=0`` keeps none)."""
    presence: bool = False
    """Track who is subscribed; members appear in ``presence`` replies."""
    join_leave: bool = True
    """With presence on, send ``join``/``leave`` frames to subscribers (those the
    permissions hook allows ``presence``)."""
    client_publish: bool = False
    """Whether clients may publish to the channel directly (server code always may)."""


@dataclass(slots=True)
class AppliedRecord:
    """What a session applied, kept by the engine so that it outlives the node holding the
    session: a client that lost the session resends what it did not see acknowledged, and
    the successor session answers those instead of applying them again."""

    done: int = 0
    """Every client message id up to this one was applied."""
    replies: dict[int, bytes] = field(default_factory=dict)
    """Encoded answers (msgpack maps without ``re``) the client may not have received yet."""
    origins: list[str] = field(default_factory=list)
    """Idempotency keys of the messages this session carried over from a lost one (id 1, 2, ...)."""
    since: int = 1
    """The id the record began with. A record the engine lost (expired, or Redis restarted
    without persistence) begins again with the next message recorded: whether an answer to
    a message before this one reached the client is then unknown."""


def token_digest(token: str) -> bytes:
    """What an engine keeps of a resume token: enough to check one, useless to present."""
    return hashlib.sha256(token.encode()).digest()


class EngineSink(Protocol):
    """What the engine calls back into (the hub). Called on the event loop, never blocks."""

    def on_publication(self, pub: Publication) -> None:
        """A publication to a channel this node listens to (from any node)."""

    def on_presence(self, channel: str, kind: str, member: Member) -> None:
        """A member joined (``kind="join"``) or left (``"leave"``) ``channel``."""

    def on_reset(self, channel: str, position: Position) -> None:
        """A channel's stream was lost or forked (a new epoch: Redis lost it, or a promoted
        replica gave delivered offsets to other publications), or history no longer covers
        what this node missed: live subscribers must resync at ``position``."""

    def on_node_message(self, message: bytes) -> None:
        """A message another node sent to this one (session routing)."""

    def on_route_lost(self) -> None:
        """A connection that messages between nodes travel on broke (a Redis server or a
        cluster primary went away): an answer awaited through it may never come."""


class Channels(Protocol):
    """Publishing, history and the live stream of each channel.

    An engine whose ``publish`` waits for a server may also offer
    ``publish_many(items)``, ``items`` a sequence of ``(channel, payload, options)``: the
    same as ``publish`` for each, one after the other in this order, but sent together (on
    Redis: one pipeline), returning each one's :class:`Publication` or, for one that failed,
    its :class:`~ladder.protocol.errors.LadderError` (the others still count). The hub then
    applies a session's consecutive publications together: they reach every node together
    and every subscriber gets them in one write, instead of each waiting for the one before.
    """

    async def publish(self, channel: str, payload: Payload, options: ChannelOptions) -> Publication:
        """Append to the channel (assigning its next offset) and deliver to every node."""

    async def listen(self, channel: str) -> None:
        """This node has local subscribers to ``channel``: deliver its publications (and its
        presence changes) here. Channels not listened to are not delivered."""

    async def unlisten(self, channel: str) -> None:
        """The last local subscriber left ``channel``."""

    async def history(
        self, channel: str, *, since: Position | None, limit: int, options: ChannelOptions
    ) -> HistoryResult:
        """Publications after ``since`` (or the newest ``limit`` when ``since`` is None), as
        :mod:`ladder.engine.recovery` decides."""

    async def position(self, channel: str) -> Position:
        """The channel's current epoch and newest offset."""


class Presence(Protocol):
    """Who is in a channel, with ``join``/``leave`` events to the nodes listening to it."""

    async def presence_add(self, channel: str, member: Member, ttl: float) -> None:
        """Add or refresh a member; it disappears ``ttl`` seconds after its last refresh. A
        new member is announced as ``join``; one that expires is announced as ``leave``
        within the engine's sweep interval, whether or not anyone asks who is present."""

    async def presence_remove(self, channel: str, member: Member) -> None:
        """Remove a member at once (it left; announced as ``leave``)."""

    async def presence(self, channel: str) -> list[Member]:
        """The members present in ``channel`` now."""


class SessionRouting(Protocol):
    """Sessions live in one node's memory; requests may land on any node.

    An engine whose session ids name their node (a ``session_prefix`` that is not empty)
    may also offer ``node_trace(node)``, a coroutine: the trace ``node`` left on this engine
    within the last ``trace_ttl`` seconds, or None (each node keeps a trace of itself there
    while it runs, saying ``trace``, an attribute of the engine; ``trace_ttl``, another, is
    raised by the hub to twice its ``session_ttl`` before it starts the engine), raising
    :class:`~ladder.protocol.errors.LadderError` when it cannot tell. A session whose node
    left no trace was made on another engine (another Redis server, database, key prefix or
    list of servers behind the same address), or before this one lost its data; one whose
    node's trace differs from this node's was made by a node configured otherwise (a list
    of servers that shares some with this node's): the hub says so in its log, once per
    such node. A node that stopped recently is known: its sessions are legitimately gone.

    An engine shared by several processes may also keep *leases*, so that a node alive but
    not answering (paused, its event loop blocked) does not hold its sessions forever:
    ``refresh_lease(seconds, *, take=False)``, a coroutine, holds this node's lease
    ``seconds`` more and returns False, writing nothing, when another node declared this one
    dead meanwhile (``take``: hold it anyway, replacing that mark); ``declare_dead(node)``
    declares ``node`` dead only if its lease lapsed, and returns whether it is dead (now or
    before); :meth:`node_alive` does not read leases (a node declared dead but still
    subscribed is alive there: a request to it goes unanswered, then ``declare_dead`` answers
    True at once). Both raise
    :class:`~ladder.protocol.errors.LadderError` when the engine cannot tell. An engine
    without them (one process: the memory engine) has no leases and nothing to fence.
    """

    node_id: str

    def session_prefix(self) -> str:
        """What this node's session ids start with, so any node can tell where one was made."""

    async def locate_session(self, sid: str) -> str | None:
        """The live node holding session ``sid`` (possibly this one), or None if no node does."""

    async def claim_session(self, sid: str, ttl: float) -> None:
        """Record that ``sid`` now lives on this node (it was handed over from another)."""

    async def release_session(self, sid: str) -> None:
        """``sid`` ended here; forget any hand-over record."""

    async def send_node(self, node: str, message: bytes) -> bool:
        """Deliver ``message`` to the ``on_node_message`` of ``node``. False if no listener
        of ``node`` heard it (not listening now: gone, or reconnecting), so an answer will
        not come and the asker need not wait for one."""

    async def node_alive(self, node: str) -> bool:
        """Whether ``node`` is running: listening for messages, or reconnecting its link to
        them (its sessions are not lost then: a request for one is to be retried), and not
        declared dead (see leases above). The answer comes within a fraction of a second for
        a node that was killed while listening."""

    async def broadcast(self, message: bytes) -> int:
        """Deliver ``message`` to the ``on_node_message`` of every *other* node listening
        now. Returns how many received it (0 with one process)."""


class AppliedRecords(Protocol):
    """What each session applied, kept outside the node holding it (idempotency).

    An engine whose ``record_applied`` never waits for anything (it finishes in its
    coroutine's first step, as records kept in this process's memory do) may say so with an
    attribute ``records_at_once = True`` and offer ``record_applied_now``, the same with the
    same arguments as a plain method: a message whose handler is a plain function is then
    applied as ``ladder serve``'s WebSocket driver reads it, without a task, and recorded
    with no coroutine at all. Otherwise (as on Redis) every such message gets a task.

    An engine whose records live in this process (read only by successors of sessions of
    this process) may also say ``records_in_process = True`` and offer
    ``record_session_now(sid, token, *, done, replies, origins, ttl)``, a plain call that
    merges a whole session's record (``replies``: its unacknowledged answers by message
    id) into what is kept: the hub then writes a session's record once, when the session
    ends (closed, expired, or replaced by a successor), instead of after every message; a
    message that finishes after its session ended is still recorded on its own with
    ``record_applied_now``.
    """

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
        """Record that ``sid`` applied every message up to ``done`` (with ``replies``, the
        answers to some of them by message id: one message's, or those of messages applied
        together), that answers ``forget`` reached the client, and (once) the keys of
        carried messages. Kept ``ttl`` seconds after the last write. The first write
        of a record (or the first after it was lost) sets its ``since`` to ``done``."""

    async def applied_record(self, sid: str, token: str) -> AppliedRecord | None:
        """The record of ``sid``, only if ``token`` is its resume token."""


@runtime_checkable
class Engine(Channels, Presence, SessionRouting, AppliedRecords, Protocol):
    """The message backbone shared by every process of one deployment: the four concerns
    above behind one object, plus its lifecycle and health."""

    node_id: str
    healthy: bool
    """False while the engine cannot do its job (a load balancer should stop sending traffic)."""

    def healthy_for(self, sid: str) -> bool:
        """Whether what session ``sid`` applies can be recorded now. An engine spread over
        several servers answers for the one holding that session's record, so a server
        down refuses only its own sessions' messages; otherwise this is ``healthy``. Such an
        engine may also offer ``record_server(sid)``, the name of that server (or None),
        which the refusal then names."""

    async def start(self, sink: EngineSink) -> None:
        """Connect and begin delivering live publications to ``sink``."""

    async def stop(self) -> None:
        """Disconnect and release resources."""

    def details(self) -> dict[str, Any]:
        """Facts for the health endpoint."""
