"""A question forwarded to another node through a link that then broke fails at once with a
retryable refusal, instead of waiting out its timeout (for a forwarded long poll, the hold)."""

from __future__ import annotations

import asyncio

import pytest

from ladder import LadderError
from ladder.server.cluster import Cluster
from ladder.server.tasks import Tasks


class LostInTransit:
    """An engine whose node messages vanish (sent through a Redis server that just died)."""

    healthy = True
    node_id = "node-a"

    def __init__(self) -> None:
        self.sent = asyncio.Event()

    async def send_node(self, node: str, message: bytes) -> bool:
        self.sent.set()
        return True

    async def node_alive(self, node: str) -> bool:
        return True


async def test_a_pending_question_fails_retryably_as_soon_as_its_route_is_lost() -> None:
    engine = LostInTransit()
    cluster = Cluster(engine, Tasks())  # type: ignore[arg-type]
    asking = asyncio.create_task(cluster.ask("node-b", {"k": "poll"}, timeout=30.0))
    await engine.sent.wait()  # the question left (and was lost on the way)
    assert not asking.done()
    cluster.on_route_lost()
    async with asyncio.timeout(5.0):  # before: 30 s, then "did not answer in time"
        with pytest.raises(LadderError) as refused:
            await asking
    assert refused.value.code == "engine_unavailable" and "retry" in refused.value.reason
    assert not cluster._waiting, "nothing left waiting"
    cluster.on_route_lost()  # nothing pending: nothing to do


class NobodyListens(LostInTransit):
    """An engine on which the node asked is not subscribed now (reconnecting, or gone)."""

    def __init__(self, alive: bool) -> None:
        super().__init__()
        self.alive = alive

    async def send_node(self, node: str, message: bytes) -> bool:
        self.sent.set()
        return False

    async def node_alive(self, node: str) -> bool:
        return self.alive


@pytest.mark.parametrize(("alive", "code"), [(True, "engine_unavailable"), (False, "unknown_session")])
async def test_a_question_nobody_heard_is_answered_at_once(alive: bool, code: str) -> None:
    """Before, a forwarded long poll waited out hold + 3 s for an answer that could not come
    (a Redis server back from a restart, where the owner had not subscribed again yet)."""
    cluster = Cluster(NobodyListens(alive), Tasks())  # type: ignore[arg-type]
    async with asyncio.timeout(5.0):
        with pytest.raises(LadderError) as refused:
            await cluster.ask("node-b", {"k": "poll"}, timeout=30.0)
    assert refused.value.code == code
    assert not cluster._waiting
