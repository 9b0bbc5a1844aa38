"""Counting, by id, what a chaos run delivered: the promise turned into numbers.

Publications (server → client) are identified by ``(epoch, offset)``: the publisher records
each publication the engine confirmed, the client records each it delivered and each ``resync``
it was told of (with the position the resync moved it to). A publication the client never got
is *announced* when a resync covers it — it lies after the last one the client had in an epoch
it was then moved out of, or at or before the position a resync moved it to — and *lost*
otherwise. Client messages (client → server) are identified by the value the test gave them
(0, 1, 2, … per client), as the handlers recorded them when applying them; docs promise that
none is lost or applied twice, with no exception, so every missing one is lost.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

Position = tuple[str, int]


@dataclass
class Downstream:
    """What one client saw of its channel, in order: ``("pub"|"resync", epoch, offset)``."""

    start: Position | None = None
    timeline: list[tuple[str, str, int]] = field(default_factory=list)

    def pub(self, epoch: str | None, offset: int) -> None:
        self.timeline.append(("pub", epoch or "", offset))

    def resync(self, position: Position | None) -> None:
        if position is not None:
            self.timeline.append(("resync", position[0], position[1]))

    def position(self) -> Position | None:
        """Where the client stands now (last publication or resync)."""
        return (self.timeline[-1][1], self.timeline[-1][2]) if self.timeline else self.start


@dataclass
class PubFigures:
    published: int = 0
    received: int = 0
    lost: int = 0
    announced: int = 0
    doubled: int = 0
    reordered: int = 0
    silent_epoch_changes: int = 0
    resyncs: int = 0

    @property
    def broken(self) -> int:
        return self.lost + self.doubled + self.reordered + self.silent_epoch_changes


def count_publications(published: list[Position], seen: Downstream) -> PubFigures:
    figures = PubFigures(published=len(published))
    pubs = [(epoch, offset) for kind, epoch, offset in seen.timeline if kind == "pub"]
    figures.received = len(pubs)
    figures.doubled = sum(n - 1 for n in Counter(pubs).values())
    # Excused ranges per epoch: (low, high] offsets a resync told the client to refetch.
    excused: list[tuple[str, int, float]] = []
    epoch, last = seen.start if seen.start is not None else ("", 0)
    before = (epoch, last)  # published before the subscription: not the client's to receive
    previous: tuple[str, int] | None = None
    for kind, ep, offset in seen.timeline:
        if kind == "resync":
            figures.resyncs += 1
            if ep == epoch:
                excused.append((ep, last, offset))
            else:
                excused.append((epoch, last, float("inf")))  # the tail of the epoch it left
                excused.append((ep, -1, offset))
            epoch, last = ep, offset
            previous = None
            continue
        if ep != epoch:
            figures.silent_epoch_changes += 1  # a new epoch with no resync before it
            epoch, last = ep, 0
        if previous is not None and previous[0] == ep and offset < previous[1]:
            figures.reordered += 1
        previous = (ep, offset)
        last = max(last, offset)
    got = set(pubs)
    for ep, offset in published:
        if (ep, offset) in got or (ep == before[0] and offset <= before[1]):
            continue
        if any(ep == e and low < offset <= high for e, low, high in excused):
            figures.announced += 1
        else:
            figures.lost += 1
    return figures


@dataclass
class MsgFigures:
    sent: int = 0
    applied: int = 0
    lost: int = 0
    doubled: int = 0
    reordered: int = 0
    strays: int = 0
    """Applied values that were never sent (should be impossible)."""
    announced_doubles: int = 0
    """Values applied twice in a case ops.md names, the client told by ``session_lost``
    (not counted in ``doubled``)."""
    lost_ids: list[int] = field(default_factory=list)

    @property
    def broken(self) -> int:
        return self.lost + self.doubled + self.reordered + self.strays


def count_messages(
    sent: int, applied: list[int], unsent: set[int] | None = None, excused: set[int] | None = None
) -> MsgFigures:
    """``applied``: the values 0..sent-1 as the cluster applied them, in the order it applied them;
    ``unsent``: values the client refused to send (``queue_full`` raised to the app), not expected;
    ``excused``: values whose second application ops.md allows (and the client was told of).
    """
    unsent = unsent or set()
    excused = excused or set()
    figures = MsgFigures(sent=sent, applied=len(applied))
    counts = Counter(applied)
    figures.announced_doubles = sum(min(1, n - 1) for v, n in counts.items() if v in excused)
    figures.doubled = sum(n - 1 for n in counts.values()) - figures.announced_doubles
    figures.lost_ids = [value for value in range(sent) if value not in counts and value not in unsent]
    figures.lost = len(figures.lost_ids)
    figures.strays = sum(1 for value in counts if not 0 <= value < sent)
    first: list[int] = []  # each value at its first application
    seen_once: set[int] = set()
    for value in applied:
        if value not in seen_once:
            seen_once.add(value)
            first.append(value)
    figures.reordered = sum(1 for a, b in itertools.pairwise(first) if b < a)
    return figures


def read_records(path: Any) -> dict[str, list[tuple[str, str, int]]]:
    """The record file: per key, ``(value, node, pid)`` in the order they were applied."""
    records: dict[str, list[tuple[str, str, int]]] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return records
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            records.setdefault(parts[0], []).append((parts[1], parts[2], int(parts[3])))
    return records


def died_unrecorded(records: list[tuple[str, str, int]], killed: set[int]) -> set[int]:
    """Values that may have died with their process between the handler's side effect and the
    record of it (a case ops.md names): for each SIGKILLed process, the last value it applied.

    Only that one: every earlier value the process applied had its record written before the
    process went on to the next message of the same session (messages are applied in order).
    """
    last: dict[int, int] = {}
    for value, _node, pid in records:
        if pid in killed and value != "end":
            last[pid] = int(value)
    return set(last.values())
