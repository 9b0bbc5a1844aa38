"""The schedule sweeps share: a time per name, only what is due taken, earlier times win."""

from __future__ import annotations

from ladder.engine.schedule import Schedule


def test_only_what_is_due_is_taken_once_and_earlier_times_replace_later_ones() -> None:
    schedule = Schedule()
    for n in range(1000):
        schedule.at(f"c{n}", 100.0 + n)
    schedule.at("c500", 50.0)  # earlier: replaces 600
    schedule.at("c1", 900.0)  # later: changes nothing
    assert len(schedule) == 1000
    assert schedule.due(49.0) == []
    assert schedule.due(101.5) == ["c500", "c0", "c1"]
    assert len(schedule) == 997
    assert schedule.due(101.5) == [], "taken off the schedule"
    assert "c500" not in schedule.due(700.0), "its stale entry at 600 is not taken again"
    schedule.at("c0", 10.0)  # put back by the caller
    assert schedule.due(700.0) == ["c0"]
