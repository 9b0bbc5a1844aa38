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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .base import HistoryResult, Position, Publication

__all__ = ["Missed", "latest", "missed", "recovered"]


@dataclass(frozen=True, slots=True)
class Missed:
    """The offsets a subscriber missed, ``first`` to ``last`` inclusive: what to read."""

    first: int
    last: int


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
