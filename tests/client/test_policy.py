"""The client's ladder bookkeeping, backoff and race, without a network."""

from __future__ import annotations

import asyncio
import random

import pytest

from ladder import Client
from ladder.client import rungs as rung_memory
from ladder.client.backoff import full_jitter
from ladder.client.race import AllRungsFailed, race
from ladder.client.rungs import RungPolicy
from ladder.client.transports.base import Endpoint, Transport, TransportClosed
from ladder.protocol.codec import JSON

RUNGS = ["websocket", "sse", "longpoll", "poll"]


def test_full_jitter_stays_within_the_growing_ceiling() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 20.0), (60, 20.0)]:
        draws = [full_jitter(attempt, 0.5, 20.0, rng) for _ in range(500)]
        assert all(0 <= d < ceiling for d in draws)
        assert max(draws) > ceiling * 0.9 and min(draws) < ceiling * 0.1, "spread over the whole window"


def test_three_short_lived_connections_step_down_with_a_reason() -> None:
    policy = RungPolicy(RUNGS, cut_limit=3, stable_after=10.0)
    assert policy.dropped("websocket", 2.0, "lost") is None
    assert policy.dropped("websocket", 30.0, "lost") is None, "a stable connection resets the count"
    assert policy.dropped("websocket", 1.0, "lost") is None
    assert policy.dropped("websocket", 1.0, "lost") is None
    reason = policy.dropped("websocket", 1.0, "websocket: connection lost")
    assert reason is not None and "cut 3 times" in reason and "connection lost" in reason
    assert policy.candidates() == ["sse", "longpoll", "poll"]
    assert policy.above("sse") == ["websocket"]
    policy.won("websocket")
    assert policy.candidates() == RUNGS


def test_the_lowest_rung_never_steps_down_further() -> None:
    policy = RungPolicy(["poll"], cut_limit=1)
    assert policy.dropped("poll", 0.1, "x") is None and policy.candidates() == ["poll"]


def test_remembered_rung_is_where_the_ladder_starts() -> None:
    assert RungPolicy(RUNGS, start="longpoll").candidates() == ["longpoll", "poll"]
    assert RungPolicy(RUNGS, start="nonsense").candidates() == RUNGS


def test_a_client_limited_by_its_transports_is_not_remembered_for_the_others() -> None:
    """A client with ``transports=["poll"]`` won on short polling; the next client of that URL
    with every rung started there too, and took the WebSocket that never failed for a rung
    that "works again"."""
    url = "http://127.0.0.1:9/remembered"
    Client(url, transports=["websocket", "sse"])  # (made: nothing remembered yet)
    rung_memory.remember(url, ["poll"], "poll")
    assert Client(url).policy.candidates() == RUNGS
    rung_memory.remember(url, RUNGS, "sse")
    assert Client(url).policy.candidates() == ["sse", "longpoll", "poll"]
    assert Client(url, transports=["poll"]).policy.candidates() == ["poll"]
    rung_memory.forget_all()


class FakeTransport(Transport):
    def __init__(self, name: str) -> None:
        super().__init__(Endpoint("http://x", JSON, {}), lambda: 0)
        self.name = name
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def opener(behaviour: dict[str, tuple[float, bool]], started: dict[str, float]):  # type: ignore[no-untyped-def]
    """Each rung opens after ``delay`` seconds, or fails then (``ok`` False)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def open_rung(rung: str) -> Transport:
        started[rung] = loop.time() - t0
        delay, ok = behaviour[rung]
        await asyncio.sleep(delay)
        if not ok:
            raise TransportClosed(f"{rung}: refused")
        return FakeTransport(rung)

    return open_rung


async def test_race_staggers_and_first_welcome_wins() -> None:
    started: dict[str, float] = {}
    losers: list[str] = []

    async def on_loser(t: Transport) -> None:
        losers.append(t.name)

    behaviour = {
        "websocket": (10.0, True),
        "sse": (0.05, True),
        "longpoll": (0.01, True),
        "poll": (0.01, True),
    }
    winner, failures = await race(RUNGS, opener(behaviour, started), (0.0, 0.1, 0.5, 1.0), on_loser=on_loser)
    assert winner.name == "sse"
    assert failures == {"websocket": failures["websocket"]} and "not open after" in failures["websocket"]
    assert set(started) == {"websocket", "sse"}, "later rungs never started"
    # at its own stagger (0.1 s), not the next one (0.5 s): a loaded machine once made it 0.21 s
    assert 0.09 <= started["sse"] < 0.45


async def test_race_starts_the_next_rung_at_once_when_the_previous_fail() -> None:
    started: dict[str, float] = {}
    behaviour = {
        "websocket": (0.0, False),
        "sse": (0.0, False),
        "longpoll": (0.02, True),
        "poll": (0.0, True),
    }

    async def on_loser(t: Transport) -> None: ...

    winner, failures = await race(RUNGS, opener(behaviour, started), (0.0, 0.3, 1.0, 2.0), on_loser=on_loser)
    assert winner.name == "longpoll"
    assert failures == {"websocket": "websocket: refused", "sse": "sse: refused"}
    # (its stagger is 1.0 s: well under it, whatever the machine's load)
    assert started["longpoll"] < 0.5, "no waiting for the stagger once everything before failed"


async def test_race_reports_every_failure() -> None:
    behaviour = dict.fromkeys(RUNGS, (0.0, False))

    async def on_loser(t: Transport) -> None: ...

    with pytest.raises(AllRungsFailed) as failed:
        await race(RUNGS, opener(behaviour, {}), (0.0, 0.3, 1.0, 2.0), on_loser=on_loser)
    assert sorted(failed.value.failures) == sorted(RUNGS)


async def test_a_refusal_the_client_gives_up_on_ends_the_race_at_once() -> None:
    """``unauthorized`` on the WebSocket: every other rung would be refused too. The race
    ends there (the SSE attempt under way is cancelled, no later rung starts) instead of
    trying the whole ladder; an expired token that can be refreshed does not end it."""
    from ladder.protocol.errors import LadderError  # noqa: PLC0415

    started: list[str] = []
    cancelled: list[str] = []
    longpoll_started = asyncio.Event()

    def open_refused(code: str):  # type: ignore[no-untyped-def]
        async def open_rung(rung: str) -> Transport:
            started.append(rung)
            if rung == "longpoll":
                longpoll_started.set()
            if rung == "websocket":
                await asyncio.sleep(0.05)
                raise TransportClosed(f"{rung}: refused", LadderError(code, "no"))
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(rung)
                raise
            return FakeTransport(rung)

        return open_rung

    async def on_loser(t: Transport) -> None: ...

    with pytest.raises(AllRungsFailed) as failed:
        await race(RUNGS, open_refused("unauthorized"), (0.0, 0.01, 1.0, 2.0), on_loser=on_loser)
    assert [e.code for e in failed.value.errors()] == ["unauthorized"]
    assert started == ["websocket", "sse"] and cancelled == ["sse"]

    started.clear()
    refreshable = asyncio.ensure_future(
        race(RUNGS, open_refused("token_expired"), (0.0, 0.01, 1.0, 2.0), on_loser=on_loser)
    )
    await asyncio.wait_for(longpoll_started.wait(), 5)  # the race goes on: long polling starts at its time
    refreshable.cancel()
    with pytest.raises(asyncio.CancelledError):
        await refreshable
    with pytest.raises(AllRungsFailed):
        await race(
            RUNGS, open_refused("token_expired"), (0.0, 0.01, 1.0, 2.0), on_loser=on_loser, token_refreshable=False
        )
