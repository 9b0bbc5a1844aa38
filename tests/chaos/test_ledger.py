"""The chaos suite's accounting (no I/O): each figure counts what it says, and only that."""

from __future__ import annotations

from tests.chaos.ledger import Downstream, count_messages, count_publications, died_unrecorded


def seen(start: tuple[str, int], *timeline: tuple[str, str, int]) -> Downstream:
    return Downstream(start=start, timeline=list(timeline))


def test_everything_once_in_order_is_clean() -> None:
    published = [("A", o) for o in range(1, 6)]
    figures = count_publications(published, seen(("A", 0), *(("pub", "A", o) for o in range(1, 6))))
    assert (figures.received, figures.lost, figures.doubled, figures.reordered, figures.broken) == (
        5,
        0,
        0,
        0,
        0,
    )


def test_a_gap_without_resync_is_lost_and_a_repeat_doubled() -> None:
    published = [("A", o) for o in range(1, 6)]
    got = seen(("A", 0), ("pub", "A", 1), ("pub", "A", 2), ("pub", "A", 2), ("pub", "A", 5), ("pub", "A", 4))
    figures = count_publications(published, got)
    assert figures.lost == 1  # offset 3
    assert figures.doubled == 1
    assert figures.reordered == 1  # 4 after 5
    assert figures.announced == 0


def test_a_resync_to_a_new_epoch_announces_the_old_tail_and_the_new_head_only() -> None:
    published = [("A", 1), ("A", 2), ("A", 3), ("B", 1), ("B", 2), ("B", 3), ("B", 4)]
    got = seen(("A", 0), ("pub", "A", 1), ("resync", "B", 2), ("pub", "B", 3))
    figures = count_publications(published, got)
    assert figures.announced == 4  # A2, A3 (tail left behind), B1, B2 (before the resync position)
    assert figures.lost == 1  # B4: after the resync, nothing excuses it
    assert figures.silent_epoch_changes == 0


def test_a_new_epoch_without_resync_is_reported_and_excuses_nothing() -> None:
    published = [("A", 1), ("A", 2), ("B", 1)]
    figures = count_publications(published, seen(("A", 0), ("pub", "A", 1), ("pub", "B", 1)))
    assert figures.silent_epoch_changes == 1
    assert figures.lost == 1 and figures.announced == 0


def test_publications_before_the_subscription_are_not_expected() -> None:
    figures = count_publications([("A", 3), ("A", 4)], seen(("A", 3), ("pub", "A", 4)))
    assert figures.lost == 0 and figures.announced == 0


def test_messages_lost_doubled_and_reordered_by_value() -> None:
    figures = count_messages(6, [0, 1, 3, 2, 3, 5])
    assert figures.lost == 1  # 4
    assert figures.doubled == 1  # 3 twice
    assert figures.reordered == 1  # 2 applied after 3
    assert figures.strays == 0
    assert count_messages(3, [0, 1, 2]).broken == 0
    assert count_messages(2, [0, 1, 7]).strays == 1
    assert count_messages(4, [0, 2], unsent={1}).lost_ids == [3]  # 1 was refused to the app, never sent
    excused = count_messages(3, [0, 1, 1, 2, 2, 2], excused={1, 2})
    assert (excused.announced_doubles, excused.doubled) == (2, 1), "a second application only is excused"


def test_only_the_last_value_a_killed_process_applied_may_have_died_unrecorded() -> None:
    records = [("0", "a", 10), ("1", "a", 10), ("2", "a", 10), ("2", "b", 11), ("3", "b", 11), ("4", "c", 12)]
    assert died_unrecorded(records, killed={10}) == {2}  # 0 and 1 were recorded before 1 and 2 ran
    assert died_unrecorded(records, killed={10, 11}) == {2, 3}
    assert died_unrecorded(records, killed=set()) == set()
    assert died_unrecorded([*records, ("end", "a", 10)], killed={10}) == {2}
