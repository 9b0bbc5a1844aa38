"""A count bumped on every message, by whoever holds it (see ``metrics.Counters``)."""

from __future__ import annotations


class Tally:
    """One count (a compiled attribute: a dict's ``+= 1`` is a lookup, an addition and a
    store; a link keeps the tally of its transport and adds to it directly)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0
