"""The recovery rule: what a subscriber coming back from ``(epoch, offset)`` gets.

Pure (no I/O, no clock): both engines ask :func:`missed` which offsets to read, read them
from their history however they store it, and let :func:`recovered` judge what was read.
One rule, so the memory and the Redis engine cannot drift apart on it:

* a different epoch, or an offset beyond the channel's newest, cannot be recovered (the
  stream was lost, or the position was never real);
* nothing missed is a complete, empty recovery;
* more missed than ``limit`` (the channel's history size) is not recovered;
* otherwise recovery is complete only if history still holds *every* missed publication,
  each newer than ``oldest`` (its age limit): all of them or none, never a part.

A node that delivers a channel's live stream asks :func:`catch_up` what to do after it may
have missed messages (a reconnection, a gap), and :func:`same` whether history still holds
what it delivered: a stream that went back within its epoch, or gave a delivered offset to
another publication (a replica promoted before the newest publications reached it), is a
fork, and the epoch must change so that no one recovers across it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .base import HistoryResult, Position, Publication

__all__ = ["Missed", "Resync", "catch_up", "latest", "missed", "recovered", "same"]


@dataclass(frozen=True, slots=True)
class Missed:
    """The offsets a subscriber missed, ``first`` to ``last`` inclusive: what to read."""

    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Resync:
    """The stream a node delivered is not the channel's any more: its subscribers resync.
    ``fork``: the epoch is the same but holds fewer publications than were delivered, so
    the offsets after the channel's position will name other publications (the epoch must
    change); otherwise the epoch already changed (the stream was lost)."""

    fork: bool


def catch_up(delivered: Position, position: Position) -> Missed | Resync | None:
    """What a node that had delivered up to ``delivered`` when it asked must do, the
    channel standing at ``position``: nothing, deliver the missed offsets, or resync.

    ``delivered`` must be taken *before* ``position`` was read: live publications
    delivered while the read was on its way are newer than ``position``, not a sign that
    the stream went back."""
    if position.epoch != delivered.epoch:
        return Resync(fork=False)
    if position.offset < delivered.offset:
        return Resync(fork=True)
    if position.offset == delivered.offset:
        return None
    return Missed(delivered.offset + 1, position.offset)


def same(delivered: Publication, held: Publication | None) -> bool | None:
    """Whether ``held`` (history's entry at the offset of ``delivered``) is the publication
    that was delivered: None when history holds nothing there (no history kept, or aged
    out: nothing to judge by), False when another publication took its offset (a fork)."""
    if held is None:
        return None
    return (
        held.offset == delivered.offset
        and held.time == delivered.time
        and held.payload.msgpack == delivered.payload.msgpack
    )


def missed(since: Position, position: Position, limit: int) -> Missed | HistoryResult:
    """What to read to recover from ``since`` when the channel stands at ``position``, or the
    answer already, when reading history cannot change it."""
    if since.epoch != position.epoch or since.offset > position.offset or since.offset < 0:
        return HistoryResult([], position, False)
    if since.offset == position.offset:
        return HistoryResult([], position, True)
    if position.offset - since.offset > limit:
        return HistoryResult([], position, False)
    return Missed(since.offset + 1, position.offset)


def recovered(
    want: Missed, position: Position, held: Sequence[Publication], *, oldest: float
) -> HistoryResult:
    """Judge what history ``held`` of the ``want`` range (in offset order; it may hold less,
    or publications outside the range): complete with exactly the missed publications, or
    not recovered at all. Publications at or before time ``oldest`` have aged out."""
    pubs = [p for p in held if want.first <= p.offset <= want.last and p.time > oldest]
    expected = want.last - want.first + 1
    if len(pubs) != expected or any(p.offset != want.first + n for n, p in enumerate(pubs)):
        return HistoryResult([], position, False)
    return HistoryResult(pubs, position, True)


def latest(position: Position, held: Sequence[Publication], limit: int, *, oldest: float) -> HistoryResult:
    """The newest ``limit`` publications history holds that have not aged out (a subscriber
    asking for recent messages rather than recovery): always complete."""
    if limit <= 0:
        return HistoryResult([], position, True)
    pubs = [p for p in held if p.time > oldest]
    return HistoryResult(pubs[-limit:], position, True)
