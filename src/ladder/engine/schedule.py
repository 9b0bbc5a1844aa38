"""When to look at each of many named things next, for sweeps that cost what is due.

The memory engine's channels (history to expire, idle ones to forget) and a Redis Cluster
node's presence channels each hold a time per name; a sweep takes only the names whose time
came, however many there are.
"""

from __future__ import annotations

import heapq


class Schedule:
    """A time per name: a heap of (time, name), pruned as it is read (an entry replaced by an
    earlier one goes stale), and a dict of each name's live time. Pairs of atoms: the
    collector does not track them."""

    __slots__ = ("_heap", "_when")

    def __init__(self) -> None:
        self._when: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._when)

    def at(self, name: str, when: float) -> None:
        """Look at ``name`` no later than ``when`` (a later time than planned changes nothing)."""
        current = self._when.get(name)
        if current is None or when < current:
            self._when[name] = when
            heapq.heappush(self._heap, (when, name))

    def due(self, now: float) -> list[str]:
        """The names whose time came, taken off the schedule (the caller puts back, with
        :meth:`at`, those to look at again)."""
        heap, when, found = self._heap, self._when, []
        while heap and heap[0][0] <= now:
            at, name = heapq.heappop(heap)
            if when.get(name) == at:  # else an earlier time replaced this entry
                del when[name]
                found.append(name)
        return found
