"""Three ``ladder serve`` nodes behind nginx (round-robin, no affinity) over several Redis
servers and over a Redis Cluster: every rung delivers exactly once in order on channels of
every shard, and a server killed mid-stream costs only its share."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ladder import Client
from ladder.client import Publication, ResyncNeeded, Subscription
from ladder.engine.shards import Placement
from tests.support.nginx import Nginx
from tests.support.redis import RedisServer
from tests.support.redis_cluster import RedisCluster
from tests.support.server import LadderServer, cluster_work
from tests.support.subscriptions import take

RUNGS = ["websocket", "sse", "longpoll", "poll"]
CONFIG = {"heartbeat": 2.0, "session_ttl": 60.0, "poll_timeout": 5.0}
LOGS = Path(tempfile.gettempdir()) / "ladder-shards-logs"


@dataclass
class Deployment:
    nodes: list[LadderServer]
    lb: Nginx
    place: Any
    """channel or session id -> shard index (which server, or which primary, holds it)."""
    servers: list[RedisServer]

    @property
    def url(self) -> str:
        return self.lb.url

    def channel_on(self, shard: int, stem: str) -> str:
        return next(f"{stem}:{n}" for n in range(10_000) if self.place(f"{stem}:{n}") == shard)


@contextlib.contextmanager
def deployment(engine: str, place: Any, servers: list[RedisServer]) -> Iterator[Deployment]:
    LOGS.mkdir(exist_ok=True)
    nodes = [LadderServer(CONFIG, engine=engine, log=LOGS / f"node{i}.log") for i in range(3)]
    try:
        for node in nodes:
            node.start()
        with Nginx([node.port for node in nodes]) as lb:
            yield Deployment(nodes, lb, place, servers)
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="module")
def three_servers() -> Iterator[Deployment]:
    servers = [RedisServer() for _ in range(3)]
    try:
        for server in servers:
            server.start()
        names = [f"127.0.0.1:{server.port}" for server in servers]
        placement = Placement([(name, n) for n, name in enumerate(names)])
        with deployment("redis://" + ",".join(names) + "/0", placement.of, servers) as d:
            yield d
    finally:
        for server in servers:
            server.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Deployment]:
    with RedisCluster() as redis_cluster:
        primaries = redis_cluster.primaries()

        def place(name: str) -> int:
            owner = redis_cluster.primary_of(f"ladder:m:{{{name}}}")
            return next(n for n, node in enumerate(primaries) if node.port == owner.port)

        with deployment(redis_cluster.url, place, primaries) as d:
            yield d


@pytest.mark.parametrize("kind", ["three_servers", "cluster"])
async def test_every_rung_exactly_once_in_order_on_every_shard(
    request: pytest.FixtureRequest, kind: str
) -> None:
    d: Deployment = request.getfixturevalue(kind)
    channels = [d.channel_on(shard, "chat:spread") for shard in range(3)]
    async with httpx.AsyncClient() as http:
        before = [cluster_work((await http.get(f"{node.url}/health")).json()) for node in d.nodes]
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(d.url, transports=[rung])) for rung in RUNGS]
        subs = [[client.subscribe(channel) for channel in channels] for client in clients]
        for sub in itertools.chain.from_iterable(subs):
            await sub.ready()
        for n in range(10):
            for i, client in enumerate(clients):
                for channel in channels:
                    await client.publish(channel, {"from": RUNGS[i], "n": n})
        for client_subs in subs:
            for sub in client_subs:
                got = await take(sub, 40)
                assert [p.offset for p in got] == list(range(1, 41)), "once each, in channel order"
                assert sorted((p.data["from"], p.data["n"]) for p in got) == sorted(
                    (rung, n) for rung in RUNGS for n in range(10)
                )
    async with httpx.AsyncClient() as http:
        healths = [(await http.get(f"{node.url}/health")).json() for node in d.nodes]
        health = healths[0]
    took_part = [h["node"] for h, was in zip(healths, before, strict=True) if cluster_work(h) > was]
    assert len(took_part) == 3, "requests really were spread over the three nodes"
    print(f"\n{kind}: channels {channels} on shards 0, 1, 2; /health shards: {health['shards']}")
    assert health["ok"] and health["shards_healthy"] == 3 and len(health["shards"]) == 3


async def consume(sub: Subscription, last: int, timeout: float) -> tuple[list[Publication], float]:
    """Publications until ``n == last``, and the longest wait between two of them."""
    out: list[Publication] = []
    longest, previous = 0.0, time.monotonic()
    async with asyncio.timeout(timeout):
        async for pub in sub:
            now = time.monotonic()
            longest, previous = max(longest, now - previous), now
            out.append(pub)
            if pub.data["n"] == last:
                break
    return out, longest


@dataclass
class Streams:
    """One client per rung, each receiving two channels' streams (``count`` publications at
    10 ms): ``keep`` on a surviving shard, ``lost`` on ``victim``, the shard to be killed
    (the one holding the fewest of these clients' sessions: a session whose record is there
    is part of its share, and may wait for it to come back)."""

    clients: list[Client]
    victim: int
    keep: str
    lost: str
    resyncs: list[list[ResyncNeeded]]
    kept: list[asyncio.Task[tuple[list[Publication], float]]]
    gone: list[asyncio.Task[tuple[list[Publication], float]]]
    on_victim: list[bool]
    """Per client, whether its session's record is on ``victim``: found before the kill
    (after it, a cluster names the promoted replica, none of the primaries placed)."""


async def streaming(
    stack: contextlib.AsyncExitStack, d: Deployment, count: int, stems: tuple[str, str]
) -> Streams:
    """Start the streams, and return a second into them (the moment to kill)."""
    clients = [await stack.enter_async_context(Client(d.url, transports=[rung])) for rung in RUNGS]
    held = [sum(1 for c in clients if d.place(c.session_id or "") == shard) for shard in range(3)]
    victim = held.index(min(held))
    keep, lost = d.channel_on((victim + 1) % 3, stems[0]), d.channel_on(victim, stems[1])
    resyncs: list[list[ResyncNeeded]] = [[] for _ in clients]
    for client, seen in zip(clients, resyncs, strict=True):
        client.on("resync", seen.append)
    kept_subs = [client.subscribe(keep) for client in clients]
    lost_subs = [client.subscribe(lost) for client in clients]
    for sub in kept_subs + lost_subs:
        await sub.ready()
    admin = await stack.enter_async_context(Client(d.nodes[1].url, transports=["websocket"]))
    for channel in (keep, lost):
        await admin.call("publish_through", {"channel": channel, "count": count, "interval": 0.01})
    kept = [asyncio.create_task(consume(sub, count - 1, 60)) for sub in kept_subs]
    gone = [asyncio.create_task(consume(sub, count - 1, 60)) for sub in lost_subs]
    await asyncio.sleep(1.0)
    on_victim = [d.place(client.session_id or "") == victim for client in clients]
    return Streams(clients, victim, keep, lost, resyncs, kept, gone, on_victim)


def surviving_stream(
    streams: Streams, results: list[tuple[list[Publication], float]], count: int, what: str
) -> list[str]:
    """Check the surviving shard's channel: every publication once, in order, on every rung,
    and no gap over the rung's bound for a session not held on the killed ``what``."""
    lines = []
    for client, (got, longest), on_victim in zip(streams.clients, results, streams.on_victim, strict=True):
        keep = streams.keep
        assert [p.data["n"] for p in got] == list(range(count)), f"{client.rungs[0]}: {keep} lost or doubled"
        assert [p.offset for p in got] == list(range(1, count + 1))
        if not on_victim:  # (a session whose record is on the killed shard is its share)
            # A polling rung's request forwarded through the killed server is answered
            # engine_unavailable at once and sent again (before: the whole hold, 8 s); its
            # retry pace adds to the gap (1.05 s seen once), so polling is held to 2 s.
            bound = 1.0 if client.rungs[0] in ("websocket", "sse") else 2.0
            assert longest < bound, f"{client.rungs[0]}: {keep} stalled {longest:.2f} s"
        lines.append(
            f"{client.rungs[0]} longest gap {longest * 1000:.0f} ms"
            + (f" (session on the killed {what})" if on_victim else "")
        )
    return lines


async def test_one_of_three_servers_killed_mid_stream_costs_only_its_share(three_servers: Deployment) -> None:
    """(Last in the module: it kills and restarts one of the servers.)"""
    d, count = three_servers, 500
    async with contextlib.AsyncExitStack() as stack:
        streams = await streaming(stack, d, count, ("feed:keep", "feed:lost"))
        server = d.servers[streams.victim]
        assert server.proc is not None
        server.proc.kill()
        await asyncio.to_thread(server.stop)
        down_at = time.monotonic()
        async with httpx.AsyncClient() as http:
            await asyncio.sleep(2.0)
            health = (await http.get(f"{d.nodes[0].url}/health")).json()
            metrics = (await http.get(f"{d.nodes[2].url}/metrics")).text
        await asyncio.to_thread(server.start)  # empty: the lost channel's stream starts anew
        print(
            f"\nserver down {time.monotonic() - down_at:.1f} s; /health meanwhile: ok={health['ok']}, "
            f"shards_healthy={health['shards_healthy']}"
        )
        assert health["ok"] and health["shards_healthy"] == 2
        shard_lines = sorted(
            line for line in metrics.splitlines() if line.startswith("ladder_engine_shard_healthy{")
        )
        print("\n".join(shard_lines))
        assert [line.endswith(" 0.0") for line in shard_lines].count(True) == 1 and len(shard_lines) == 3
        assert f'shard="127.0.0.1:{server.port}"}} 0.0' in metrics
        kept_results = await asyncio.gather(*streams.kept)
        lost_results = await asyncio.gather(*streams.gone)
    keep, lost = streams.keep, streams.lost
    lines = surviving_stream(streams, kept_results, count, "server")
    for client, (got, _), seen in zip(streams.clients, lost_results, streams.resyncs, strict=True):
        for a, b in itertools.pairwise(got):
            if a.epoch == b.epoch:
                assert b.offset == a.offset + 1, f"{client.rungs[0]}: a silent gap on {lost}"
        changes = sum(1 for a, b in itertools.pairwise(got) if a.epoch != b.epoch)
        assert changes <= len(seen), "every new stream came with a resync"
        assert got[-1].data["n"] == count - 1, "the failed shard's channel flows again"
        lines.append(f"{client.rungs[0]} on {lost}: {len(got)} received, {len(seen)} resyncs")
    print(f"on {keep} (a surviving server): every rung {count}/{count} once in order; " + "; ".join(lines))


async def test_a_cluster_primary_killed_mid_stream_costs_only_its_share(cluster: Deployment) -> None:
    """(Last in the module: the cluster goes on with the killed primary's replica in its place.)"""
    d, count = cluster, 400
    async with contextlib.AsyncExitStack() as stack:
        streams = await streaming(stack, d, count, ("feed:ckeep", "feed:clost"))
        primary = d.servers[streams.victim]
        assert primary.proc is not None
        primary.proc.kill()  # SIGKILL: its replica takes over after the cluster's node timeout
        await asyncio.to_thread(primary.stop)
        kept_results = await asyncio.gather(*streams.kept)
        lost_results = await asyncio.gather(*streams.gone)
    keep, lost = streams.keep, streams.lost
    lines = surviving_stream(streams, kept_results, count, "primary")
    for client, (got, _), seen in zip(streams.clients, lost_results, streams.resyncs, strict=True):
        # The test's publisher sends a publish again when it failed; one whose reply was lost
        # with the primary may have been stored too (docs/ops.md: "a publish whose outcome is
        # unknown"): that value then comes again, right after itself, at the next offset.
        values = [n for n, _ in itertools.groupby(p.data["n"] for p in got)]
        assert values == sorted(set(values)), f"{client.rungs[0]}: {lost} reordered"
        for a, b in itertools.pairwise(got):
            if a.epoch == b.epoch:
                assert b.offset == a.offset + 1, f"{client.rungs[0]}: a silent gap on {lost}"
        if not seen:
            assert values == list(range(count)), f"{client.rungs[0]}: {lost} recovered from the replica"
        lines.append(f"{client.rungs[0]} on {lost}: {len(got)}/{count}, {len(seen)} resyncs")
    print(
        f"\ncluster primary killed: on {keep} every rung {count}/{count} once in order, longest gap: "
        + "; ".join(lines)
    )
