"""A node on another engine behind the same address (another key prefix or database of the
same Redis here): clients that land on it resuming a session of the real cluster are cut
off from what the cluster publishes, while ``/health`` says 200. The node says so in its
log, once per unknown node, naming the fix. Real ``redis-server`` on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ladder import Ladder, LadderError
from ladder.engine.redis import RedisEngine
from ladder.engine.shards import ShardedEngine
from ladder.protocol.frames import Hello, Previous
from ladder.server import cluster as cluster_module
from ladder.server.auth import AuthRequest
from ladder.server.foreign import ForeignNodes
from ladder.server.hub import internals
from tests.engine.conftest import shards_url
from tests.server.harness import Peer, started_hubs
from tests.support.redis import RedisServer, redis_servers
from tests.support.waiting import until

MakeHub = Callable[..., Awaitable[Ladder]]


@pytest.fixture
async def make_hub(redis_server: RedisServer) -> AsyncIterator[MakeHub]:
    async with started_hubs() as start:

        async def make(database: int = 0, prefix: str = "ladder") -> Ladder:
            url = f"redis://127.0.0.1:{redis_server.port}/{database}"
            return await start(Ladder(engine=RedisEngine(url, prefix=prefix)))

        yield make


def told(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings about nodes without a trace."""
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "no trace" in r.getMessage()]


def nodes_named(lines: list[str]) -> set[str]:
    return {line.split("made by node ")[1].split(",")[0] for line in lines}


async def test_resumes_of_sessions_of_nodes_on_another_prefix_are_told_once_per_node(
    make_hub: MakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    cluster, other, stray = await make_hub(), await make_hub(), await make_hub(prefix="elsewhere")
    peers = [await Peer.open(cluster) for _ in range(2)] + [await Peer.open(other)]
    router = internals(stray).router
    with caplog.at_level(logging.INFO, "ladder"):
        for _ in range(3):
            for peer in peers:
                with pytest.raises(LadderError) as unknown:
                    await router.route(peer.session.sid, peer.session.state.token, stream=True)
                assert unknown.value.code == "unknown_session"
        # A new session naming a lost one (psid) of the other engine counts too.
        request = AuthRequest(headers={}, cookies={}, token=None, client="test", transport="websocket")
        lost = peers[0].session
        await router.open(Hello(v=1, prev=Previous(lost.sid, lost.state.token, ())), request)
    lines = told(caplog)
    assert len(lines) == 2, lines  # one per node, however many sessions and resumes
    assert nodes_named(lines) == {cluster.engine.node_id, other.engine.node_id}
    assert all("the same engine URL" in line and "restarted without persistence" in line for line in lines)
    assert internals(stray).cluster.counters["unknown_node"] == 10
    assert 'ladder_cluster_total{kind="unknown_node"} 10.0' in internals(stray).metrics.render().decode()


async def test_sessions_of_a_node_on_another_database_are_told_even_when_they_move_in(
    make_hub: MakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    """Pub/sub is one for every database of a server: a session of a node on database 0
    moves to a node on database 1 as if they shared an engine, while its records and its
    channels' history stay behind."""
    cluster, stray = await make_hub(0), await make_hub(1)
    peers = [await Peer.open(cluster) for _ in range(4)]
    with caplog.at_level(logging.INFO, "ladder"):
        for peer in peers:
            moved = await internals(stray).router.route(peer.session.sid, peer.session.state.token, stream=True)
            assert moved.sid == peer.session.sid
    lines = told(caplog)
    assert len(lines) == 1 and nodes_named(lines) == {cluster.engine.node_id}, lines
    assert internals(stray).cluster.counters["unknown_node"] == 4


async def test_sessions_of_a_node_that_stopped_on_the_same_engine_are_not_told(
    make_hub: MakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    """A node that died lately is known: its sessions are legitimately gone."""
    gone, survivor = await make_hub(), await make_hub()
    peer = await Peer.open(gone)
    sid, token = peer.session.sid, peer.session.state.token
    await gone.stop()
    with caplog.at_level(logging.INFO, "ladder"), pytest.raises(LadderError) as unknown:
        await internals(survivor).router.route(sid, token, stream=True)
    assert unknown.value.code == "unknown_session"
    assert told(caplog) == []
    assert internals(survivor).cluster.counters["unknown_node"] == 0


async def test_a_node_listing_other_servers_than_one_sharing_a_server_with_it_is_told_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two nodes share one Redis server of their lists and not the other: each knows the
    other (its trace is on the shared server), so nothing was said, while every channel the
    two lists place differently was split between them. The trace now names the servers a
    node lists, and a session of a node whose list differs is told of, once, naming both
    lists; a node listing the same servers in another order is one of the cluster."""
    with redis_servers(3) as (first, second, third):
        async with started_hubs() as start:
            node = await start(Ladder(engine=ShardedEngine(shards_url([first, second]))))
            reordered = await start(Ladder(engine=ShardedEngine(shards_url([second, first]))))
            stray = await start(Ladder(engine=ShardedEngine(shards_url([first, third]))))
            sessions = [(await Peer.open(node)).session for _ in range(3)]
            with caplog.at_level(logging.INFO, "ladder"):
                for hub in (reordered, stray):
                    for session in sessions:
                        with contextlib.suppress(LadderError):  # (moved, or not found: either)
                            await internals(hub).router.route(session.sid, session.state.token, stream=True)
    lines = [r.getMessage() for r in caplog.records if "other Redis servers" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"made by node {node.engine.node_id}," in lines[0]
    assert f"127.0.0.1:{second.port}" in lines[0] and f"127.0.0.1:{third.port}" in lines[0]
    assert "must list the same servers" in lines[0]
    assert internals(stray).cluster.counters["other_servers"] == 3
    assert internals(reordered).cluster.counters["other_servers"] == 0


async def test_an_engine_that_says_no_trace_of_its_own_compares_nothing() -> None:
    """An engine offering ``node_trace`` without a ``trace`` of its own (the contract asks for
    both) has nothing to compare: a node it knows is one of the cluster, not one listing
    other servers (each of its sessions was told of as such)."""

    class Engine:
        node_id = "self"

        async def node_trace(self, node: str) -> bytes | None:
            return b"1" if node == "known" else None

    counters: dict[str, int] = {}
    foreign = ForeignNodes(Engine(), counters)  # type: ignore[arg-type]
    for sid in ("known.a", "known.b", "ghost.c"):
        await foreign.check(sid)
    assert counters == {"unknown_node": 1, "other_servers": 0}


async def test_a_node_on_another_database_is_not_declared_dead_while_it_holds_a_forwarded_poll(
    make_hub: MakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node on database 1 forwarding a long poll to the node on database 0 that holds the
    session (pub/sub is one for both) checked the holder's lease in its own database, found
    none, declared the live holder dead (a tombstone in database 1) and told the client
    ``unknown_session: node ... stopped answering for over 10 s`` about a second into the
    poll. A lease is judged only where the node left its trace."""
    monkeypatch.setattr(cluster_module, "WATCH_EVERY", 0.05)  # (1 s: the watcher asks sooner)
    holder, stray = await make_hub(0), await make_hub(1)
    peer = await Peer.open(holder)
    sid, token = peer.session.sid, peer.session.state.token
    judged: list[bool] = []
    declare = stray.engine.declare_dead  # type: ignore[attr-defined]

    async def spied(node: str) -> bool:
        judged.append(await declare(node))
        return judged[-1]

    monkeypatch.setattr(stray.engine, "declare_dead", spied)
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    polling = asyncio.create_task(
        internals(stray).router.forward_poll(
            holder.engine.node_id, sid, token, transport="longpoll", ack=0, greet=False,
            encoding="json", disconnected=gone,
        )
    )
    await until(lambda: len(judged) >= 3 or polling.done(), "the watcher judged the holder thrice", timeout=5)
    assert not polling.done(), polling.exception() if not polling.cancelled() else "cancelled"
    assert judged == [False] * len(judged)
    assert await holder.send(sid, "after", {"n": 1})
    async with asyncio.timeout(5):
        answer = await polling
    assert b'"ev":"after"' in answer
    assert not await stray.engine.declare_dead(holder.engine.node_id)  # type: ignore[attr-defined]
