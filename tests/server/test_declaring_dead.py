"""Which silent node the asking node declares dead (``Cluster.ask``, ``lease.py``): one that
heard the question and did not answer while its lease lapsed (paused, its loop blocked),
not one whose listener is reconnecting (it did not hear the question; after a Redis that
lost its data, its lease is gone too until its next refresh)."""

from __future__ import annotations

import asyncio

import pytest

from ladder import LadderError
from ladder.server.cluster import Cluster
from ladder.server.tasks import Tasks


class Silent:
    """An engine on which the node asked never answers; its lease has lapsed."""

    healthy = True
    node_id = "node-a"

    def __init__(self, *, heard: bool) -> None:
        self.heard = heard
        self.declared: list[str] = []

    async def send_node(self, node: str, message: bytes) -> bool:
        return self.heard

    async def node_alive(self, node: str) -> bool:
        return True  # subscribed and silent (heard), or marked away (not heard)

    async def declare_dead(self, node: str) -> bool:
        self.declared.append(node)
        return True


async def test_a_node_that_heard_and_did_not_answer_past_its_lease_is_declared_dead() -> None:
    engine = Silent(heard=True)
    cluster = Cluster(engine, Tasks())  # type: ignore[arg-type]
    with pytest.raises(LadderError) as refused:
        await cluster.ask("node-b", {"k": "poll"}, timeout=0.05)
    assert refused.value.code == "unknown_session"
    assert "node-b holding the session stopped answering for over" in refused.value.reason
    assert engine.declared == ["node-b"]


async def test_a_node_reconnecting_its_link_is_not_declared_dead_though_its_lease_is_gone() -> None:
    """Before, it was: a Redis restarted without its data had lost every lease, and a
    request to a node whose listener had not subscribed again yet ended its sessions."""
    engine = Silent(heard=False)
    cluster = Cluster(engine, Tasks())  # type: ignore[arg-type]
    async with asyncio.timeout(5.0):
        with pytest.raises(LadderError) as refused:
            await cluster.ask("node-b", {"k": "poll"}, timeout=0.05)
    assert refused.value.code == "engine_unavailable" and "retry" in refused.value.reason
    assert engine.declared == [], "not declared dead"
