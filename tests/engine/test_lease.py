"""Node leases (``{prefix}:live:{node}``): a node alive but silent past its lease can be
declared dead by another, and finds out at its next refresh (it fences itself).

Against every engine: the memory engine (one process) keeps none; the Redis engines on real
servers (one, three shards, a Redis Cluster)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.engine.conftest import Make

LEASE = 1.0


async def _until_declared(other: Any, node: str, timeout: float) -> float:
    """Try to declare ``node`` dead until it works; seconds it took."""
    start = time.monotonic()
    while not await other.declare_dead(node):
        assert time.monotonic() - start < timeout, f"{node} not declared dead after {timeout} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_a_lapsed_lease_is_declared_dead_and_its_node_is_fenced_until_it_takes_it_again(
    make: Make,
) -> None:
    engine, _ = await make()
    other, _ = await make()
    if make.kind == "memory":
        assert getattr(engine, "refresh_lease", None) is None, "one process: no lease"
        assert getattr(engine, "declare_dead", None) is None
        return
    node = engine.node_id
    assert await engine.refresh_lease(LEASE, take=True)  # type: ignore[attr-defined]
    if make.kind == "redis":
        ttl = await engine.redis.pttl(f"{engine.prefix}:live:{node}")  # type: ignore[attr-defined]
        assert 0.8 * LEASE * 1000 < ttl <= LEASE * 1000, ttl
    # Refreshed every LEASE/4 for twice the lease: never declared dead meanwhile.
    last = 0.0
    for _ in range(8):
        sent = time.monotonic()
        assert await engine.refresh_lease(LEASE)  # type: ignore[attr-defined]
        last = sent
        assert not await other.declare_dead(node), "declared dead while its lease lives"  # type: ignore[attr-defined]
        await asyncio.sleep(LEASE / 4)
    assert await other.node_alive(node)
    # No refresh any more (the node is paused): dead once the lease lapsed, not before.
    await _until_declared(other, node, timeout=5 * LEASE)
    waited = time.monotonic() - last
    assert waited >= 0.9 * LEASE, f"declared dead {waited:.2f} s after its last refresh"
    assert await other.node_alive(node), "still subscribed: finding a node reads no lease"
    assert await other.declare_dead(node), "dead stays dead"  # type: ignore[attr-defined]
    # The node wakes: its refresh finds the tombstone, says so, and leaves it.
    assert not await engine.refresh_lease(LEASE)  # type: ignore[attr-defined]
    assert not await engine.refresh_lease(LEASE)  # type: ignore[attr-defined]
    assert await other.declare_dead(node)  # type: ignore[attr-defined]
    # Having ended what it held, it takes the lease again: not declared dead any more.
    assert await engine.refresh_lease(LEASE, take=True)  # type: ignore[attr-defined]
    assert not await other.declare_dead(node)  # type: ignore[attr-defined]


async def test_a_node_that_left_no_trace_here_is_not_declared_dead(make: Make) -> None:
    """A node with no trace in this engine runs on another one (another database of the same
    server shares pub/sub, so it hears questions): its lease is not here to lapse. Declaring
    it dead here wrote a tombstone for a live node and ended its clients' sessions. (A node
    killed lately left its trace: its lapsed lease is declared, as above.)"""
    if make.kind == "memory":
        return
    engine, _ = await make()
    assert not await engine.declare_dead("ghost-node")  # type: ignore[attr-defined]
    assert not await engine.declare_dead("ghost-node")  # type: ignore[attr-defined]
    if make.kind == "redis":
        assert await engine.redis.get(f"{engine.prefix}:live:ghost-node") is None, "no tombstone"  # type: ignore[attr-defined]
    assert not await engine.node_alive("ghost-node")
