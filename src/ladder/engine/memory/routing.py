"""Session routing for one process: there is no other node to find or to message."""

from __future__ import annotations

from ...protocol.errors import LadderError


class LocalRouting:
    """The :class:`~ladder.engine.base.SessionRouting` part of the memory engine: a session
    not in the hub's own table does not exist anywhere."""

    def __init__(self, node_id: str = "local") -> None:
        self.node_id = node_id

    def session_prefix(self) -> str:
        return ""

    async def locate_session(self, sid: str) -> str | None:
        return None

    async def claim_session(self, sid: str, ttl: float) -> None:
        return None

    async def release_session(self, sid: str) -> None:
        return None

    async def send_node(self, node: str, message: bytes) -> bool:
        raise LadderError("unknown_session", "the memory engine has no other nodes")

    async def node_alive(self, node: str) -> bool:
        return node == self.node_id

    async def broadcast(self, message: bytes) -> int:
        return 0  # one process: there is no other node
