"""The Redis listener never leaves a channel unsubscribed (a fake pub/sub in addition to the
real-Redis tests: the window it checks is an interleaving, hard to hit on purpose)."""

from __future__ import annotations

import asyncio
from typing import Any

from ladder.engine.redis.listener import Listener


class _Link:
    node_id = "n1"
    all_nodes = "all"

    def k(self, kind: str, name: str) -> str:
        return f"{kind}:{name}"

    def node_keys(self) -> list[str]:
        return [self.k("n", self.node_id), self.all_nodes]

    def listener_client(self) -> Any:
        return _Client(self)


class _PubSub:
    def __init__(self) -> None:
        self.keys: list[str] = []
        self.first = asyncio.Event()
        self.release = asyncio.Event()
        self.closed = asyncio.Event()

    async def connect(self) -> None:
        return None

    async def subscribe(self, *keys: str) -> None:
        self.keys.extend(keys)
        if not self.first.is_set():
            self.first.set()
            await self.release.wait()  # the first SUBSCRIBE is held (a stalled link)

    async def get_message(self, **_: Any) -> None:
        await self.closed.wait()
        raise ConnectionError("closed")

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        self.closed.set()


class _Client:
    def __init__(self, link: _Link) -> None:
        self.pubsub_ = _PubSub()

    def pubsub(self) -> _PubSub:
        return self.pubsub_

    async def aclose(self) -> None:
        return None


async def test_a_channel_listened_while_the_connection_is_set_up_is_subscribed() -> None:
    channels = ["a"]
    caught_up = 0

    async def catch_up() -> None:
        nonlocal caught_up
        caught_up += 1

    async def dispatch(key: bytes, data: bytes) -> None:
        return None

    listener = Listener(_Link(), lambda: list(channels), catch_up, dispatch, lambda error: None)  # type: ignore[arg-type]
    client = listener._client = _Client(_Link())  # type: ignore[assignment]
    pubsub = client.pubsub_
    task = asyncio.create_task(listener._listen_once())
    await pubsub.first.wait()
    # the engine listens to "b" now: the listener is not ok yet, so it does not subscribe it
    channels.append("b")
    await listener.subscribe("c:b")
    pubsub.release.set()
    await listener.subscribed.wait()
    assert listener.ok
    assert "c:b" in pubsub.keys, pubsub.keys  # before the fix: ['n:n1', 'all', 'c:a'] only
    assert caught_up == 2  # and what "b" missed was caught up after subscribing it
    await listener.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
