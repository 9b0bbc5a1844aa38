"""The memory engine's sweep looks only at what is due, whatever it holds.

Every few seconds the sweep expires presence members, old history, idle channels and
records of what sessions applied. Walking everything it holds each time cost 250-350 ms
with 100,000 channels and records (the event loop stopped meanwhile): it keeps what it
must look at in order of time instead. The work is counted in lines of Python the sweep
runs (``tests/support/work.py``): deterministic, unlike a duration.
"""

from __future__ import annotations

from ladder.engine.base import ChannelOptions, Member
from ladder.engine.memory import MemoryEngine
from ladder.protocol.codec import Payload
from tests.server.harness import Clock
from tests.support.work import lines_run

COUNT = 5_000
HISTORY = ChannelOptions(history_size=10, history_ttl=60)


async def busy_engine(clock: Clock) -> MemoryEngine:
    """COUNT channels listened to (half with history), members and applied records."""
    engine = MemoryEngine(clock=clock, idle_ttl=30.0, sweep_every=5.0)
    for n in range(COUNT):
        channel = f"u:{n}"
        await engine.listen(channel)
        if n % 2:
            await engine.publish(channel, Payload.of(n), HISTORY)
        else:
            await engine.position(channel)
        await engine.presence_add(channel, Member(f"c{n}", f"user{n}"), ttl=20.0)
        await engine.record_applied(f"s{n}", "tok", done=1, replies={}, forget=(), origins=None, ttl=40.0)
    return engine


async def test_a_sweep_with_nothing_due_does_no_work_per_channel_member_or_record() -> None:
    clock = Clock()
    engine = await busy_engine(clock)
    clock.now += 5.0
    assert lines_run(lambda: engine.sweep(clock.now)) < 100  # (walking them all: > 5 per item)


async def test_what_falls_due_is_expired_and_what_was_refreshed_waits_again() -> None:
    clock = Clock()
    engine = await busy_engine(clock)
    kept = Member("c1", "user1")
    clock.now += 15.0
    await engine.presence_add("u:1", kept, ttl=20.0)  # refreshed: now due at +35
    await engine.record_applied("s1", "tok", done=2, replies={}, forget=(), origins=None, ttl=40.0)

    clock.now += 6.0  # +21: every other member's time ran out
    engine.sweep(clock.now)
    assert await engine.presence("u:1") == [kept]
    assert await engine.presence("u:2") == []

    clock.now += 20.0  # +41: records expire (but the refreshed one), members, idle channels stay
    engine.sweep(clock.now)
    assert await engine.applied_record("s1", "tok") is not None
    assert await engine.applied_record("s2", "tok") is None
    assert await engine.presence("u:1") == []

    for n in range(COUNT):  # nobody listens any more
        await engine.unlisten(f"u:{n}")
    clock.now += 30.0 + 60.0  # idle for idle_ttl, history older than its ttl
    engine.sweep(clock.now)
    assert engine.details()["kept"] == 0
    assert lines_run(lambda: engine.sweep(clock.now + 5.0)) < 100


async def test_a_channel_whose_history_expires_first_is_looked_at_then() -> None:
    clock = Clock()
    engine = MemoryEngine(clock=clock, idle_ttl=3600.0, sweep_every=5.0)
    short = ChannelOptions(history_size=10, history_ttl=10)
    await engine.publish("news", Payload.of(1), short)
    clock.now += 11.0
    engine.sweep(clock.now)
    channels = engine._channels  # type: ignore[attr-defined]
    assert not channels._channels["news"].history, "trimmed when its entries expired, not after idle_ttl"
