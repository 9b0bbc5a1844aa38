"""10,000 abandoned sessions expire; the session table empties and memory comes back."""

from __future__ import annotations

import gc
import tracemalloc

from ladder import ChannelOptions
from ladder.server.hub import internals
from tests.server.harness import Clock, Peer, make_hub

SESSIONS = 10_000


async def test_ten_thousand_abandoned_sessions_are_reaped_and_memory_returned() -> None:
    clock = Clock()
    # No history: what remains after expiry must be ~nothing (history is kept on purpose).
    hub = make_hub(clock, session_ttl=5.0, channels={"room:*": ChannelOptions(presence=True, history_size=0)})
    await hub.start()
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for n in range(SESSIONS):
            peer = await Peer.open(hub)
            await peer.request({"t": "sub", "ch": f"room:{n % 100}"})
            await hub.publish(f"room:{n % 100}", {"n": n})
            peer.session.state.detach(peer.att, clock.now)  # the client vanished
        held = tracemalloc.get_traced_memory()[0] - baseline
        assert hub.stats()["sessions"] == SESSIONS and hub.stats()["channels"] == 100

        clock.now += 4.9
        await internals(hub).tick(clock.now)
        assert hub.stats()["sessions"] == SESSIONS, "nothing expires before the TTL"
        clock.now += 0.2
        await internals(hub).tick(clock.now)

        assert hub.stats() == {"sessions": 0, "live": 0, "channels": 0, "users": 0}
        assert await hub.presence("room:1") == []
        gc.collect()
        records = tracemalloc.get_traced_memory()[0] - baseline
        # What each session applied is kept for twice its ttl (a client coming back late
        # must not have its resent messages applied twice), then forgotten too.
        clock.now += 2 * 5.0
        hub.engine.sweep(clock.now)  # type: ignore[attr-defined]
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - baseline
        print(
            f"\n10k sessions held {held / 1e6:.1f} MB; {records / SESSIONS:.0f} B each kept as a record "
            f"of what it applied; {left / 1e3:.0f} KB left after the records expired"
        )
        assert records < 400 * SESSIONS, "an applied-message record is small"
        assert held > 20 * SESSIONS, "the sessions really occupied memory while alive"
        # What may stay: dicts keep their grown capacity after deletions (hundreds of KB).
        assert left < held * 0.05, f"{left} bytes of {held} still held after every session expired"
    finally:
        tracemalloc.stop()
        await hub.stop()
