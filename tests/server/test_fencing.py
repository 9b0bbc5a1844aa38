"""A node that finds it was declared dead (its lease lapsed while it was silent) applies
nothing more: the message that finds the lease expired waits for a refresh, which finds the
tombstone; every session is ended with a ``bye`` of ``unknown_session`` (the client starts
a successor), nothing is recorded for the message, and new sessions are served."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from ladder import Ladder
from ladder.engine.redis import RedisEngine
from ladder.protocol.client.ending import after_transport
from ladder.server.hub import internals
from tests.server.harness import Peer, Recorder
from tests.support.redis import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


async def test_a_node_declared_dead_ends_its_sessions_and_applies_nothing_more(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    owner = Ladder(engine=RedisEngine(redis_server.url), node_lease=1.0)
    other = Ladder(engine=RedisEngine(redis_server.url), node_lease=1.0)
    applied = Recorder(owner).applied
    try:
        peer = await Peer.open(owner)
        await other.start()
        assert (await peer.request({"t": "call", "ev": "do", "d": 1}))["t"] == "reply"
        engine = owner.engine
        node = engine.node_id
        sid, token = peer.session.sid, peer.session.state.token
        # The owner "was paused": its lease lapsed and the other node declared it dead (the
        # tombstone written here at once; declaring is tested in tests/engine/test_lease.py).
        lease = internals(owner).lease
        await engine.redis.set(f"ladder:live:{node}", b"dead")  # type: ignore[attr-defined]
        assert await other.engine.declare_dead(node)  # type: ignore[attr-defined]
        lease.until = 0.0  # the node wakes: its last refresh was sent longer than node_lease ago
        caplog.set_level(logging.WARNING, "ladder.cluster")
        await peer.send({"t": "call", "ev": "do", "d": 2}, {"t": "emit", "ev": "do", "d": 3})
        out: list[dict[str, Any]] = []
        async with asyncio.timeout(5):  # (the refresh that finds the tombstone: a round trip)
            while not any(frame["t"] == "bye" for frame in out):
                await asyncio.sleep(0.01)
                out += peer.read()
        bye = [frame for frame in out if frame["t"] == "bye"]
        assert bye and bye[0]["code"] == "unknown_session", out
        assert after_transport("bye", bye[0]["code"]) == "new_session", "the client starts a successor"
        assert applied == [1], "nothing applied after the node was declared dead"
        record = await engine.applied_record(sid, token)  # type: ignore[arg-type]
        assert record is not None and record.done == 1, "no record for what was not applied"
        fenced = [r for r in caplog.records if "another node declared it dead" in r.getMessage()]
        assert len(fenced) == 1 and "its 1 sessions were ended" in fenced[0].getMessage()
        assert internals(owner).cluster.counters["fenced"] == 1
        # It took the lease again: alive, and serving new sessions under the same id.
        assert not await other.engine.declare_dead(node)  # type: ignore[attr-defined]
        fresh = await Peer.open(owner)
        assert fresh.session.sid.startswith(f"{node}.")
        assert (await fresh.request({"t": "call", "ev": "do", "d": 4}))["t"] == "reply"
        assert applied == [1, 4]
        assert internals(owner).sessions.get(sid) is None
        assert await other.engine.locate_session(sid) == node, "located on the node, which no longer has it"
    finally:
        await owner.stop()
        await other.stop()
