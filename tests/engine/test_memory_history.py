"""The memory engine's history trimming, whatever a channel's ``history_ttl``."""

from __future__ import annotations

import gc
import tracemalloc

from ladder.engine.base import ChannelOptions, Position
from ladder.engine.memory import MemoryEngine
from ladder.protocol.codec import Payload
from tests.engine.conftest import Sink
from tests.server.harness import Clock


async def test_a_history_ttl_that_trims_a_publication_as_it_goes_in_still_publishes_it() -> None:
    """With ``history_ttl`` 0 the entry just appended was trimmed, then read back
    (``IndexError``) after its offset was taken: every publish failed and used up an offset.
    The engine takes any ttl (what ChannelOptions lets through is ChannelOptions's to say)."""
    clock = Clock()
    engine, sink = MemoryEngine(clock=clock, sweep_every=5.0), Sink()
    await engine.start(sink)
    try:
        options = ChannelOptions(history_size=10)
        object.__setattr__(options, "history_ttl", 0.0)  # (whether or not ChannelOptions takes it)
        await engine.listen("t0")
        offsets = [(await engine.publish("t0", Payload.of(n), options)).offset for n in range(3)]
        assert offsets == [1, 2, 3]
        assert [(p.offset, p.data) for p in sink.log if not isinstance(p, tuple)] == [(1, 0), (2, 1), (3, 2)], "delivered live"
        epoch = (await engine.position("t0")).epoch
        assert (await engine.history("t0", since=None, limit=10, options=options)).publications == []
        missed = await engine.history("t0", since=Position(epoch, 0), limit=10, options=options)
        assert not missed.complete and missed.position == Position(epoch, 3)
        clock.now += 3600.0
        engine.sweep(clock.now)  # (an emptied history leaves the channel to the idle rule)
        await engine.unlisten("t0")
        clock.now += 3600.0
        engine.sweep(clock.now)
        assert (await engine.position("t0")).epoch != epoch, "forgotten once idle"
    finally:
        await engine.stop()


def _bytes_held(before: tracemalloc.Snapshot) -> int:
    gc.collect()
    return sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))


async def test_a_channel_with_nothing_in_its_history_holds_no_buffer_for_it() -> None:
    """A channel per user or per device, followed by one idle session, may never publish: an
    empty history buffer (a deque, 624 bytes) made every such channel cost 1.2 KB of the
    process where its epoch and offset need under 500 bytes. Once its history expires, the
    buffer goes too."""
    clock = Clock()
    engine = MemoryEngine(clock=clock, idle_ttl=3600.0, sweep_every=5.0)
    await engine.position("warm")  # (the engine's own tables made)
    count = 1_000
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for n in range(count):
            await engine.listen(f"user:{n}")
            await engine.position(f"user:{n}")
        assert _bytes_held(before) / count < 800  # (with a buffer each: 1,200)
        options = ChannelOptions(history_size=10, history_ttl=10)
        for n in range(count):
            await engine.publish(f"user:{n}", Payload.of(n), options)
        clock.now += 11.0
        engine.sweep(clock.now)
        assert _bytes_held(before) / count < 1_000  # (the emptied buffers kept: 1,370)
    finally:
        tracemalloc.stop()
