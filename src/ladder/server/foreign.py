"""Sessions made on another engine: a node behind the same address that does not share it.

A client resuming a session (or naming a lost one) that a node unknown to this node's
engine made comes from a node on another engine: another Redis server, database, key
prefix or list of servers. It is told ``unknown_session`` and starts over here, and it sees
nothing published through the other engine, while every node's ``/health`` answers 200.
A node whose trace says another list of servers shares only some of them: the channels
each list places on a server the other does not list are split between the two (what one
publishes there, the other's subscribers never get). Nothing else shows either split, so
each is logged: once per such node, naming the fix.
"""

from __future__ import annotations

import logging
from typing import Final

from ..engine.base import Engine
from ..protocol.errors import LadderError
from ..protocol.sids import label, node_of

log = logging.getLogger("ladder.cluster")

KEPT: Final = 1_000
"""Nodes told of at most (each once), and nodes remembered as known: a bound on memory."""


UNKNOWN: Final = (
    "session %s was made by node %s, which this node's engine has no trace of: the node is on "
    "another engine, and its clients that land here miss what is published there (and start over "
    "when their session is not found). Every node behind one address must use the same engine URL "
    "(the same Redis servers, database, key prefix and list of servers). Or this engine lost its "
    "data (a Redis restarted without persistence), and then this is harmless (logged once per node)"
)

OTHER_SERVERS: Final = (
    "session %s was made by node %s, whose engine lists other Redis servers (its trace says %r, "
    "this node's %r): a channel the two lists place on different servers is split, and the "
    "subscribers on one node miss what the other publishes there. Every node behind one address "
    "must list the same servers (logged once per node)"
)


class ForeignNodes:
    """Tells of sessions whose node this engine has no trace of, or a trace that lists other
    servers (``Engine.node_trace``)."""

    __slots__ = ("_counters", "_engine", "_known", "_told")

    def __init__(self, engine: Engine, counters: dict[str, int]) -> None:
        self._engine = engine
        self._counters = counters
        counters.setdefault("unknown_node", 0)
        counters.setdefault("other_servers", 0)
        self._told: dict[str, str] = {}
        """Nodes told of, and of what (``unknown_node``, ``other_servers``)."""
        self._known: set[str] = set()
        """Nodes found known (asked once each: a node known stays so while its sessions live)."""

    async def check(self, sid: str) -> None:
        """A request names ``sid`` (a hello resuming it or naming it lost, a POST, a poll),
        and it is not a session of this node:
        if its node is unknown to the engine (``unknown_node``), or lists other servers
        (``other_servers``), count it, and warn (once per node). A node the engine knows
        alike (running, or stopped within its ``trace_ttl``), an id without a node part (the
        memory engine's), and an engine that cannot tell, say nothing."""
        engine = self._engine
        node = node_of(sid)
        if node is None or node == engine.node_id or node in self._known:
            return
        kind = self._told.get(node)
        if kind is None:
            trace_of = getattr(engine, "node_trace", None)
            if trace_of is None:
                return
            try:
                trace = await trace_of(node)
            except LadderError:
                return  # (the engine cannot tell now)
            own = getattr(engine, "trace", None)
            if trace is not None and (own is None or trace == own):  # (None: nothing to compare)
                if len(self._known) >= KEPT:
                    self._known.clear()
                self._known.add(node)
                return
            kind = "unknown_node" if trace is None else "other_servers"
            if len(self._told) < KEPT:
                self._told[node] = kind
                if trace is None:
                    log.warning(UNKNOWN, label(sid), node)
                else:
                    ours = (own or b"").decode(errors="replace")
                    log.warning(OTHER_SERVERS, label(sid), node, trace.decode(errors="replace"), ours)
        self._counters[kind] += 1
