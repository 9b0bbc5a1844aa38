"""The recovery rule alone (pure: no engine, no clock)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ladder.engine import recovery
from ladder.engine.base import HistoryResult, Position, Publication
from ladder.protocol.codec import Payload

NOW = 1000.0


def pubs(offsets: range, *, time: float = NOW, epoch: str = "e1") -> list[Publication]:
    return [Publication("ch", o, epoch, Payload.of(o), time) for o in offsets]


def test_what_needs_no_history_is_decided_before_reading() -> None:
    at = Position("e1", 8)
    assert recovery.missed(Position("e1", 8), at, 5) == HistoryResult([], at, True)
    assert recovery.missed(Position("e0", 8), at, 5) == HistoryResult([], at, False)
    assert recovery.missed(Position("e1", 9), at, 5) == HistoryResult([], at, False)
    assert recovery.missed(Position("e1", -1), at, 100) == HistoryResult([], at, False)
    assert recovery.missed(Position("e1", 2), at, 5) == HistoryResult([], at, False), "6 missed > 5"
    assert recovery.missed(Position("e1", 3), at, 5) == recovery.Missed(4, 8)


def test_recovery_needs_every_missed_publication_and_nothing_aged_out() -> None:
    at, want = Position("e1", 8), recovery.Missed(4, 8)
    full = recovery.recovered(want, at, pubs(range(1, 9)), oldest=0.0)
    assert full.complete and [p.offset for p in full.publications] == [4, 5, 6, 7, 8]
    assert not recovery.recovered(want, at, pubs(range(5, 9)), oldest=0.0).complete, "the first is gone"
    assert not recovery.recovered(want, at, pubs(range(4, 8)), oldest=0.0).complete, "the last is missing"
    gap = pubs(range(4, 6)) + pubs(range(7, 9))
    assert not recovery.recovered(want, at, gap, oldest=0.0).complete
    aged = pubs(range(4, 5), time=NOW - 10) + pubs(range(5, 9))
    assert not recovery.recovered(want, at, aged, oldest=NOW - 5).complete
    assert recovery.recovered(want, at, aged, oldest=NOW - 20).complete
    assert recovery.recovered(want, at, [], oldest=0.0) == HistoryResult([], at, False)


def test_a_catch_up_judges_against_what_was_delivered_before_the_read() -> None:
    delivered = Position("e1", 8)
    assert recovery.catch_up(delivered, Position("e1", 8)) is None
    assert recovery.catch_up(delivered, Position("e1", 11)) == recovery.Missed(9, 11)
    assert recovery.catch_up(delivered, Position("e2", 20)) == recovery.Resync(fork=False)
    assert recovery.catch_up(delivered, Position("e2", 3)) == recovery.Resync(fork=False)
    assert recovery.catch_up(delivered, Position("e1", 7)) == recovery.Resync(fork=True), "went back"


def test_history_tells_a_delivered_publication_from_another_at_its_offset() -> None:
    delivered = Publication("ch", 5, "e1", Payload.of("a"), NOW)
    assert recovery.same(delivered, Publication("ch", 5, "e1", Payload.of("a"), NOW))
    assert recovery.same(delivered, None) is None, "nothing kept there: nothing to judge by"
    assert recovery.same(delivered, Publication("ch", 5, "e1", Payload.of("b"), NOW)) is False
    assert recovery.same(delivered, Publication("ch", 5, "e1", Payload.of("a"), NOW + 1)) is False
    assert recovery.same(delivered, Publication("ch", 4, "e1", Payload.of("a"), NOW)) is False


def test_the_newest_publications_skip_the_aged_out() -> None:
    at = Position("e1", 8)
    held = pubs(range(1, 4), time=NOW - 10) + pubs(range(4, 9))
    assert [p.offset for p in recovery.latest(at, held, 3, oldest=NOW - 5).publications] == [6, 7, 8]
    assert [p.offset for p in recovery.latest(at, held, 10, oldest=NOW - 5).publications] == [4, 5, 6, 7, 8]
    assert recovery.latest(at, held, 0, oldest=0.0) == HistoryResult([], at, True)


@st.composite
def channels(draw: st.DrawFn) -> tuple[int, int, int, int, int]:
    """A channel at ``newest``, whose history holds offsets ``first..newest`` of which those
    up to ``aged`` are too old; a subscriber back from ``since``; a history ``limit``."""
    newest = draw(st.integers(0, 40))
    first = draw(st.integers(1, newest + 1))
    aged = draw(st.integers(first - 1, newest))
    since = draw(st.integers(-2, newest + 3))
    limit = draw(st.integers(0, 45))
    return newest, first, aged, since, limit


@given(channels(), st.booleans())
def test_recovery_is_exactly_the_missed_publications_or_nothing(
    channel: tuple[int, int, int, int, int], same_epoch: bool
) -> None:
    newest, first, aged, since, limit = channel
    at = Position("e1", newest)
    held = pubs(range(first, aged + 1), time=NOW - 100) + pubs(range(aged + 1, newest + 1))
    back = Position("e1" if same_epoch else "e0", since)

    want = recovery.missed(back, at, limit)
    result = want if isinstance(want, HistoryResult) else recovery.recovered(want, at, held, oldest=NOW - 50)

    recoverable = (
        same_epoch
        and 0 <= since <= newest
        and newest - since <= limit
        and (since == newest or since + 1 > aged)  # every missed one is held and fresh
    )
    assert result.position == at
    assert result.complete == recoverable
    if result.complete:
        assert [p.offset for p in result.publications] == list(range(since + 1, newest + 1))
    else:
        assert result.publications == []
