"""Steady traffic leaves nothing per session in the collector's oldest generation.

CPython runs a full collection (it walks every tracked object: about 110 ms with 5,000
subscribed sessions) once the objects promoted into its oldest generation since the last
one reach a quarter of those living there. What a session makes and drops at every
delivery, acknowledgement or heartbeat lives long enough (up to a heartbeat) to be promoted
and so brings the next full collection closer. These tests count what generation-1
collections move into the oldest generation while sessions receive, answer calls and
heartbeat, and hold it to a constant, not a multiple of the sessions.
"""

from __future__ import annotations

import gc
from typing import Any

from ladder.server.hub import internals
from tests.server.harness import Clock, Peer, Recorder, make_hub

PEERS = 50
CYCLES = 20


class Promotions:
    """A ``gc.callbacks`` entry: how many objects generation-1 collections moved into the
    oldest generation (its size after each, less its size before)."""

    def __init__(self) -> None:
        self.moved = 0
        self._before = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 1:
            return
        size = len(gc.get_objects(generation=2))
        if phase == "start":
            self._before = size
        else:
            self.moved += size - self._before


async def test_deliveries_calls_and_heartbeats_promote_nothing_per_session() -> None:
    clock = Clock()
    hub = make_hub(clock)
    Recorder(hub)
    try:
        node = internals(hub)
        heartbeat = node.settings.session_limits.heartbeat
        peers = [await Peer.open(hub) for _ in range(PEERS)]
        for peer in peers:
            await peer.request({"t": "sub", "ch": "room"})

        promotions = Promotions()

        async def cycle(n: int, collect: bool) -> None:
            await hub.publish("room", {"n": n})
            await peers[n % PEERS].send({"t": "call", "ev": "do", "d": n})
            if collect:
                gc.collect(1)  # a young collection while the publication and the answer are unacknowledged
            for peer in peers:
                peer.read()  # delivered and acknowledged
                await peer.send({"t": "pong"})
            clock.now += heartbeat / 2  # half the sessions' heartbeats fall due: pinged, rescheduled
            await node.tick(clock.now)

        for n in range(3):  # first use: what a session keeps for good is made here
            await cycle(n, collect=False)
        gc.collect()
        gc.callbacks.append(promotions)
        try:
            for n in range(3, 3 + CYCLES):
                await cycle(n, collect=True)
        finally:
            gc.callbacks.remove(promotions)
        assert all(peer.session.state.outbox.acked == peer.session.state.outbox.last for peer in peers)
        # Before: two deques per session per delivery and an entry per session per heartbeat
        # (4,001 objects here: 4 per session per cycle). What remains comes with the cycle's
        # publication and call (the channel's history, the answer kept until acknowledged,
        # a session's first call), whatever the number of sessions.
        assert promotions.moved < 10 * CYCLES, f"{promotions.moved} objects promoted in {CYCLES} cycles"
    finally:
        await hub.stop()


async def test_occasional_calls_promote_only_their_answers() -> None:
    """Each session calls now and then (as users of a chat app do): between two of its
    calls, what the engine keeps of its record must not be a new tracked object each time
    (the memory engine rebuilt a tuple holding a dict per call)."""
    clock = Clock()
    hub = make_hub(clock)
    Recorder(hub)
    try:
        peers = [await Peer.open(hub) for _ in range(PEERS)]
        for n, peer in enumerate(peers):  # first use
            await peer.request({"t": "call", "ev": "do", "d": n})
        gc.collect()
        promotions = Promotions()
        gc.callbacks.append(promotions)
        try:
            for n in range(CYCLES):
                for peer in peers:
                    await peer.send({"t": "call", "ev": "do", "d": n})
                gc.collect(1)  # a young collection while the answers are unacknowledged
                for peer in peers:
                    peer.read()
        finally:
            gc.callbacks.remove(promotions)
        calls = PEERS * CYCLES
        # The answer itself (an OutFrame in the outbox, until acknowledged) is promoted with
        # each call; before, the record's tuple and dict came with it: 3 per call.
        assert promotions.moved < 1.5 * calls, f"{promotions.moved} objects promoted by {calls} calls"
    finally:
        await hub.stop()
