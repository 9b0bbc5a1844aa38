"""``hub.send_user`` reaches every session of the user on every node (issue 10, finding 3).

Two ``ladder serve`` nodes on a real Redis; clients connect to each node directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from ladder import Client
from ladder.client import Push
from tests.net.test_cluster import CONFIG, LOGS
from tests.support.redis import RedisServer
from tests.support.server import LadderServer


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[LadderServer]]:
    LOGS.mkdir(exist_ok=True)
    with RedisServer() as redis, contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                LadderServer({**CONFIG, "require_token": True}, engine=redis.url, log=LOGS / f"user{i}.log")
            )
            for i in range(2)
        ]


async def test_send_user_reaches_the_user_on_every_node(nodes: list[LadderServer]) -> None:
    first, second = nodes
    pushes: asyncio.Queue[Push] = asyncio.Queue()
    async with contextlib.AsyncExitStack() as stack:
        alice_1 = await stack.enter_async_context(Client(first.url, token="user:alice"))
        alice_1.on("push", pushes.put_nowait)
        bob_2 = await stack.enter_async_context(Client(second.url, token="user:bob"))

        reached = await bob_2.call("push", {"user": "alice", "event": "hello", "data": 1})
        assert reached == 1, "alice's one session, on the other node, is counted"
        got = await asyncio.wait_for(pushes.get(), 5)
        assert (got.event, got.data) == ("hello", 1)

        alice_2 = await stack.enter_async_context(Client(second.url, token="user:alice"))
        alice_2.on("push", pushes.put_nowait)
        reached = await bob_2.call("push", {"user": "alice", "event": "again", "data": 2})
        assert reached == 2, "one session on each node"
        got_both = [await asyncio.wait_for(pushes.get(), 5) for _ in range(2)]
        assert [(p.event, p.data) for p in got_both] == [("again", 2)] * 2
        assert await bob_2.call("push", {"user": "nobody", "event": "x"}) == 0
        assert pushes.empty(), "each session got each push once"
