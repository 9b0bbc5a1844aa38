"""Outbox and Inbox, the two halves of the reliable stream."""

from __future__ import annotations

import pytest

from ladder.protocol.errors import LadderError
from ladder.protocol.reliable import Inbox, Outbox, OutboxOverflow


def test_outbox_numbers_keeps_and_forgets_on_ack() -> None:
    box: Outbox[str] = Outbox(max_items=10, max_bytes=100)
    assert [box.push(x, 1) for x in "abc"] == [1, 2, 3]
    assert box.after(0) == [(1, "a"), (2, "b"), (3, "c")]
    assert box.after(1, limit=1) == [(2, "b")]
    assert box.ack(2) == 2 and box.after(0) == [(3, "c")] and box.bytes == 1
    assert box.ack(1) == 0, "an old ack is harmless"
    with pytest.raises(LadderError):
        box.ack(4)


def test_outbox_bounds_by_count_and_bytes() -> None:
    box: Outbox[str] = Outbox(max_items=2, max_bytes=10)
    box.push("a", 4)
    with pytest.raises(OutboxOverflow):
        box.push("b", 7)
    box.push("b", 6)
    with pytest.raises(OutboxOverflow):
        box.push("c", 0)
    box.ack(1)
    assert box.push("c", 0) == 3


def test_outbox_room_counts_as_push_does() -> None:
    """How many of a burst fit is what pushing them one by one would take before overflowing."""
    for sizes, reserve, reserve_bytes in (
        ([10] * 8, 1, 20),
        ([40, 5, 5, 5], 0, 0),
        ([500, 1, 1], 0, 0),  # (a first item over the byte bound is kept alone)
        ([30, 30, 30], 2, 50),
        ([], 0, 0),
    ):
        outbox: Outbox[str] = Outbox(max_items=5, max_bytes=100)
        outbox.push("waiting", 10)
        room = outbox.room(sizes, reserve=reserve, reserve_bytes=reserve_bytes)
        for _ in range(reserve):
            outbox.push("reply", reserve_bytes // reserve)
        pushed = 0
        for size in sizes:
            try:
                outbox.push("burst", size)
            except OutboxOverflow:
                break
            pushed += 1
        assert room == pushed, (sizes, reserve, reserve_bytes)
    assert Outbox(max_items=5, max_bytes=100).room([500, 1]) == 1
    assert Outbox(max_items=5, max_bytes=100).room([1] * 9, reserve=1) == 4
    # Half of what is left: of 10 items and 100 bytes with 2 items of 20 waiting, 4 items, 40 bytes.
    half: Outbox[str] = Outbox(max_items=10, max_bytes=100)
    half.push("a", 10)
    half.push("b", 10)
    assert half.room([1] * 9, share=0.5) == 4
    assert half.room([15, 15, 15], share=0.5) == 2
    assert half.room([500], share=0.5) == 0, "no exception for an item over the bytes left"
    assert Outbox(max_items=10, max_bytes=100).room([500], share=0.5) == 0


def test_outbox_renumber_restarts_at_one() -> None:
    box: Outbox[str] = Outbox(max_items=10, max_bytes=100)
    for x in "abcd":
        box.push(x)
    box.ack(2)
    assert box.renumber() == ["c", "d"] and box.last == 0 and box.push("c") == 1


def test_inbox_dedupes_and_reorders_within_the_window() -> None:
    box: Inbox[str] = Inbox(window=3)
    assert box.offer(2, "b") == [] and box.waiting == 1
    assert box.offer(1, "a") == ["a", "b"]
    assert box.offer(1, "a") == [] and box.offer(2, "b") == []
    assert box.offer(4, "d") == [] and box.offer(4, "d") == [] and box.waiting == 1
    with pytest.raises(LadderError) as caught:
        box.offer(6, "f")
    assert caught.value.code == "too_far_ahead"
    assert box.offer(3, "c") == ["c", "d"] and box.applied == 4


def test_an_item_larger_than_the_byte_bound_is_kept_when_it_is_the_only_one() -> None:
    """One publication larger than ``max_queue_bytes`` reaches a subscriber that acked
    everything (it dropped every subscriber); a second one while it is unacknowledged does not."""
    box: Outbox[str] = Outbox(max_items=10, max_bytes=10)
    assert box.push("big", 25) == 1
    with pytest.raises(OutboxOverflow):
        box.push("next", 1)
    box.ack(1)
    assert box.push("next", 1) == 2
