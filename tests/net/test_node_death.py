"""A node that dies after applying a client message, before the client saw its
acknowledgement, does not get the message applied twice (issue 10, finding 4).

Three ``ladder serve`` nodes on a real Redis behind nginx. The ``fatal`` handler records
the message and then its node is SIGKILLed by itself at the last moment before anything
could tell the client: right after the idempotency record was written. The client finds
its session gone, starts a new one on another node and resends the message there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from ladder import Client
from ladder.client import SessionLost
from tests.net.test_cluster import Cluster
from tests.net.test_moving_sessions import recording_cluster
from tests.support.metrics import wait_for_metric
from tests.support.redis import RedisServer
from tests.support.server import LadderServer


@pytest.fixture
def doomed() -> Iterator[Cluster]:
    with recording_cluster() as c:
        yield c


@pytest.mark.parametrize("rung", ["websocket", "sse", "longpoll", "poll"])
@pytest.mark.parametrize("kind", ["call", "emit"])
async def test_a_message_applied_by_a_node_that_died_is_not_applied_again(
    doomed: Cluster, rung: str, kind: str
) -> None:
    key = f"death-{rung}-{kind}"
    lost: asyncio.Queue[SessionLost] = asyncio.Queue()
    client = Client(doomed.url, transports=[rung])
    client.on("session_lost", lost.put_nowait)
    async with client:
        assert (await client.call("echo", 1))["data"] == 1
        before = client.session_id
        if kind == "call":
            reply = await client.call("fatal", {"key": key, "value": 7}, timeout=60)
            assert reply == {"applied": 7}, "the real reply, kept by the dead node's record"
        else:
            await client.emit("fatal", {"key": key, "value": 7})
            await client.flush(timeout=60)
        await asyncio.wait_for(lost.get(), 30)
        assert client.session_id != before, "the session died with its node"
        records = await client.call("records", key)
        dead = [node for node in doomed.nodes if node.proc is not None and node.proc.poll() is not None]
    assert len(dead) == 1, "the node holding the session died"
    assert records == [7], "applied exactly once, on the node that died"


async def test_two_nodes_dying_in_a_row_apply_nothing_twice(doomed: Cluster) -> None:
    """Calls and emits in flight while the owner dies, then the next owner dies too."""
    client = Client(doomed.url, transports=["websocket"])
    async with client:
        assert (await client.call("echo", 0))["data"] == 0
        # Queued together: the first kills its node right after being applied; the rest is
        # carried to the successor, whose own first "fatal" kills it in turn.
        first = asyncio.ensure_future(client.call("fatal", {"key": "twice-a", "value": 1}, timeout=60))
        emitted = asyncio.ensure_future(client.emit("slow", {"key": "twice-e", "value": 2, "wait": 0}))
        second = asyncio.ensure_future(client.call("fatal", {"key": "twice-b", "value": 3}, timeout=60))
        assert await first == {"applied": 1}
        assert await second == {"applied": 3}
        await emitted
        await client.flush(timeout=60)
        records = [await client.call("records", key) for key in ("twice-a", "twice-e", "twice-b")]
    dead = [node for node in doomed.nodes if node.proc is not None and node.proc.poll() is not None]
    assert len(dead) == 2, "two owners died, one after the other"
    assert records == [[1], [2], [3]], "each applied exactly once"


async def test_a_long_poll_held_for_a_node_that_dies_is_answered_within_seconds() -> None:
    """Node B holds a long poll for a session that lives on node A; A is SIGKILLed. B waited
    the poll's whole hold (27 s) before telling the client its session was gone, so a
    long-polling client behind a balancer fell half a minute behind."""
    with RedisServer() as redis:
        config = {"poll_timeout": 25.0, "session_ttl": 60.0}
        owner, other = (LadderServer(config, engine=redis.url) for _ in range(2))
        with owner, other:
            async with httpx.AsyncClient(timeout=40) as http:
                opened = await http.get(f"{owner.url}/longpoll", params={"v": 1})
                welcome = orjson.loads(opened.content.split(b"\n")[0])
                held = asyncio.ensure_future(
                    http.get(
                        f"{other.url}/longpoll",
                        params={"sid": welcome["sid"], "ack": 0},
                        headers={"x-ladder-rt": welcome["rt"]},
                    )
                )
                await wait_for_metric(http, other.url, "ladder_cluster_total", 1.0, kind="forwarded")
                owner.kill()
                killed = time.monotonic()
                answer = await asyncio.wait_for(held, 30)
                took = time.monotonic() - killed
    assert answer.status_code == 404 and answer.json()["code"] == "unknown_session", answer.text
    assert took < 12, f"answered {took:.1f} s after the owner died (the poll's hold is 25 s)"
