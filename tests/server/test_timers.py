"""The node's clock visits only the sessions that are due (server/timers.py): a tick costs
what is due, not what is held."""

from __future__ import annotations

import gc
from unittest import mock

import pytest

from ladder import ChannelOptions
from ladder.protocol.session import SessionState
from ladder.server.hub import internals
from ladder.server.node import FULL_TICK
from ladder.server.timers import ROUND_SLICE, Timers
from tests.server.harness import Clock, Peer, make_hub
from tests.support.work import lines_awaited


@pytest.mark.pure
async def test_a_tick_visits_only_the_sessions_that_are_due() -> None:
    clock = Clock()
    hub = make_hub(clock)
    try:
        idle = [await Peer.open(hub) for _ in range(50)]
        node = internals(hub)
        for peer in idle[1:]:
            peer.session.state.detach(peer.att, clock.now)  # 49 detached: due at the session TTL
        live = idle[0]
        heartbeat = node.settings.session_limits.heartbeat
        ttl = node.settings.session_limits.ttl
        assert heartbeat < ttl
        with mock.patch.object(SessionState, "tick", autospec=True, side_effect=SessionState.tick) as ticked:
            clock.now += 1.0
            await node.tick(clock.now)
            assert ticked.call_count == 0, "nothing is due a second later"
            clock.now += heartbeat
            await node.tick(clock.now)
            assert [call.args[0] for call in ticked.call_args_list] == [live.session.state]
            assert {"t": "ping"} in live.read(), "the due session was pinged"
            ticked.reset_mock()
            clock.now += ttl
            await node.tick(clock.now)
            assert ticked.call_count >= 49, "every detached session was due at its TTL"
        assert all(peer.session.sid not in node.sessions for peer in idle[1:])
    finally:
        await hub.stop()


@pytest.mark.pure
async def test_attaching_brings_a_deadline_forward_and_a_full_tick_catches_a_missed_one() -> None:
    clock = Clock()
    hub = make_hub(clock)
    try:
        node = internals(hub)
        peer = await Peer.open(hub)
        peer.session.state.detach(peer.att, clock.now)
        limits = node.settings.session_limits
        # A long poll attaches: its release at poll_timeout comes long before the TTL.
        poll = node.gateway.attach(peer.session, "longpoll", streaming=False, ack=0, resumed=True)
        clock.now += limits.poll_timeout
        await node.tick(clock.now)
        assert poll.closed, "the long poll was released at poll_timeout"
        # A deadline moved earlier without being reported (a future code path's mistake) is
        # caught by the tick that visits every session.
        other = await Peer.open(hub)
        other.att.last_sent -= 10 * limits.heartbeat
        with mock.patch.object(SessionState, "tick", autospec=True, side_effect=SessionState.tick) as ticked:
            clock.now += 0.5
            await node.tick(clock.now)
            assert other.session.state not in [call.args[0] for call in ticked.call_args_list]
            clock.now += FULL_TICK
            await node.tick(clock.now)
            assert other.session.state in [call.args[0] for call in ticked.call_args_list]
    finally:
        await hub.stop()


def reachable(root: object, depth: int) -> list[object]:
    """Objects ``root`` refers to, within ``depth`` steps."""
    found, layer = [], [root]
    for _ in range(depth):
        layer = [ref for obj in layer for ref in gc.get_referents(obj)]
        found += layer
    return found


async def test_an_ended_session_is_not_kept_alive_by_its_pending_deadline() -> None:
    """A deadline's heap entry stays until its time comes (a heartbeat, a TTL); before, it
    held the whole ended session until then (13 sessions' worth of objects after the soak's
    10,000 cycles, failing its leak bound in one run of two)."""
    clock = Clock()
    hub = make_hub(clock)
    try:
        node = internals(hub)
        peers = [await Peer.open(hub) for _ in range(20)]
        gone = {id(peer.session) for peer in peers[:10]}
        for peer in peers[:10]:
            node.sessions.close(peer.session, None)
            await node.sessions.forget(peer.session)
        held = reachable(node.sessions.timers, depth=4)
        assert not gone & {id(o) for o in held}, "no ended session held"
        assert len(node.sessions.timers) == 10
        clock.now += node.settings.session_limits.heartbeat
        await node.tick(clock.now)
        assert all({"t": "ping"} in peer.read() for peer in peers[10:]), "the live ones still tick"
    finally:
        await hub.stop()


@pytest.mark.pure
async def test_the_safety_net_spreads_its_visits_over_the_round() -> None:
    """Every session is visited once per FULL_TICK, a share per tick: 100,000 sessions
    visited at once, with the presence refresh of that tick, stopped the event loop for
    430-590 ms once a minute (bench/timers_bench.py)."""
    clock = Clock()
    hub = make_hub(clock)
    try:
        node = internals(hub)
        peers = [await Peer.open(hub) for _ in range(4 * ROUND_SLICE)]
        with (
            mock.patch.object(Timers, "pop_due", return_value=[]),  # (only the safety net, here)
            mock.patch.object(SessionState, "tick", autospec=True, side_effect=SessionState.tick) as ticked,
        ):
            clock.now += FULL_TICK
            await node.tick(clock.now)  # the round begins: a first slice
            assert ticked.call_count == ROUND_SLICE
            for _ in range(int(FULL_TICK) - 1):  # a tick a second, until the round's time is up
                before = ticked.call_count
                clock.now += 1.0
                await node.tick(clock.now)
                assert ticked.call_count - before <= ROUND_SLICE, "no tick visits more than its share"
            visited = [call.args[0] for call in ticked.call_args_list]
        assert sorted(map(id, visited)) == sorted(id(peer.session.state) for peer in peers), "each once"
    finally:
        await hub.stop()


async def test_presence_refresh_walks_the_members_not_every_session() -> None:
    async def refresh_work(sessions: int) -> int:
        clock = Clock()
        hub = make_hub(clock, channels={"room:*": ChannelOptions(presence=True)})
        try:
            node = internals(hub)
            for n in range(sessions):
                peer = await Peer.open(hub)
                await peer.request({"t": "sub", "ch": f"feed:{n}"})  # no presence there
            for n in range(3):
                peer = await Peer.open(hub)
                await peer.request({"t": "sub", "ch": f"room:{n}"})
            clock.now += node.settings.presence_ttl / 3
            with mock.patch.object(Timers, "pop_due", return_value=[]):
                return await lines_awaited(node.tick(clock.now))
        finally:
            await hub.stop()

    few, many = await refresh_work(10), await refresh_work(2_000)
    assert many < few + 200, f"{few} lines with 10 other sessions, {many} with 2,000"
