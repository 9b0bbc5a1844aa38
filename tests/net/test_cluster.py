"""Three server processes on Redis behind real nginx (round-robin, no affinity)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ladder import Client, LadderError
from ladder.client import Connected, Publication, ResyncNeeded, Subscription
from tests.support.nginx import Nginx
from tests.support.redis import RedisServer
from tests.support.server import LadderServer, cluster_work
from tests.support.subscriptions import take

RUNGS = ["websocket", "sse", "longpoll", "poll"]
CONFIG = {"heartbeat": 2.0, "session_ttl": 60.0, "poll_timeout": 5.0}


@dataclass
class Cluster:
    redis: RedisServer
    nodes: list[LadderServer]
    lb: Nginx

    @property
    def url(self) -> str:
        return self.lb.url

    def health(self, node: LadderServer) -> dict[str, Any]:
        return httpx.get(f"{node.url}/health", timeout=5).json()


LOGS = Path(tempfile.gettempdir()) / "ladder-cluster-logs"


@contextlib.contextmanager
def cluster(*, persistent: bool = False) -> Iterator[Cluster]:
    """Redis, three nodes and nginx; the nodes' logs go to LOGS (read them when a test fails)."""
    LOGS.mkdir(exist_ok=True)
    with RedisServer(persistent=persistent) as redis:
        nodes = [LadderServer(CONFIG, engine=redis.url, log=LOGS / f"node{i}.log") for i in range(3)]
        try:
            for node in nodes:
                node.start()
            with Nginx([node.port for node in nodes]) as lb:
                yield Cluster(redis, nodes, lb)
        finally:
            for node in nodes:
                node.stop()


@pytest.fixture(scope="module")
def shared() -> Iterator[Cluster]:
    with cluster() as c:
        yield c


@pytest.fixture
def fresh() -> Iterator[Cluster]:
    with cluster() as c:
        yield c


async def test_clients_on_every_rung_see_each_other_once_in_order(shared: Cluster) -> None:
    before = [cluster_work(shared.health(node)) for node in shared.nodes]
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(shared.url, transports=[rung])) for rung in RUNGS]
        subs = [client.subscribe("chat:cluster") for client in clients]
        for sub in subs:
            await sub.ready()
        for n in range(25):
            for i, client in enumerate(clients):
                await client.publish("chat:cluster", {"from": RUNGS[i], "n": n})
        received = [await take(sub, 100) for sub in subs]
        for got in received:
            assert [p.offset for p in got] == list(range(1, 101)), "once each, in channel order"
            assert sorted((p.data["from"], p.data["n"]) for p in got) == sorted(
                (rung, n) for rung in RUNGS for n in range(25)
            )
        for client in clients:
            members = await client.presence("chat:cluster")
            assert len(members) == 4, "presence lists every member, whichever node was asked"
        healths = [shared.health(node) for node in shared.nodes]
        took_part = [
            h["node"]
            for h, was in zip(healths, before, strict=True)
            if h["sessions"] or cluster_work(h) > was
        ]
        assert len(took_part) == 3, "requests really were spread over the three nodes"


@pytest.mark.parametrize("rung", ["sse", "longpoll", "poll"])
async def test_http_rungs_work_with_every_request_on_another_node(shared: Cluster, rung: str) -> None:
    before = sum(shared.health(node)["served_for_others"] for node in shared.nodes)
    async with Client(shared.url, transports=[rung]) as client:
        sub = client.subscribe(f"feed:spread-{rung}")
        await sub.ready()
        for n in range(60):
            reply = await client.call("echo", n)
            assert reply["data"] == n and reply["session"] == client.session_id
            await client.emit("record", {"key": f"spread-{rung}", "value": n})
        await client.call("publish", {"channel": f"feed:spread-{rung}", "count": 100})
        assert [p.offset for p in await take(sub, 100)] == list(range(1, 101))
        await client.flush(timeout=10)
        assert await client.call("records", f"spread-{rung}") == list(range(60)), "each emit applied once"
    served = sum(shared.health(node)["served_for_others"] for node in shared.nodes) - before
    print(f"\n{rung}: {served} requests served by a node for another node")
    assert served > 20, "requests landed on nodes that did not hold the session, and worked"


async def test_sigkill_a_node_mid_stream_and_lose_nothing(fresh: Cluster) -> None:
    count = 1000
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(Client(fresh.url, transports=[rung])) for rung in RUNGS * 2
        ]
        subs = [client.subscribe("feed:kill") for client in clients]
        for sub in subs:
            await sub.ready()
        victim = fresh.nodes[0]
        survivor = fresh.nodes[1]
        admin = await stack.enter_async_context(Client(survivor.url, transports=["websocket"]))
        await admin.call("publish_through", {"channel": "feed:kill", "count": count, "interval": 0.004})
        consumers = [asyncio.create_task(take(sub, count, timeout=120)) for sub in subs]
        await asyncio.sleep(1.0)  # mid-stream
        victim.kill()
        killed_at = time.perf_counter()
        results = await asyncio.gather(*consumers)
        for client, got in zip(clients, results, strict=True):
            assert [p.data["n"] for p in got] == list(range(count)), f"{client.transport}: every message once"
        print(
            f"\nall {len(clients)} clients had all {count} messages {time.perf_counter() - killed_at:.1f} s after the kill"
        )


async def test_redis_restart_mid_stream_resumes_with_recovery_or_resync(fresh: Cluster) -> None:
    count = 600
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(fresh.url, transports=[rung])) for rung in RUNGS]
        resyncs: list[list[ResyncNeeded]] = [[] for _ in clients]
        for client, seen in zip(clients, resyncs, strict=True):
            client.on("resync", seen.append)
            for name in ("session_lost", "disconnected", "connected"):
                client.on(name, lambda e, c=client: print(f"  {c.rungs[0]}: {e}"))
        subs = [client.subscribe("feed:redis") for client in clients]
        for sub in subs:
            await sub.ready()
        admin = await stack.enter_async_context(Client(fresh.nodes[1].url, transports=["websocket"]))
        await admin.call("publish_through", {"channel": "feed:redis", "count": count, "interval": 0.005})
        consumers = [asyncio.create_task(collect_until(sub, "n", count - 1, timeout=120)) for sub in subs]
        await asyncio.sleep(1.0)
        fresh.redis.restart()  # no persistence: the stream and its epoch are gone
        results = await asyncio.gather(*consumers)
        for node in fresh.nodes:
            assert node.proc is not None and node.proc.poll() is None, "no server crashed"
            assert fresh.health(node)["ok"], "every node is healthy again by itself"
        for got, seen in zip(results, resyncs, strict=True):
            epochs = [p.epoch for p in got]
            changes = sum(1 for a, b in itertools.pairwise(epochs) if a != b)
            # Within an epoch offsets follow each other: any gap is a new epoch, announced.
            for a, b in itertools.pairwise(got):
                if a.epoch == b.epoch:
                    assert b.offset == a.offset + 1, "never a silent gap"
            assert changes <= len(seen), "every change of epoch came with a resync"
            for a, b in itertools.pairwise(got):  # and said where the stream goes on from
                if a.epoch != b.epoch:
                    told = [event.offset for event in seen if event.epoch == b.epoch]
                    assert b.offset - 1 in told, (b, seen)
            assert got[-1].data["n"] == count - 1
        summary = [
            (c.transport, len(got), len(seen)) for c, got, seen in zip(clients, results, resyncs, strict=True)
        ]
        print(f"\n(rung, messages received, resyncs) after a Redis restart: {summary}")


async def collect_until(sub: Subscription, key: str, last: int, timeout: float) -> list[Publication]:
    out: list[Publication] = []
    try:
        async with asyncio.timeout(timeout):
            async for pub in sub:
                out.append(pub)
                if pub.data[key] == last:
                    return out
    except TimeoutError:
        client = sub.client
        tail = [(p.epoch, p.offset, p.data[key]) for p in out[-3:]]
        raise AssertionError(
            f"{client.transport or client.rungs} stalled: state={client.state} session={client.session_id} "
            f"sub={sub!r} last received={tail}"
        ) from None
    return out


async def test_redis_down_means_publish_fails_clearly_within_a_second(fresh: Cluster) -> None:
    async with Client(fresh.url, transports=["websocket"]) as client:
        await client.publish("open:x", 1)
        fresh.redis.stop()
        started = time.perf_counter()
        with pytest.raises(LadderError) as refused:
            await client.publish("open:x", 2)
        took = time.perf_counter() - started
    print(f"\npublish refused in {took * 1000:.0f} ms: {refused.value}")
    assert refused.value.code == "engine_unavailable" and took < 1.0
    async with httpx.AsyncClient() as http:
        statuses = [(await http.get(f"{node.url}/health")).status_code for node in fresh.nodes]
    assert statuses == [503, 503, 503], "health fails while Redis is unreachable"


def _unused(_: AsyncIterator[Any]) -> None: ...


@pytest.mark.parametrize("rung", ["websocket", "sse"])
async def test_a_stream_resuming_on_another_node_moves_the_session_without_loss(
    shared: Cluster, rung: str
) -> None:
    before = sum(shared.health(node)["moved_in"] for node in shared.nodes)
    channel = f"feed:move-{rung}"
    connects: asyncio.Queue[Connected] = asyncio.Queue()
    client = Client(shared.url, transports=[rung])
    client.on("connected", connects.put_nowait)
    async with client, Client(shared.nodes[2].url) as admin:
        await connects.get()
        sub = client.subscribe(channel)
        await sub.ready()
        session = client.session_id
        await admin.call("publish_through", {"channel": channel, "count": 600, "interval": 0.004})
        consumer = asyncio.create_task(take(sub, 600, timeout=60))
        for n in range(6):  # drop the stream; its next connection lands on another node
            assert client._conn is not None
            client._conn.interrupt(f"test: drop {n}")
            await client.emit("record", {"key": f"move-{rung}", "value": n})
            assert (await asyncio.wait_for(connects.get(), 15)).resumed
            # One more request per cycle: a reconnect makes three (GET, the stream's proof,
            # the emit), which round-robin over three nodes would send back to the same one.
            assert (await client.call("echo", n))["data"] == n
        got = await consumer
        assert [p.data["n"] for p in got] == list(range(600)), "nothing lost or doubled across the moves"
        assert client.session_id == session, "the same session, resumed each time"
        await client.flush(timeout=10)
        assert await client.call("records", f"move-{rung}") == list(range(6))
    moved = sum(shared.health(node)["moved_in"] for node in shared.nodes) - before
    print(f"\n{rung}: the session moved {moved} times between nodes")
    assert moved >= 1, "the session did move between nodes"
