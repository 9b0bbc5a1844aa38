"""Sessions made on another engine: a node behind the same address that does not share it.

A client resuming a session (or naming a lost one) that a node unknown to this node's
engine made comes from a node on another engine: another Redis server, database, key
prefix or list of servers. It is told ``unknown_session`` and starts over here, and it sees
nothing published through the other engine, while every node's ``/health`` answers 200.
Nothing else shows the split, so it is logged: once per such node, naming the fix.
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


class ForeignNodes:
    """Tells of sessions whose node this engine has no trace of (``Engine.node_known``)."""

    __slots__ = ("_counters", "_engine", "_known", "_told")

    def __init__(self, engine: Engine, counters: dict[str, int]) -> None:
        self._engine = engine
        self._counters = counters
        counters.setdefault("unknown_node", 0)
        self._told: set[str] = set()
        self._known: set[str] = set()
        """Nodes found known (asked once each: a node known stays so while its sessions live)."""

    async def check(self, sid: str) -> None:
        """A hello resumes ``sid`` or names it as lost, and it is not a session of this node:
        if its node is unknown to the engine, count it, and warn (once per node). A node
        the engine knows (running, or stopped within its ``trace_ttl``), an id without a
        node part (the memory engine's), and an engine that cannot tell, say nothing."""
        engine = self._engine
        node = node_of(sid)
        if node is None or node == engine.node_id or node in self._known:
            return
        if node not in self._told:
            known = getattr(engine, "node_known", None)
            if known is None:
                return
            try:
                found = await known(node)
            except LadderError:
                return  # (the engine cannot tell now)
            if found:
                if len(self._known) >= KEPT:
                    self._known.clear()
                self._known.add(node)
                return
            if len(self._told) < KEPT:
                self._told.add(node)
                log.warning(
                    "session %s was made by node %s, which this node's engine has no trace of: "
                    "the node is on another engine, and its clients that land here miss what is "
                    "published there (and start over when their session is not found). Every node "
                    "behind one address must use the same engine URL (the same Redis servers, "
                    "database, key prefix and list of servers). Or this engine lost its data (a "
                    "Redis restarted without persistence), and then this is harmless (logged once "
                    "per node)",
                    label(sid),
                    node,
                )
        self._counters["unknown_node"] += 1
