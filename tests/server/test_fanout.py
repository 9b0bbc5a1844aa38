"""Fan-out encodes a publication once and creates no task per recipient."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from ladder.protocol import codec as codec_module
from ladder.protocol.codec import JSON, MSGPACK
from ladder.server.hub import internals
from ladder.server.session import Waker
from tests.server.harness import Peer, make_hub

RECIPIENTS = 1000


@pytest.mark.pure
async def test_publication_is_encoded_once_and_no_task_is_created_per_recipient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = make_hub()
    peers = [await Peer.open(hub) for _ in range(RECIPIENTS)]
    for peer in peers:
        await peer.request({"t": "sub", "ch": "room"})

    # Real writers: one coroutine per connection, asleep on its waker, as the drivers run.
    written: list[bytes] = []

    async def writer(peer: Peer, waker: Waker, codec: Any) -> None:
        await waker.wait()
        _, frames = peer.session.state.take(peer.att, internals(hub).settings.clock())
        written.extend(frame.encode(codec, seq) for seq, frame in frames)

    writers = []
    for n, peer in enumerate(peers):
        waker = Waker()
        peer.att.wake = waker
        writers.append(asyncio.create_task(writer(peer, waker, MSGPACK if n % 2 else JSON)))
    await asyncio.sleep(0)  # every writer is now asleep on its waker

    calls: Counter[str] = Counter()
    data = {"text": "x" * 100}
    for name, codec in (("json", JSON), ("msgpack", MSGPACK)):
        for method in ("encode", "tail"):
            original = getattr(codec, method)

            def counted(*args: Any, _original: Any = original, _key: str = f"{name}.{method}") -> Any:
                calls[_key] += 1
                if args and args[0] is data:
                    calls[f"{_key}(data)"] += 1
                return _original(*args)

            monkeypatch.setattr(codec, method, counted)
    tasks_created = 0
    loop = asyncio.get_running_loop()
    previous_factory = loop.get_task_factory()

    def counting_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        nonlocal tasks_created
        tasks_created += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting_factory)
    try:
        await hub.publish("room", data)
        await asyncio.gather(*writers)
    finally:
        loop.set_task_factory(previous_factory)

    assert len(written) == RECIPIENTS, "every recipient got the publication"
    assert calls["json.encode(data)"] == 1 and calls["msgpack.encode(data)"] == 1, (
        f"data encoded once: {calls}"
    )
    # Besides the data, only the channel name and offset are encoded: per publication, not per recipient.
    assert sum(n for key, n in calls.items() if "(data)" not in key) <= 5, calls
    assert tasks_created == 0, "no task was created for the fan-out"
    assert codec_module.JSON is JSON
    await hub.stop()
