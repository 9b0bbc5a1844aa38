"""Session ids as logs and reasons name them.

An engine shared by several nodes makes ids ``<node>.<random>`` (its ``session_prefix``),
so that any node can tell which one made a session; the memory engine's ids are the random
part alone. A label keeps the node part whole and 8 characters of the random part: the
first 8 characters alone were the node's id, the same for every session of a node. An id
is not a secret (the resume token is), but a short label keeps log lines readable.
"""

from __future__ import annotations

__all__ = ["label", "node_of"]


def node_of(sid: str) -> str | None:
    """The node that made ``sid`` (the part before its first dot), or None without one."""
    node, dot, _ = sid.partition(".")
    return node if dot and node else None


def label(sid: str) -> str:
    """How logs and refusals name session ``sid``: ``42a6db00.Xk3v9Pq1``, or its first 8
    characters when it has no node part."""
    node, dot, rest = sid.partition(".")
    return f"{node}.{rest[:8]}" if dot else sid[:8]
