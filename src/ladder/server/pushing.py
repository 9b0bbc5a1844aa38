"""Pushing to a session or a user wherever they are, and ending a session on any node.

A session not held here is found through the engine's record of its node, following this
node's own hand-over of it where that record names this node; ``via`` (the nodes a push
went through) stops it going round in a circle of stale records.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..engine.base import Engine
from ..protocol.errors import LadderError
from ..protocol.outframes import push_frame
from .channels import ChannelTable
from .cluster import MAX_HOPS, Cluster, user_end, user_push
from .sessions import SessionTable

log = logging.getLogger("ladder.cluster")


class Pusher:
    """``hub.send``, ``hub.send_user``, ``hub.disconnect`` and ``hub.disconnect_user`` across nodes."""

    __slots__ = ("channels", "cluster", "engine", "sessions")

    def __init__(self, engine: Engine, sessions: SessionTable, cluster: Cluster) -> None:
        self.engine = engine
        self.sessions = sessions
        self.channels: ChannelTable = sessions.channels
        self.cluster = cluster
        cluster.serve("push", self._serve_push)
        cluster.serve("disconnect", self._serve_disconnect)
        cluster.serve("user", self._serve_user)
        cluster.serve("user-end", self._serve_user_end)

    async def disconnect(self, session_id: str, reason: str, *, via: Sequence[str] = ()) -> bool:
        """End a session now, on whichever node holds it (as :meth:`send` finds it). False
        when unknown."""
        session = self.sessions.get(session_id)
        if session is not None:
            ended = LadderError("session_closed", reason)
            self.sessions.remember_end(session, ended)  # a client polling later hears it too
            self.sessions.close(session, ended)
            return True
        node = await self._holder_elsewhere(session_id, via)
        if node is None:
            return False
        message = {"k": "disconnect", "sid": session_id, "reason": reason, "via": [*via, self.engine.node_id]}
        await self.cluster.tell(node, message)
        return True

    async def _serve_disconnect(self, message: dict[str, Any]) -> dict[str, Any]:
        via = [str(node) for node in message.get("via", ())]
        await self.disconnect(str(message["sid"]), str(message.get("reason", "")), via=via)
        return {}

    async def _holder_elsewhere(self, session_id: str, via: Sequence[str]) -> str | None:
        """The other node to tell about a session not held here (following this node's own
        hand-over of it where the engine names this node), or None: unknown, or the nodes
        already passed through (``via``: stale records pointing round in a circle)."""
        me = self.engine.node_id
        node = await self.engine.locate_session(session_id)
        if node == me:
            node = self.sessions.moved.get(session_id)
        if node is None or node == me or node in via or len(via) >= MAX_HOPS:
            return None
        return node

    async def send(self, session_id: str, event: str, data: Any = None, *, via: Sequence[str] = ()) -> bool:
        """Push an event to one session, on whichever node holds it. False when unknown.

        Where the engine names this node, the push follows this node's own hand-over of the
        session, as a request does (see :meth:`route`); ``via`` (the nodes it was pushed
        through) stops it going round in a circle of stale records.
        """
        session = self.sessions.get(session_id)
        if session is not None:
            self.channels.push(session, push_frame(event, data))
            return True
        node = await self._holder_elsewhere(session_id, via)
        if node is None:
            return False
        push = {"k": "push", "sid": session_id, "ev": event, "d": data, "via": [*via, self.engine.node_id]}
        await self.cluster.tell(node, push)
        return True

    async def send_user(self, user: str, event: str, data: Any = None) -> int:
        """Push an event to every session of ``user`` on every node; returns how many."""
        reached = self.sessions.push_user(user, push_frame(event, data))  # refused here if unencodable
        return await self._on_every_node(reached, user_push(user, event, data), f"send_user({user!r})")

    async def disconnect_user(self, user: str, reason: str) -> int:
        """End every session of ``user`` on every node; returns how many (as ``send_user``)."""
        ended = self.sessions.end_user(user, LadderError("session_closed", reason))
        return await self._on_every_node(ended, user_end(user, reason), f"disconnect_user({user!r})")

    async def _on_every_node(self, here: int, message: dict[str, Any], what: str) -> int:
        """``here`` (what this node did) plus the ``n`` every other node answered to
        ``message`` within 3 s; this node's alone, with a WARNING, while the engine is down."""
        try:
            return here + await self.cluster.count_all(message)
        except LadderError as exc:  # the engine is down: other nodes cannot be reached now
            log.warning("%s reached this node only: %s", what, exc)
            return here

    async def _serve_user_end(self, message: dict[str, Any]) -> dict[str, Any]:
        error = LadderError("session_closed", str(message.get("reason", "")))
        return {"n": self.sessions.end_user(str(message["user"]), error)}

    async def _serve_push(self, message: dict[str, Any]) -> dict[str, Any]:
        via = [str(node) for node in message.get("via", ())]
        await self.send(str(message["sid"]), str(message["ev"]), message.get("d"), via=via)
        return {}

    async def _serve_user(self, message: dict[str, Any]) -> dict[str, Any]:
        frame = push_frame(str(message["ev"]), message.get("d"))
        return {"n": self.sessions.push_user(str(message["user"]), frame)}
